"""Shared fixtures: the real data sets in ../shared/data, and what to do when they are absent.

Tests that need the real data skip on a developer's machine without it, but CI (CI=true) has it,
so there a missing data set is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Access control is on by default (secure by default); the tests of everything else call the
# routes without keys, so it is off for the session — set before any Settings is built, and
# inherited by the servers tests start in subprocesses. tests/test_access.py switches it on.
os.environ.setdefault("GRIDMAP_ACCESS__ENABLED", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Property tests explore new examples on every local run; CI replays a fixed sequence (derived
# from each test), so a red run there is always reproducible and never a roll of the dice.
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")


def need(relative: str) -> Path:
    """The path of a real data file, skipping the test (failing it in CI) when it is absent."""
    path = DATA / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing in CI: the real data must be there")
        pytest.skip(f"{path} is not here")
    return path


@pytest.fixture
def data():
    return need


# -- PostGIS (gridmap.store.postgis) ------------------------------------------------------------


@pytest.fixture(scope="session")
def postgis_url():
    """A PostgreSQL + PostGIS server whose user may create databases.

    ``$GRIDMAP_TEST_POSTGIS_URL`` when set (CI sets it), else a throwaway cluster of our own when
    the binaries and the postgis extension are installed, else a skip — which fails in CI.
    """
    from pg import missing_postgis, throwaway_cluster

    url = os.environ.get("GRIDMAP_TEST_POSTGIS_URL")
    if url:
        yield url
        return
    reason = missing_postgis()
    if reason:
        if IN_CI:
            pytest.fail(f"PostGIS tests cannot run in CI: {reason}; set GRIDMAP_TEST_POSTGIS_URL")
        pytest.skip(f"PostGIS tests need a server: {reason}")
    try:
        cluster = throwaway_cluster()
        url = cluster.__enter__()
    except Exception as exc:  # a cluster that will not start is a skip locally, a failure in CI
        if IN_CI:
            pytest.fail(f"cannot start a throwaway PostGIS cluster in CI: {exc}")
        pytest.skip(f"cannot start a throwaway PostGIS cluster: {exc}")
    try:
        yield url
    finally:
        cluster.__exit__(None, None, None)


@pytest.fixture
def postgis_database(postgis_url):
    """The URL of a fresh database with PostGIS, dropped after the test."""
    from pg import fresh_database

    with fresh_database(postgis_url) as url:
        yield url


@pytest.fixture(params=["geopackage", "postgis"])
def store(request, tmp_path):
    """A fresh empty store of each kind: a GeoPackage in tmp_path, or a fresh PostGIS database
    (skipped without a server locally, failing in CI)."""
    from gridmap.store.geopackage import GeoPackageStore

    if request.param == "geopackage":
        opened = GeoPackageStore(tmp_path / "gridmap.gpkg", lock_timeout=0.5)
    else:
        from gridmap.store.postgis import PostGISStore

        opened = PostGISStore(request.getfixturevalue("postgis_database"), lock_timeout=0.5)
    yield opened
    opened.close()
