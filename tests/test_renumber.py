"""Stable codes: reading order, new serials, codes carried across a redraw, retired never reused."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely

from gridmap.demo import DEMO
from gridmap.errors import EditRefused
from gridmap.io import read_layer
from gridmap.planning.edit import split_grid
from gridmap.planning.renumber import carry_codes, next_codes, reading_order, renumber_grids

_LAEA = pyproj.CRS.from_proj4("+proj=laea +lat_0=36.1 +lon_0=111.5 +ellps=WGS84 +units=m")
COM = "141002001001"


def _lattice(nx=4, ny=3, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    cells, where = [], []
    for r in range(ny):
        for c in range(nx):
            dy = rng.uniform(-jitter, jitter)
            cells.append(shapely.box(c * 100, -r * 100 + dy, c * 100 + 100, -r * 100 + 100 + dy))
            where.append((r, c))
    order = rng.permutation(len(cells))
    frame = gpd.GeoDataFrame({"code": [f"{COM}{900 - k:03d}" for k in range(len(cells))],
                              "parent_code": COM},
                             geometry=[cells[k] for k in order], crs=_LAEA).to_crs(4326)
    return frame, [where[k] for k in order]


def test_next_codes_and_exhaustion():
    assert next_codes(COM, [f"{COM}007", "999999999999999"], 2) == [f"{COM}008", f"{COM}009"]
    with pytest.raises(EditRefused):
        next_codes(COM, [f"{COM}998"], 3)


@pytest.mark.parametrize("jitter", [0.0, 20.0])
def test_renumber_reads_west_to_east_north_to_south(jitter):
    frame, where = _lattice(jitter=jitter, seed=int(jitter))
    out, mapping = renumber_grids(frame)
    serial = out["code"].str[-3:].astype(int).to_numpy()
    expected = np.array([r * 4 + c + 1 for r, c in where])
    assert (serial == expected).all()
    assert len(mapping) == len(frame) and set(out["code"]) == {f"{COM}{k:03d}" for k in range(1, 13)}


def test_reading_order_is_deterministic_for_ties():
    geoms = np.array([shapely.box(0, 0, 1, 1)] * 3, dtype=object)
    assert list(reading_order(geoms)) == [0, 1, 2]


@pytest.fixture(scope="module")
def demo():
    grid = read_layer(DEMO, layer="grid")
    bld = read_layer(DEMO, layer="building")
    counts = grid.groupby("parent_code").size()
    code = counts.index[counts >= 6][0]
    grids = grid[grid["parent_code"] == code].reset_index(drop=True)
    return grids, bld[bld["parent_code"].isin(grids["code"])].reset_index(drop=True)


def test_carry_codes_across_a_split(demo):
    grids, blds = demo
    target = grids["code"].iat[0]
    g = grids.geometry.iat[0]
    x = (g.bounds[0] + g.bounds[2]) / 2
    line = shapely.LineString([(x, g.bounds[1] - 0.01), (x + 0.0002, g.bounds[3] + 0.01)])
    redrawn = split_grid(grids, target, line, blds).grids
    fresh = redrawn.drop(columns=["code"])
    retired_before = {grids["code"].iat[0][:12] + "950"}
    result = carry_codes(grids, fresh, blds, retired=retired_before)
    untouched = [c for c in grids["code"] if c != target]
    assert set(untouched) <= set(result.grids["code"])  # unchanged grids keep their codes
    assert set(result.carried) >= set(untouched)
    assert all(int(c[-3:]) > 950 for c in result.issued)  # after the highest ever used
    assert result.retired >= retired_before
    assert not set(result.issued) & (set(grids["code"]) | retired_before)
    assert result.grids["code"].is_unique
    if target not in result.grids["code"].to_numpy():
        assert target in result.retired


def test_households_decide_when_areas_agree():
    box = shapely.box
    old = gpd.GeoDataFrame({"code": [f"{COM}001", f"{COM}002", f"{COM}003"], "parent_code": COM},
                           geometry=[box(-50, 0, 0, 100), box(0, 0, 100, 100), box(100, 0, 150, 100)],
                           crs=_LAEA).to_crs(4326)
    new = gpd.GeoDataFrame({"parent_code": [COM, COM]},
                           geometry=[box(-50, 0, 60, 100), box(60, 0, 150, 100)], crs=_LAEA).to_crs(4326)
    blds = gpd.GeoDataFrame({"code": ["B1", "B2", "B3"], "households": [100, 100, 10]},
                            geometry=[box(70, 40, 80, 50), box(85, 40, 95, 50), box(-40, 40, -30, 50)],
                            crs=_LAEA).to_crs(4326)
    by_area = carry_codes(old, new)  # most of the area both ways: the codes of 002 and 003 stay
    assert list(by_area.grids["code"]) == [f"{COM}002", f"{COM}003"]
    assert by_area.retired == {f"{COM}001"}
    by_households = carry_codes(old, new, blds)  # but the households of 002 all left it
    assert list(by_households.grids["code"]) == [f"{COM}004", f"{COM}005"]
    assert by_households.retired == {f"{COM}001", f"{COM}002", f"{COM}003"}
    again = carry_codes(old, new, blds, retired={f"{COM}010"})
    assert list(again.grids["code"]) == [f"{COM}011", f"{COM}012"]
