"""Bounded repair: fills, removes and snaps — and refuses what would change a grid too much."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from typer.testing import CliRunner

from conftest import need
from gridmap.cli import app
from gridmap.crs import to_metric
from gridmap.io import read_layer, write_layer
from gridmap.planning.repair import repair_coverage
from gridmap.synth import make_city
from gridmap.validate import validate_coverage

_LAEA = pyproj.CRS.from_proj4("+proj=laea +lat_0=31.2 +lon_0=121.5 +ellps=WGS84 +units=m")


def _frame(geoms, codes=None):
    codes = codes or [f"31010100100{i + 1}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"code": codes}, geometry=geoms, crs=_LAEA).to_crs(4326)


def _areas(frame):
    return frame.to_crs(_LAEA).area.to_numpy()


def test_planted_gap_and_overlap_are_repaired():
    city = make_city(120, seed=5, plant={"gap": 1, "overlap": 1}, straddle_per_grid=0.0)
    before = validate_coverage(city.grid, city.community).by_type()
    assert before.get("gap") and before.get("overlap")
    result = repair_coverage(city.grid, city.community, city.building)
    assert result.clean, result.refused
    after = validate_coverage(result.grids, city.community, city.building)
    assert not [p.message for p in after.problems
                if p.type in ("gap", "overlap", "outside_parent", "split_building", "invalid_geometry")]
    assert {f["type"] for f in result.fixed} >= {"gap", "overlap"}


def test_large_overlap_is_refused_and_left_alone():
    a, b = shapely.box(0, 0, 100, 100), shapely.box(50, 0, 150, 100)  # half of each overlaps
    frame = _frame([a, b])
    result = repair_coverage(frame, max_change=0.05)
    assert not result.clean
    assert result.refused[0]["type"] == "overlap"
    assert "limit 5%" in result.refused[0]["reason"]
    assert np.allclose(_areas(result.grids), _areas(frame), rtol=1e-6)


def test_small_overlap_goes_to_one_grid_and_nothing_is_lost():
    a = shapely.Polygon([(0, 0), (100, 0), (101, 50), (100, 100), (0, 100)])  # bulges 1 m into b
    b = shapely.box(100, 0, 200, 100)
    result = repair_coverage(_frame([a, b]))
    assert result.clean and result.fixed[0]["type"] == "overlap"
    geoms = result.grids.to_crs(_LAEA).geometry.to_numpy()
    assert geoms[0].intersection(geoms[1]).area < 1e-6
    assert shapely.union_all(geoms).area == pytest.approx(20000, rel=1e-5)
    assert result.fixed[0]["to"] in set(result.grids["code"])


def test_gap_between_several_grids_is_shared():
    # Three grids around a 10 m square hole; the hole is shared by the nearest boundary.
    outer = shapely.box(0, 0, 300, 100)
    hole = shapely.box(145, 45, 155, 55)
    left = shapely.box(0, 0, 150, 100).difference(hole)
    right_top = shapely.box(150, 50, 300, 100).difference(hole)
    right_bottom = shapely.box(150, 0, 300, 50).difference(hole)
    frame = _frame([left, right_top, right_bottom])
    parents = gpd.GeoDataFrame({"code": ["310101001"]}, geometry=[outer], crs=_LAEA).to_crs(4326)
    result = repair_coverage(frame.assign(parent_code="310101001"), parents)
    assert result.clean
    gained = _areas(result.grids) - _areas(frame)
    assert (gained > 1).all()
    # Built in one projection, checked in another: the 300 m box edges bend by a hair.
    assert gained.sum() == pytest.approx(100, abs=0.5)
    report = validate_coverage(result.grids, parents)
    assert not [p for p in report.problems if p.type in ("gap", "overlap", "invalid_geometry")]


def test_shanghai_streets_repair_is_bounded():
    path = need("shanghai_streets/shanghai_street.shp")
    streets = read_layer(path, crs="EPSG:4326")
    result = repair_coverage(streets, max_change=0.05)
    before, crs = to_metric(streets)
    after = result.grids.to_crs(crs)
    a0, a1 = before.area.to_numpy(), after.area.to_numpy()
    # Nothing is deleted: the covered area stays (gaps filled add a little) and no polygon empties.
    u0 = shapely.union_all(before.geometry.values).area
    u1 = shapely.union_all(after.geometry.values).area
    assert abs(u1 - u0) / u0 < 1e-5
    assert (a1 > 0).all()
    # No polygon changed by more than the limit (plus the snapping, a few m²).
    assert (np.abs(a1 - a0) <= 0.05 * a0 + 50).all()
    # The sum of areas drops by the overlaps that were removed, no more.
    removed = sum(f["area_m2"] for f in result.fixed if f["type"] == "overlap")
    filled = sum(f["area_m2"] for f in result.fixed if f["type"] == "gap")
    assert a0.sum() - a1.sum() == pytest.approx(removed - filled, abs=1000)
    # Every overlap too large for both of its polygons is refused and reported, not deleted.
    g = before.geometry.to_numpy()
    left, right = shapely.STRtree(g).query(g, predicate="intersects")
    pairs = [(i, j) for i, j in zip(left, right) if i < j]
    inter = np.array([g[i].intersection(g[j]).area for i, j in pairs])
    big = [(f"#{i + 1}", f"#{j + 1}") for (i, j), x in zip(pairs, inter)
           if x > 0.05 * a0[i] and x > 0.05 * a0[j]]
    assert big
    refused = {tuple(r["codes"]) for r in result.refused if r["type"] == "overlap"}
    assert set(big) <= refused
    assert not result.clean


def test_cli_repair_exit_codes(tmp_path):
    runner = CliRunner()
    city = make_city(60, seed=2, plant={"gap": 1}, straddle_per_grid=0.0)
    src = tmp_path / "grids.gpkg"
    write_layer(city.grid, src, layer="grid")
    write_layer(city.community, tmp_path / "com.gpkg", layer="community")
    out = tmp_path / "out.gpkg"
    ok = runner.invoke(app, ["repair", str(src), "--parents", str(tmp_path / "com.gpkg"),
                             "-o", str(out), "--json"])
    assert ok.exit_code == 0, ok.output
    assert read_layer(out).shape[0] == len(city.grid)
    a, b = shapely.box(0, 0, 100, 100), shapely.box(50, 0, 150, 100)
    write_layer(_frame([a, b]), tmp_path / "bad.gpkg", layer="grid")
    refused = runner.invoke(app, ["repair", str(tmp_path / "bad.gpkg"), "-o", str(out)])
    assert refused.exit_code == 1 and "refused" in refused.output
    missing = runner.invoke(app, ["repair", str(tmp_path / "nope.gpkg"), "-o", str(out)])
    assert missing.exit_code == 2
