"""Auto-partition (划实划小网格单元): exact cover, whole buildings, barriers, the band, codes."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPolygon, Point, box

from gridmap.errors import (
    EmptyLayer,
    FieldMissing,
    GridmapError,
    InputError,
    NotPolygons,
)
from gridmap.planning import make_community, partition_community
from gridmap.planning import partition_graph as pg
from gridmap.planning.partition_build import balanced
from gridmap.planning.partition_synth import osm_households
from gridmap.validate import validate_coverage

BUND = "shanghai_bund_osm/shanghai_bund_tilezen_osm.gpkg"
COVERAGE_ERRORS = {"gap", "overlap", "outside_parent", "split_building", "invalid_geometry"}
# A local metre near (111.52, 36.08), in degrees: for hand-made layouts.
DX, DY = 1 / 90_000, 1 / 111_000


def coverage_problems(grids, parent, buildings) -> dict:
    report = validate_coverage(grids, parents=parent, buildings=buildings)
    return {k: v for k, v in report.by_type().items() if k in COVERAGE_ERRORS}


def in_band_share(grids, report) -> float:
    basic = grids[grids["kind"] == "basic"]
    return report.in_band / max(len(basic), 1)


def metric_box(x0, y0, x1, y1, lon=111.52, lat=36.08):
    return box(lon + x0 * DX, lat + y0 * DY, lon + x1 * DX, lat + y1 * DY)


def frame(geoms, **columns):
    return gpd.GeoDataFrame(columns, geometry=list(geoms), crs=4326)


@pytest.fixture(scope="module")
def city():
    com = make_community(1200, seed=5, sites=2)
    grids, report = partition_community(com.parent, com.buildings, barriers=com.barriers,
                                        dedicated=com.dedicated)
    return com, grids, report


# -- the rules on a synthetic community ---------------------------------------------------------


def test_synthetic_cover_is_exact_and_splits_no_building(city):
    com, grids, _ = city
    assert coverage_problems(grids, com.parent, com.buildings) == {}
    assert (grids.geom_type == "Polygon").all()  # contiguous: one piece each
    assert grids.crs.to_epsg() == 4326


def test_households_are_kept_and_the_band_holds(city):
    com, grids, report = city
    assert grids["households"].sum() == com.buildings["households"].sum()
    assert report.households == com.buildings["households"].sum()
    assert in_band_share(grids, report) >= 0.95
    assert report.in_band + len(report.outside) == report.basic
    assert all(o["reason"] for o in report.outside)


def test_dedicated_sites_are_grids_of_their_own(city):
    com, grids, report = city
    dedicated = grids[grids["kind"] == "dedicated"]
    assert len(dedicated) == len(com.dedicated) == report.dedicated == 2
    for site in com.dedicated.geometry:
        match = dedicated[dedicated.intersects(site.representative_point())]
        assert len(match) == 1
        # The site, give or take the buildings that straddle its edge.
        diff = shapely.symmetric_difference(match.geometry.iat[0], site).area
        assert diff < 0.1 * site.area
    assert dedicated["name"].str.endswith("专属网格").all()


def test_codes_are_15_digits_in_reading_order(city):
    com, grids, _ = city
    parent_code = com.parent["code"].iat[0]
    assert grids["code"].str.fullmatch(r"\d{15}").all()
    assert grids["code"].str.startswith(parent_code).all()
    assert list(grids["code"].str[-3:]) == [f"{i:03d}" for i in range(1, len(grids) + 1)]
    assert (grids["parent_code"] == parent_code).all()


def test_codes_run_west_to_east_then_north_to_south():
    # Four blocks of 200 households, two roads crossing in the middle: NW, NE, SW, SE.
    parent = frame([metric_box(0, 0, 400, 400)], code=["141002004003"], name=["甲社区"])
    roads = frame([LineString([(111.52 + 200 * DX, 36.08 - DY), (111.52 + 200 * DX, 36.08 + 401 * DY)]),
                   LineString([(111.52 - DX, 36.08 + 200 * DY), (111.52 + 401 * DX, 36.08 + 200 * DY)])])
    centres = {"NW": (100, 300), "NE": (300, 300), "SW": (100, 100), "SE": (300, 100)}
    blds = frame([metric_box(x - 20, y - 20, x + 20, y + 20) for x, y in centres.values()],
                 code=list(centres), households=[200] * 4)
    grids, report = partition_community(parent, blds, barriers=roads)
    owner = {b: grids[grids.intersects(g.centroid)]["code"].iat[0] for b, g in
             zip(blds["code"], blds.geometry)}
    assert [owner[k][-3:] for k in ("NW", "NE", "SW", "SE")] == ["001", "002", "003", "004"]
    assert report.in_band == 4


def test_barriers_are_followed():
    # A road across the middle, 400 households each side: two grids, split along the road.
    parent = frame([metric_box(0, 0, 600, 300)], code=["141002004003"])
    road = LineString([(111.52 + 310 * DX, 36.08 - DY), (111.52 + 290 * DX, 36.08 + 301 * DY)])
    rng = np.random.default_rng(1)
    cells = [(x, y) for x in range(20, 600, 40) for y in range(20, 300, 40) if abs(x - 300) > 40]
    blds = frame([metric_box(x - 8, y - 8, x + 8, y + 8) for x, y in cells],
                 households=rng.integers(5, 20, len(cells)))
    grids, report = partition_community(parent, blds, barriers=frame([road]))
    assert coverage_problems(grids, parent, blds) == {}
    inner = shapely.buffer(grids.to_crs(3857).geometry.values, -0.5)
    crossing = shapely.length(shapely.intersection(inner, frame([road]).to_crs(3857).geometry.iat[0]))
    assert crossing.max() == 0, report.lines()
    assert not any("merged across a barrier" in n for n in report.notes)


def test_small_block_is_merged_across_a_barrier_and_said_so():
    parent = frame([metric_box(0, 0, 600, 300)], code=["141002004003"])
    road = LineString([(111.52 + 500 * DX, 36.08 - DY), (111.52 + 500 * DX, 36.08 + 301 * DY)])
    blds = frame([metric_box(100, 100, 140, 140), metric_box(300, 100, 340, 140),
                  metric_box(540, 100, 560, 140)], households=[100, 100, 30])
    grids, report = partition_community(parent, blds, barriers=frame([road]))
    assert len(grids) == 1 and report.in_band == 1
    assert any("merged across a barrier" in n for n in report.notes)


def test_grids_outside_the_band_say_why():
    # An island of 80 households cut off from the rest, and a tower of 420 households.
    main, island = metric_box(0, 0, 400, 400), metric_box(600, 0, 700, 100)
    parent = frame([MultiPolygon([main, island])], code=["141002004003"])
    blds = frame([metric_box(50, 50, 90, 90), metric_box(250, 250, 290, 290),
                  metric_box(630, 30, 670, 70)], households=[420, 200, 80])
    _grids, report = partition_community(parent, blds)
    reasons = {o["households"]: o["reason"] for o in report.outside}
    assert "one building of 420 households is larger than the band" in reasons[420]
    assert "block cut off by barriers holds only 80 households" in reasons[80]
    assert report.in_band == 1


def test_address_points_work_like_footprints():
    com = make_community(300, seed=9)
    points = com.buildings.assign(geometry=com.buildings.geometry.representative_point())
    grids, report = partition_community(com.parent, points, barriers=com.barriers)
    assert coverage_problems(grids, com.parent, None) == {}
    assert grids["households"].sum() == points["households"].sum()
    assert in_band_share(grids, report) >= 0.95


def test_rural_defaults():
    com = make_community(600, seed=4, rural=True)
    grids, report = partition_community(com.parent, com.buildings, barriers=com.barriers)
    assert (report.target, report.tolerance) == (50, 15)  # from the parent's kind
    assert in_band_share(grids, report) >= 0.95
    hh = grids["households"]
    assert hh.between(35, 65).mean() >= 0.95
    forced = partition_community(com.parent.assign(kind="urban"), com.buildings, rural=True)
    assert (forced.report.target, forced.report.tolerance) == (50, 15)


# -- real buildings -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bund(request):
    from conftest import need

    path = need(BUND)
    blds = osm_households(gpd.read_file(path, layer="buildings"), seed=0)
    roads = gpd.read_file(path, layer="roads")
    roads = roads[roads["kind"].isin(["major_road", "minor_road"])
                  & (roads["kind_detail"] != "service") & roads["is_tunnel"].isna()]
    hull = blds.to_crs(32651).union_all().convex_hull.buffer(30)
    parent = gpd.GeoDataFrame({"code": ["310101002003"], "name": ["外滩"]}, geometry=[hull],
                              crs=32651).to_crs(4326)
    grids, report = partition_community(parent, blds, barriers=roads)
    return parent, blds, grids, report


def test_real_osm_buildings_are_covered_exactly(bund):
    parent, blds, grids, _report = bund
    assert coverage_problems(grids, parent, blds) == {}
    assert (grids.geom_type == "Polygon").all()
    assert grids["households"].sum() == blds["households"].sum()


def test_real_osm_band_holds_where_the_buildings_allow(bund):
    _, _, _grids, report = bund
    towers = [o for o in report.outside if "households is larger than the band" in o["reason"]]
    allowed = report.basic - len(towers)
    # Measured 153 of 155 (98.7%); the other two are certain: one grid is walled in by towers and
    # barriers with 113 households in reach, one block's 329 households fit no grouping (searched).
    assert report.in_band / allowed >= 0.95
    assert all(o["reason"] for o in report.outside)


# -- the balancing steps on hand-made graphs -----------------------------------------------------


def lattice(weights):
    """Units on a grid of rows × columns, adjacent to their four neighbours, one block."""
    rows, cols = weights.shape
    idx = np.arange(rows * cols).reshape(rows, cols)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    xy = np.c_[np.tile(np.arange(cols), rows), np.repeat(np.arange(rows), cols)] * 10.0
    return pg.UnitGraph(weights.ravel().astype(float), np.zeros(rows * cols, dtype=bool), xy,
                        np.zeros(rows * cols, dtype=np.intp), a, b, np.full(len(a), 10.0))


def test_rebalance_moves_households_along_a_chain_and_adds_a_grid():
    graph = lattice(np.full((4, 4), 50))
    # 500 | 200 | 100: the small grid touches only the full one, the big one cannot give to it.
    grid = np.array([0, 0, 0, 0,
                     0, 0, 0, 0,
                     0, 0, 1, 1,
                     2, 2, 1, 1])
    out = pg.rebalance(graph, grid, np.zeros(16, dtype=np.intp), pg.Band(target=200, tolerance=50))
    loads = np.bincount(out, weights=graph.weight)
    assert len(loads) == 4 and ((loads >= 150) & (loads <= 250)).all()  # 800 make no 3 grids
    assert all(len(pg.pieces(graph, set(np.flatnonzero(out == g)))) == 1 for g in range(4))


def test_balanced_searches_every_grouping():
    band = pg.Band(target=200, tolerance=50)
    chain = lattice(np.array([[82, 169, 78]]))  # 82 + 169 = 251: no two grids of 150–250
    assert balanced(chain, [0, 1, 2], band) is False
    square = lattice(np.array([[100, 60], [90, 100]]))
    assert balanced(square, [0, 1, 2, 3], band) is True  # 100 + 60 | 90 + 100 (columns)
    assert balanced(lattice(np.full((1, 12), 1.0)), range(12), band) is False


# -- bad input ----------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_errors():
    com = make_community(50, seed=1)
    moved = com.buildings.assign(geometry=com.buildings.translate(1.0, 0))
    cases = [
        (lambda: partition_community(Point(111.5, 36.1), com.buildings), NotPolygons),
        (lambda: partition_community(com.parent, com.buildings.drop(columns="households")),
         FieldMissing),
        (lambda: partition_community(com.parent, com.buildings.iloc[:0]), EmptyLayer),
        (lambda: partition_community(com.parent, moved), InputError),
        (lambda: partition_community(com.parent, com.buildings.geometry), InputError),
        (lambda: partition_community(com.parent, com.buildings.assign(households=-1)), InputError),
        (lambda: partition_community(
            gpd.GeoDataFrame(geometry=[com.parent.geometry.iat[0]] * 2, crs=4326), com.buildings),
         InputError),
        (lambda: partition_community(com.parent, com.buildings, target=10, tolerance=20),
         InputError),
    ]
    for call, error in cases:
        with pytest.raises(error) as info:
            call()
        assert isinstance(info.value, GridmapError)
        assert "\n" not in info.value.detail and info.value.detail


def test_buildings_outside_can_be_dropped():
    com = make_community(80, seed=2)
    stray = com.buildings.iloc[:3].assign(geometry=com.buildings.iloc[:3].translate(1.0, 0))
    both = gpd.GeoDataFrame(gpd.pd.concat([com.buildings, stray]), crs=4326)
    grids, report = partition_community(com.parent, both, drop_outside=True)
    assert grids["households"].sum() == com.buildings["households"].sum()
    assert any("outside the parent were ignored" in n for n in report.notes)


# -- the command line ---------------------------------------------------------------------------


def run(*args):
    return subprocess.run([sys.executable, "-m", "gridmap.cli", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=300)


def test_cli_writes_a_geopackage_that_validates(tmp_path):
    com = make_community(300, seed=3, sites=1)
    for name in ("parent", "buildings", "barriers", "dedicated"):
        getattr(com, name).to_file(tmp_path / f"{name}.gpkg")
    out = tmp_path / "grids.gpkg"
    result = run("partition", tmp_path / "parent.gpkg", "--buildings", tmp_path / "buildings.gpkg",
                 "--barriers", tmp_path / "barriers.gpkg", "--dedicated",
                 tmp_path / "dedicated.gpkg", "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dedicated"] == 1 and report["grids"] >= 10
    checked = run("validate", out, "--json")
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["summary"]["clean"] is True


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    com = make_community(50, seed=1)
    com.barriers.to_file(tmp_path / "lines.gpkg")
    com.buildings.drop(columns="households").to_file(tmp_path / "b.gpkg")
    com.parent.to_file(tmp_path / "p.gpkg")
    for args in (("partition", tmp_path / "lines.gpkg", "--buildings", tmp_path / "b.gpkg"),
                 ("partition", tmp_path / "p.gpkg", "--buildings", tmp_path / "b.gpkg")):
        result = run(*args, "-o", tmp_path / "out.gpkg")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gridmap: error: ")
        assert "Traceback" not in result.stderr


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 250), roads=st.integers(0, 4),
       sites=st.integers(0, 1), rural=st.booleans())
def test_any_layout_is_covered_exactly(seed, n, roads, sites, rural):
    com = make_community(n, seed=seed, roads=roads, sites=sites, rural=rural)
    grids, _report = partition_community(com.parent, com.buildings, barriers=com.barriers,
                                        dedicated=com.dedicated)
    assert coverage_problems(grids, com.parent, com.buildings) == {}
    assert grids["households"].sum() == com.buildings["households"].sum()
    # Every building lies in exactly one grid.
    inside = shapely.STRtree(grids.geometry.values).query(
        com.buildings.geometry.representative_point().values, predicate="intersects")
    assert np.array_equal(np.bincount(inside[0], minlength=len(com.buildings)),
                          np.ones(len(com.buildings), dtype=int))
    assert (grids.geom_type == "Polygon").all()
