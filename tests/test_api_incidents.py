"""The incident routes over both stores holding the demo city (and its 48 demo incidents).

Expectations are computed independently: routing against ``GET /lookup``, filters against the
full list filtered here in Python (units through the demo layers' parent chain), escalation
against each incident's deadline.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from fastapi.testclient import TestClient
from serving import app_client, demo_store_url

from gridmap.crs import wgs84_to_gcj02
from gridmap.demo import DEMO
from gridmap.incidents import OPEN
from gridmap.io import read_layer
from gridmap.store import open_store
from gridmap.store.workflow import incidents_moved

ROOT = Path(__file__).resolve().parents[1]
REPORT = {"category": "environment", "description": "垃圾堆放在楼道"}


def app_for(url: str, **incidents) -> TestClient:
    return app_client(url, incidents=incidents)


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def client(request, tmp_path_factory):
    with demo_store_url(request.param, request, tmp_path_factory.mktemp("store")) as url:
        with app_for(url) as c:
            yield c


@pytest.fixture(params=["geopackage", "postgis"])
def fresh(request, tmp_path):
    """A fresh demo store's URL (for tests that escalate or publish)."""
    with demo_store_url(request.param, request, tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def grids():
    return read_layer(DEMO, layer="grid")


def point_in(grids, i):
    p = shapely.point_on_surface(grids.geometry.iloc[i])
    return p.x, p.y


def post(client, body, **headers):
    return client.post("/incidents", json=REPORT | body, headers=headers)


def everything(client) -> list[dict]:
    return client.get("/incidents", params={"limit": 10_000}).json()["incidents"]


def ids(rows) -> list[int]:
    return sorted(r["id"] for r in rows)


# -- reporting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 137, 400])
def test_report_is_routed_to_the_grid_and_worker_the_lookup_gives(client, grids, i):
    lon, lat = point_in(grids, i)
    looked = client.get("/lookup", params={"lon": lon, "lat": lat}).json()
    r = post(client, {"lon": lon, "lat": lat})
    assert r.status_code == 201 and r.headers["location"] == f"/incidents/{r.json()['id']}"
    body = r.json()
    assert body["grid"] == {"code": looked["grid"]["code"], "name": looked["grid"]["name"],
                            "worker": looked["grid"]["worker"]}
    assert body["community"]["code"] == looked["community"]["code"]
    assert body["street"]["code"] == looked["street"]["code"]
    assert body["version"] == looked["version"] and body["near_boundary"] == looked["near_boundary"]
    assert body["status"] == "reported" and body["trail"] == [] and body["revision"] == 0
    assert not body["unrouted"] and body["allowed"] == ["assigned", "rejected"]
    deadline = dt.datetime.fromisoformat(body["deadline"]) - dt.datetime.fromisoformat(body["reported_at"])
    assert deadline == dt.timedelta(hours=48)
    assert client.get(f"/incidents/{body['id']}").json() == body | {"overdue": False}


def test_gcj02_report_lands_in_the_same_grid_as_its_wgs84_point(client, grids):
    lon, lat = point_in(grids, 250)
    glon, glat = wgs84_to_gcj02(lon, lat)
    body = post(client, {"lon": float(glon), "lat": float(glat), "crs": "gcj02"}).json()
    assert body["grid"]["code"] == grids["code"].iloc[250]
    assert body["lon"] == pytest.approx(lon, abs=1e-6) and body["lat"] == pytest.approx(lat, abs=1e-6)


def test_point_outside_every_grid_is_kept_unrouted(client):
    r = post(client, {"lon": 116.4, "lat": 39.9, "contact": "13900000000"})
    assert r.status_code == 201
    body = r.json()
    assert body["unrouted"] is True and body["grid"] is None and body["community"] is None
    listed = client.get("/incidents", params={"unrouted": "true", "limit": 1000}).json()["incidents"]
    assert body["id"] in ids(listed) and all(row["grid"] is None for row in listed)


@pytest.mark.parametrize("bad, names", [
    ({"category": "ufo"}, "category"),
    ({"description": "长" * 2001}, "description"),
    ({"description": "   "}, "description"),
    ({"photo_url": "javascript:alert(1)"}, "photo URL"),
    ({"photo_url": "ftp://example.org/a.jpg"}, "photo URL"),
    ({"lon": 200.0}, "lon/lat"),
    ({"lat": float("nan")}, "lat"),
    ({"lon": "111.5"}, "lon"),
    ({"lon": True}, "lon"),
    ({"crs": "EPSG:0"}, "CRS"),
    ({"contact": "a\nb"}, "contact"),
])
def test_bad_reports_are_422_problems_naming_the_field(client, grids, bad, names):
    lon, lat = point_in(grids, 3)
    before = client.get("/incidents", params={"limit": 0}).json()["total"]
    r = client.post("/incidents", content=__import__("json").dumps(REPORT | {"lon": lon, "lat": lat} | bad),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert names.lower() in r.json()["detail"].lower()
    assert client.get("/incidents", params={"limit": 0}).json()["total"] == before


def test_retry_with_the_same_idempotency_key_stores_one_incident(client, grids):
    lon, lat = point_in(grids, 10)
    key = f"retry-{lon}"
    first = post(client, {"lon": lon, "lat": lat}, **{"Idempotency-Key": key})
    again = post(client, {"lon": lon, "lat": lat}, **{"Idempotency-Key": key})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = post(client, {"lon": lon, "lat": lat, "description": "不同"}, **{"Idempotency-Key": key})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    same_place = [r for r in everything(client) if (r["lon"], r["lat"]) == (lon, lat)]
    assert len(same_place) == 1


# -- moving on -----------------------------------------------------------------------------------


def test_transitions_check_the_state_machine_and_the_revision(client, grids):
    lon, lat = point_in(grids, 20)
    created = post(client, {"lon": lon, "lat": lat}).json()
    url = f"/incidents/{created['id']}/transitions"
    ok = client.post(url, json={"to": "assigned", "actor": "李主任", "role": "community", "revision": 0})
    assert ok.status_code == 200 and ok.json()["revision"] == 1
    stale = client.post(url, json={"to": "in_progress", "actor": "王", "role": "grid_worker",
                                   "revision": 0})
    assert stale.status_code == 409 and "revision" in stale.json()["detail"]
    forbidden = client.post(url, json={"to": "closed", "actor": "李", "role": "community"})
    assert forbidden.status_code == 409 and "assigned" in forbidden.json()["detail"]
    wrong_role = client.post(url, json={"to": "in_progress", "actor": "x", "role": "supervisor"})
    assert wrong_role.status_code == 403
    bad_role = client.post(url, json={"to": "in_progress", "actor": "x", "role": "mayor"})
    assert bad_role.status_code == 422 and "role" in bad_role.json()["detail"]
    got = client.get(f"/incidents/{created['id']}").json()
    assert got["revision"] == 1 and [(e["from"], e["to"], e["actor"]) for e in got["trail"]] == [
        ("reported", "assigned", "李主任")]
    assert client.post("/incidents/999999/transitions",
                       json={"to": "assigned", "actor": "a", "role": "community"}).status_code == 404
    assert client.get("/incidents/999999").status_code == 404


def test_reassign_hands_the_incident_to_another_grid_in_the_trail(client, grids):
    lon, lat = point_in(grids, 30)
    created = post(client, {"lon": lon, "lat": lat}).json()
    target = grids.iloc[31]
    r = client.post(f"/incidents/{created['id']}/reassign",
                    json={"grid": target["code"], "actor": "督查员", "note": "边界调整"})
    assert r.status_code == 200
    body = r.json()
    assert body["grid"] == {"code": target["code"], "name": target["name"], "worker": target["worker"]}
    assert body["community"]["code"] == target["parent_code"] and body["status"] == "reported"
    assert body["trail"][-1]["kind"] == "reassign" and created["grid"]["code"] in body["trail"][-1]["note"]
    assert client.post(f"/incidents/{created['id']}/reassign",
                       json={"grid": "999", "actor": "x"}).status_code == 404
    assert client.post(f"/incidents/{created['id']}/reassign",
                       json={"grid": target["code"], "actor": "x", "role": "grid_worker"}).status_code == 403


# -- queries -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hierarchy():
    """grid code → street code, from the demo layers' parent chain (not from the codes)."""
    communities = read_layer(DEMO, layer="community").set_index("code")["parent_code"]
    grid = read_layer(DEMO, layer="grid")
    return dict(zip(grid["code"], grid["parent_code"].map(communities)))


def test_filters_match_the_list_filtered_independently(client, hierarchy):
    rows = everything(client)
    assert len(rows) >= 48

    def got(**params):
        return ids(client.get("/incidents", params={"limit": 10_000, **params}).json()["incidents"])

    assert got(status="in_progress,assigned") == ids(r for r in rows if r["status"] in ("in_progress", "assigned"))
    street = "141002004"
    assert got(unit=street) == ids(r for r in rows if r["grid"] and hierarchy[r["grid"]["code"]] == street)
    community = next(r["community"]["code"] for r in rows if r["community"])
    assert got(unit=community) == ids(r for r in rows if r["community"] and r["community"]["code"] == community)
    worker = next(r["grid"]["worker"] for r in rows if r["grid"])
    assert got(worker=worker) == ids(r for r in rows if r["grid"] and r["grid"]["worker"] == worker)
    since, until = "2025-03-10T00:00:00+00:00", "2025-04-01T00:00:00+00:00"
    assert got(since=since, until=until) == ids(
        r for r in rows if since <= dt.datetime.fromisoformat(r["reported_at"]).isoformat() < until)
    box = (111.45, 36.0, 111.55, 36.1)
    assert got(bbox=",".join(map(str, box))) == ids(
        r for r in rows if shapely.box(*box).covers(shapely.Point(r["lon"], r["lat"])))
    now = dt.datetime.now(dt.UTC)
    assert got(overdue="true") == ids(r for r in rows if r["status"] in {str(s) for s in OPEN}
                                      and dt.datetime.fromisoformat(r["deadline"]) <= now)
    page = client.get("/incidents", params={"limit": 5, "offset": 3}).json()
    assert page["total"] == len(rows) and ids(page["incidents"]) == ids(rows)[3:8]
    for bad in ({"bbox": "1,2"}, {"status": "lost"}, {"since": "yesterday"}, {"unit": "1'--"},
                {"limit": -1}):
        r = client.get("/incidents", params=bad)
        assert r.status_code == 422 and r.json()["detail"], bad


def test_counts_per_grid_and_status(client):
    rows = everything(client)
    counts = client.get("/incidents/counts", params={"by": "grid"}).json()
    expected: dict = {}
    for r in rows:
        if r["grid"]:
            expected[r["grid"]["code"]] = expected.get(r["grid"]["code"], 0) + 1
    assert counts["counts"] == dict(sorted(expected.items()))
    assert counts["none"] == sum(r["grid"] is None for r in rows) and counts["total"] == len(rows)
    by_status = client.get("/incidents/counts", params={"by": "status", "unit": "141002004"}).json()
    assert sum(by_status["counts"].values()) == len(client.get(
        "/incidents", params={"unit": "141002004", "limit": 10_000}).json()["incidents"])
    assert client.get("/incidents/counts", params={"by": "secret"}).status_code == 422


def test_csv_export_has_the_columns_and_the_filtered_rows(client):
    r = client.get("/incidents.csv", params={"status": "reported"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    expected = [x for x in everything(client) if x["status"] == "reported"]
    assert sorted(int(t["id"]) for t in table) == ids(expected)
    assert {"id", "status", "category", "lon", "lat", "grid_code", "worker", "deadline",
            "reported_at", "overdue"} <= set(table[0])
    assert "contact" not in table[0]
    first = next(x for x in expected if x["id"] == int(table[0]["id"]))
    assert table[0]["grid_code"] == (first["grid"] or {}).get("code", "")
    assert float(table[0]["lon"]) == pytest.approx(first["lon"])


# -- escalation and boundary changes -----------------------------------------------------------


def gridmap(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gridmap.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_escalate_command_is_idempotent(fresh):
    now = "2025-06-01T00:00:00+00:00"
    store = open_store(fresh)
    before, _ = store.query_incidents(limit=None)
    due = [i for i in before if str(i.status) in {str(s) for s in OPEN}
           and i.deadline <= dt.datetime.fromisoformat(now)]
    assert due
    first = gridmap("escalate", "--store", fresh, "--now", now)
    assert first.returncode == 0 and f"escalated {len(due)} incidents" in first.stdout
    second = gridmap("escalate", "--store", fresh, "--now", now)
    assert second.returncode == 0 and "escalated 0 incidents" in second.stdout
    for incident in due:
        got = store.get_incident(incident.id)
        assert got.level == "community" and got.trail[-1].kind == "escalate"
        assert got.trail[:-1] == incident.trail and got.revision == incident.revision + 1
    store.close()
    bad = gridmap("escalate", "--store", "postgresql://nobody@127.0.0.1:1/none")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_service_scheduler_escalates(fresh):
    import time

    with app_for(fresh, escalate_every_s=0.2) as c:
        for _ in range(100):
            rows = everything(c)
            if any(e["kind"] == "escalate" for r in rows for e in r["trail"]):
                break
            time.sleep(0.1)
        escalated = [r for r in rows if any(e["kind"] == "escalate" for e in r["trail"])]
        assert escalated and all(r["level"] != "grid" for r in escalated)


def test_publish_lists_the_incidents_a_new_boundary_moves(fresh, grids):
    store = open_store(fresh)
    open_ = [i for i in store.query_incidents(limit=None)[0]
             if i.grid_code and str(i.status) in {str(s) for s in OPEN}]
    victim = open_[0]
    mine = grids[grids["code"] == victim.grid_code]
    other = grids[(grids["parent_code"] == mine["parent_code"].iloc[0])
                  & (grids["code"] != victim.grid_code)].iloc[[0]]
    # Carve a 30 m disc around the incident out of its grid and give it to another grid.
    metric = mine.estimate_utm_crs()
    disc = gpd.GeoSeries([shapely.Point(victim.lon, victim.lat)], crs=4326).to_crs(metric).buffer(30)
    disc = disc.to_crs(4326).iloc[0].intersection(mine.geometry.iloc[0])
    draft = grids.copy()
    draft.loc[mine.index, "geometry"] = mine.geometry.iloc[0].difference(disc)
    draft.loc[other.index, "geometry"] = other.geometry.iloc[0].union(disc)
    store.write_draft({"grid": draft}, note="moved a boundary")
    dry = gridmap("publish", "--store", fresh)
    assert dry.returncode == 0 and f"incident {victim.id} " in dry.stdout
    result = gridmap("publish", "--commit", "--store", fresh)
    assert result.returncode == 0, result.stderr
    assert f"incident {victim.id} ({victim.status}): grid {victim.grid_code} → {other['code'].iloc[0]}" \
        in result.stdout
    moved = incidents_moved(store, store.resolve().id)
    assert [(m.id, m.from_grid, m.to_grid) for m in moved] == [
        (victim.id, victim.grid_code, other["code"].iloc[0])]
    assert store.get_incident(victim.id).grid_code == victim.grid_code  # keeps its grid until…
    store.close()
    with app_for(fresh) as c:
        r = c.post(f"/incidents/{victim.id}/reassign",
                   json={"grid": other["code"].iloc[0], "actor": "督查员", "revision": victim.revision})
        assert r.status_code == 200 and r.json()["grid"]["code"] == other["code"].iloc[0]
        assert r.json()["version"] == 2


@pytest.mark.parametrize("value", ["0.5", "2.225073858507e-311", "1700000000", "inf"])
@pytest.mark.parametrize("path, name", [("/incidents", "until"), ("/incidents", "since"),
                                        ("/incidents.csv", "since"),
                                        ("/open311/v2/requests.json", "start_date")])
def test_a_number_is_not_a_date(client, path, name, value):
    """pydantic would read 0.5 as a Unix timestamp (1970); the API says ISO 8601 and holds to it."""
    r = client.get(path, params={name: value})
    assert r.status_code == 422 and "ISO 8601" in r.json()["detail"]
    assert client.get(path, params={name: "2025-03-01T00:00:00Z"}).status_code == 200
