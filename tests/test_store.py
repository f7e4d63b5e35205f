"""The store contract, run against both stores: the GeoPackage file and PostGIS.

Each test gets a fresh store: a GeoPackage in tmp_path, or a fresh PostGIS database (see the
``postgis_database`` fixture in conftest.py; PostGIS tests skip without a server, but fail in CI).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridmap.errors import (Conflict, CRSMissing, FeatureNotFound, FileUnreadable, InputError,
                            LayerNotFound, NothingToPublish, StoreUnavailable, VersionNotFound)
from gridmap.io import read_layer
from gridmap.store import COLUMNS, STORE_LAYERS, LayerChange, Store, open_store
from gridmap.store.geopackage import GeoPackageStore

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "boundaries" / "demo.gpkg"
DAY1, DAY2 = dt.date(2024, 1, 1), dt.date(2024, 6, 1)


@pytest.fixture(scope="module")
def demo() -> dict[str, gpd.GeoDataFrame]:
    return {level: read_layer(DEMO, layer=level) for level in STORE_LAYERS}




@pytest.fixture
def published(store, demo):
    """The store with the demo published as version 1 on DAY1."""
    store.write_draft(demo, note="demo")
    store.publish(commit=True, on=DAY1)
    return store


# -- helpers ----------------------------------------------------------------------------------


def plain(values) -> list:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else v
            for v in values]


def assert_same_layer(got: gpd.GeoDataFrame, expected: gpd.GeoDataFrame) -> None:
    """Exactly the features given: text, numbers, extra columns and geometries (by WKB)."""
    expected = expected.sort_values("code", ignore_index=True)
    assert list(got.columns[:len(COLUMNS)]) == list(COLUMNS) and got.geometry.name == "geometry"
    assert got.crs.to_epsg() == 4326
    assert plain(got["code"]) == plain(expected["code"])
    for name in [c for c in expected.columns if c != expected.geometry.name and c != "code"]:
        if name == "households":
            np.testing.assert_array_equal(got[name].to_numpy(float), expected[name].to_numpy(float))
            assert got[name].dtype == expected[name].dtype
        else:
            assert plain(got[name]) == plain(expected[name]), name
    assert list(shapely.to_wkb(got.geometry.values)) == list(shapely.to_wkb(expected.geometry.values))


def snapshot(store) -> tuple:
    """Everything the contract lets a reader see."""
    versions = store.versions()
    layers = {(v.id, level): {name: plain(values) for name, values
                              in store.read_layer(level, v.id).to_wkb().items()}
              for v in versions for level in STORE_LAYERS}
    return versions, layers


def edited_grids(grids: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, dict[str, str]]:
    """The demo grids with one reshaped, one given a new worker, one removed."""
    grids = grids.sort_values("code", ignore_index=True).copy()
    reshaped, reassigned, removed = grids["code"].iloc[[10, 20, 30]]
    i = grids.index[grids["code"] == reshaped][0]
    grids.loc[i, "geometry"] = shapely.segmentize(grids.geometry[i], 0.0005)
    grids.loc[grids["code"] == reassigned, "worker"] = "网格员新"
    grids = grids[grids["code"] != removed].reset_index(drop=True)
    return grids, {"reshaped": reshaped, "reassigned": reassigned, "removed": removed}


@contextmanager
def writer_lock_held(store):
    """Another writer holding the store's write lock."""
    if isinstance(store, GeoPackageStore):
        with open(store.path.with_name(store.path.name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
    else:
        import psycopg2

        from gridmap.store.postgis import _WRITE_LOCK

        conn = psycopg2.connect(store._pool._kwargs["dsn"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (_WRITE_LOCK,))
            yield
        finally:
            conn.close()


# -- versions ---------------------------------------------------------------------------------


def test_a_new_store_has_nothing_to_resolve(store):
    assert isinstance(store, Store)
    assert store.versions() == []
    with pytest.raises(VersionNotFound, match="nothing published yet: import a layer and run "
                                              "gridmap publish --commit"):
        store.resolve()
    with pytest.raises(VersionNotFound):
        store.resolve(on=DAY1)
    with pytest.raises(NothingToPublish):
        store.publish(commit=False)


def test_import_makes_a_draft_that_resolves_only_by_number(store, demo):
    draft = store.write_draft(demo, note="demo")
    assert (draft.status, draft.published_on, draft.note) == ("draft", None, "demo")
    assert store.versions() == [draft]
    with pytest.raises(VersionNotFound, match="nothing published yet"):
        store.resolve()
    with pytest.raises(VersionNotFound, match="nothing published yet"):
        store.resolve(on=dt.date.today())
    assert store.resolve(version=draft.id) == draft


def test_dry_run_lists_changes_and_changes_nothing(store, demo):
    draft = store.write_draft(demo)
    before = snapshot(store)
    result = store.publish(commit=False)
    assert not result.committed and result.previous is None and result.draft == draft
    assert set(result.changes) == set(STORE_LAYERS)
    for level in STORE_LAYERS:
        assert result.changes[level] == LayerChange(added=sorted(demo[level]["code"]))
    assert snapshot(store) == before


def test_commit_activates_the_draft(store, demo):
    draft = store.write_draft(demo)
    result = store.publish(commit=True, on=DAY1)
    assert result.committed and result.previous is None
    assert (result.draft.id, result.draft.status, result.draft.published_on) == (draft.id, "active", DAY1)
    assert store.resolve() == result.draft == store.resolve(on=DAY1)
    with pytest.raises(NothingToPublish):
        store.publish(commit=True)
    again = open_store(store.url)  # another process sees the same
    try:
        assert again.resolve() == result.draft
    finally:
        again.close()


def test_commit_defaults_to_today(store, demo):
    store.write_draft({"grid": demo["grid"]})
    assert store.publish(commit=True).draft.published_on == dt.date.today()


def test_second_import_reports_changes_and_keeps_the_old_version(published, demo):
    store = published
    grids, codes = edited_grids(demo["grid"])
    draft = store.write_draft({"grid": grids})
    assert draft.id == 2
    # The new draft started as a copy of version 1: the layers not imported are there unchanged.
    assert_same_layer(store.read_layer("community", 2), demo["community"])
    dry = store.publish(commit=False)
    assert dry.previous.id == 1 and not dry.committed
    assert dry.changes["grid"] == LayerChange(
        added=[], removed=[codes["removed"]], changed=sorted([codes["reshaped"], codes["reassigned"]]))
    assert all(dry.changes[level] == LayerChange() for level in STORE_LAYERS if level != "grid")
    done = store.publish(commit=True, on=DAY2)
    assert done.changes == dry.changes
    assert [(v.id, v.status, v.published_on) for v in store.versions()] == [
        (1, "retired", DAY1), (2, "active", DAY2)]
    assert_same_layer(store.read_layer("grid", 1), demo["grid"])
    assert_same_layer(store.read_layer("grid", 2), grids)
    assert store.resolve().id == 2
    assert store.resolve(on=DAY2 - dt.timedelta(days=1)).id == 1
    assert store.resolve(on=DAY2).id == 2
    assert store.resolve(version=1).status == "retired"
    with pytest.raises(VersionNotFound, match="first was published on 2024-01-01"):
        store.resolve(on=DAY1 - dt.timedelta(days=1))
    with pytest.raises(VersionNotFound, match="no version 99"):
        store.resolve(version=99)


def test_publishing_before_the_version_in_force_is_refused(published, demo):
    published.write_draft({"grid": demo["grid"].iloc[:5]})
    with pytest.raises(Conflict, match="published later"):
        published.publish(commit=True, on=DAY1 - dt.timedelta(days=1))
    assert published.versions()[-1].status == "draft"


def test_writing_twice_replaces_layers_of_the_same_draft(store, demo):
    first = store.write_draft({"grid": demo["grid"]}, note="first")
    second = store.write_draft({"grid": demo["grid"].iloc[:7], "street": demo["street"]}, note="second")
    assert second.id == first.id and second.note == "second" and len(store.versions()) == 1
    assert_same_layer(store.read_layer("grid", first.id), demo["grid"].iloc[:7])
    assert_same_layer(store.read_layer("street", first.id), demo["street"])


# -- reading ----------------------------------------------------------------------------------


def test_layers_round_trip_exactly(published, demo):
    for level in STORE_LAYERS:
        assert_same_layer(published.read_layer(level, 1), demo[level])
    grid = published.read_layer("grid", 1)
    assert grid["households"].dtype == np.int64
    assert grid["code"].str.len().eq(15).all() and grid["name"].str.contains("网格").all()
    city = published.read_layer("city", 1)
    assert city["note"].iat[0].startswith("the demo covers")  # columns of our own ride along


def test_codes_stay_text_and_odd_values_survive(store):
    odd = gpd.GeoDataFrame(
        {"code": ["007", "0010", "1e5"], "name": ["甲\t乙\n丙", "back\\slash", ""],
         "parent_code": ["00", None, "0"], "households": [1.5, np.nan, 0.0],
         "floor_area": [1.25, None, 3.0], "opened": ["2020-01-01", None, "x"]},
        geometry=[shapely.box(0, 0, 1, 1),
                  shapely.MultiPolygon([shapely.box(2, 2, 3, 3), shapely.box(4, 4, 5, 5)]),
                  shapely.Polygon([(0.1, 0.2), (0.30000000000000004, 0.2), (0.2, 1 / 3)])],
        crs="EPSG:4326")
    version = store.write_draft({"community": odd}).id
    got = store.read_layer("community", version)
    assert_same_layer(got, odd)
    assert got["households"].dtype == np.float64
    assert got["code"].tolist() == ["0010", "007", "1e5"]


def test_an_empty_layer_reads_as_an_empty_frame(store, demo):
    version = store.write_draft({"grid": demo["grid"]}).id
    for level in ("building", "city"):
        empty = store.read_layer(level, version)
        assert empty.empty and list(empty.columns) == [*COLUMNS, "geometry"]
        assert empty.crs.to_epsg() == 4326
    store.write_draft({"grid": demo["grid"].iloc[:0]})
    assert store.read_layer("grid", version).empty


def test_query_features_pages_in_code_order(published, demo):
    everything = published.read_layer("grid", 1)
    first, total = published.query_features("grid", 1, limit=10)
    second, _ = published.query_features("grid", 1, limit=10, offset=10)
    assert total == len(demo["grid"])
    assert list(first["code"]) + list(second["code"]) == list(everything["code"][:20])
    assert_same_layer(second, everything.iloc[10:20])
    beyond, total = published.query_features("grid", 1, limit=10, offset=10_000)
    assert beyond.empty and total == len(demo["grid"])


def test_query_features_by_parent(published, demo):
    parent = demo["grid"]["parent_code"].iat[100]
    want = sorted(demo["grid"].loc[demo["grid"]["parent_code"] == parent, "code"])
    page, total = published.query_features("grid", 1, parent_code=parent, limit=3)
    assert total == len(want) and list(page["code"]) == want[:3]
    assert (page["parent_code"] == parent).all()
    assert published.query_features("grid", 1, parent_code="nowhere") [1] == 0


def test_query_features_by_bbox(published, demo):
    bbox = (111.50, 36.05, 111.53, 36.08)
    grids = demo["grid"]
    want = sorted(grids.loc[grids.intersects(shapely.box(*bbox)), "code"])
    assert 10 < len(want) < len(grids)
    page, total = published.query_features("grid", 1, bbox=bbox, limit=1000)
    assert total == len(want) and list(page["code"]) == want
    page, total = published.query_features("grid", 1, bbox=bbox, limit=5, offset=5)
    assert total == len(want) and list(page["code"]) == want[5:10]
    parent = grids.loc[grids["code"] == want[0], "parent_code"].iat[0]
    both = sorted(grids.loc[grids.intersects(shapely.box(*bbox)) & (grids["parent_code"] == parent), "code"])
    page, total = published.query_features("grid", 1, bbox=bbox, parent_code=parent)
    assert list(page["code"]) == both and total == len(both)
    assert published.query_features("grid", 1, bbox=(0, 0, 1, 1))[1] == 0
    with pytest.raises(InputError):
        published.query_features("grid", 1, bbox=(1, 1, 0, 0))


def test_get_feature(published, demo):
    code = demo["grid"]["code"].iat[5]
    one = published.get_feature("grid", 1, code)
    assert len(one) == 1 and one["code"].iat[0] == code
    assert one["name"].iat[0] == demo["grid"]["name"].iat[5]
    with pytest.raises(FeatureNotFound, match="no grid with code 999"):
        published.get_feature("grid", 1, "999")
    with pytest.raises(VersionNotFound):
        published.get_feature("grid", 7, code)
    with pytest.raises(VersionNotFound):
        published.read_layer("grid", 7)
    with pytest.raises(LayerNotFound):
        published.read_layer("village", 1)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_subsets_of_grids_round_trip(store, demo, data):
    grids = demo["grid"]
    picked = data.draw(st.lists(st.integers(0, len(grids) - 1), max_size=60, unique=True))
    subset = grids.iloc[sorted(picked)]
    version = store.write_draft({"grid": subset}).id
    assert_same_layer(store.read_layer("grid", version), subset)
    if picked:
        code = subset["code"].iat[len(picked) // 2]
        assert_same_layer(store.get_feature("grid", version, code), subset[subset["code"] == code])


# -- refusals and atomicity -------------------------------------------------------------------


@pytest.mark.parametrize("spoil, error", [
    (lambda g: g.assign(code=g["code"].iat[0]), InputError),
    (lambda g: g.assign(code=None), InputError),
    (lambda g: g.assign(level="community"), InputError),
    (lambda g: g.assign(name="bad\x00name"), InputError),
    (lambda g: g.set_crs(None, allow_override=True), CRSMissing),
    (lambda g: g.set_geometry([None] * len(g)), InputError),
], ids=["repeated code", "no code", "other level", "NUL", "no CRS", "no geometry"])
def test_unstorable_layers_are_refused_before_anything_is_written(published, demo, spoil, error):
    before = snapshot(published)
    with pytest.raises(error):
        published.write_draft({"street": demo["street"], "grid": spoil(demo["grid"].copy())})
    assert snapshot(published) == before


@pytest.mark.parametrize("with_draft", [False, True], ids=["new draft", "existing draft"])
def test_an_import_failing_midway_leaves_everything_as_it_was(published, demo, monkeypatch, with_draft):
    store = published
    if with_draft:
        store.write_draft({"grid": demo["grid"].iloc[:50]}, note="work in progress")
    before = snapshot(store)
    file_before = _digest(store)
    real = type(store)._write_layer
    calls = []

    def fail_on_second_layer(self, *args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(self, *args)

    monkeypatch.setattr(type(store), "_write_layer", fail_on_second_layer)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.write_draft({"community": demo["community"].iloc[:3], "grid": demo["grid"].iloc[:3]})
    assert len(calls) == 2
    monkeypatch.undo()
    assert snapshot(store) == before
    assert _digest(store) == file_before
    # …and the store still takes the import afterwards.
    store.write_draft({"community": demo["community"].iloc[:3]})
    assert len(store.read_layer("community", 2)) == 3


def test_a_killed_import_leaves_everything_as_it_was(published, demo, tmp_path):
    store = published
    before = snapshot(store)
    file_before = _digest(store)
    location = str(store.path) if isinstance(store, GeoPackageStore) else store._pool._kwargs["dsn"]
    script = textwrap.dedent(f"""
        import sys, time
        from gridmap.io import read_layer
        from gridmap.store import open_store
        store = open_store({location!r})
        real = type(store)._write_layer
        def slow(self, *args):
            real(self, *args)
            print("written", flush=True)
            time.sleep(60)
        type(store)._write_layer = slow
        grids = read_layer({str(DEMO)!r}, layer="grid")
        store.write_draft({{"grid": grids, "community": grids.iloc[:0]}})
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.kill()
        child.wait()
    assert snapshot(store) == before
    assert _digest(store) == file_before
    store.write_draft({"grid": demo["grid"].iloc[:4]})  # the lock died with the writer
    assert len(store.read_layer("grid", 2)) == 4
    if isinstance(store, GeoPackageStore):  # and its half-written copy is gone
        assert [p.name for p in store.path.parent.iterdir() if ".tmp" in p.name] == []


def test_a_second_writer_gets_conflict(published, demo):
    before = snapshot(published)
    with writer_lock_held(published), pytest.raises(Conflict, match="another import"):
        published.write_draft({"grid": demo["grid"].iloc[:3]})
    with writer_lock_held(published), pytest.raises(Conflict):
        published.publish(commit=True)  # there is no draft, but the lock comes first
    assert snapshot(published) == before


def _digest(store) -> str | None:
    if isinstance(store, GeoPackageStore):
        return hashlib.sha256(store.path.read_bytes()).hexdigest()
    return None


# -- the stores themselves --------------------------------------------------------------------


def test_open_store_chooses_by_url(tmp_path):
    assert isinstance(open_store(str(tmp_path / "a.gpkg")), GeoPackageStore)
    chosen = open_store(f"file:{tmp_path / 'b.gpkg'}")
    assert isinstance(chosen, GeoPackageStore) and chosen.path == tmp_path / "b.gpkg"


def test_open_store_postgis(postgis_database):
    from gridmap.store.postgis import PostGISStore

    store = open_store(postgis_database)
    try:
        assert isinstance(store, PostGISStore)
        assert open_store(postgis_database.replace("postgresql://", "postgres://")).versions() == []
    finally:
        store.close()


def test_a_geopackage_that_is_not_a_store_is_refused(tmp_path):
    with pytest.raises(FileUnreadable, match="not a gridmap store"):
        GeoPackageStore(DEMO)
    junk = tmp_path / "junk.gpkg"
    junk.write_text("hello")
    with pytest.raises(FileUnreadable):
        GeoPackageStore(junk)


def test_geopackage_opens_as_layers(tmp_path, demo):
    import pyogrio

    published = GeoPackageStore(tmp_path / "gridmap.gpkg")
    published.write_draft({"grid": demo["grid"]})
    names = {name for name, _ in pyogrio.list_layers(published.path)}
    assert set(STORE_LAYERS) <= names and "gridmap_version" in names
    grid = pyogrio.read_dataframe(published.path, layer="grid")
    assert "version" in grid.columns and grid.crs.to_epsg() == 4326


def test_unreachable_postgis_is_reported_without_the_password():
    from gridmap.store.postgis import PostGISStore

    with pytest.raises(StoreUnavailable) as caught:
        PostGISStore("postgresql://planner:s3cret@127.0.0.1:1/gridmap", connect_timeout=2)
    assert "PostGIS at 127.0.0.1:1 is not reachable" in caught.value.detail
    assert "s3cret" not in caught.value.detail and "\n" not in caught.value.detail


def test_postgis_schema_is_migrated_once(postgis_database):
    import psycopg2

    from gridmap.store.postgis import PostGISStore, migrations

    PostGISStore(postgis_database).close()
    PostGISStore(postgis_database).close()
    with psycopg2.connect(postgis_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version, name FROM gridmap_schema ORDER BY version")
        assert cur.fetchall() == [(n, name) for n, name, _ in migrations()]
    conn.close()
    assert os.path.basename(migrations()[0][1]) == "001_init.sql"


# -- plans: several drafts, each begun from the active version ---------------------------------


def _moved_grid(demo, dx: float = 1e-4) -> gpd.GeoDataFrame:
    grids = demo["grid"].copy()
    grids.loc[0, "geometry"] = shapely.affinity.translate(grids.geometry.iloc[0], dx)
    return grids


def test_plans_begun_together_one_publishes_the_other_is_told(published, demo):
    first = published.new_draft({"grid": _moved_grid(demo, 1e-4)}, note="plan A")
    second = published.new_draft({"grid": _moved_grid(demo, 2e-4)}, note="plan B")
    assert first.base == second.base == published.resolve().id
    assert [v.id for v in published.versions() if v.status == "draft"] == [first.id, second.id]
    published.publish(commit=True, on=DAY2, draft=second.id)
    with pytest.raises(Conflict, match=f"plan {first.id} was drawn on version 1"):
        published.publish(commit=True, on=DAY2, draft=first.id)
    # Nothing lost: the loser is still an open plan with its own boundaries.
    assert published.resolve().id == second.id
    kept = published.read_layer("grid", first.id).set_index("code")
    code = demo["grid"]["code"].iloc[0]
    assert kept.loc[code, "geometry"].equals_exact(_moved_grid(demo, 1e-4).geometry.iloc[0], 1e-9)
    assert published.resolve(version=first.id).status == "draft"


def test_plans_written_by_number_and_publish_needs_one_named(published, demo):
    a = published.new_draft({"grid": _moved_grid(demo, 1e-4)})
    b = published.new_draft({"grid": _moved_grid(demo, 2e-4)})
    published.write_draft({"grid": demo["grid"]}, draft=a.id)
    assert_same_layer(published.read_layer("grid", a.id), demo["grid"])
    with pytest.raises(InputError, match="2 plans are open"):
        published.publish(commit=True)
    dry = published.publish(commit=False, draft=b.id)
    assert dry.changes["grid"].changed == [demo["grid"]["code"].iloc[0]] and not dry.committed
    published.discard_draft(b.id)
    assert [v.id for v in published.versions() if v.status == "draft"] == [a.id]
    with pytest.raises(VersionNotFound):
        published.publish(commit=True, draft=b.id)
    published.publish(commit=True, on=DAY2)  # the only open plan: no number needed
    with pytest.raises(Conflict, match="no longer an open plan"):
        published.write_draft({"grid": demo["grid"]}, draft=a.id)


def test_two_planners_publishing_at_once(published, demo):
    """Two threads publish two plans begun from the same version: exactly one wins."""
    from concurrent.futures import ThreadPoolExecutor

    plans = [published.new_draft({"grid": _moved_grid(demo, d)}).id for d in (1e-4, 2e-4)]
    barrier = __import__("threading").Barrier(2)

    def go(plan):
        barrier.wait()
        try:
            published.publish(commit=True, on=DAY2, draft=plan)
            return "won"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(go, plans))
    assert outcomes == ["conflict", "won"]
    active = published.resolve()
    assert active.id in plans and active.base == 1
    assert [v.status for v in published.versions()].count("draft") == 1
