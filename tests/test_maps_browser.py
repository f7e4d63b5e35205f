"""The supervisor maps in a real browser (headless Chromium), offline: what a person would see.

``gridmap serve`` runs over a GeoPackage store made from the demo; every request to a host other
than 127.0.0.1 is blocked, so a page that needs a CDN shows it as a failed request. Screenshots go
to ``artifacts/`` (gitignored). Skipped without Chromium locally; in CI (CI=true) that fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from serving import demo_store, serving

from gridmap.demo import DEMO

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STREET = "141002001"  # 解放路街道: 72 grids in 8 urban communities
DISTRICT = "141002"


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(demo_store(tmp_path_factory.mktemp("maps"))) as url:
        yield url


@pytest.fixture(scope="module")
def demo_layers():
    import geopandas as gpd

    return {lv: gpd.read_file(DEMO, layer=lv) for lv in ("street", "community", "grid")}


class Visit:
    """One page opened offline, with what went wrong on the way."""

    def __init__(self, browser, url: str | None, content: str | None = None):
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.blocked: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        started = time.perf_counter()
        if content is None:
            self.response = self.page.goto(url, wait_until="load")
        else:  # a self-contained page written by `gridmap map`: no request at all
            self.response = None
            self.page.set_content(content, wait_until="load")
        self.load_s = time.perf_counter() - started

    def _route(self, route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def assert_clean(self) -> None:
        assert self.response is None or self.response.status == 200
        assert self.blocked == [], f"requests outside 127.0.0.1: {self.blocked}"
        assert self.failed == [], f"failed requests: {self.failed}"
        assert self.errors == [], f"console errors: {self.errors}"

    def layer_names(self) -> list[str]:
        return [t.strip() for t in
                self.page.locator(".leaflet-control-layers-overlays label").all_inner_texts()]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser):
    opened = []

    def open_(url, content=None):
        opened.append(Visit(browser, url, content))
        return opened[-1]

    yield open_
    for v in opened:
        v.close()


def test_coverage_of_a_street(server, visit, demo_layers):
    grids = demo_layers["grid"]
    mine = grids[grids["parent_code"].str.startswith(STREET)]
    v = visit(f"{server}/maps/coverage?unit={STREET}")
    page = v.page
    page.wait_for_selector("path.gridmap-grid")
    assert page.locator("path.gridmap-grid").count() == len(mine)
    assert page.locator("#gridmap-legend").is_visible()
    assert "Households against the target" in page.locator("#gridmap-legend").inner_text()
    names = v.layer_names()
    assert {"Grids (网格)", "Communities (社区/村)"} <= set(names), names
    assert page.locator(".leaflet-control-search").count() == 1
    # Click the middle of the first grid: its popup names its worker.
    first = mine.sort_values("code").iloc[0]
    path = page.locator("path.gridmap-grid").first
    path.click(force=True)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    assert any(w in text for w in mine["worker"]), text
    assert "households" in text
    page.wait_for_timeout(400)  # the popup fades in
    v.shot("coverage_street")
    v.assert_clean()
    assert first["code"]
    print(f"coverage of {len(mine)} grids: load in {v.load_s:.2f} s")


def test_coverage_of_the_district_is_simplified_and_complete(server, visit, demo_layers):
    v = visit(f"{server}/maps/coverage?unit={DISTRICT}")
    v.page.wait_for_selector("path.gridmap-grid")
    assert v.page.locator("path.gridmap-grid").count() == len(demo_layers["grid"])
    assert "Streets (街道/乡镇)" in v.layer_names()
    v.shot("coverage_district")
    v.assert_clean()


def test_unknown_unit_is_a_problem_not_a_blank_map(server, visit):
    v = visit(f"{server}/maps/coverage?unit=999999")
    assert v.response.status == 404
    assert "999999" in v.page.inner_text("body")


def _zoom(page) -> int:
    return page.evaluate("window[document.querySelector('.folium-map').id].getZoom()")


def test_problems_written_by_the_cli(browser, visit, tmp_path):
    """The planted problems of demo_problems.gpkg, from a page `gridmap map` wrote (inlined)."""
    import json

    from typer.testing import CliRunner

    from gridmap.cli import app

    out = tmp_path / "problems.html"
    run = CliRunner().invoke(app, ["map", "problems", "--unit", DISTRICT,
                                   str(DEMO.with_name("demo_problems.gpkg")), "-o", str(out)])
    assert run.exit_code == 0, run.output
    expected = json.loads(DEMO.with_name("demo_problems_expected.json").read_text())
    v = visit(None, out.read_text(encoding="utf-8"))
    page = v.page
    items = page.locator("#gridmap-problems li")
    assert items.count() >= 4
    drawn = page.locator("path.gridmap-problem").count()
    assert drawn == items.count()
    names = " ".join(v.layer_names())
    for kind in ("gap", "overlap", "split_building"):
        assert kind in names
    listed = items.all_inner_texts()
    for planted in expected["problems"]:
        if planted["type"] in ("gap", "overlap", "split_building"):
            assert any(t.startswith(planted["type"]) for t in listed), planted
    assert page.locator("#gridmap-legend").is_visible()
    before = _zoom(page)
    items.first.click()
    page.wait_for_timeout(600)
    assert _zoom(page) > before + 3  # zoomed in to the problem
    v.shot("problems_cli")
    v.assert_clean()


def test_problems_of_a_clean_street_say_so(server, visit):
    v = visit(f"{server}/maps/problems?unit={STREET}")
    assert "No problems" in v.page.locator("#gridmap-problem-list").inner_text()
    assert v.page.locator("path.gridmap-grid").count() > 0
    v.assert_clean()


def test_incidents_of_the_district(server, visit, demo_layers):
    v = visit(f"{server}/maps/incidents?unit={DISTRICT}&days=90&as_of=2025-04-30")
    page = v.page
    page.wait_for_selector("path.gridmap-grid")
    assert page.locator("path.gridmap-grid").count() == len(demo_layers["grid"])
    assert page.locator(".marker-cluster").count() > 0  # clustered markers
    names = " ".join(v.layer_names())
    assert "Heat map" in names and "Open incidents per grid" in names and "Incidents (48)" in names
    assert "last 30 days" in page.locator("#gridmap-days").inner_text()
    page.locator("text=Heat map").click()  # switch the heat map on
    page.wait_for_selector("canvas.leaflet-heatmap-layer")
    assert "Incidents by status" in page.locator("#gridmap-legend").inner_text()
    v.shot("incidents_district")
    v.assert_clean()


def test_no_incidents_in_the_period_is_said(server, visit):
    v = visit(f"{server}/maps/incidents?unit={STREET}&days=7&as_of=2024-01-01")
    assert "No incidents" in v.page.locator("#gridmap-notice").inner_text()
    assert v.page.locator("path.gridmap-grid").count() > 0  # the grids still show
    v.assert_clean()


def test_stations_of_a_street(server, visit, demo_layers):
    grids = demo_layers["grid"]
    v = visit(f"{server}/maps/stations?unit={STREET}")
    page = v.page
    page.wait_for_selector("path.gridmap-grid")
    assert page.locator("path.gridmap-grid").count() == (grids["parent_code"].str[:9] == STREET).sum()
    names = " ".join(v.layer_names())
    assert "15-minute service circles (1,000 m)" in names and "Community centres" in names
    assert "1,125 m walked" in page.locator("#gridmap-legend").inner_text()
    v.shot("stations_street")
    v.assert_clean()


def test_dashboard_of_a_street(server, visit, demo_layers):
    communities = demo_layers["community"]
    v = visit(f"{server}/dashboard?unit={STREET}&as_of=2025-04-30")
    page = v.page
    rows = page.locator("#gridmap-dashboard tr")
    assert rows.count() == 1 + 1 + (communities["parent_code"] == STREET).sum()  # head, street
    assert page.locator("#gridmap-histogram rect").count() > 2
    assert "households in a service circle" in page.locator("#gridmap-dashboard").inner_text()
    v.shot("dashboard_street")
    v.assert_clean()


def _search(page, text: str) -> None:
    """Type into the search box and pick the first result it offers."""
    box = page.locator(".leaflet-control-search input")
    box.fill("")
    box.type(text, delay=20)
    tip = page.locator(".search-tooltip .search-tip").first
    tip.wait_for()
    tip.click()


@pytest.mark.parametrize("by", ["code", "name"])
def test_search_finds_a_grid(server, visit, demo_layers, by):
    grids = demo_layers["grid"]
    mine = grids[grids["parent_code"].str.startswith(STREET)].sort_values("code")
    grid = mine.iloc[len(mine) // 2]
    v = visit(f"{server}/maps/coverage?unit={STREET}")
    page = v.page
    page.wait_for_selector("path.gridmap-grid")
    before = _zoom(page)
    _search(page, grid["code"] if by == "code" else grid["name"])
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    page.wait_for_function(f"() => window[document.querySelector('.folium-map').id].getZoom() > {before}")
    assert grid["code"] in popup.inner_text() and grid["worker"] in popup.inner_text()
    centre = page.evaluate("(() => { const c = window[document.querySelector('.folium-map').id]"
                           ".getCenter(); return [c.lng, c.lat]; })()")
    minx, miny, maxx, maxy = grid.geometry.bounds
    pad = (maxx - minx) * 2
    assert minx - pad < centre[0] < maxx + pad and miny - pad < centre[1] < maxy + pad
    page.wait_for_timeout(400)
    v.shot(f"coverage_search_{by}")
    v.assert_clean()


#: Shows the layer of ``marker`` (zooming in or opening its cluster) and says where it is drawn.
_REVEAL = """(n) => new Promise(done => {
  const map = window[document.querySelector('.folium-map').id];
  const markers = [];
  const isCluster = l => L.MarkerClusterGroup !== undefined && l instanceof L.MarkerClusterGroup;
  map.eachLayer(l => { if (isCluster(l)) markers.push(...l.getLayers());
                       else if (l instanceof L.CircleMarker && l.getPopup()) markers.push(l); });
  const marker = markers[n];
  const where = () => { const p = map.latLngToContainerPoint(marker.getLatLng());
                        const box = map.getContainer().getBoundingClientRect();
                        done([box.left + p.x, box.top + p.y]); };
  let group = null;
  map.eachLayer(l => { if (isCluster(l) && l.hasLayer(marker)) group = l; });
  if (group) group.zoomToShowLayer(marker, () => setTimeout(where, 300));
  else { map.setView(marker.getLatLng(), map.getZoom()); setTimeout(where, 300); }
})"""


def test_an_incident_marker_shows_its_category_and_status(server, visit):
    import httpx

    v = visit(f"{server}/maps/incidents?unit={DISTRICT}")
    page = v.page
    page.wait_for_selector(".marker-cluster")  # clustered at the district's zoom
    x, y = page.evaluate(_REVEAL, 0)
    page.mouse.click(x, y)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    number = int(text.split("#")[1].split()[0])
    row = httpx.get(f"{server}/incidents/{number}").json()  # as the store keeps it
    assert row["category"] in text and row["status"] in text, text
    page.wait_for_timeout(400)
    v.shot("incidents_marker_popup")
    v.assert_clean()


def test_a_station_shows_its_name_and_floor_area(server, visit):
    from gridmap.maps import read_points

    stations = read_points("station")
    v = visit(f"{server}/maps/stations?unit={STREET}")
    page = v.page
    page.wait_for_selector("path.gridmap-grid")
    x, y = page.evaluate(_REVEAL, 0)
    page.mouse.click(x, y)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    name = text.splitlines()[0].strip()
    row = stations[stations["name"] == name]
    assert len(row) == 1, text
    assert f"{row['floor_area_m2'].iloc[0]:,.0f} m²" in text, text
    page.wait_for_timeout(400)
    v.shot("stations_popup")
    v.assert_clean()


PLAN_UNIT = "141002007004"  # 乐秀社区: 8 grids


def test_planner_draws_a_split_line_checks_it_and_saves_a_plan(server, visit):
    """A planner picks a grid, draws a line across it, sees the check at once, saves a plan."""
    import httpx

    before = httpx.get(f"{server}/plans").json()
    v = visit(f"{server}/maps/planner?unit={PLAN_UNIT}")
    page = v.page
    page.wait_for_function("window.gridmapPlanner && "
                           "gridmapPlanner.map.getContainer().dataset.plannerGrids > 0")
    where = page.evaluate("""() => {
        const P = gridmapPlanner, m = P.map, l = P.grids.getLayers()[0];
        const b = l.getBounds(), c = b.getCenter(), r = m.getContainer().getBoundingClientRect();
        const at = (lat, lng) => { const q = m.latLngToContainerPoint([lat, lng]);
                                   return [r.left + q.x, r.top + q.y]; };
        return {code: l.feature.properties.code, grids: P.grids.getLayers().length,
                centre: at(c.lat, c.lng), west: at(c.lat, b.getWest() - 5e-4),
                east: at(c.lat, b.getEast() + 5e-4)}; }""")
    page.mouse.click(*where["centre"])
    assert page.inner_text("#planner-selected") == where["code"]
    page.click("#planner-split")
    page.mouse.click(*where["west"])
    page.mouse.dblclick(*where["east"])
    page.wait_for_function("gridmapPlanner.map.getContainer().dataset.plannerChecked",
                           timeout=30_000)
    status = page.inner_text("#planner-status")
    assert status.startswith("Valid"), status
    assert page.evaluate("gridmapPlanner.grids.getLayers().length") == where["grids"] + 1
    v.shot("planner-split")
    page.click("#planner-save")
    page.wait_for_function("gridmapPlanner.map.getContainer().dataset.plannerSaved",
                           timeout=30_000)
    saved = int(page.evaluate("gridmapPlanner.map.getContainer().dataset.plannerSaved"))
    assert f"Saved as plan #{saved}" in page.inner_text("#planner-status")
    plans = httpx.get(f"{server}/plans").json()
    assert [p["id"] for p in plans] == [p["id"] for p in before] + [saved]
    shown = httpx.get(f"{server}/plans/{saved}").json()
    assert shown["valid"] and where["code"] in shown["impact"]["removed"] + shown["impact"]["changed"]
    v.assert_clean()
    httpx.delete(f"{server}/plans/{saved}")
