"""Service stations over both stores: registration with size warnings, listing, 15-minute coverage
(straight-line on the demo, walked along real OSM roads on a Bund store), and `gridmap stations`."""

from __future__ import annotations

import contextlib
import json

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient
from serving import app_client, demo_store_url

from gridmap.demo import DEMO
from gridmap.io import read_layer
from gridmap.maps import select_unit
from gridmap.stations import coverage_report, service_areas
from gridmap.store import open_store
from gridmap.store.base import STORE_LAYERS


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def client(request, tmp_path_factory):
    with demo_store_url(request.param, request, tmp_path_factory.mktemp("stations")) as url, \
            app_client(url) as c:
        yield c


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


# -- walking along real roads: a store on the Bund (OSM roads and buildings) ---------------------

BUND = "shanghai_bund_osm/shanghai_bund_tilezen_osm.gpkg"
#: Both banks of the Huangpu: the Bund (Puxi) and Lujiazui (Pudong), split into 2 × 2 grids.
BUND_BOX = (121.483, 31.232, 121.507, 31.248)
BUND_STREET, BUND_COMMUNITY = "310101001", "310101001001"
BUND_GRIDS = [f"{BUND_COMMUNITY}{i:03d}" for i in range(1, 5)]
#: A post at the Oriental Pearl Tower (Pudong) and a community centre on the Bund (Puxi).
BUND_STATIONS = {"S1": (121.49526, 31.24195), "S2": (121.4859, 31.2390)}


def _bund_layers(osm) -> dict[str, gpd.GeoDataFrame]:
    import numpy as np
    import shapely

    minx, miny, maxx, maxy = BUND_BOX
    mx, my = (minx + maxx) / 2, (miny + maxy) / 2
    cells = [shapely.box(minx, my, mx, maxy), shapely.box(mx, my, maxx, maxy),
             shapely.box(minx, miny, mx, my), shapely.box(mx, miny, maxx, my)]
    box = shapely.box(*BUND_BOX)
    grids = gpd.GeoDataFrame({"code": BUND_GRIDS, "name": [f"网格{i}" for i in range(1, 5)],
                              "parent_code": BUND_COMMUNITY, "kind": "basic"}, geometry=cells, crs=4326)
    community = gpd.GeoDataFrame({"code": [BUND_COMMUNITY], "name": ["外滩社区"], "kind": ["urban"],
                                  "parent_code": [BUND_STREET]}, geometry=[box], crs=4326)
    street = gpd.GeoDataFrame({"code": [BUND_STREET], "name": ["外滩街道"]}, geometry=[box], crs=4326)
    # Tilezen clips buildings at tile edges: one building per OSM id, households by footprint.
    blds = gpd.read_file(osm, layer="buildings")
    blds = blds[blds.geom_type.isin(["Polygon", "MultiPolygon"])].dissolve(by="id", as_index=False)
    blds = blds[blds.representative_point().within(box)]
    households = np.maximum(1, (blds.to_crs(32651).area / 200).round()).astype(int).to_numpy()
    points = blds.representative_point().to_numpy()
    owner = [BUND_GRIDS[next(i for i, c in enumerate(cells) if c.intersects(p))] for p in points]
    building = gpd.GeoDataFrame({"code": [f"B{int(i)}" for i in blds["id"]], "households": households,
                                 "parent_code": owner}, geometry=blds.geometry.to_numpy(), crs=4326)
    return {"street": street, "community": community, "grid": grids, "building": building}


def _bund_stations() -> gpd.GeoDataFrame:
    import shapely

    return gpd.GeoDataFrame({"code": list(BUND_STATIONS), "name": ["东方明珠驿站", "外滩社区党群服务中心"],
                             "kind": ["post", "community_centre"], "floor_area_m2": [80.0, 600.0]},
                            geometry=[shapely.Point(xy) for xy in BUND_STATIONS.values()], crs=4326)


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def bund(request, tmp_path_factory):
    """A store holding the Bund street (one community, four grids, the OSM buildings) and two
    stations, published as version 1: its URL and the road file."""
    from conftest import need

    osm = need(BUND)
    with contextlib.ExitStack() as stack:
        if request.param == "postgis":
            from pg import fresh_database

            url = stack.enter_context(fresh_database(request.getfixturevalue("postgis_url")))
        else:
            url = str(tmp_path_factory.mktemp("bund") / "gridmap.gpkg")
        store = open_store(url)
        try:
            store.write_draft(_bund_layers(osm), note="the Bund")
            store.publish(commit=True)
            store.add_stations(_bund_stations())
        finally:
            store.close()
        yield url, osm


def _bund_client(url: str, **stations) -> TestClient:
    return app_client(url, stations=stations)


def _expected(url: str, osm, **walk):
    """The library's answer on the same inputs, computed without the service."""
    from gridmap.stations import build_network, suggest_site

    store = open_store(url)
    try:
        layers = {level: store.read_layer(level, 1) for level in STORE_LAYERS}
        stations = store.read_stations()
    finally:
        store.close()
    unit = select_unit(layers, BUND_STREET)
    net = build_network(read_layer(osm, layer="roads", geometry="any")) if walk.get("roads") else None
    areas = service_areas(stations, roads=net, straight_m=walk.get("straight_m", 1000))
    report = coverage_report(unit.layers["building"], areas, grids=unit.grids)
    site = suggest_site(unit.layers["building"], areas, roads=net, radius_m=1000, k=1)
    return report, site


def test_coverage_walks_along_the_configured_roads(bund):
    url, osm = bund
    with _bund_client(url, roads=str(osm), roads_layer="roads") as client:
        walked = client.get("/stations/coverage", params={"unit": BUND_STREET}).json()
    assert walked["method"] == "network"
    assert walked["service_area"] == {"method": "network", "minutes": 15.0, "speed_kmh": 4.5,
                                      "walk_m": 1125.0, "offset_m": 50.0, "roads": osm.name}
    assert walked["stations"] == 2 and walked["notes"] == []
    report, site = _expected(url, osm, roads=True)
    assert walked["households"] == report.households > 1000
    assert walked["covered_households"] == report.covered_households
    assert walked["uncovered"]["buildings"] == len(report.uncovered)
    by_grid = report.by_level["grid"].set_index("code")
    for row in walked["by_level"]["grid"]:
        assert row["covered_households"] == by_grid.loc[row["code"], "covered_households"]
    suggestion = walked["suggestion"]
    assert suggestion["method"] == "network" and suggestion["households"] == site.households[0]
    assert (suggestion["lon"], suggestion["lat"]) == pytest.approx(
        (site.geometry[0].x, site.geometry[0].y), abs=1e-6)


def test_walking_serves_no_more_than_the_circle_it_fits_in(bund):
    """A walk of 1,125 m plus 50 m beside the street stays inside a 1,175 m circle, so the
    circle of that radius serves at least as many households — on the Bund far more, since the
    Huangpu is crossed on foot by no bridge in the data."""
    url, osm = bund
    with _bund_client(url, roads=str(osm), roads_layer="roads") as client:
        walked = client.get("/stations/coverage", params={"unit": BUND_STREET}).json()
    with _bund_client(url, straight_m=1175.0) as client:
        straight = client.get("/stations/coverage", params={"unit": BUND_STREET}).json()
    assert straight["service_area"] == {"method": "straight_line", "radius_m": 1175.0}
    assert straight["suggestion"]["method"] == "straight_line"
    assert walked["households"] == straight["households"]
    assert walked["covered_households"] < straight["covered_households"]
    assert walked["share"] < straight["share"]
    circle = {r["code"]: r for r in straight["by_level"]["grid"]}
    for row in walked["by_level"]["grid"]:
        assert row["covered_households"] <= circle[row["code"]]["covered_households"]
    report, _ = _expected(url, osm, straight_m=1175.0)
    assert straight["covered_households"] == report.covered_households


def test_unusable_roads_answer_503_naming_the_file_and_the_rest_keeps_working(bund, tmp_path):
    url, _ = bund
    broken = tmp_path / "roads.geojson"
    broken.write_text("{ not json")
    for roads in (tmp_path / "missing.gpkg", broken):
        with _bund_client(url, roads=str(roads)) as client:
            r = client.get("/stations/coverage", params={"unit": BUND_STREET})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            body = r.json()
            assert body["type"] == "/problems/roads-unavailable"
            assert roads.name in body["detail"] and "Traceback" not in body["detail"]
            assert str(tmp_path) not in body["detail"]  # where the server keeps it: its own
            assert client.get("/stations").status_code == 200
            assert client.get("/lookup", params={"lon": 121.49, "lat": 31.24}).status_code == 200
            assert client.get("/stations/coverage", params={"unit": "999"}).status_code == 404


# -- the command line: gridmap stations UNIT --------------------------------------------------------

def _cli(*args, env=None):
    from typer.testing import CliRunner

    from gridmap.cli import app

    return CliRunner().invoke(app, ["stations", *map(str, args)], env=env)


def test_cli_prints_what_the_service_answers(bund):
    url, osm = bund
    result = _cli(BUND_STREET, "--store", url, "--roads", osm, "--roads-layer", "roads", "--json")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    with _bund_client(url, roads=str(osm), roads_layer="roads") as client:
        served = client.get("/stations/coverage", params={"unit": BUND_STREET}).json()
    assert printed == served
    # GRIDMAP_STATIONS__ROADS stands in for --roads; without either, straight-line circles.
    env = {"GRIDMAP_STATIONS__ROADS": str(osm), "GRIDMAP_STATIONS__ROADS_LAYER": "roads"}
    assert json.loads(_cli(BUND_STREET, "--store", url, "--json", env=env).stdout) == served
    assert json.loads(_cli(BUND_STREET, "--store", url, "--json").stdout)["method"] == "straight_line"


def test_cli_summary(bund):
    url, osm = bund
    result = _cli(BUND_COMMUNITY, "--store", url, "--roads", osm, "--roads-layer", "roads")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "外滩社区 (310101001001), version 1: 2 stations" in text
    assert "walked 15 min at 4.5 km/h (1,125 m) along shanghai_bund_tilezen_osm.gpkg" in text
    assert all(code in text for code in BUND_GRIDS)
    assert "outside every service area:" in text and "suggested new post at 121." in text


@pytest.mark.parametrize("args, named", [
    (["--roads", "/nowhere/roads.gpkg"], "/nowhere/roads.gpkg"),
    (["--roads", "{osm}"], "--roads-layer"),  # 9 layers: which one?
    (["--roads", "{osm}", "--roads-layer", "buildings"], "lines"),
    (["--roads", "{osm}", "--roads-layer", "rivers"], "rivers"),
])
def test_cli_refuses_unusable_roads_in_one_line(bund, args, named):
    url, osm = bund
    result = _cli(BUND_STREET, "--store", url, *[a.format(osm=osm) for a in args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gridmap: error: ") and named in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_refuses_unknown_units_and_missing_stores(bund, tmp_path):
    url, _ = bund
    for args, named in (([BUND_STREET, "--store", tmp_path / "none.gpkg"], "no store at"),
                        (["999", "--store", url], "'999'")):
        result = _cli(*args)
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1 and named in result.stderr
