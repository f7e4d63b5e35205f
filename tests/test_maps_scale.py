"""How large a map stays usable, in headless Chromium.

A street of 2,000 grids is drawn as SVG (one ``path.gridmap-grid`` each); above
``MapSettings.compact_above`` (3,000) grids the coverage page is compact (``gridmap.maps.compact``):
one canvas, integer-difference coordinates, popups built on click. ``benchmarks/bench_maps.py``
measured, for a city of 12,000 grids (2 cores, headless Chromium, median of 2):

=====================  =======  =========  ==========  ========  ==========  ============
page                   MB       open s     zoom ms     pan ms    click ms    longest task
=====================  =======  =========  ==========  ========  ==========  ============
SVG (before)           8.50     2.7–4.3    276–371     138–241   66–98       112 ms
compact (after)        3.2      ~1.0       ~280        ~80       ~45         ~50 ms
=====================  =======  =========  ==========  ========  ==========  ============

``shapely.coverage_simplify`` (5 m) keeps shared edges but saves nothing on these grids (~8
vertices each, none within 5 m of a straight line): the cost was one SVG path and one properties
object per grid, not vertices. Timing lives in the benchmark; these tests assert behaviour with
generous bounds.
"""

from __future__ import annotations

import time

import geopandas as gpd
import pytest
from test_maps_browser import ARGS, CHROMIUM, _missing  # noqa: F401  (shared browser setup)

from gridmap.config import MapSettings
from gridmap.maps import coverage_map, select_unit
from gridmap.synth import make_city

#: The grids drawn: SVG paths, or the count a compact page sets once its canvas is drawn.
DRAWN = """() => {
  const map = document.querySelector('.folium-map');
  return map.dataset.gridmapDrawn ? +map.dataset.gridmapDrawn
                                  : document.querySelectorAll('path.gridmap-grid').length;
}"""


@pytest.fixture(scope="module")
def page():
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.route("**/*", lambda route: route.abort())  # the page is self-contained
        yield context.new_page()
        browser.close()


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
