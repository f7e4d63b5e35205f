"""The lookup API over a real GeoPackage store: the contract of DESIGN.md §4, and bad input."""

from __future__ import annotations

import contextlib
import io

import pytest
import shapely
from fastapi.testclient import TestClient

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
    with contextlib.ExitStack() as stack:
        if request.param == "postgis":
            from pg import fresh_database

            url = stack.enter_context(fresh_database(request.getfixturevalue("postgis_url")))
        else:
            url = str(tmp_path_factory.mktemp("store") / "gridmap.gpkg")
        store = open_store(url)
        load_into(store)
        store.close()
        settings = Settings()
        settings.store.url = url
        settings.lookup.batch_limit = 500
        with TestClient(create_app(settings)) as c:
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
