"""Incidents and stations in both stores (GeoPackage file, PostGIS): the same contract tests.

Append-only trail, optimistic concurrency by revision, idempotency keys, queries, stations; and
for the GeoPackage, that incident writes happen in place and are never lost to a boundary write.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading

import geopandas as gpd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridmap.errors import (Conflict, IdempotencyKeyReused, IncidentNotFound, InputError,
                            RevisionConflict)
from gridmap.incidents import (OPEN, TRANSITIONS, Actor, ActorNotPermitted, Role, Status,
                               TransitionRefused, report_incident, transition)
from gridmap.io import read_layer
from gridmap.store.base import STORE_LAYERS, Store
from gridmap.store.geopackage import GeoPackageStore
from gridmap.store.records import IncidentQuery
from gridmap.store.workflow import move
from gridmap.demo import DEMO

T0 = dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)




def new(i: int = 0, *, grid: str | None = "141002004003007", at: dt.datetime = T0, **kw):
    return report_incident(id=0, category=kw.pop("category", "environment"),
                           description=kw.pop("description", f"垃圾堆放 {i}"),
                           lon=kw.pop("lon", 111.5 + i * 0.001), lat=kw.pop("lat", 36.08),
                           grid_code=grid, reported_at=at, worker=kw.pop("worker", "网格员1"),
                           community_code=grid[:12] if grid else None,
                           street_code=grid[:9] if grid else None, **kw)


def test_store_keeps_an_incident_with_every_field(store: Store):
    assert isinstance(store, Store)
    given_ = new(contact="13800000000", photo_url="https://example.org/p.jpg", version=3,
                 near_boundary=True, grid_name="第7网格")
    stored, created = store.add_incident(given_)
    assert created and stored.id >= 1
    got = store.get_incident(stored.id)
    assert got == stored  # every field, times as aware UTC datetimes
    assert got.reported_at == T0 and got.deadline == T0 + dt.timedelta(hours=48)
    with pytest.raises(IncidentNotFound):
        store.get_incident(stored.id + 1000)


def test_updates_append_to_the_trail_and_check_the_revision(store: Store):
    stored, _ = store.add_incident(new())
    a = transition(stored, "assigned", actor=Actor("li", Role.COMMUNITY), at=T0 + dt.timedelta(hours=1))
    store.update_incident(a, expected_revision=0)
    b = transition(a, "in_progress", actor=Actor("wang", Role.GRID_WORKER), at=T0 + dt.timedelta(hours=2))
    # Someone else's change made from the revision already superseded loses, and changes nothing.
    stale = transition(stored, "rejected", actor=Actor("zhao", Role.STREET), at=T0 + dt.timedelta(hours=2))
    with pytest.raises(RevisionConflict, match="revision 1, not 0"):
        store.update_incident(stale, expected_revision=0)
    store.update_incident(b, expected_revision=1)
    got = store.get_incident(stored.id)
    assert got.status == Status.IN_PROGRESS and got.revision == 2 and got.trail == b.trail
    with pytest.raises(IncidentNotFound):
        store.update_incident(transition(new(), "assigned", actor=Actor("li", Role.COMMUNITY),
                                         at=T0 + dt.timedelta(hours=1)), expected_revision=0)


def test_the_trail_table_refuses_updates_and_deletes(store: Store):
    stored, _ = store.add_incident(new())
    store.update_incident(transition(stored, "assigned", actor=Actor("li", Role.COMMUNITY),
                                     at=T0 + dt.timedelta(hours=1)), expected_revision=0)
    if isinstance(store, GeoPackageStore):
        con = sqlite3.connect(store.path)
        for sql in ("UPDATE incident_trail SET note = 'x'", "DELETE FROM incident_trail"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
        con.close()
    else:
        import psycopg2

        with store._cursor() as cur:
            with pytest.raises(psycopg2.Error, match="append-only"):
                cur.execute("UPDATE gridmap_incident_trail SET note = 'x'")
    assert len(store.get_incident(stored.id).trail) == 1


def test_idempotency_key_returns_the_first_incident_and_refuses_another_body(store: Store):
    first, created = store.add_incident(new(), idempotency_key="abc", fingerprint="f1")
    again, created_again = store.add_incident(new(at=T0 + dt.timedelta(minutes=1)),
                                              idempotency_key="abc", fingerprint="f1")
    assert created and not created_again and again == first
    with pytest.raises(IdempotencyKeyReused, match="abc"):
        store.add_incident(new(1), idempotency_key="abc", fingerprint="f2")
    assert store.query_incidents()[1] == 1


def test_concurrent_updates_from_one_revision_one_wins(store: Store):
    stored, _ = store.add_incident(new())
    results = []

    def attempt(name):
        changed = transition(stored, "assigned", actor=Actor(name, Role.COMMUNITY),
                             at=T0 + dt.timedelta(hours=1))
        try:
            store.update_incident(changed, expected_revision=0)
            results.append("ok")
        except (RevisionConflict, Conflict):
            results.append("conflict")

    threads = [threading.Thread(target=attempt, args=(f"d{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1
    assert store.get_incident(stored.id).revision == 1


def test_queries_filter_page_and_count(store: Store):
    grids = ["141002004003007", "141002004003008", "141002005001001", None]
    made = []
    for i in range(12):
        inc = new(i, grid=grids[i % 4], at=T0 + dt.timedelta(days=i),
                  category=["environment", "safety"][i % 2], worker=f"w{i % 3}")
        made.append(store.add_incident(inc)[0])

    def ids(q, **kw):
        found, total = store.query_incidents(q, **kw)
        return [i.id for i in found], total

    every = [i.id for i in made]
    assert ids(IncidentQuery()) == (every, 12)
    assert ids(IncidentQuery(), limit=5, offset=10) == (every[10:], 12)
    assert ids(IncidentQuery(unit="141002004"))[0] == [i.id for i in made if i.grid_code
                                                      and i.grid_code.startswith("141002004")]
    assert ids(IncidentQuery(unit="141002004003007"))[0] == [i.id for i in made
                                                            if i.grid_code == "141002004003007"]
    assert ids(IncidentQuery(unrouted=True))[0] == [i.id for i in made if i.grid_code is None]
    assert ids(IncidentQuery(worker="w1"))[0] == [i.id for i in made if i.worker == "w1"]
    assert ids(IncidentQuery(category=("safety",)))[0] == [i.id for i in made if i.category == "safety"]
    since, until = T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=7)
    assert ids(IncidentQuery(since=since, until=until))[0] == [
        i.id for i in made if since <= i.reported_at < until]
    box = (111.5025, 36.0, 111.5065, 36.1)
    assert ids(IncidentQuery(bbox=box))[0] == [
        i.id for i in made if shapely.box(*box).covers(shapely.Point(i.lon, i.lat))]
    now = T0 + dt.timedelta(days=5)
    assert ids(IncidentQuery(overdue_at=now))[0] == [i.id for i in made if i.deadline <= now]
    assert store.count_incidents(by="grid") == {g: 3 for g in grids}
    assert store.count_incidents(IncidentQuery(category=("safety",)), by="category") == {"safety": 6}
    with pytest.raises(InputError):
        store.count_incidents(by="password")
    with pytest.raises(InputError):
        IncidentQuery(status=("nonsense",))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=st.lists(st.tuples(st.sampled_from(list(Status)), st.sampled_from(list(Role))),
                         max_size=12))
def test_stored_trail_is_exactly_the_accepted_moves(store: Store, attempts):
    stored, _ = store.add_incident(new())
    accepted = []
    for i, (to, role) in enumerate(attempts):
        at = T0 + dt.timedelta(minutes=i + 1)
        try:
            move(store, stored.id, to, actor=Actor("someone", role), now=at)
        except (TransitionRefused, ActorNotPermitted):
            continue
        accepted.append((stored.id, to, role))
    got = store.get_incident(stored.id)
    assert [(e.to_state, e.actor.role) for e in got.trail] == [(to, role) for _, to, role in accepted]
    assert got.revision == len(got.trail) == len(accepted)
    for entry in got.trail:
        assert entry.to_state in TRANSITIONS[entry.from_state]


def test_stations_are_registered_once_and_read_back(store: Store):
    stations = gpd.read_file(DEMO, layer="station").head(20)
    assert store.add_stations(stations) == 20
    got = store.read_stations()
    assert list(got["code"]) == sorted(stations["code"])
    again = stations.sort_values("code").reset_index(drop=True)
    assert list(got["kind"]) == list(again["kind"]) and list(got["unit_code"]) == list(again["unit_code"])
    assert got.geometry.geom_equals_exact(again.geometry, 1e-9).all()
    with pytest.raises(Conflict, match="S0001"):
        store.add_stations(stations.head(3))
    assert len(store.read_stations()) == 20
    bad = stations.head(1).assign(code="Z1", kind="palace")
    with pytest.raises(InputError, match="kind"):
        store.add_stations(bad)


# -- the GeoPackage: in place, under the lock --------------------------------------------------


def test_geopackage_incidents_are_written_in_place_and_readable_by_gdal(tmp_path):
    import pyogrio

    store = GeoPackageStore(tmp_path / "gridmap.gpkg")
    store.add_incident(new())
    inode = store.path.stat().st_ino
    for i in range(1, 4):
        store.add_incident(new(i))
    assert store.path.stat().st_ino == inode  # no copy + rename per incident
    frame = pyogrio.read_dataframe(store.path, layer="incident")
    assert len(frame) == 4 and frame.crs.to_epsg() == 4326
    assert frame.geometry.x.round(6).tolist() == [round(111.5 + i * 0.001, 6) for i in range(4)]


def test_geopackage_incident_writes_survive_boundary_writes(tmp_path):
    store = GeoPackageStore(tmp_path / "gridmap.gpkg", lock_timeout=60)
    demo = {level: read_layer(DEMO, layer=level) for level in STORE_LAYERS}
    store.write_draft({"grid": demo["grid"]})
    errors = []

    def import_boundaries():
        try:
            for _ in range(3):
                store.write_draft({"building": demo["building"]})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=import_boundaries)
    worker.start()
    made = [store.add_incident(new(i))[0].id for i in range(15)]
    worker.join()
    assert not errors
    found, total = store.query_incidents(limit=None)
    assert total == 15 and [i.id for i in found] == made
    assert len(store.read_layer("building", store.versions()[-1].id)) == len(demo["building"])


def test_open_statuses_are_the_ones_that_escalate():
    assert {str(s) for s in OPEN} == {"reported", "assigned", "in_progress", "reopened"}
