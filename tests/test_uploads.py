"""``POST /imports``: real boundary files become plans; files too large or malformed are refused
quickly, with a problem that says what and where, and nothing is written.

Every file is real: built in tmp_path from the demo city, the Providence blocks, or numpy (zip
bombs, deep JSON, a polygon of a million vertices).
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile

import httpx
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from api.app import create_app
from gridmap.config import Settings
from gridmap.demo import DEMO
from gridmap.io import read_layer
from gridmap.store import open_store
from gridmap.uploads import json_depth
from serving import demo_store, serving

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def grids():
    return read_layer(DEMO, layer="grid")


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    return str(demo_store(tmp_path_factory.mktemp("uploads")))


def _client(store_url, **uploads):
    settings = Settings()
    settings.store.url = store_url
    for name, value in uploads.items():
        setattr(settings.uploads, name, value)
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(store_url):
    with _client(store_url) as c:
        yield c


def _versions(store_url) -> list:
    store = open_store(store_url)
    try:
        return [(v.id, v.status) for v in store.versions()]
    finally:
        store.close()


def send(client, path, name, level="grid", **form):
    with open(path, "rb") as f:
        return client.post("/imports", data={"level": level, **form}, files={"file": (name, f)})


def refused(response, status, *words):
    """A problem response of ``status`` whose one-line detail names ``words``."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM)
    detail = response.json()["detail"]
    assert "\n" not in detail
    for word in words:
        assert word in detail, detail
    return detail


def _feature_collection(rings, code="141002004003001") -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": code},
         "geometry": {"type": "Polygon", "coordinates": rings}}]}


def _zip(target, members: dict[str, bytes], method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(target, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return target


def _shapefile_zip(frame, folder, name="layer"):
    frame.to_file(folder / f"{name}.shp")
    members = {p.name: p.read_bytes() for p in folder.glob(f"{name}.*")}
    return _zip(folder / f"{name}.zip", members)


# -- the happy path: real layers become plans ------------------------------------------------


@pytest.mark.parametrize("kind", ["geojson", "shapefile zip", "geopackage"])
def test_a_real_layer_becomes_a_new_plan(client, grids, tmp_path, kind):
    form = {}
    if kind == "geojson":
        path, name = tmp_path / "grids.geojson", "grids.geojson"
        grids.to_file(path, driver="GeoJSON")
    elif kind == "shapefile zip":
        path, name = _shapefile_zip(grids, tmp_path, "grids"), "grids.zip"
    else:
        path, name, form = DEMO, "demo.gpkg", {"layer": "grid"}
    answer = send(client, path, name, **form)
    assert answer.status_code == 201, answer.text[:500]
    body = answer.json()
    assert body["level"] == "grid" and body["features"] == len(grids)
    assert body["summary"]["clean"] is True and body["summary"]["grids"] == len(grids)
    plan = body["plan"]
    listed = {p["id"]: p for p in client.get("/plans").json()}
    assert plan in listed and name in listed[plan]["note"]
    shown = client.get(f"/plans/{plan}")
    assert shown.status_code == 200


def test_real_data_with_problems_is_refused_with_its_report(client, store_url, data):
    """The Providence blocks (Rhode Island) as the demo city's grids: outside every community."""
    before = _versions(store_url)
    answer = send(client, data("providence_blocks/Providence_blocks.zip"),
                  "Providence_blocks.zip")
    assert answer.status_code == 422, answer.text[:300]
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert "Providence_blocks.zip" in answer.json()["detail"]
    assert _versions(store_url) == before


def test_a_layer_with_errors_is_refused_with_the_report_and_nothing_written(client, grids,
                                                                          store_url, tmp_path):
    moved = grids.copy()
    moved.loc[0, "geometry"] = shapely.affinity.translate(moved.geometry.iloc[0], 2e-4, 0)
    path = tmp_path / "overlapping.geojson"
    moved.to_file(path, driver="GeoJSON")
    before = _versions(store_url)
    answer = send(client, path, "overlapping.geojson")
    detail = refused(answer, 422, "overlapping.geojson", "errors", "nothing was written")
    report = answer.json()["report"]
    assert report["summary"]["errors"] > 0 and "overlap" in report["summary"]["problems"], detail
    assert _versions(store_url) == before


# -- refusals: what is wrong and where, nothing written ---------------------------------------


def test_an_unknown_kind_of_file_is_415(client, tmp_path):
    path = tmp_path / "grids.kml"
    path.write_text("<kml/>")
    refused(send(client, path, "grids.kml"), 415, "grids.kml")


def test_a_level_not_ours_is_422(client, tmp_path):
    path = tmp_path / "x.geojson"
    path.write_text("{}")
    refused(send(client, path, "x.geojson", level="county"), 422, "level")


def test_a_body_over_the_limit_is_413_before_it_is_read(store_url, grids, tmp_path):
    path = tmp_path / "grids.geojson"
    grids.to_file(path, driver="GeoJSON")
    before = _versions(store_url)
    with _client(store_url, max_bytes=64 * 1024) as small:
        refused(send(small, path, "grids.geojson"), 413, "limit", "65,536")
        # Sent without a length (chunked): counted as it arrives.
        def chunks():
            with open(path, "rb") as f:
                while block := f.read(1 << 16):
                    yield block
        body = (b"--b\r\nContent-Disposition: form-data; name=\"level\"\r\n\r\ngrid\r\n"
                b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"g.geojson\"\r\n"
                b"\r\n" + path.read_bytes() + b"\r\n--b--\r\n")
        answer = small.post("/imports", content=iter([body[i:i + 65536]
                                                      for i in range(0, len(body), 65536)]),
                            headers={"content-type": "multipart/form-data; boundary=b"})
        refused(answer, 413, "limit")
    assert _versions(store_url) == before


def test_a_zip_bomb_is_refused_from_its_directory_quickly(client, store_url, tmp_path):
    # 200 MB of zeros deflate to ~200 KB: a 1000x expansion.
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("bomb.shp", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(200):
                member.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    before = _versions(store_url)
    started = time.perf_counter()
    refused(send(client, bomb, "bomb.zip"), 413, "bomb.zip", "bomb.shp", "expands")
    assert time.perf_counter() - started < 2
    assert _versions(store_url) == before


def test_a_zip_unpacking_past_the_budget_is_413(store_url, tmp_path):
    # Each member compresses modestly, but together they pass the unpacked budget.
    rng = np.random.default_rng(0)
    members = {f"part{i}.shp" if i == 0 else f"part0.x{i}": rng.bytes(600_000)
               for i in range(4)}
    path = _zip(tmp_path / "big.zip", members)
    with _client(store_url, zip_max_bytes=2_000_000) as small:
        refused(send(small, path, "big.zip"), 413, "big.zip", "2,000,000")


def test_a_zip_of_too_many_files_is_413(client, tmp_path):
    path = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(500)})
    refused(send(client, path, "many.zip"), 413, "many.zip", "500 files")


@pytest.mark.parametrize("name", ["../../evil.shp", "/etc/evil.shp", "a/../../evil.shp",
                                  "C:/evil.shp", "a\\..\\evil.shp"])
def test_a_zip_member_with_an_unsafe_path_is_refused(client, store_url, grids, tmp_path, name):
    path = _zip(tmp_path / "evil.zip", {name: b"0" * 100, "grids.dbf": b""})
    before = _versions(store_url)
    refused(send(client, path, "evil.zip"), 422, "evil.zip", "unsafe path")
    assert not (tmp_path.parent / "evil.shp").exists()
    assert _versions(store_url) == before


def test_a_million_levels_of_geojson_are_refused_before_parsing(client, tmp_path):
    path = tmp_path / "deep.geojson"
    path.write_bytes(b'{"type": "FeatureCollection", "features": ' + b"[" * 1_000_000
                     + b"]" * 1_000_000 + b"}")
    started = time.perf_counter()
    refused(send(client, path, "deep.geojson"), 422, "deep.geojson", "1,000,001 levels")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("value,shown", [("NaN", "nan"), ("Infinity", "inf"),
                                         ("-Infinity", "-inf"), ("1e308", "1e+308")])
def test_coordinates_that_are_not_lon_lat_are_refused_naming_the_feature(client, store_url,
                                                                        tmp_path, value, shown):
    ring = "[[112.9, 36.2], [112.91, 36.2], [VALUE, 36.21], [112.9, 36.2]]"
    text = json.dumps(_feature_collection([[0]])).replace("[[0]]", f"[{ring}]")
    path = tmp_path / "bad.geojson"
    path.write_text(text.replace("VALUE", value))
    before = _versions(store_url)
    refused(send(client, path, "bad.geojson"), 422, "bad.geojson", "141002004003001", shown)
    assert _versions(store_url) == before


def _circle(n: int) -> shapely.Polygon:
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return shapely.Polygon(np.c_[113.1 + 0.01 * np.cos(angle), 36.2 + 0.01 * np.sin(angle)])


def test_a_polygon_of_a_million_vertices_is_refused_by_its_count(client, store_url, tmp_path):
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"code": ["141002004003001"]}, geometry=[_circle(1_000_000)],
                             crs="EPSG:4326")
    path = _shapefile_zip(frame, tmp_path, "huge")
    before = _versions(store_url)
    started = time.perf_counter()
    refused(send(client, path, "huge.zip"), 413, "huge.shp", "141002004003001",
            "1,000,001 vertices", "100,000")
    assert time.perf_counter() - started < 5
    assert _versions(store_url) == before


def test_too_many_features_or_vertices_in_all_are_413(store_url, grids, tmp_path):
    path = tmp_path / "grids.geojson"
    grids.to_file(path, driver="GeoJSON")
    with _client(store_url, max_features=1000) as few:
        refused(send(few, path, "grids.geojson"), 413, "2,122 features", "1,000")
    with _client(store_url, max_vertices=10_000) as few:
        refused(send(few, path, "grids.geojson"), 413, "vertices in all", "10,000")


# -- deep JSON elsewhere: the JSON bodies of POST /lookup and the plans ---------------------


@pytest.mark.parametrize("route", ["/lookup", "/plans/preview", "/plans", "/incidents"])
@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_a_body_nested_a_million_deep_is_4xx_quickly(client, route, opener):
    closer = b"]" if opener == b"[" else b"}"
    body = opener * 1_000_000 + b"1" + closer * 1_000_000
    started = time.perf_counter()
    answer = client.post(route, content=body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert time.perf_counter() - started < 2
    assert client.get("/conformance").status_code == 200  # still serving


def test_json_depth_ignores_brackets_in_strings():
    assert json_depth(b'{"a": [[1, 2], "[[[\\"[["]}') == 3
    assert json_depth(b"[]") == 1 and json_depth(b"7") == 0
    assert json_depth(b'["\\\\", [[]]]') == 3


# -- the service keeps answering while an upload is processed ---------------------------------


@pytest.mark.slow
def test_lookups_keep_answering_during_a_large_upload(tmp_path, grids):
    import geopandas as gpd

    # Real work for the service: a large, valid layer (all the demo grids, densified).
    dense = grids.copy()
    dense["geometry"] = shapely.segmentize(dense.geometry.values, 1.5e-4)
    path = tmp_path / "dense.geojson"
    dense.to_file(path, driver="GeoJSON")
    assert 5 << 20 < path.stat().st_size < 50 << 20
    bomb = _shapefile_zip(gpd.GeoDataFrame({"code": ["1"]}, geometry=[_circle(1_000_000)],
                                           crs="EPSG:4326"), tmp_path, "huge")
    point = shapely.point_on_surface(grids.geometry.iloc[0])
    with serving(str(demo_store(tmp_path))) as url:
        outcomes = {}

        def upload(name, file):
            with open(file, "rb") as f:
                outcomes[name] = httpx.post(f"{url}/imports", data={"level": "grid"},
                                            files={"file": (name, f)}, timeout=120)

        workers = [threading.Thread(target=upload, args=("dense.geojson", path)),
                   threading.Thread(target=upload, args=("huge.zip", bomb))]
        for w in workers:
            w.start()
        slowest, answered = 0.0, 0
        with httpx.Client(timeout=5) as http:
            while any(w.is_alive() for w in workers):
                started = time.perf_counter()
                r = http.get(f"{url}/lookup", params={"lon": point.x, "lat": point.y})
                slowest = max(slowest, time.perf_counter() - started)
                assert r.status_code == 200
                answered += 1
                time.sleep(0.02)
        for w in workers:
            w.join()
    assert outcomes["huge.zip"].status_code == 413
    assert outcomes["dense.geojson"].status_code in (201, 422), outcomes["dense.geojson"].text[:300]
    assert answered >= 3 and slowest < 1.0, (answered, slowest)
