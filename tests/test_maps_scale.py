"""How large a map stays usable, in headless Chromium.

A street of 2,000 grids is drawn as SVG (one ``path.gridmap-grid`` each); above
``MapSettings.compact_above`` (3,000) grids every page that draws grids (coverage, problems,
incidents, stations) is compact (``gridmap.maps.compact``): one canvas, integer-difference
coordinates, popups built on click. ``benchmarks/bench_maps.py`` measured the coverage page of a
city of 12,000 grids (2 cores, headless Chromium, median of 2):

=====================  =======  =========  ==========  ========  ==========  ============
page                   MB       open s     zoom ms     pan ms    click ms    longest task
=====================  =======  =========  ==========  ========  ==========  ============
SVG (before)           8.50     2.7–4.3    276–371     138–241   66–98       112 ms
compact (after)        3.2      ~1.0       ~280        ~80       ~45         ~50 ms
=====================  =======  =========  ==========  ========  ==========  ============

The other pages of the same city, bytes and seconds to open (SVG → compact): problems 4.3 →
1.7 MB, 1.3 → 0.7 s; incidents 5.9 → 2.2 MB, 2.2 → 0.8 s; stations 4.4 → 2.0 MB, 1.2 → 0.7 s.

``shapely.coverage_simplify`` (5 m) keeps shared edges but saves nothing on these grids (~8
vertices each, none within 5 m of a straight line): the cost was one SVG path and one properties
object per grid, not vertices. Timing lives in the benchmark; these tests assert behaviour with
generous bounds.
"""

from __future__ import annotations

import time

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from test_maps_browser import Visit, browser  # noqa: F401  (the shared browser setup)

from gridmap.config import MapSettings
from gridmap.maps import (coverage_map, incidents_map, problems_map, select_unit, stations_map,
                          unit_report, within)
from gridmap.synth import make_city

#: The grids drawn: SVG paths, or the count a compact page sets once its canvas is drawn.
DRAWN = """() => {
  const map = document.querySelector('.folium-map');
  return map.dataset.gridmapDrawn ? +map.dataset.gridmapDrawn
                                  : document.querySelectorAll('path.gridmap-grid').length;
}"""


@pytest.fixture(scope="module")
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.route("**/*", lambda route: route.abort())  # the page is self-contained
    yield context.new_page()
    context.close()


def _one_street(city) -> dict[str, gpd.GeoDataFrame]:
    """The whole synthetic city as a single street: every community re-parented to it."""
    street = city.district.assign(code="141002001", name="大街道", parent_code="141002",
                                  level="street")
    return {"district": city.district, "street": street,
            "community": city.community.assign(parent_code="141002001"), "grid": city.grid}


def _open(page, html: str, expected: int) -> tuple[float, int]:
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.perf_counter()
    page.set_content(html, wait_until="load")
    page.wait_for_function(f"() => ({DRAWN})() >= {expected}", timeout=30_000)
    drawn = page.evaluate(DRAWN)
    page.mouse.wheel(0, -300)  # usable: it still answers a zoom
    page.wait_for_timeout(50)
    assert errors == []
    return time.perf_counter() - started, drawn


def test_a_street_of_2000_grids_opens_in_under_3_s(page):
    city = make_city(2000, seed=3, plant={})
    unit = select_unit(_one_street(city), "141002001")
    assert len(unit.grids) == 2000
    started = time.perf_counter()
    html = coverage_map(unit, inline=True)
    built = time.perf_counter() - started
    seconds, drawn = _open(page, html, 2000)
    print(f"street of 2,000 grids: page built in {built:.2f} s, {len(html) / 1e6:.1f} MB, "
          f"loaded and drawn in {seconds:.2f} s")
    assert drawn == 2000 == page.locator("path.gridmap-grid").count()  # SVG below the threshold
    assert seconds < 3


@pytest.mark.slow
def test_a_city_of_12000_grids_is_drawn_compact(page):
    city = make_city(12_000, seed=4, plant={})
    unit = select_unit(city.layers(), "141002", max_grids=50_000)
    svg = coverage_map(unit, settings=MapSettings(compact_above=10**6), inline=True)
    html = coverage_map(unit, inline=True)
    assert len(html) < len(svg) / 2
    seconds, drawn = _open(page, html, 12_000)
    print(f"city of 12,000 grids: {len(html) / 1e6:.1f} MB (SVG page {len(svg) / 1e6:.1f} MB), "
          f"loaded and drawn in {seconds:.2f} s")
    assert drawn == 12_000
    assert page.locator("path.gridmap-grid").count() == 0  # on the canvas
    assert page.locator("canvas.leaflet-zoom-animated").count() == 1
    assert seconds < 10  # a sanity bound: the figures are the benchmark's
    # A click in the middle of the map opens the popup of the grid there, with its worker.
    page.keyboard.press("Escape")
    box = page.locator(".folium-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    assert "worker" in text and "households" in text, text
    code = text.split("code")[1].split()[0]
    assert code in set(unit.grids["code"])
    worker = unit.grids.set_index("code").loc[code, "worker"]
    assert worker in text


# The other pages that draw grids, for the same city (with a gap and an overlap planted), each
# opened as a self-contained page: drawn compact, clean, and a grid still answers a click.


@pytest.fixture(scope="module")
def city():
    city = make_city(12_000, seed=5, plant={"gap": 1, "overlap": 1})
    return select_unit(city.layers(), "141002", max_grids=50_000)


#: Centres the map on (lat, lng) at zoom 17 and says where that is on the screen.
_GO = """([lat, lng]) => new Promise(done => {
  const map = window[document.querySelector('.folium-map').id];
  map.closePopup();
  map.setView([lat, lng], 17, {animate: false});
  requestAnimationFrame(() => requestAnimationFrame(() => {
    const p = map.latLngToContainerPoint([lat, lng]);
    const box = map.getContainer().getBoundingClientRect();
    done([box.left + p.x, box.top + p.y]);
  }));
})"""


def _far_grid(unit, avoid) -> int:
    """The position of the grid farthest from everything in ``avoid`` (problems, incidents,
    stations), so a click on it reaches the grid and nothing drawn over it."""
    points = shapely.point_on_surface(unit.grids.geometry.values)
    obstacle = shapely.union_all(list(avoid))
    return int(shapely.distance(points, obstacle).argmax())


def _open_compact(browser, html: str, unit) -> Visit:
    """``html`` opened offline: every grid drawn on one canvas within a loose bound."""
    n = len(unit.grids)
    started = time.perf_counter()
    v = Visit(browser, None, html)
    v.page.wait_for_function(f"() => ({DRAWN})() >= {n}", timeout=30_000)
    seconds = time.perf_counter() - started
    print(f"{len(html) / 1e6:.1f} MB, loaded and drawn in {seconds:.2f} s")
    assert v.page.evaluate(DRAWN) == n
    assert v.page.locator("path.gridmap-grid").count() == 0
    assert v.page.locator("canvas.leaflet-zoom-animated").count() == 1
    assert seconds < 10  # a sanity bound: the figures are the benchmark's
    return v


def _click_grid(v: Visit, unit, i: int) -> str:
    """Click the middle of grid ``i``; the text of the popup it opens."""
    point = shapely.point_on_surface(unit.grids.geometry.iloc[i])
    x, y = v.page.evaluate(_GO, [point.y, point.x])
    v.page.mouse.click(x, y)
    popup = v.page.locator(".leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    assert unit.grids["code"].iloc[i] in text, text
    return text


@pytest.mark.slow
def test_problems_of_a_city_of_12000_grids_are_drawn_compact(browser, city):
    report = unit_report(city)
    assert {p.type for p in report.problems} >= {"gap", "overlap"}
    v = _open_compact(browser, problems_map(city, report, inline=True), city)
    try:
        assert v.page.locator("#gridmap-problems li").count() == len(report.problems)
        names = " ".join(v.layer_names())
        assert "gap" in names and "overlap" in names
        far = _far_grid(city, [p.geometry for p in report.problems if p.geometry is not None])
        _click_grid(v, city, far)
        v.assert_clean()
    finally:
        v.close()


def _incidents(unit, per_grid: dict[int, int]) -> gpd.GeoDataFrame:
    """Open incidents, ``per_grid[i]`` of them near a corner of grid ``i``."""
    points = []
    for i, count in per_grid.items():
        geom = unit.grids.geometry.iloc[i]
        inner = shapely.buffer(geom, -(geom.bounds[2] - geom.bounds[0]) / 10)
        corner = shapely.Point(inner.exterior.coords[0])
        points += [corner] * count
    n = len(points)
    frame = gpd.GeoDataFrame(
        {"id": range(1, n + 1), "category": "环境卫生", "description": "垃圾堆放",
         "reported_at": pd.Timestamp("2025-04-01", tz="UTC"), "status": "reported"},
        geometry=points, crs=4326)
    return within(frame, unit)


@pytest.mark.slow
def test_incidents_of_a_city_of_12000_grids_are_drawn_compact(browser, city):
    busy = {100: 1, 5000: 2, 9000: 3}
    incidents = _incidents(city, busy)
    assert list(incidents["grid_code"]) == [city.grids["code"].iloc[i]
                                           for i, n in busy.items() for _ in range(n)]
    html = incidents_map(city, incidents, links=False, inline=True)
    v = _open_compact(browser, html, city)
    try:
        assert "Open incidents per grid" in " ".join(v.layer_names())
        fills = v.page.evaluate("(ix) => ix.map(i => gridmapGrids.getLayers()[i].options.fillColor)",
                                [0, *busy])
        assert fills == ["#ffffff", "#fcbba1", "#fb6a4a", "#a50f15"]  # 0, 1, 2, 3 open
        far = _far_grid(city, incidents.geometry)
        text = _click_grid(v, city, far)
        assert "open incidents" in text and text.rstrip().endswith("0"), text
        v.assert_clean()
    finally:
        v.close()


@pytest.mark.slow
def test_stations_of_a_city_of_12000_grids_are_drawn_compact(browser, city):
    where = [shapely.point_on_surface(city.grids.geometry.iloc[i]) for i in (50, 6000, 11_900)]
    stations = gpd.GeoDataFrame(
        {"code": ["S1", "S2", "S3"], "kind": ["district_centre", "street_centre", "post"],
         "name": ["区中心", "街道中心", "驿站"], "floor_area_m2": [3000.0, 1200.0, 80.0]},
        geometry=where, crs=4326)
    v = _open_compact(browser, stations_map(city, stations, inline=True), city)
    try:
        names = " ".join(v.layer_names())
        assert "Grids (网格)" in names and "Service posts" in names
        text = _click_grid(v, city, _far_grid(city, stations.geometry))
        assert "worker" in text, text
        v.assert_clean()
    finally:
        v.close()
