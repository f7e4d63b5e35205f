"""How large a map stays usable: a street of 2,000 grids under 3 s in headless Chromium, and a
city of 12,000 grids served simplified (``shapely.coverage_simplify``), measured and printed."""

from __future__ import annotations

import time

import geopandas as gpd
import pytest
from test_maps_browser import ARGS, CHROMIUM, _missing  # noqa: F401  (shared browser setup)

from gridmap.config import MapSettings
from gridmap.maps import coverage_map, select_unit
from gridmap.synth import make_city


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


def _open(page, html: str) -> tuple[float, int]:
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.perf_counter()
    page.set_content(html, wait_until="load")
    page.wait_for_selector("path.gridmap-grid")
    drawn = page.locator("path.gridmap-grid").count()
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
    seconds, drawn = _open(page, html)
    print(f"street of 2,000 grids: page built in {built:.2f} s, {len(html) / 1e6:.1f} MB, "
          f"loaded and drawn in {seconds:.2f} s")
    assert drawn == 2000
    assert seconds < 3


@pytest.mark.slow
def test_a_city_of_12000_grids_is_served_simplified(page):
    city = make_city(12_000, seed=4, plant={})
    unit = select_unit(city.layers(), "141002", max_grids=50_000)
    sizes = {}
    for label, settings in (("full", MapSettings(simplify_above=10**6)),
                            ("simplified", MapSettings())):
        started = time.perf_counter()
        html = coverage_map(unit, settings=settings, inline=True)
        built = time.perf_counter() - started
        seconds, drawn = _open(page, html)
        sizes[label] = len(html)
        print(f"city of 12,000 grids, {label}: built {built:.2f} s, {len(html) / 1e6:.1f} MB, "
              f"loaded and drawn in {seconds:.2f} s")
        assert drawn == 12_000
    assert sizes["simplified"] <= sizes["full"]
