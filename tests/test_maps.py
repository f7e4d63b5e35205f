"""The supervisor maps without a browser: units, bad input, offline assets, settings, the CLI."""

from __future__ import annotations

import datetime as dt
import re

import geopandas as gpd
import pytest
from serving import demo_store
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from gridmap.cli import app as cli
from gridmap.config import MapSettings, Settings
from gridmap.demo import DEMO
from gridmap.maps import (UnitNotFound, UnitTooLarge, coverage_map, dashboard_page, incidents_map,
                          problems_map, read_points, select_unit, stations_map, unit_report, within)
from gridmap.report import Report

STREET, COMMUNITY = "141002001", "141002001001"
LEVELS = ("city", "district", "street", "community", "grid", "building")


@pytest.fixture(scope="module")
def layers():
    return {lv: gpd.read_file(DEMO, layer=lv) for lv in LEVELS}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = demo_store(tmp_path_factory.mktemp("store"))
    settings = Settings()
    settings.store.url = str(path)
    settings.maps.max_grids = 1000
    with TestClient(create_app(settings)) as c:
        yield c


def _external(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(https?://[^"]+)"', page)


def test_units_follow_the_parent_chain(layers):
    street = select_unit(layers, STREET)
    assert street.level == "street" and street.name == "解放路街道"
    assert len(street.grids) == (layers["grid"]["code"].str[:9] == STREET).sum()
    assert set(street.layers["building"]["parent_code"]) <= set(street.grids["code"])
    community = select_unit(layers, COMMUNITY)
    assert (community.grids["parent_code"] == COMMUNITY).all()
    assert len(select_unit(layers, "141000").grids) == len(layers["grid"])  # the city


def test_bad_units(layers):
    with pytest.raises(UnitNotFound, match="999"):
        select_unit(layers, "999")
    with pytest.raises(UnitTooLarge, match="2,122 grids"):
        select_unit(layers, "141002", max_grids=1000)
    empty = dict(layers, grid=layers["grid"].iloc[:0], building=layers["building"].iloc[:0])
    unit = select_unit(empty, STREET)
    for page in (coverage_map(unit), incidents_map(unit, read_points("incident").iloc[:0]),
                 stations_map(unit, read_points("station")),
                 dashboard_page(unit, read_points("incident").iloc[:0], read_points("station"))):
        assert "has no grids" in page and "leaflet" not in page


def test_pages_are_offline_and_say_what_is_empty(layers):
    unit = select_unit(layers, STREET)
    clean = problems_map(unit, Report([], {"grids": len(unit.grids)}))
    assert "No problems: the coverage is clean." in clean
    quiet = incidents_map(unit, within(read_points("incident"), unit), days=7,
                          as_of=dt.date(2024, 1, 1))
    assert 'id="gridmap-notice"' in quiet and "No incidents" in quiet
    pages = [clean, quiet, coverage_map(unit), stations_map(unit, read_points("station"))]
    for page in pages:
        assert _external(page) == []
        assert "/static/vendor/leaflet/dist/leaflet.js" in page


def test_inlined_pages_need_no_request(layers):
    page = coverage_map(select_unit(layers, COMMUNITY), inline=True)
    assert "<script src=" not in page and '<link rel="stylesheet" href=' not in page
    assert "data:image/png;base64," in page  # the layer-control icon, from leaflet.css


def test_tiles_and_gcj02_are_configuration(layers):
    unit = select_unit(layers, COMMUNITY)
    amap = "http://intranet.example/amap/{z}/{x}/{y}.png"
    plain = coverage_map(unit)
    shifted = coverage_map(unit, settings=MapSettings(tiles=amap, attribution="© AMap", gcj02=True))
    assert amap in shifted and "AMap" in shifted and "L.tileLayer" not in plain

    def first_x(page):
        return float(re.search(r'"coordinates": \[\[\[([0-9.]+)', page).group(1))

    # GCJ-02 lies a few hundred metres east of WGS84 around Linfen.
    assert 0.002 < first_x(shifted) - first_x(plain) < 0.01


def test_report_of_the_planted_problems(layers):
    problems = {lv: gpd.read_file(DEMO.with_name("demo_problems.gpkg"), layer=lv) for lv in LEVELS}
    unit = select_unit(problems, "141002")
    report = unit_report(unit)
    assert {"gap", "overlap", "split_building"} <= set(report.by_type())
    page = problems_map(unit, report)
    assert page.count("<li data-bounds=") == sum(p.geometry is not None for p in report.problems)


def test_dashboard_numbers(layers):
    unit = select_unit(layers, STREET)
    from gridmap.maps.dashboard import unit_table

    table = unit_table(unit, within(read_points("incident"), unit), read_points("station"),
                       as_of=dt.date(2025, 4, 30))
    communities = table[table["level"] == "community"]
    assert table.iloc[0]["grids"] == communities["grids"].sum() == len(unit.grids)
    assert table.iloc[0]["households"] == int(unit.grids["households"].sum())
    assert 0 <= table.iloc[0]["served_share"] <= 1


def test_routes(client):
    for path in ("/maps/coverage", "/maps/problems", "/maps/incidents", "/maps/stations",
                 "/dashboard"):
        ok = client.get(path, params={"unit": STREET})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/html")
        missing = client.get(path, params={"unit": "999999"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert "999999" in missing.json()["detail"]
    too_big = client.get("/maps/coverage", params={"unit": "141002"})
    assert too_big.status_code == 422 and "choose one of its streets" in too_big.json()["detail"]
    assert client.get("/maps/coverage").status_code == 422  # no unit
    assert client.get("/static/vendor/leaflet/dist/leaflet.js").status_code == 200
    assert "/maps/coverage" in client.get("/openapi.json").json()["paths"]


def test_cli_writes_a_page_and_refuses_unknown_units(tmp_path):
    out = tmp_path / "coverage.html"
    run = CliRunner().invoke(cli, ["map", "coverage", "--unit", COMMUNITY, str(DEMO), "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert out.read_text(encoding="utf-8").count('"type": "Feature"') > 0
    bad = CliRunner().invoke(cli, ["map", "coverage", "--unit", "999", str(DEMO), "-o", str(out)])
    assert bad.exit_code == 2
    wrong = CliRunner().invoke(cli, ["map", "atlas", "--unit", STREET, str(DEMO), "-o", str(out)])
    assert wrong.exit_code == 2
