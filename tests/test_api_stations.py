"""Service stations over both stores: registration with size warnings, listing, 15-minute coverage."""

from __future__ import annotations

import contextlib

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from gridmap.config import Settings
from gridmap.demo import DEMO, load_into
from gridmap.io import read_layer
from gridmap.maps import select_unit
from gridmap.store import open_store
from gridmap.store.base import STORE_LAYERS
from gridmap.stations import coverage_report, service_areas


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def client(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        if request.param == "postgis":
            from pg import fresh_database

            url = stack.enter_context(fresh_database(request.getfixturevalue("postgis_url")))
        else:
            url = str(tmp_path_factory.mktemp("stations") / "gridmap.gpkg")
        load_into(open_store(url))
        settings = Settings()
        settings.store.url = url
        settings.incidents.escalate_every_s = 0
        yield stack.enter_context(TestClient(create_app(settings)))


def test_demo_stations_are_in_the_store(client):
    demo = gpd.read_file(DEMO, layer="station")
    listed = client.get("/stations").json()
    assert listed["type"] == "FeatureCollection"
    assert sorted(f["properties"]["code"] for f in listed["features"]) == sorted(demo["code"])
    street = client.get("/stations", params={"unit": "141002004"}).json()["features"]
    assert sorted(f["properties"]["code"] for f in street) == sorted(
        demo.loc[demo["unit_code"].str.startswith("141002004"), "code"])


@pytest.mark.parametrize("kind, area, warned", [("street_centre", 800, True), ("street_centre", 1200, False),
                                                ("community_centre", 450, True),
                                                ("community_centre", 600, False), ("post", 30, False)])
def test_register_warns_about_small_centres(client, kind, area, warned):
    code = f"T-{kind}-{area}"
    r = client.post("/stations", json={"code": code, "name": "测试", "kind": kind,
                                       "floor_area_m2": area, "opening_hours": "Mo-Fr 08:30-17:30",
                                       "lon": 111.50, "lat": 36.08, "level": "street"})
    assert r.status_code == 201
    body = r.json()
    assert body["station"]["properties"]["opening_hours"] == "Mo-Fr 08:30-17:30"
    assert bool(body["warnings"]) == warned
    if warned:
        assert code in body["warnings"][0] and f"{area}" in body["warnings"][0]
    assert client.post("/stations", json={"code": code, "kind": kind, "lon": 111.5, "lat": 36.08}).status_code == 409


def test_register_refuses_bad_stations(client):
    for bad in ({"kind": "palace"}, {"lon": 500}, {"floor_area_m2": -1}, {"code": ""}):
        body = {"code": "BAD", "kind": "post", "lon": 111.5, "lat": 36.08} | bad
        r = client.post("/stations", json=body)
        assert r.status_code == 422, bad


@pytest.mark.parametrize("unit", ["141002004", "141002004003"])
def test_coverage_matches_the_library_on_the_same_data(client, unit):
    layers = {level: read_layer(DEMO, layer=level) for level in STORE_LAYERS}
    chosen = select_unit(layers, unit)
    stations = gpd.GeoDataFrame.from_features(client.get("/stations").json()["features"], crs=4326)
    areas = service_areas(stations, straight_m=1000)
    expected = coverage_report(chosen.layers["building"], areas, grids=chosen.grids)
    body = client.get("/stations/coverage", params={"unit": unit}).json()
    assert body["unit"]["code"] == unit and body["version"] == 1
    assert body["households"] == expected.households
    assert body["covered_households"] == expected.covered_households
    assert body["uncovered"]["buildings"] == len(expected.uncovered)
    grid_rows = {r["code"]: r for r in body["by_level"]["grid"]}
    assert set(grid_rows) == set(chosen.grids["code"])
    assert sum(r["households"] for r in grid_rows.values()) == expected.households


def test_coverage_names_uncovered_buildings_and_a_site_for_them(client):
    body = client.get("/stations/coverage", params={"unit": "141002"}).json()
    assert body["share"] < 1 and body["uncovered"]["buildings"] > 0
    assert body["uncovered"]["codes"]
    site = body["suggestion"]
    assert site["households"] > 0 and 111 < site["lon"] < 112 and 35 < site["lat"] < 37
    assert client.get("/stations/coverage", params={"unit": "999"}).status_code == 404
