"""Point → grid lookup: the demo city, hand-made shared edges, real Shanghai points, CSV streaming."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridmap.crs import local_metric_crs, wgs84_to_bd09, wgs84_to_gcj02
from gridmap.errors import CoordinatesOutOfRange, CRSUnknown, FileUnreadable, PointOutsideGrids
from gridmap.io import read_layer
from gridmap.lookup import LookupIndex, lookup_points

from conftest import ROOT

DEMO = ROOT / "boundaries" / "demo.gpkg"
LEVELS = ("city", "district", "street", "community", "grid")


@pytest.fixture(scope="module")
def layers():
    return {level: read_layer(DEMO, layer=level) for level in LEVELS}


@pytest.fixture(scope="module")
def index(layers):
    return LookupIndex.build(layers, version=7)


@pytest.fixture(scope="module")
def grids(layers):
    return layers["grid"]


def brute_force(grids, x, y):
    """The rule, the slow way: the lowest code among the grids whose closed polygon holds the point."""
    tree = shapely.STRtree(grids.geometry.values)
    pt, g = tree.query(shapely.points(x, y), predicate="intersects")
    out = np.full(len(x), None, dtype=object)
    codes = grids["code"].to_numpy(dtype=object)
    for i, code in sorted(zip(pt, codes[g]), key=lambda p: (p[0], p[1]), reverse=True):
        out[i] = code  # the lowest code is written last
    return out


def single(index, x, y, crs="wgs84"):
    """The code :meth:`answer` gives, None for a point in no grid."""
    try:
        return index.answer(x, y, crs=crs)["grid"]["code"]
    except PointOutsideGrids:
        return None


# -- the demo city --------------------------------------------------------------------------------


def test_point_on_surface_of_every_grid_finds_that_grid(index, grids):
    pos = shapely.point_on_surface(grids.geometry.values)
    loc = index.locate(shapely.get_x(pos), shapely.get_y(pos))
    assert (loc.grid == np.arange(len(grids))).all()
    assert (loc.distance_to_edge_m > 0).all() and (loc.nearest == -1).all()


def test_chain_codes_are_prefixes(index, grids):
    pos = shapely.point_on_surface(grids.geometry.values[::37])
    for answer in index.answer_many(shapely.get_x(pos), shapely.get_y(pos)):
        code = answer["grid"]["code"]
        assert answer["community"]["code"] == code[:12]
        assert answer["street"]["code"] == code[:9]
        assert answer["district"]["code"] == code[:6] == "141002"
        assert answer["city"]["code"] == "141000"
        assert answer["version"] == 7 and answer["grid"]["worker"]


def test_answer_has_the_http_shape(index, grids):
    p = shapely.point_on_surface(grids.geometry.values[100])
    answer = index.answer(p.x, p.y)
    assert set(answer) >= {"grid", "community", "street", "district", "city", "version",
                           "near_boundary", "neighbour", "distance_to_edge_m", "lon", "lat"}
    assert set(answer["grid"]) == {"code", "name", "kind", "worker"}
    assert set(answer["community"]) == {"code", "name"}
    assert answer["lon"] == p.x and answer["lat"] == p.y


def test_point_outside_names_the_nearest_grid_and_its_distance(index, grids, layers):
    district = layers["district"].geometry.iat[0]
    xy = shapely.get_coordinates(district)
    west = xy[xy[:, 0].argmin()]
    lon, lat = west[0] - 0.02, west[1]  # ~1.8 km west of the district's westmost vertex
    with pytest.raises(PointOutsideGrids) as caught:
        index.answer(lon, lat)
    crs = local_metric_crs(grids.geometry.values)
    metric = grids.to_crs(crs)
    here = shapely.Point(pyproj.Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat))
    distances = metric.distance(here)
    assert caught.value.nearest == grids["code"].iat[int(distances.argmin())]
    assert caught.value.distance_m == pytest.approx(distances.min(), abs=0.1)
    assert 1000 < caught.value.distance_m < 2500
    assert f"no grid at {lon:.4f}, {lat:.4f}; the nearest is {caught.value.nearest} (" in str(caught.value)
    assert index.answer_many([lon], [lat]) == [None]


def shared_vertices(grids):
    xy, which = shapely.get_coordinates(grids.geometry.values, return_index=True)
    table = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "g": which}).drop_duplicates()
    counts = table.groupby(["x", "y"]).size()
    return np.array(counts[counts >= 2].index.tolist())


def test_shared_vertices_get_the_lowest_code_every_time(index, grids):
    xy = shared_vertices(grids)
    assert len(xy) > 1000
    expected = brute_force(grids, xy[:, 0], xy[:, 1])
    first = index.grid_codes(index.locate(xy[:, 0], xy[:, 1]).grid)
    assert (first == expected).all()
    assert (index.grid_codes(index.locate(xy[::-1, 0], xy[::-1, 1]).grid)[::-1] == first).all()
    for (x, y), code in list(zip(xy, first))[::50]:
        assert single(index, x, y) == code


def test_points_on_shared_edges_agree_with_the_rule(index, grids):
    g = grids.geometry.values
    xy = shapely.get_coordinates(shapely.get_exterior_ring(g[:400]), return_index=True)
    coords, ring = xy
    same = ring[1:] == ring[:-1]
    mid = ((coords[1:] + coords[:-1]) / 2)[same]  # on the edge, or within an ulp of it
    expected = brute_force(grids, mid[:, 0], mid[:, 1])
    batch = index.grid_codes(index.locate(mid[:, 0], mid[:, 1]).grid)
    assert (batch == expected).all()
    assert [single(index, x, y) for x, y in mid[:80]] == list(batch[:80])


def squares():
    """Four unit squares meeting at (1, 1); codes chosen so the lowest is not the first row."""
    import geopandas as gpd
    boxes = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(0, 1, 1, 2),
             shapely.box(1, 1, 2, 2)]
    codes = ["141002004003004", "141002004003002", "141002004003003", "141002004003001"]
    return gpd.GeoDataFrame({"code": codes, "name": list("ABCD")}, geometry=boxes, crs=4326)


@pytest.mark.parametrize(("x", "y", "code"), [
    (1.0, 1.0, "141002004003001"),   # the vertex of all four
    (1.0, 0.5, "141002004003002"),   # the edge of SW (…004) and SE (…002)
    (0.5, 1.0, "141002004003003"),   # SW (…004) and NW (…003)
    (1.5, 1.0, "141002004003001"),   # SE (…002) and NE (…001)
    (1.0, 1.5, "141002004003001"),   # NW (…003) and NE (…001)
    (1.0, 0.0, "141002004003002"),   # on the outer border, two grids
    (0.25, 0.25, "141002004003004"),
])
def test_shared_edge_rule_lowest_code(x, y, code):
    index = LookupIndex.build({"grid": squares()})
    assert index.answer(x, y)["grid"]["code"] == code
    assert index.grid_codes(index.locate([x, 0.5], [y, 0.5]).grid)[0] == code


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=200))
def test_random_points_match_brute_force(index, grids, fractions):
    minx, miny, maxx, maxy = grids.total_bounds
    f = np.array(fractions)
    x, y = minx + f[:, 0] * (maxx - minx), miny + f[:, 1] * (maxy - miny)
    assert (index.grid_codes(index.locate(x, y).grid) == brute_force(grids, x, y)).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2121), st.integers(0, 400), st.floats(0.0, 1.0))
def test_points_along_edges_are_deterministic(index, grids, g, k, t):
    ring = shapely.get_coordinates(shapely.get_exterior_ring(grids.geometry.values[g]))
    a, b = ring[k % (len(ring) - 1)], ring[k % (len(ring) - 1) + 1]
    x, y = a + t * (b - a)
    code = single(index, x, y)
    assert code == index.grid_codes(index.locate([x, x], [y, y]).grid)[1]
    assert code == brute_force(grids, np.array([x]), np.array([y]))[0]


def test_near_boundary_within_30_m_of_a_shared_edge(index, grids):
    crs = local_metric_crs(grids.geometry.values)
    fwd = pyproj.Transformer.from_crs(4326, crs, always_xy=True)
    back = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    checked = 0
    for g in range(0, len(grids), 97):
        ring = np.column_stack(fwd.transform(*shapely.get_coordinates(
            grids.geometry.values[g].exterior).T))
        a, b = ring[0], ring[1]
        if np.hypot(*(b - a)) < 80:
            continue
        mid, normal = (a + b) / 2, np.array([-(b - a)[1], (b - a)[0]]) / np.hypot(*(b - a))
        sides = [back.transform(*(mid + s * normal)) for s in (-12.0, 12.0, -0.5, 0.5)]
        loc = index.locate([p[0] for p in sides], [p[1] for p in sides])
        if g not in loc.grid[:2]:
            continue
        inside = 0 if loc.grid[0] == g else 1
        across = loc.grid[3 - inside]
        if across < 0:  # the district's outer border: no neighbour, not near
            assert not loc.near_boundary[inside]
            continue
        assert loc.near_boundary[inside] and loc.neighbour[inside] == across
        assert loc.neighbour_distance_m[inside] == pytest.approx(12.0, abs=0.3)
        assert loc.distance_to_edge_m[inside] <= 12.3
        checked += 1
    assert checked >= 10


def test_not_near_boundary_at_the_centre_of_a_big_grid(index, grids):
    crs = local_metric_crs(grids.geometry.values)
    big = int(grids.to_crs(crs).area.argmax())
    centre = shapely.maximum_inscribed_circle(grids.geometry.values[big]).coords[0]
    answer = index.answer(*centre)
    assert answer["grid"]["code"] == grids["code"].iat[big]
    assert answer["near_boundary"] is False and answer["neighbour"] is None
    edge = grids.to_crs(crs).geometry.iat[big].boundary.distance(
        shapely.Point(pyproj.Transformer.from_crs(4326, crs, always_xy=True).transform(*centre)))
    assert answer["distance_to_edge_m"] == pytest.approx(edge, abs=0.05) and edge > 100


@pytest.mark.parametrize(("crs", "shift"), [("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09),
                                            ("EPSG:4490", lambda x, y: (x, y))])
def test_shifted_input_finds_the_same_grid(index, grids, crs, shift):
    pos = shapely.point_on_surface(grids.geometry.values)
    x, y = shapely.get_x(pos), shapely.get_y(pos)
    sx, sy = shift(x, y)
    loc = index.locate(sx, sy, crs=crs)
    assert (loc.grid == np.arange(len(grids))).all()
    assert np.abs(loc.lon - x).max() < 1e-7 and np.abs(loc.lat - y).max() < 1e-7
    assert index.answer(float(sx[3]), float(sy[3]), crs=crs)["grid"]["code"] == grids["code"].iat[3]


@pytest.mark.parametrize(("lon", "lat"), [(np.nan, 36.1), (111.5, np.inf), (200.0, 36.1),
                                          (111.5, -95.0)])
def test_bad_coordinates_are_refused(index, lon, lat):
    with pytest.raises(CoordinatesOutOfRange, match=r"point #2 "):
        index.locate([111.5, lon], [36.1, lat])


def test_swapped_coordinates_get_a_hint(index):
    with pytest.raises(CoordinatesOutOfRange, match="swapped"):
        index.answer(36.1, 111.5)


def test_unknown_crs(index):
    with pytest.raises(CRSUnknown):
        index.answer(111.5, 36.1, crs="mars")


# -- real data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shanghai():
    from conftest import need
    streets = read_layer(need("shanghai_streets/shanghai_street.shp"), crs="wgs84")
    names = pd.read_csv(need("shanghai_streets/DERIVED_inferred_names.csv"))
    streets["code"] = [f"{i:03d}" for i in range(len(streets))]
    streets["name"] = names.set_index("fid")["majority_label"].reindex(range(len(streets))).to_numpy()
    points = pd.read_csv(need("shanghai_case_points/geo.csv"))
    return LookupIndex.build({"grid": streets}), streets, points


def test_shanghai_gcj02_points_land_in_their_labelled_street(shanghai):
    index, streets, points = shanghai
    assert len(points) == 26_105
    loc = index.locate(points["gcj02_lng"], points["gcj02_lat"], crs="gcj02")
    names = np.where(loc.grid >= 0, streets["name"].to_numpy(dtype=object)[loc.grid], None)
    share = (names == points["street_level"].to_numpy(dtype=object)).mean()
    assert share >= 0.95, f"{share:.2%} of points in their labelled street"
    # GCJ-02 converted properly lands where the WGS84 column does (that one is 1-2 m off).
    wgs = index.locate(points["wgs84_lng"], points["wgs84_lat"])
    assert (wgs.grid == loc.grid).mean() > 0.995


def test_shanghai_batch_equals_single(shanghai):
    index, _, points = shanghai
    sample = points.sample(150, random_state=3)
    x, y = sample["gcj02_lng"].to_numpy(), sample["gcj02_lat"].to_numpy()
    batch = index.answer_many(x, y, crs="gcj02")
    for xi, yi, b in zip(x, y, batch):
        try:
            single = index.answer(xi, yi, crs="gcj02")
        except PointOutsideGrids:
            single = None
        assert single == b


# -- CSV streaming --------------------------------------------------------------------------------


def test_csv_of_50k_points_round_trips(index, grids, tmp_path):
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = grids.total_bounds
    n = 50_000
    frame = pd.DataFrame({
        "id": np.arange(n).astype(str),
        "Lng": np.round(rng.uniform(minx, maxx, n), 7).astype(str),
        "note": rng.choice(["a, quoted", "NA", "", "网格"], n),
        "LAT": np.round(rng.uniform(miny, maxy, n), 7).astype(str),
    })
    source, out = tmp_path / "points.csv", tmp_path / "out.csv"
    frame.to_csv(source, index=False)
    seen = []
    rows = lookup_points(index, source, out, chunksize=7_000, progress=seen.append)
    assert rows == n and seen[-1] == n and len(seen) == 8
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(back.columns) == ["id", "Lng", "note", "LAT", "grid_code", "near_boundary"]
    pd.testing.assert_frame_equal(back[frame.columns], frame)
    codes = index.grid_codes(index.locate(frame["Lng"].astype(float), frame["LAT"].astype(float)).grid)
    assert (back["grid_code"].to_numpy() == np.where(codes == None, "", codes)).all()  # noqa: E711
    assert 0 < (back["grid_code"] == "").mean() < 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_csv_bad_row_is_named_and_nothing_is_written(index, tmp_path):
    source, out = tmp_path / "points.csv", tmp_path / "out.csv"
    source.write_text("lon,lat\n111.5,36.1\n111.5,36.1\n111.5,abc\n")
    with pytest.raises(FileUnreadable, match=r"points.csv row 3: lon/lat is not a number"):
        lookup_points(index, source, out, chunksize=2)
    assert list(tmp_path.iterdir()) == [source]
    source.write_text("longitude,latitude\n111.5,36.1\n36.1,111.5\n")
    with pytest.raises(CoordinatesOutOfRange, match=r"points.csv row 2 "):
        lookup_points(index, source, out)


# -- the batch path: distances only where a shared edge may be near ------------------------------


def test_batch_path_skips_distances_but_answers_the_same(index, grids):
    rng = np.random.default_rng(11)
    minx, miny, maxx, maxy = grids.total_bounds
    x, y = rng.uniform(minx, maxx, 200_000), rng.uniform(miny, maxy, 200_000)
    full, fast = index.locate(x, y), index.locate(x, y, distances=False)
    for field in ("grid", "near_boundary", "neighbour", "nearest"):
        assert (getattr(full, field) == getattr(fast, field)).all(), field
    for field in ("neighbour_distance_m", "nearest_distance_m"):
        assert np.array_equal(getattr(full, field), getattr(fast, field), equal_nan=True), field
    measured = ~np.isnan(fast.distance_to_edge_m)
    assert (fast.distance_to_edge_m[measured] == full.distance_to_edge_m[measured]).all()
    skipped = (fast.grid >= 0) & ~measured
    assert skipped.sum() > 0.5 * (fast.grid >= 0).sum() and not fast.near_boundary[skipped].any()
    assert full.distance_to_edge_m[skipped].min() > 0  # the skipped ones are just not asked


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2121), st.integers(0, 400), st.floats(0.0, 1.0),
       st.floats(-45.0, 45.0))
def test_batch_path_near_edges_matches_full(index, grids, g, k, t, off):
    """Points around near_m off an edge, the hard case for the near raster, answer the same."""
    fwd = index.to_metric
    ring = shapely.get_coordinates(shapely.get_exterior_ring(grids.geometry.values[g]))
    a, b = ring[k % (len(ring) - 1)], ring[k % (len(ring) - 1) + 1]
    (ax, bx), (ay, by) = fwd.transform([a[0], b[0]], [a[1], b[1]])
    d = np.array([bx - ax, by - ay])
    if np.hypot(*d) < 1e-6:
        return
    normal = np.array([-d[1], d[0]]) / np.hypot(*d)
    steps = off + np.array([-2.0, -1.0, -0.01, 0.0, 0.01, 1.0, 2.0])
    steps = np.r_[steps, -steps, 30.0 - 1e-3, 30.0, 30.0 + 1e-3, -30.0]
    px, py = ax + t * d[0] + steps * normal[0], ay + t * d[1] + steps * normal[1]
    lon, lat = pyproj.Transformer.from_crs(index.metric, 4326, always_xy=True).transform(px, py)
    full, fast = index.locate(lon, lat), index.locate(lon, lat, distances=False)
    assert (full.near_boundary == fast.near_boundary).all()
    assert (full.neighbour == fast.neighbour).all()


def test_records_null_the_distance_the_batch_path_skipped(index, grids):
    crs = local_metric_crs(grids.geometry.values)
    big = int(grids.to_crs(crs).area.argmax())
    x, y = shapely.maximum_inscribed_circle(grids.geometry.values[big]).coords[0]
    record = index.records(index.locate([x], [y], distances=False))[0]
    assert record["grid"]["code"] == grids["code"].iat[big]
    assert record["distance_to_edge_m"] is None and record["near_boundary"] is False
    assert index.records(index.locate([x], [y]))[0]["distance_to_edge_m"] > 100


def test_grid_codes_only_path_agrees_with_locate(index, grids, tmp_path):
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = grids.total_bounds
    lon, lat = rng.uniform(minx, maxx, 20_000), rng.uniform(miny, maxy, 20_000)
    assert np.array_equal(index.which(lon, lat), index.locate(lon, lat).grid)
    source = pd.DataFrame({"lon": lon, "lat": lat})
    lookup_points(index, source, tmp_path / "near.csv")
    lookup_points(index, source, tmp_path / "codes.csv", near=False)
    near = pd.read_csv(tmp_path / "near.csv", dtype=str, keep_default_na=False)
    codes = pd.read_csv(tmp_path / "codes.csv", dtype=str, keep_default_na=False)
    assert "near_boundary" not in codes.columns
    assert list(codes["grid_code"]) == list(near["grid_code"])


# -- the scalar path: answer() without arrays gives what the vectorized path gives ---------------


def _same_answer(one, batch):
    """Field by field, distances within 1e-6 m (they are the same float32 pass, so equal)."""
    assert one.keys() == batch.keys() and list(one) == list(batch)
    for key in one:
        a, b = one[key], batch[key]
        if key == "neighbour" and a is not None and b is not None:
            assert {k: v for k, v in a.items() if k != "distance_m"} == \
                   {k: v for k, v in b.items() if k != "distance_m"}
            assert a["distance_m"] == pytest.approx(b["distance_m"], abs=1e-6)
        elif key == "distance_to_edge_m" and a is not None and b is not None:
            assert a == pytest.approx(b, abs=1e-6)
        else:
            assert a == b, key
            assert type(a) is type(b), key


def test_scalar_answer_equals_the_vectorized_records(index, grids):
    rng = np.random.default_rng(23)
    minx, miny, maxx, maxy = grids.total_bounds
    pad = 0.01
    lon = rng.uniform(minx - pad, maxx + pad, 2_000)
    lat = rng.uniform(miny - pad, maxy + pad, 2_000)
    # … and points the raster cannot settle alone: shared vertices and points on the edges.
    vertices = shared_vertices(grids)[::40]
    ring = shapely.get_coordinates(shapely.get_exterior_ring(grids.geometry.values[:60]))
    mid = (ring[1:] + ring[:-1]) / 2
    lon = np.r_[lon, vertices[:, 0], mid[:, 0]]
    lat = np.r_[lat, vertices[:, 1], mid[:, 1]]
    batch = index.records(index.locate(lon, lat))
    inside = outside = 0
    for x, y, expected in zip(lon.tolist(), lat.tolist(), batch):
        try:
            one = index.answer(x, y)
        except PointOutsideGrids as miss:
            outside += 1
            assert expected["grid"] is None
            assert miss.nearest == expected["nearest"]["code"]
            assert miss.distance_m == expected["nearest"]["distance_m"]
            assert index.find(x, y) is None
            continue
        inside += 1
        _same_answer(one, expected)
        assert index.find(x, y) == one
    assert inside > 1_000 and outside > 10
    near = [r for r in batch if r["grid"] is not None and r["near_boundary"]]
    assert len(near) > 100  # the neighbour branch is exercised too


@pytest.mark.parametrize("crs", ["wgs84", "WGS-84", "EPSG:4326", "cgcs2000", "gcj02", "bd09"])
def test_scalar_answer_in_other_crs_equals_the_vectorized_records(index, grids, crs):
    rng = np.random.default_rng(29)
    minx, miny, maxx, maxy = grids.total_bounds
    lon, lat = rng.uniform(minx, maxx, 200), rng.uniform(miny, maxy, 200)
    if crs == "gcj02":
        lon, lat = wgs84_to_gcj02(lon, lat)
    elif crs == "bd09":
        lon, lat = wgs84_to_bd09(lon, lat)
    batch = index.records(index.locate(lon, lat, crs=crs))
    for x, y, expected in zip(lon.tolist(), lat.tolist(), batch):
        one = index.find(x, y, crs=crs)
        if expected["grid"] is None:
            assert one is None
        else:
            _same_answer(one, expected)


@pytest.mark.parametrize("lon,lat", [(float("nan"), 36.0), (36.08, 111.52), (181.0, 36.0),
                                     ("abc", 36.0), (np.float32(111.5), 36.0)])
def test_scalar_answer_raises_what_the_vectorized_path_raises(index, lon, lat):
    try:
        index.locate(lon, lat)
    except Exception as exc:  # noqa: BLE001 - the same type and message, whatever it is
        with pytest.raises(type(exc)) as caught:
            index.answer(lon, lat)
        assert str(caught.value) == str(exc)
    else:
        assert isinstance(lon, np.floating)  # a float32 point is fine: it is looked up
        assert index.find(lon, lat) == index.records(index.locate(lon, lat))[0] or \
            index.find(lon, lat) is None
