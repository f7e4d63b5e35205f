"""Open311 GeoReport v2 against a real ``gridmap serve`` (both stores), read with the ``georeport``
client and posted form-encoded as 311 apps send it (georeport 0.3 has no POST of its own)."""

from __future__ import annotations

import contextlib
import datetime as dt

import httpx
import pytest
import shapely
from georeport import GeoReport

from gridmap.demo import DEMO
from gridmap.io import read_layer
from serving import demo_store, serving


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def service(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        if request.param == "postgis":
            from gridmap.demo import load_into
            from gridmap.store import open_store
            from pg import fresh_database

            url = stack.enter_context(fresh_database(request.getfixturevalue("postgis_url")))
            store = open_store(url)
            load_into(store)
            store.close()
        else:
            url = str(demo_store(tmp_path_factory.mktemp("open311")))
        yield stack.enter_context(serving(url))


def test_services_are_our_categories(service):
    client = GeoReport(f"{service}/open311/v2")
    services = client.get_service_list()
    codes = [s["service_code"] for s in services]
    assert codes == sorted(["safety", "environment", "facilities", "dispute", "construction", "other"])
    assert all(s["type"] == "realtime" and s["metadata"] is False for s in services)


def test_post_then_read_with_georeport(service):
    grids = read_layer(DEMO, layer="grid")
    p = shapely.point_on_surface(grids.geometry.iloc[42])
    form = {"service_code": "facilities", "lat": f"{p.y}", "long": f"{p.x}",
            "description": "路灯不亮", "media_url": "https://example.org/lamp.jpg",
            "email": "resident@example.org", "first_name": "Li"}
    r = httpx.post(f"{service}/open311/v2/requests.json", data=form,
                   headers={"Idempotency-Key": f"o311-{p.x}"})
    assert r.status_code == 201
    (answer,) = r.json()
    rid = answer["service_request_id"]
    again = httpx.post(f"{service}/open311/v2/requests.json", data=form,
                       headers={"Idempotency-Key": f"o311-{p.x}"})
    assert again.json()[0]["service_request_id"] == rid

    client = GeoReport(f"{service}/open311/v2")
    one = client.get_service_request(rid)
    assert one["service_code"] == "facilities" and one["status"] == "open"
    assert one["description"] == "路灯不亮" and one["media_url"] == form["media_url"]
    assert one["lat"] == pytest.approx(p.y) and one["long"] == pytest.approx(p.x)
    assert grids["code"].iloc[42] in one["status_notes"] and "email" not in str(one)
    # …and through our own API: the same incident, routed to the grid at the point.
    mine = httpx.get(f"{service}/incidents/{rid}").json()
    assert mine["grid"]["code"] == grids["code"].iloc[42] and mine["contact"] == form["email"]

    listed = client.get_service_requests(service_code="facilities", status="open")
    assert rid in [x["service_request_id"] for x in listed]
    assert all(x["service_code"] == "facilities" and x["status"] == "open" for x in listed)
    assert [x["service_request_id"] for x in client.get_service_requests(service_request_id=rid)] == [rid]

    # Moved on and closed in our workflow, it reads as closed in Open311.
    for to, role in [("assigned", "community"), ("rejected", "community")]:
        assert httpx.post(f"{service}/incidents/{rid}/transitions",
                          json={"to": to, "actor": "李", "role": role, "note": "重复上报"}).status_code == 200
    closed = client.get_service_request(rid)
    assert closed["status"] == "closed" and "rejected" in closed["status_notes"]
    assert rid in [x["service_request_id"] for x in client.get_service_requests(status="closed")]
    assert rid not in [x["service_request_id"] for x in client.get_service_requests(status="open")]


def test_requests_by_date_range_and_demo_history(service):
    client = GeoReport(f"{service}/open311/v2")
    march = client.get_service_requests(start_date="2025-03-01T00:00:00Z", end_date="2025-04-01T00:00:00Z")
    ours = httpx.get(f"{service}/incidents", params={"since": "2025-03-01T00:00:00Z",
                                                     "until": "2025-04-01T00:00:00Z",
                                                     "limit": 1000}).json()["incidents"]
    assert sorted(int(x["service_request_id"]) for x in march) == sorted(i["id"] for i in ours)
    closed = {"closed", "rejected"}
    for x, i in zip(sorted(march, key=lambda x: int(x["service_request_id"])),
                    sorted(ours, key=lambda i: i["id"])):
        assert x["status"] == ("closed" if i["status"] in closed else "open")
        assert dt.datetime.fromisoformat(x["requested_datetime"]) == dt.datetime.fromisoformat(i["reported_at"])


def test_open311_errors(service):
    bad = httpx.post(f"{service}/open311/v2/requests.json",
                     data={"service_code": "ufo", "lat": "36.1", "long": "111.5"})
    assert bad.status_code == 400 and "category" in bad.json()[0]["description"]
    missing = httpx.post(f"{service}/open311/v2/requests.json", data={"service_code": "safety"})
    assert missing.status_code == 400 and "lat" in missing.json()[0]["description"]
    assert httpx.get(f"{service}/open311/v2/requests/99999.json").status_code == 404
    assert httpx.get(f"{service}/open311/v2/requests.json", params={"status": "lost"}).status_code == 400
