"""A real ``gridmap serve`` in a subprocess, for tests that use real clients (owslib, GDAL,
Chromium). Stops it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def demo_store(directory: Path) -> Path:
    """A GeoPackage store in ``directory`` holding the demo city as published version 1."""
    from gridmap.demo import load_into
    from gridmap.store import open_store

    path = Path(directory) / "gridmap.gpkg"
    store = open_store(str(path))
    load_into(store)
    store.close()
    return path


@contextlib.contextmanager
def demo_store_url(kind: str, request, folder: Path):
    """The demo city published in a fresh store of ``kind`` (``geopackage`` in ``folder``, or a
    fresh PostGIS database); yields its URL."""
    from gridmap.demo import load_into
    from gridmap.store import open_store

    if kind == "postgis":
        from pg import fresh_database

        with fresh_database(request.getfixturevalue("postgis_url")) as url:
            load_into(open_store(url))
            yield url
    else:
        yield str(demo_store(folder))


def app_client(url: str, **sections):
    """A TestClient over the service on store ``url``; the escalation scheduler off, and any
    settings sections given as dicts (``lookup={"batch_limit": 500}``)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from gridmap.config import Settings

    settings = Settings()
    settings.store.url = str(url)
    settings.incidents.escalate_every_s = 0
    for section, values in sections.items():
        for name, value in values.items():
            setattr(getattr(settings, section), name, value)
    return TestClient(create_app(settings))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(store_url: str):
    """Start ``gridmap serve`` over ``store_url`` on a free port; yield its base URL."""
    import httpx

    port = free_port()
    env = {**os.environ, "GRIDMAP_STORE__URL": str(store_url)}
    proc = subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{url}/conformance", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            proc.kill()
            pytest.fail(f"gridmap serve did not start: {proc.stdout.read().decode()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
