"""The lookup API over a real GeoPackage store: the contract of DESIGN.md §4, and bad input."""

from __future__ import annotations

import contextlib
import io

import pytest
import shapely
from fastapi.testclient import TestClient
from serving import app_client, demo_store_url

from api.app import create_app
from gridmap.config import Settings
from gridmap.crs import wgs84_to_gcj02
from gridmap.demo import load_into
from gridmap.io import read_layer
from gridmap.demo import DEMO
from gridmap.store import open_store


@pytest.fixture(scope="module")
def grids():
    return read_layer(DEMO, layer="grid")


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def client(request, tmp_path_factory):
    """The service over each store: the same answers from a GeoPackage and from PostGIS."""
    with demo_store_url(request.param, request, tmp_path_factory.mktemp("store")) as url, \
            app_client(url, lookup={"batch_limit": 500}) as c:
        yield c


def inside(grids, i):
    p = shapely.point_on_surface(grids.geometry.iloc[i])
    return p.x, p.y


def test_get_lookup_answers_the_chain_worker_and_version(client, grids):
    lon, lat = inside(grids, 0)
    body = client.get("/lookup", params={"lon": lon, "lat": lat}).json()
    row = grids.iloc[0]
    assert body["grid"]["code"] == row["code"] and body["grid"]["worker"] == row["worker"]
    assert body["community"]["code"] == row["parent_code"]
    assert body["street"]["code"] == row["code"][:9] and body["district"]["code"] == "141002"
    assert body["city"]["code"] == "141000"
    assert body["version"] == 1 and isinstance(body["near_boundary"], bool)


def test_gcj02_point_finds_the_same_grid(client, grids):
    lon, lat = inside(grids, 10)
    glon, glat = wgs84_to_gcj02(lon, lat)
    wgs = client.get("/lookup", params={"lon": lon, "lat": lat}).json()
    gcj = client.get("/lookup", params={"lon": float(glon), "lat": float(glat), "crs": "gcj02"})
    assert gcj.json()["grid"]["code"] == wgs["grid"]["code"]


def test_point_in_no_grid_is_404_naming_the_nearest(client):
    answer = client.get("/lookup", params={"lon": 110.0, "lat": 36.0})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["nearest"] and body["distance_m"] > 1000 and "nearest" in body["detail"]


@pytest.mark.parametrize("params,status,words", [
    ({"lon": 36.08, "lat": 111.52}, 422, "swapped"),
    ({"lon": "nan", "lat": 36.0}, 422, ""),
    ({"lon": 111.5, "lat": 36.0, "crs": "mars"}, 422, "crs"),
    ({"lon": "abc", "lat": 36.0}, 422, "lon"),
    ({"lat": 36.0}, 422, "lon"),
    ({"lon": 111.5, "lat": 36.0, "version": 7}, 404, "version"),
])
def test_bad_points_are_4xx_problems(client, params, status, words):
    answer = client.get("/lookup", params=params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert words.lower() in answer.json()["detail"].lower()


def test_post_lookup_json_geojson_and_csv(client, grids):
    pts = [inside(grids, i) for i in range(20)]
    expected = list(grids["code"].iloc[:20])
    as_pairs = client.post("/lookup", json={"points": [list(p) for p in pts]}).json()
    assert [r["grid"]["code"] for r in as_pairs["results"]] == expected
    objects = client.post("/lookup", json=[{"id": f"p{i}", "lon": x, "lat": y}
                                           for i, (x, y) in enumerate(pts)]).json()
    assert objects["results"][3]["id"] == "p3"
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": i, "geometry": {"type": "Point", "coordinates": list(p)},
         "properties": {}} for i, p in enumerate(pts)]}
    assert [r["grid"]["code"] for r in client.post("/lookup", json=fc).json()["results"]] == expected
    csv = "id,lon,lat\n" + "".join(f"{i},{x},{y}\n" for i, (x, y) in enumerate(pts)) + "x,110.0,36.0\n"
    answer = client.post("/lookup", content=csv, headers={"content-type": "text/csv"}).json()
    assert answer["count"] == 21 and answer["found"] == 20
    miss = answer["results"][-1]
    assert miss["grid"] is None and miss["nearest"]["code"] and miss["nearest"]["distance_m"] > 0


def test_post_lookup_limits_and_bad_bodies(client):
    too_many = client.post("/lookup", json={"points": [[111.5, 36.0]] * 501})
    assert too_many.status_code == 413 and "500" in too_many.json()["detail"]
    assert client.post("/lookup", content=b"{not json").status_code == 400
    assert client.post("/lookup", json={"points": [["a", 1]]}).status_code == 422
    assert client.post("/lookup", content=b"x", headers={"content-type": "image/png"}).status_code == 415
    huge = io.BytesIO(b" " * (17 * 1024 * 1024))
    assert client.post("/lookup", content=huge.getvalue()).status_code == 413


def test_openapi_describes_every_route(client):
    spec = client.get("/openapi.json").json()
    for path in ("/lookup", "/collections", "/collections/{collection_id}/items",
                 "/collections/{collection_id}/items/{code}", "/conformance", "/"):
        assert path in spec["paths"], path
    assert "404" in spec["paths"]["/lookup"]["get"]["responses"]
    assert "Problem" in spec["components"]["schemas"]


# -- the fast path (api/fastpath.py): plain GET /lookup answered in front of the framework ------


@contextlib.contextmanager
def app_calls(app):
    """The paths of the requests that reach the FastAPI application behind the fast path."""
    from api.fastpath import FastLookup

    stack = app.middleware_stack
    assert isinstance(stack, FastLookup)
    inner, seen = stack.app, []

    async def spy(scope, receive, send):
        if scope["type"] == "http":
            seen.append(scope["path"])
        await inner(scope, receive, send)

    stack.app = spy
    try:
        yield seen
    finally:
        stack.app = inner


def edge_points(grids, n):
    """Midpoints of the first grids' edges: on or within an ulp of a shared edge (neighbours)."""
    ring = shapely.get_coordinates(shapely.get_exterior_ring(grids.geometry.values[:n]))
    return [tuple(p) for p in ((ring[1:] + ring[:-1]) / 2)[::7]]


def test_fast_path_answers_as_the_route_does_byte_for_byte(client, grids):
    points = [inside(grids, i) for i in range(0, 200, 9)] + edge_points(grids, 10)
    fast_ones = near = 0
    for lon, lat in points:
        for crs in (None, "gcj02"):
            x, y = (lon, lat) if crs is None else map(float, wgs84_to_gcj02(lon, lat))
            params = {"lon": x, "lat": y} | ({"crs": crs} if crs else {})
            with app_calls(client.app) as seen:
                route = client.get("/lookup", params=params | {"version": 1})
            assert seen == ["/lookup"]
            with app_calls(client.app) as seen:
                fast = client.get("/lookup", params=params)
            if route.status_code == 404:  # an edge point just outside once unshifted
                assert seen == ["/lookup"] and fast.content == route.content
                continue
            assert seen == [], "a plain lookup in a grid is the fast path's"
            assert fast.status_code == route.status_code == 200
            assert fast.content == route.content
            assert fast.headers.multi_items() == route.headers.multi_items()
            fast_ones += 1
            near += fast.json()["near_boundary"]
    assert fast_ones > 0.9 * 2 * len(points) and near > 5


@pytest.mark.parametrize("query", [
    "lon=110.0&lat=36.0",                       # in no grid: the route's 404 names the nearest
    "lat=36.0", "lon=111.5", "lon=&lat=36.0",   # missing or blank
    "lon=abc&lat=36.0", "lon=nan&lat=36.0", "lon=1_11.5&lat=36.0", "lon=inf&lat=36.0",
    "lon=36.08&lat=111.52",                     # out of range (swapped)
    "lon=111.5&lat=36.0&crs=mars", "lon=111.5&lat=36.0&crs=",
    "lon=111.5&lat=36.0&version=1", "lon=111.5&lat=36.0&date=2020-01-01",
    "lon=111.5&lat=36.0&lon=111.6", "lon=111.5&lat=36.0&extra=1",
])
def test_everything_else_goes_to_the_route(client, query):
    with app_calls(client.app) as seen:
        answer = client.get("/lookup?" + query)
    assert seen == ["/lookup"]
    assert answer.status_code in (200, 404, 422), answer.text
    if answer.status_code != 200:
        assert answer.headers["content-type"] == "application/problem+json"


def test_other_routes_and_requests_with_a_body_go_to_the_app(client, grids):
    lon, lat = inside(grids, 0)
    with app_calls(client.app) as seen:
        assert client.get("/conformance").status_code == 200
        assert client.post("/lookup", json={"points": [[lon, lat]]}).status_code == 200
        assert client.request("GET", "/lookup", params={"lon": lon, "lat": lat},
                              content=b"{}").status_code == 200
        assert client.head("/lookup", params={"lon": lon, "lat": lat}).status_code == 405
    assert seen == ["/conformance", "/lookup", "/lookup", "/lookup"]


def test_fast_path_follows_a_new_publication(tmp_path, grids):
    """The background refresh of the active version (api/service.py) drives the fast path too:
    a published version answers once its index is built, without a request waiting for it."""
    import time

    url = str(tmp_path / "gridmap.gpkg")
    store = open_store(url)
    load_into(store)
    store.close()
    settings = Settings()
    settings.store.url = url
    lon, lat = inside(grids, 5)
    with TestClient(create_app(settings)) as c:
        c.app.state.service.active_ttl = 0.05
        with app_calls(c.app) as seen:
            assert c.get("/lookup", params={"lon": lon, "lat": lat}).json()["version"] == 1
        assert seen == []
        writer = open_store(url)
        load_into(writer, note="again")
        writer.close()
        deadline, versions = time.monotonic() + 60, set()
        with app_calls(c.app) as seen:
            while time.monotonic() < deadline and 2 not in versions:
                answer = c.get("/lookup", params={"lon": lon, "lat": lat})
                assert answer.status_code == 200
                versions.add(answer.json()["version"])
                time.sleep(0.02)
        assert versions <= {1, 2} and 2 in versions
        assert seen == []  # no request waited in the route for the store or the build
