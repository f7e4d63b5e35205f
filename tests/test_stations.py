"""Service stations: 15-minute service areas on the Bund's real OSM roads, coverage, siting, sizes."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import networkx as nx
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmap.stations import (
    build_network,
    check_stations,
    coverage_report,
    reach_lines,
    service_areas,
    suggest_site,
    walk_budget_m,
)

ROOT = Path(__file__).resolve().parents[1]
BUND = "shanghai_bund_osm/shanghai_bund_tilezen_osm.gpkg"
PEARL_TOWER = (121.49526, 31.24195)  # the Oriental Pearl Tower POI, Pudong
# 陆家嘴环路, 645 m from the tower as the crow flies and under 800 m away on foot.
RING_ROAD = (121.49684, 31.23629)
# 中山东一路 on the Bund, Puxi: 896 m from the tower, across the Huangpu.
BUND_ROAD = (121.4859, 31.24266)
UTM51 = 32651  # metres, for hand-made layers


def _points(*xy, crs=4326, codes=None):
    codes = codes or [f"S{i}" for i in range(len(xy))]
    return gpd.GeoDataFrame({"code": codes}, geometry=[shapely.Point(p) for p in xy], crs=crs)


@pytest.fixture(scope="module")
def bund():
    from conftest import need

    roads = gpd.read_file(need(BUND), layer="roads")
    return build_network(roads)


@pytest.fixture(scope="module")
def tower_areas(bund):
    station = _points(PEARL_TOWER)
    return {m: service_areas(station, roads=bund, minutes=m).to_crs(bund.crs).geometry[0]
            for m in (5, 10, 15)}


def _metric(net, xy):
    return gpd.GeoSeries([shapely.Point(xy)], crs=4326).to_crs(net.crs)[0]


def test_network_area_inside_the_walking_circle(bund, tower_areas):
    circle = _metric(bund, PEARL_TOWER).buffer(walk_budget_m(15, 4.5) + 50, quad_segs=64)
    area = tower_areas[15]
    assert area.area < circle.area
    # Walking cannot beat the crow: 1,125 m walked plus the 50 m offset stays in the circle.
    assert circle.buffer(1e-6).contains(area)


def test_network_area_grows_with_minutes(tower_areas):
    assert tower_areas[5].area < tower_areas[10].area < tower_areas[15].area
    assert tower_areas[15].buffer(1e-6).contains(tower_areas[10])


def test_network_area_follows_streets_not_across_the_river(bund, tower_areas):
    tower, ring, bund_road = (_metric(bund, xy) for xy in (PEARL_TOWER, RING_ROAD, BUND_ROAD))
    assert 600 < tower.distance(ring) < 700 and 850 < tower.distance(bund_road) < 950
    assert tower_areas[15].contains(ring)
    assert shapely.intersects(reach_lines(bund, tower, 800.0).buffer(1), ring)
    # The Bund is inside the 1,000 m circle but not in the walk: in the OSM data the Huangpu is
    # crossed only by road tunnels, metro lines, the Bund sightseeing tunnel and ferries.
    assert tower.buffer(1000).contains(bund_road)
    assert not tower_areas[15].contains(bund_road)
    near = [int(bund.tree.query_nearest(p)[0]) for p in (tower, bund_road)]
    assert not nx.has_path(bund.graph, int(bund.u[near[0]]), int(bund.u[near[1]]))


@settings(max_examples=20, deadline=None)
@given(lon=st.floats(100, 125), lat=st.floats(20, 45), radius=st.floats(50, 5000))
def test_straight_line_circle_area(lon, lat, radius):
    areas = service_areas(_points((lon, lat)), straight_m=radius)
    assert areas.method[0] == "straight_line"
    area = areas.to_crs(f"+proj=laea +lat_0={lat} +lon_0={lon}").area[0]
    assert area == pytest.approx(math.pi * radius**2, rel=0.01)


def _square(x, y, size=10):
    return shapely.box(x, y, x + size, y + size)


def _buildings(specs):
    """(code, grid, households, x, y) in UTM metres."""
    return gpd.GeoDataFrame(
        {"code": [s[0] for s in specs], "parent_code": [s[1] for s in specs],
         "households": [s[2] for s in specs]},
        geometry=[_square(s[3], s[4]) for s in specs], crs=UTM51)


X0, Y0 = 360_000, 3_457_000  # near the Bund in UTM 51N


def test_coverage_shares_by_grid_community_street():
    g1, g2 = "310101001001001", "310101001002001"
    buildings = _buildings([
        ("B1", g1, 100, X0, Y0), ("B2", g1, 50, X0 + 500, Y0),
        ("B3", g2, 30, X0 + 3000, Y0), ("B4", g2, 20, X0 + 5000, Y0)])
    areas = service_areas(_points((X0 + 5, Y0 + 5), crs=UTM51), straight_m=1000)
    grids = pd.DataFrame({"code": [g1, g2], "parent_code": [g1[:12], g2[:12]]})
    communities = pd.DataFrame({"code": [g1[:12], g2[:12]]})
    streets = pd.DataFrame({"code": [g1[:9]]})
    report = coverage_report(buildings, areas, grids=grids, communities=communities,
                             streets=streets)
    assert (report.households, report.covered_households) == (200, 150)
    assert report.share == pytest.approx(0.75)
    by_grid = report.by_level["grid"].set_index("code")
    assert by_grid.loc[g1, "share"] == 1.0 and by_grid.loc[g2, "share"] == 0.0
    assert report.by_level["community"].set_index("code").loc[g2[:12], "households"] == 50
    assert report.by_level["street"].share.tolist() == [0.75]
    assert sorted(report.uncovered.code) == ["B3", "B4"]
    assert report.uncovered.crs.to_epsg() == 4326


def test_greedy_siting_picks_the_densest_uncovered_cluster():
    dense = [(f"D{i}", "g", 200, X0 + 6000 + 30 * i, Y0) for i in range(5)]
    sparse = [(f"S{i}", "g", 20, X0 + 20_000 + 30 * i, Y0) for i in range(5)]
    served = [("C0", "g", 500, X0, Y0)]
    buildings = _buildings(dense + sparse + served)
    areas = service_areas(_points((X0, Y0), crs=UTM51), straight_m=1000)
    sites = suggest_site(buildings, areas, radius_m=1000, k=2)
    assert sites.households.tolist() == [1000, 100]
    first = gpd.GeoSeries([sites.geometry[0]], crs=4326).to_crs(UTM51)[0]
    assert X0 + 5000 < first.x < X0 + 7200
    assert suggest_site(buildings, areas, radius_m=1000, k=5).shape[0] == 2  # then nothing left


def test_station_size_warnings_on_the_demo():
    stations = gpd.read_file(ROOT / "boundaries" / "demo.gpkg", layer="station")
    assert check_stations(stations) == []
    small = stations.copy()
    street = small.index[small.kind == "street_centre"][0]
    community = small.index[small.kind == "community_centre"][0]
    small.loc[street, "floor_area_m2"] = 900.0
    small.loc[community, "floor_area_m2"] = None
    small.loc[small.kind == "post", "floor_area_m2"] = 10.0  # posts have no minimum
    messages = check_stations(small)
    assert messages == [
        f"{small.code[street]}: street centre of 900 m², under the 1000 m² minimum",
        f"{small.code[community]}: community centre has no floor area recorded"]


def test_straight_line_areas_for_the_demo_stations():
    stations = gpd.read_file(ROOT / "boundaries" / "demo.gpkg", layer="station")
    areas = service_areas(stations)
    assert len(areas) == len(stations) and (areas.method == "straight_line").all()
    assert areas.code.tolist() == stations.code.tolist()


# -- the configured road file: read once, built once, refused with its name ------------------------

def test_a_station_far_from_every_road_reaches_no_farther_than_its_walk(bund):
    """A road layer of another area must not draw a strip of 50 m either side of a leg hundreds
    of kilometres long: the walk ends where its 1,125 m end."""
    far = (121.2, 31.0)  # some 35 km from the Bund's roads
    area = service_areas(_points(far), roads=bund).to_crs(bund.crs).geometry[0]
    station = _metric(bund, far)
    # The farthest vertex: a leg of 1,125 m towards the roads, buffered by 50 m.
    assert shapely.hausdorff_distance(area, station) == pytest.approx(1175, abs=0.01)
    assert area.area < 1125 * 100 + math.pi * 50**2 + 1


def test_unit_coverage_notes_stations_off_the_road_layer(bund):
    from gridmap.maps import select_unit
    from gridmap.stations import unit_coverage

    g = "310101001001001"
    box = shapely.box(121.19, 30.99, 121.21, 31.01)
    layers = {"grid": gpd.GeoDataFrame({"code": [g], "parent_code": [g[:12]]}, geometry=[box], crs=4326),
              "community": gpd.GeoDataFrame({"code": [g[:12]]}, geometry=[box], crs=4326),
              "building": gpd.GeoDataFrame({"code": ["B1"], "households": [10]},
                                           geometry=[shapely.box(121.2, 31.0, 121.2001, 31.0001)],
                                           crs=4326)}
    answer = unit_coverage(select_unit(layers, g[:12]), _points((121.2, 31.0)), roads=bund)
    assert answer["service_area"]["method"] == "network"
    assert answer["notes"] == [("1 of 1 stations lie more than 1,125 m from every road of the "
                                "road layer: does it cover this unit?")]


def test_suggest_site_with_a_prebuilt_network_in_another_crs(bund):
    """The network's CRS (a LAEA on the roads) is not the buildings' (UTM here): the suggested
    site and the households it serves must not depend on which CRS the network was built in."""
    from conftest import need

    blds = gpd.read_file(need(BUND), layer="buildings")
    blds = blds[blds.geom_type == "Polygon"].to_crs(UTM51).reset_index(drop=True)
    own = suggest_site(blds, roads=gpd.read_file(need(BUND), layer="roads"), k=1)
    shared = suggest_site(blds, roads=bund, k=1)
    assert shared.households[0] == own.households[0] > 0
    assert shared.geometry[0].distance(own.geometry[0]) < 1e-6


@pytest.fixture
def small_roads(tmp_path):
    from conftest import need

    roads = gpd.read_file(need(BUND), layer="roads").cx[121.49:121.50, 31.235:31.245]
    path = tmp_path / "roads.geojson"
    roads[["kind", "geometry"]].to_file(path, driver="GeoJSON")
    return path, roads


def test_the_road_network_is_built_once_per_file_version(small_roads):
    import os

    from gridmap.stations import cached_network

    path, roads = small_roads
    first = cached_network(path)
    assert cached_network(path) is first
    roads.iloc[: len(roads) // 2][["kind", "geometry"]].to_file(path, driver="GeoJSON")
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    second = cached_network(path)
    assert second is not first and len(second.edges) < len(first.edges)


def test_unusable_road_files_are_refused_with_their_name(tmp_path, small_roads):
    from gridmap.stations import RoadsUnavailable, cached_network, load_network

    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a geopackage")
    points = tmp_path / "stops.geojson"
    _points(PEARL_TOWER).to_file(points, driver="GeoJSON")
    for path in (tmp_path / "missing.gpkg", garbage, points):
        for load in (load_network, cached_network):
            with pytest.raises(RoadsUnavailable) as caught:
                load(path)
            assert caught.value.status == 503 and path.name in caught.value.detail
            assert str(path) in caught.value.detail  # for whoever runs the service
            for_callers = caught.value.for_callers()  # what HTTP answers
            assert path.name in for_callers.detail and str(tmp_path) not in for_callers.detail
    with pytest.raises(RoadsUnavailable, match="lines"):
        load_network(points)
