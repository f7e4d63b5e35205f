"""Plans over HTTP on both stores holding the demo city: every operation makes a plan, never a
change to the active map; a plan is checked, compared and published, or refused with 409.

Expectations come from the store itself (the active layers read back) and from the validator,
never from the routes' own answers.
"""

from __future__ import annotations


import geopandas as gpd
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from serving import demo_store_url

from api.app import create_app
from gridmap.config import Settings
from gridmap.validate import validate_coverage

UNIT = "141002007004"  # 乐秀社区: 8 urban grids


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def client(request, tmp_path_factory):
    with demo_store_url(request.param, request, tmp_path_factory.mktemp("plans")) as url:
        settings = Settings()
        settings.store.url = url
        settings.incidents.escalate_every_s = 0
        with TestClient(create_app(settings)) as c:
            c.store = c.app.state.service.store
            yield c


def active_layer(client, level: str) -> gpd.GeoDataFrame:
    return client.store.read_layer(level, client.store.resolve().id)


def split_across(client, unit: str = UNIT, which: int = 0):
    """A split operation: a west-east line through the middle of one grid of ``unit``."""
    grids = active_layer(client, "grid")
    grid = grids[grids["parent_code"] == unit].sort_values("code").iloc[which]
    minx, miny, maxx, maxy = grid.geometry.bounds
    y = (miny + maxy) / 2
    line = {"type": "LineString", "coordinates": [[minx - 1e-3, y], [maxx + 1e-3, y]]}
    return grid, {"op": "split", "grid": grid["code"], "line": line}


def test_preview_checks_an_edit_and_writes_nothing(client):
    before = client.store.versions()
    grid, op = split_across(client)
    r = client.post("/plans/preview", json={"unit": UNIT, "operation": op})
    assert r.status_code == 200, r.text
    body = r.json()
    assert client.store.versions() == before
    codes = [f["properties"]["code"] for f in body["grids"]["features"]]
    active = active_layer(client, "grid")
    assert len(codes) == (active["parent_code"] == UNIT).sum() + 1 and len(set(codes)) == len(codes)
    # The answer's grids really tile the community: checked again here, independently.
    new = gpd.GeoDataFrame.from_features(body["grids"]["features"], crs=4326)
    new["parent_code"] = UNIT
    communities = active_layer(client, "community")
    report = validate_coverage(new, communities[communities["code"] == UNIT])
    assert report.clean and body["valid"]
    # Which buildings change grid, worked out here from the new boundaries.
    buildings = active_layer(client, "building")
    mine = buildings[buildings["parent_code"].isin(active.loc[active["parent_code"] == UNIT, "code"])]
    points = shapely.point_on_surface(np.asarray(mine.geometry.values, dtype=object))
    at = np.full(len(mine), -1)
    b, g = shapely.STRtree(np.asarray(new.geometry.values, dtype=object)).query(
        points, predicate="within")
    at[b] = g
    now = new["code"].to_numpy()[at]
    moved = mine[now != mine["parent_code"].to_numpy()]
    assert len(moved) > 0
    assert {m["building"] for m in body["impact"]["moves"]} == set(moved["code"])
    assert body["impact"]["summary"]["households_moved"] == int(moved["households"].sum())


def test_plan_saved_compared_and_published(client):
    grid, op = split_across(client, which=1)
    active = client.store.resolve()
    r = client.post("/plans", json={"unit": UNIT, "operation": op, "note": "split for test"})
    assert r.status_code == 201, r.text
    plan = r.json()["id"]
    assert client.store.resolve() == active  # the active map is untouched
    assert plan in [p["id"] for p in client.get("/plans").json()]
    shown = client.get(f"/plans/{plan}").json()
    assert shown["units"].keys() == {UNIT} and shown["valid"] and not shown["stale"]
    made = r.json()["details"]
    assert set(shown["impact"]["added"]) == set(made["added"]) and made["added"]
    assert set(shown["impact"]["removed"]) == set(made["removed"])
    assert grid["code"] in shown["impact"]["removed"] + shown["impact"]["changed"]
    page = client.get(f"/plans/{plan}/map", params={"unit": UNIT})
    assert page.status_code == 200 and "Before (active)" in page.text
    # A building that changes grid answers with its old grid until the plan is published.
    move = shown["impact"]["moves"][0]
    buildings = active_layer(client, "building").set_index("code")
    b = buildings.loc[move["building"], "geometry"].representative_point()
    assert client.get("/lookup", params={"lon": b.x, "lat": b.y}).json()["grid"]["code"] == \
        move["from_grid"]
    published = client.post(f"/plans/{plan}/publish", json={})
    assert published.status_code == 200, published.text
    assert published.json()["version"] == plan and client.store.resolve().id == plan
    assert set(published.json()["changes"]["grid"]["added"]) == set(made["added"])
    after = client.get("/lookup", params={"lon": b.x, "lat": b.y}).json()
    assert after["version"] == plan and after["grid"]["code"] == move["to_grid"]


def test_second_plan_on_the_old_map_gets_409_and_is_kept(client):
    _, op_a = split_across(client, which=2)
    _, op_b = split_across(client, which=3)
    a = client.post("/plans", json={"unit": UNIT, "operation": op_a}).json()["id"]
    b = client.post("/plans", json={"unit": UNIT, "operation": op_b}).json()["id"]
    assert client.post(f"/plans/{b}/publish", json={}).status_code == 200
    lost = client.post(f"/plans/{a}/publish", json={})
    assert lost.status_code == 409
    assert lost.headers["content-type"].startswith("application/problem+json")
    assert f"plan {a} was drawn on version" in lost.json()["detail"]
    kept = client.get(f"/plans/{a}").json()
    assert kept["stale"] and kept["base"] != client.store.resolve().id
    assert client.delete(f"/plans/{a}").status_code == 204
    assert client.get(f"/plans/{a}").status_code == 404


def test_operations_build_on_a_plan(client):
    """A plan is changed step by step: split, then merge the parts back, then renumber."""
    grid, op = split_across(client, which=0)
    first = client.post("/plans", json={"unit": UNIT, "operation": op})
    plan = first.json()["id"]
    parts = first.json()["details"]["added"]
    merged = client.post("/plans", json={"unit": UNIT, "plan": plan,
                                         "operation": {"op": "merge", "grids": parts}})
    assert merged.status_code == 200, merged.text
    assert merged.json()["id"] == plan and merged.json()["valid"]
    renum = client.post("/plans", json={"unit": UNIT, "plan": plan, "operation": {"op": "renumber"}})
    assert renum.status_code == 200 and renum.json()["valid"]
    grids = client.store.read_layer("grid", plan)
    mine = grids[grids["parent_code"] == UNIT]
    assert len(mine) == (active_layer(client, "grid")["parent_code"] == UNIT).sum()
    assert sorted(mine["code"]) == [f"{UNIT}{i:03d}" for i in range(1, len(mine) + 1)]
    client.delete(f"/plans/{plan}")


@pytest.mark.parametrize("operation, status, says", [
    ({"op": "bogus"}, 422, "operation.op"),
    ({"op": "split", "grid": "141002007004001"}, 422, "needs 'line'"),
    ({"op": "split", "grid": "141002007004999",
      "line": {"type": "LineString", "coordinates": [[111.5, 36.0], [111.6, 36.1]]}}, 404, "999"),
    ({"op": "reshape", "grid": "141002007004002",
      "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
     422, "Self-intersection"),
    ({"op": "reshape", "grid": "141002007004002",
      "geometry": {"type": "Polygon", "coordinates": [[[36, 111], [36, 112], [37, 112], [36, 111]]]}},
     422, ""),
    ({"op": "merge", "grids": ["141002007004002", "141002007004008"]}, 422, ""),
    ({"op": "split_k", "grid": "141002007004002", "k": 500}, 422, "k must be"),
])
def test_bad_operations_get_a_clear_problem(client, operation, status, says):
    before = client.store.versions()
    r = client.post("/plans", json={"unit": UNIT, "operation": operation})
    assert r.status_code == status, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in body["detail"] and "Traceback" not in body["detail"]
    assert client.store.versions() == before


def test_unit_must_be_a_community(client):
    assert client.post("/plans/preview", json={"unit": "141002007", "operation": {"op": "renumber"}}
                       ).status_code == 422
    r = client.post("/plans/preview", json={"unit": "141002007999", "operation": {"op": "renumber"}})
    assert r.status_code == 404 and "141002007999" in r.json()["detail"]
    assert client.get("/plans/9999").status_code == 404
    assert client.post("/plans/9999/publish", json={}).status_code == 404


def test_partition_a_community_as_a_plan(client):
    """Redraw a whole community from its buildings; codes of grids that stay are carried."""
    r = client.post("/plans/preview", json={"unit": UNIT, "operation": {"op": "partition"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"], body["validation"]["problems"][:3]
    buildings = active_layer(client, "building")
    mine = buildings[buildings["parent_code"].str.startswith(UNIT)]
    new = gpd.GeoDataFrame.from_features(body["grids"]["features"], crs=4326)
    points = shapely.point_on_surface(np.asarray(mine.geometry.values, dtype=object))
    holders = shapely.STRtree(np.asarray(new.geometry.values, dtype=object)).query(
        points, predicate="within")
    assert sorted(set(holders[0])) == list(range(len(mine)))  # every building in a grid
    assert new["households"].sum() == mine["households"].sum()
    assert all(code.startswith(UNIT) and len(code) == 15 for code in new["code"])


def test_planner_page_is_served_offline(client):
    r = client.get("/maps/planner", params={"unit": UNIT})
    assert r.status_code == 200
    assert "/static/vendor/leaflet-geoman/dist/leaflet-geoman.js" in r.text
    assert "https://" not in r.text.split("<body")[0].replace("https://leafletjs.com", "")
    grids = active_layer(client, "grid")
    assert all(code in r.text for code in grids[grids["parent_code"] == UNIT]["code"])
    assert client.get("/maps/planner", params={"unit": "141002007"}).status_code == 422
