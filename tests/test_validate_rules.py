"""Each rule on small hand-made layers whose answer is known, plus hypothesis edge cases.

Layers are drawn in metres in a local frame around Linfen and converted to WGS84 for the library,
the way planners' layers arrive.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from gridmap.config import ValidationOptions
from gridmap.errors import LayersDisjoint
from gridmap.validate import validate_coverage, validate_hierarchy

FRAME = "+proj=tmerc +lat_0=36.08 +lon_0=111.52 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m"
COMMUNITY = "141002004003"


def layer(geoms, codes=None, **columns):
    codes = codes or [f"{COMMUNITY}{i + 1:03d}" for i in range(len(geoms))]
    frame = gpd.GeoDataFrame({"code": codes, **columns}, geometry=list(geoms), crs=FRAME)
    return frame.to_crs("EPSG:4326")


def parent(geom, code=COMMUNITY, kind="urban"):
    return layer([geom], [code], kind=[kind])


def row_of_cells(n=4, size=100.0):
    return [box(i * size, 0, (i + 1) * size, size) for i in range(n)]


def kinds(report, severity="error"):
    return report.by_type(severity)


def test_exact_tiling_is_clean():
    cells = row_of_cells()
    report = validate_coverage(layer(cells, parent_code=[COMMUNITY] * 4, worker=["a"] * 4,
                                     households=[200] * 4),
                               parents=parent(shapely.union_all(cells)))
    assert report.clean and report.problems == []


def test_gap_opening_onto_the_parent_outline_is_found_and_measured():
    cells = row_of_cells()
    cells[3] = box(300, 0, 400, 90)  # a 100 m x 10 m strip of the parent is left uncovered
    report = validate_coverage(layer(cells, parent_code=[COMMUNITY] * 4),
                               parents=parent(box(0, 0, 400, 100)))
    (gap,) = [p for p in report.problems if p.type == "gap"]
    assert gap.severity == "error" and gap.area_m2 == pytest.approx(1000, rel=1e-3)
    assert gap.codes[0] == COMMUNITY and f"{COMMUNITY}004" in gap.codes
    assert kinds(report) == {"gap": 1}


def test_enclosed_gap_without_parents():
    ring = box(0, 0, 300, 300).difference(box(100, 100, 200, 200))
    report = validate_coverage(layer([ring]))
    (gap,) = [p for p in report.problems if p.type == "gap"]
    assert gap.area_m2 == pytest.approx(10_000, rel=1e-3)


def test_overlap_pair_and_area():
    cells = [box(0, 0, 100, 100), box(90, 0, 200, 100)]
    report = validate_coverage(layer(cells))
    (overlap,) = [p for p in report.problems if p.type == "overlap"]
    assert overlap.codes == [f"{COMMUNITY}001", f"{COMMUNITY}002"]
    assert overlap.area_m2 == pytest.approx(1000, rel=1e-3)
    assert "overlap by 1000" in overlap.message.replace(",", "")


def test_sliver_overlap_is_a_warning_until_the_tolerance_is_lowered():
    cells = [box(0, 0, 100, 100), box(99.8, 0, 200, 100)]  # 0.2 m wide, 20 m²
    report = validate_coverage(layer(cells))
    assert kinds(report, "warning").get("overlap") == 1 and report.clean
    strict = validate_coverage(layer(cells), options=ValidationOptions(gap_width=0.1))
    assert kinds(strict) == {"overlap": 1}


def test_nested_duplicate_is_an_overlap_with_the_outer_polygon():
    cells = [box(0, 0, 300, 300), box(100, 100, 150, 150)]
    report = validate_coverage(layer(cells))
    (overlap,) = [p for p in report.problems if p.type == "overlap"]
    assert overlap.area_m2 == pytest.approx(2500, rel=1e-3)


def test_outside_parent_and_missing_parent():
    cells = [box(0, 0, 100, 100), box(100, 0, 230, 100), box(500, 500, 600, 600)]
    grids = layer(cells, parent_code=[COMMUNITY, COMMUNITY, "141002004999"])
    report = validate_coverage(grids, parents=parent(box(0, 0, 200, 100)))
    (outside,) = [p for p in report.problems if p.type == "outside_parent"]
    assert outside.codes == [f"{COMMUNITY}002", COMMUNITY]
    assert outside.area_m2 == pytest.approx(3000, rel=1e-3)
    (missing,) = [p for p in report.problems if p.type == "missing_parent"]
    assert missing.codes == [f"{COMMUNITY}003"] and "141002004999" in missing.message


def test_parents_found_by_location_without_parent_code():
    cells = row_of_cells(2)
    report = validate_coverage(layer(cells), parents=parent(box(0, 0, 200, 100)))
    assert report.clean


def test_layers_in_different_places_are_refused():
    far = layer([box(0, 0, 100, 100)]).to_crs(FRAME)
    far["geometry"] = far.translate(500_000, 0)
    with pytest.raises(LayersDisjoint, match="wrong CRS"):
        validate_coverage(layer(row_of_cells(1)), parents=far.to_crs("EPSG:4326"))


def test_codes_duplicate_malformed_and_not_under_parent():
    cells = row_of_cells(4)
    codes = [f"{COMMUNITY}001", f"{COMMUNITY}001", "14100200400", "141002004009001"]
    grids = layer(cells, codes, parent_code=[COMMUNITY] * 4)
    report = validate_coverage(grids, parents=parent(shapely.union_all(cells)))
    assert [p.codes for p in report.problems if p.type == "duplicate_code"] == [[f"{COMMUNITY}001"]]
    bad = {p.codes[0]: p.message for p in report.problems if p.type == "bad_code"}
    assert "11 digits" in bad["14100200400"]
    assert "does not start with its parent's code" in bad["141002004009001"]
    off = validate_coverage(grids, parents=parent(shapely.union_all(cells)),
                            options=ValidationOptions(check_codes=False))
    assert "bad_code" not in off.by_type() and "duplicate_code" in off.by_type()


def test_self_intersecting_and_empty_geometries():
    bowtie = Polygon([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    grids = layer([box(200, 0, 300, 100), bowtie, Polygon()])
    report = validate_coverage(grids)
    messages = {p.codes[0]: p.message for p in report.problems if p.type == "invalid_geometry"}
    assert len(messages) == 2
    assert "Self-intersection at 111.5" in messages[f"{COMMUNITY}002"]
    assert "empty geometry" in messages[f"{COMMUNITY}003"]


def test_split_building_and_households_from_buildings():
    cells = row_of_cells(2)
    buildings = layer([box(10, 10, 30, 30), box(90, 40, 110, 60), box(150, 10, 170, 30)],
                      ["B1", "B2", "B3"], households=[120, 60, 300])
    grids = layer(cells, parent_code=[COMMUNITY] * 2, worker=["a", "b"])
    report = validate_coverage(grids, parents=parent(box(0, 0, 200, 100)), buildings=buildings)
    (split,) = [p for p in report.problems if p.type == "split_building"]
    assert split.codes[0] == "B2" and sorted(split.codes[1:]) == [f"{COMMUNITY}001", f"{COMMUNITY}002"]
    assert split.area_m2 == pytest.approx(200, rel=1e-3)
    sizes = {p.codes[0]: p.extra["households"] for p in report.problems if p.type == "size_out_of_range"}
    # B2 is half in each grid: it counts where the tie falls, once. 120 (+60) and 300 (+60).
    assert sizes[f"{COMMUNITY}002"] in (300, 360)
    assert f"{COMMUNITY}001" not in sizes or sizes[f"{COMMUNITY}001"] == 120


def test_building_touching_a_border_is_not_split():
    buildings = layer([box(80, 10, 100, 30), box(99.9, 50, 120, 70)], ["B1", "B2"])
    report = validate_coverage(layer(row_of_cells(2)), buildings=buildings)
    assert "split_building" not in report.by_type()  # B2 has 0.5% across: under the 2% share


def test_size_rules_rural_dedicated_and_workers():
    cells = row_of_cells(4)
    grids = layer(cells, parent_code=[COMMUNITY] * 4, households=[50, 120, 900, np.nan],
                  kind=["basic", "basic", "dedicated", "basic"], worker=["a", "b", "", None])
    rural = validate_coverage(grids, parents=parent(shapely.union_all(cells), kind="rural"))
    assert [p.codes[0] for p in rural.problems if p.type == "size_out_of_range"] == [f"{COMMUNITY}002"]
    assert sorted(p.codes[0] for p in rural.problems if p.type == "no_worker") == \
        [f"{COMMUNITY}003", f"{COMMUNITY}004"]
    urban = validate_coverage(grids, parents=parent(shapely.union_all(cells), kind="urban"))
    assert sorted(p.codes[0] for p in urban.problems if p.type == "size_out_of_range") == \
        [f"{COMMUNITY}001", f"{COMMUNITY}002"]
    assert urban.clean  # size and worker problems are warnings


def test_hierarchy_checks_every_level():
    street = box(0, 0, 400, 200)
    communities = layer([box(0, 0, 200, 200), box(200, 0, 400, 200)],
                        ["141002004001", "141002004002"], parent_code=["141002004"] * 2,
                        kind=["urban"] * 2)
    grid_cells = [box(0, 0, 200, 100), box(0, 100, 200, 200), box(200, 0, 400, 200)]
    grids = layer(grid_cells, ["141002004001001", "141002004001002", "141002004002001"],
                  parent_code=["141002004001", "141002004001", "141002004002"])
    streets = layer([street.difference(box(390, 190, 400, 200))], ["141002004"],
                    parent_code=["141002"])
    district = layer([street], ["141002"])
    report = validate_hierarchy({"district": district, "street": streets,
                                 "community": communities, "grid": grids})
    assert report.counts == {"districts": 1, "streets": 1, "communities": 2, "grids": 3}
    (gap,) = [p for p in report.problems if p.type == "gap"]
    assert gap.level == "street" and gap.codes[0] == "141002"
    (outside,) = [p for p in report.problems if p.type == "outside_parent"]
    assert outside.level == "community" and outside.codes == ["141002004002", "141002004"]


# -- hypothesis: edge cases of geometry ---------------------------------------------------------

sizes = st.floats(min_value=5, max_value=500)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=sizes, height=sizes, cuts=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=6,
                                                 unique=True))
def test_any_strip_partition_of_a_box_is_clean(width, height, cuts):
    xs = [0.0, *sorted(c * width for c in cuts), width]
    cells = [box(a, 0, b, height) for a, b in zip(xs, xs[1:]) if b - a > 1e-6]
    report = validate_coverage(layer(cells, parent_code=[COMMUNITY] * len(cells)),
                               parents=parent(box(0, 0, width, height)))
    assert report.clean, report.to_dict()


@settings(max_examples=40, deadline=None)
@given(width=sizes, hole=st.floats(0.1, 0.8))
def test_grid_with_hole_plus_grid_filling_it_is_clean_and_without_filler_a_gap(width, hole):
    inner = box(0, 0, width * hole, width * hole)
    inner = shapely.affinity.translate(inner, width * (1 - hole) / 2, width * (1 - hole) / 2)
    outer = box(0, 0, width, width).difference(inner)
    full = validate_coverage(layer([outer, inner], parent_code=[COMMUNITY] * 2),
                             parents=parent(box(0, 0, width, width)))
    assert full.clean
    holed = validate_coverage(layer([outer], parent_code=[COMMUNITY]),
                              parents=parent(box(0, 0, width, width)))
    gaps = [p for p in holed.problems if p.type == "gap"]
    assert sum(p.area_m2 for p in gaps) == pytest.approx(inner.area, rel=1e-3)


@settings(max_examples=30, deadline=None)
@given(size=sizes)
def test_grid_equal_to_its_parent_is_clean_and_multipolygon_parts_count(size):
    whole = box(0, 0, size, size)
    assert validate_coverage(layer([whole], parent_code=[COMMUNITY]), parents=parent(whole)).clean
    left, right = box(0, 0, size / 3, size), box(2 * size / 3, 0, size, size)
    middle = box(size / 3, 0, 2 * size / 3, size)
    grids = layer([MultiPolygon([left, right]), middle], parent_code=[COMMUNITY] * 2)
    assert validate_coverage(grids, parents=parent(whole)).clean


@settings(max_examples=30, deadline=None)
@given(size=sizes)
def test_grids_touching_at_a_point_leave_the_rest_as_gaps(size):
    cells = [box(0, 0, size, size), box(size, size, 2 * size, 2 * size)]
    report = validate_coverage(layer(cells, parent_code=[COMMUNITY] * 2),
                               parents=parent(box(0, 0, 2 * size, 2 * size)))
    assert "overlap" not in report.by_type()
    gaps = [p for p in report.problems if p.type == "gap"]
    assert sum(p.area_m2 for p in gaps) == pytest.approx(2 * size * size, rel=1e-3)


@settings(max_examples=30, deadline=None)
@given(size=sizes, thin=st.floats(0.01, 0.3))
def test_zero_area_and_hairline_slivers_never_become_errors(size, thin):
    cells = [box(0, 0, size, size), box(size + thin, 0, 2 * size, size)]
    report = validate_coverage(layer(cells, parent_code=[COMMUNITY] * 2),
                               parents=parent(box(0, 0, 2 * size, size)))
    assert report.clean
    gaps = [p for p in report.problems if p.type == "gap"]
    assert len(gaps) == 1 and gaps[0].severity == "warning"
    assert gaps[0].area_m2 == pytest.approx(thin * size, rel=1e-2)
