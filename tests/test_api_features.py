"""OGC API – Features over a real GeoPackage store made from the demo data, with real clients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from serving import demo_store, serving
from fastapi.testclient import TestClient

from api.app import create_app
from gridmap.config import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def client(store_path):
    settings = Settings()
    settings.store.url = str(store_path)
    with TestClient(create_app(settings)) as c:
        yield c


def test_landing_conformance_and_collections(client):
    landing = client.get("/").json()
    assert {link["rel"] for link in landing["links"]} >= {"self", "service-desc", "conformance",
                                                         "data"}
    conf = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conf
    ids = [c["id"] for c in client.get("/collections").json()["collections"]]
    assert ids == ["city", "district", "street", "community", "grid", "building"]
    grid = client.get("/collections/grid").json()
    minx, miny, maxx, maxy = grid["extent"]["spatial"]["bbox"][0]
    assert 110.5 < minx < maxx < 112.5 and 35.5 < miny < maxy < 36.7  # Yaodu, Linfen


def test_items_paging_bbox_and_parent(client):
    first = client.get("/collections/grid/items", params={"limit": 50})
    assert first.headers["content-type"].startswith("application/geo+json")
    page = first.json()
    assert page["numberMatched"] == 2122 and page["numberReturned"] == 50
    codes = [f["id"] for f in page["features"]]
    assert codes == sorted(codes)
    nxt = next(link["href"] for link in page["links"] if link["rel"] == "next")
    second = client.get(nxt).json()
    assert second["features"][0]["id"] > codes[-1]
    community = page["features"][0]["properties"]["parent_code"]
    children = client.get("/collections/grid/items",
                          params={"parent_code": community, "limit": 1000}).json()
    assert children["numberMatched"] == len(children["features"]) > 0
    assert all(f["properties"]["parent_code"] == community for f in children["features"])
    box = client.get("/collections/grid/items",
                     params={"bbox": "111.50,36.07,111.53,36.09", "limit": 1000}).json()
    assert 0 < box["numberMatched"] < 2122


def test_item_by_code_and_errors(client):
    code = client.get("/collections/grid/items", params={"limit": 1}).json()["features"][0]["id"]
    feature = client.get(f"/collections/grid/items/{code}").json()
    assert feature["id"] == code and feature["properties"]["worker"]
    missing = client.get("/collections/grid/items/999999999999999")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "999999999999999" in missing.json()["detail"]
    assert client.get("/collections/nope/items").status_code == 404
    bad = client.get("/collections/grid/items", params={"bbox": "1,2,3"})
    assert bad.status_code == 400 and "bbox" in bad.json()["detail"]
    assert client.get("/collections/grid/items", params={"limit": 0}).status_code == 422
    assert client.get("/collections/grid/items", params={"version": 99}).status_code == 404


@pytest.fixture(scope="module")
def server(store_path):
    with serving(store_path) as url:
        yield url


def test_owslib_lists_collections_and_reads_grids(server):
    from owslib.ogcapi.features import Features

    api = Features(server)
    ids = [c["id"] for c in api.collections()["collections"]]
    assert "grid" in ids and "community" in ids
    items = api.collection_items("grid", limit=5)
    assert items["numberMatched"] == 2122 and len(items["features"]) == 5
    one = api.collection_item("grid", items["features"][0]["id"])
    assert one["properties"]["code"] == items["features"][0]["id"]


@pytest.mark.skipif(shutil.which("ogrinfo") is None and os.environ.get("CI") != "true",
                    reason="GDAL's ogrinfo is not installed")
def test_gdal_ogc_api_driver_reads_the_grids(server):
    listing = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{server}"], capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "grid" in listing.stdout and "community" in listing.stdout
    summary = subprocess.run(["ogrinfo", "-ro", "-so", "-al", f"OAPIF:{server}/collections/grid"],
                             capture_output=True, text=True, timeout=300)
    assert summary.returncode == 0, summary.stderr
    assert "Feature Count: 2122" in summary.stdout
    rows = subprocess.run(["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", f"OAPIF:{server}",
                           "community", "-limit", "3"], capture_output=True, text=True, timeout=300)
    assert rows.returncode == 0, rows.stderr
    assert len(json.loads(rows.stdout)["features"]) == 3
