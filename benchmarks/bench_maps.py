"""How fast a big coverage page opens and answers, in headless Chromium: the SVG page against the
compact canvas page (``MapSettings.compact_above``); then how the other pages that draw grids
(problems, incidents, stations) open, SVG against compact.

    python benchmarks/bench_maps.py [--grids 12000] [--repeat 3] [--chromium /usr/bin/chromium]
                                    [--modes svg,compact,compact-unsimplified]
                                    [--pages problems,incidents,stations]

For a synthetic city (``make_city(n, plant={})``) the script builds the coverage page, inlined
(self-contained, no request), in each of these modes:

- ``svg``: one SVG path per grid and every property in every feature (``compact_above`` raised
  out of reach), geometry simplified as the default settings say;
- ``compact``: the default settings: above ``compact_above`` grids, coordinates as integer
  offsets, a compact array of rows for the popups (built on click), drawn on one canvas;
- ``compact, unsimplified``: the same with ``simplify_m=0``: what coverage_simplify saves.

and prints, the median of ``--repeat`` runs: page bytes; seconds to ``load`` plus every grid drawn;
a zoom in and a pan, each until ``moveend`` and the next animation frame; a click on the middle
of the map until its popup shows; and the longest task (PerformanceObserver ``longtask``) after
the page has drawn, during the zooms, pans and clicks.

Last run (2 cores, Debian Chromium headless, 12,000 grids, median of 2):

    mode                   build s     MB  open s  zoom ms  pan ms  click ms  longest task ms
    svg                       1.65   8.50    2.67      276     138        66              112
    compact                   0.78   3.73    0.96      283      78        46               52
    compact-unsimplified      0.59   3.73    0.98      272      77        49               50

(compact was 3.73 MB before the search labels moved client-side; now ~3.2 MB.) Zoom is the
time to ``moveend`` plus one frame, most of it Leaflet re-projecting every polygon, which no
page shape avoids short of vector tiles; no task during it passes ~50 ms.

The other pages, for the same city with a gap and an overlap planted, 300 synthetic incidents
(200 open) and 30 synthetic stations; bytes and seconds to ``load`` plus every grid drawn (their
SVG grids answer no click, or a hover only, so only the opening is timed):

    page        mode       build s     MB  open s
    problems    svg           0.87   4.31    1.26
    problems    compact       0.45   1.74    0.73
    incidents   svg           1.32   5.85    2.17
    incidents   compact       0.62   2.15    0.76
    stations    svg           0.95   4.35    1.22
    stations    compact       0.59   1.98    0.72

(the coverage rows above, rerun alongside: svg 8.50 MB / 2.72 s, compact 3.24 MB / 0.98 s.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402

from gridmap.config import MapSettings  # noqa: E402
from gridmap.maps import (coverage_map, incidents_map, problems_map, select_unit,  # noqa: E402
                          stations_map, unit_report, within)
from gridmap.synth import make_city  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: The grids drawn: SVG paths, or the count the compact page sets once its canvas is drawn.
DRAWN = """() => {
  const map = document.querySelector('.folium-map');
  if (map && map.dataset.gridmapDrawn) return +map.dataset.gridmapDrawn;
  return document.querySelectorAll('path.gridmap-grid').length;
}"""
WATCH = """() => {
  window.__long = [];
  new PerformanceObserver(l => l.getEntries().forEach(e => window.__long.push(e.duration)))
    .observe({entryTypes: ['longtask']});
}"""
MOVE = """(how) => new Promise(done => {
  const map = window[document.querySelector('.folium-map').id];
  const t0 = performance.now();
  map.once('moveend', () => requestAnimationFrame(() => done(performance.now() - t0)));
  if (how === 'zoom') map.setZoom(map.getZoom() + 1, {animate: false});
  else map.panBy([300, 200], {animate: false});
})"""


def measure(page, html: str, n: int) -> dict:
    started = time.perf_counter()
    page.set_content(html, wait_until="load")
    page.wait_for_function(f"() => ({DRAWN})() >= {n}", timeout=60_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    opened = time.perf_counter() - started
    page.evaluate(WATCH)
    zoom = [page.evaluate(MOVE, "zoom") for _ in range(2)]
    pan = [page.evaluate(MOVE, "pan") for _ in range(2)]
    page.evaluate(MOVE, "zoom")
    box = page.locator(".folium-map").bounding_box()
    t0 = time.perf_counter()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
    click = time.perf_counter() - t0
    page.wait_for_timeout(300)
    longest = max(page.evaluate("() => window.__long"), default=0.0)
    return {"open_s": opened, "zoom_ms": max(zoom), "pan_ms": max(pan), "click_ms": click * 1000,
            "long_ms": longest}


def open_time(page, html: str, n: int) -> float:
    """Seconds to ``load`` plus every grid drawn, plus one frame."""
    started = time.perf_counter()
    page.set_content(html, wait_until="load")
    page.wait_for_function(f"() => ({DRAWN})() >= {n}", timeout=60_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    return time.perf_counter() - started


def synthetic_points(unit, seed: int = 0) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """300 incidents (two thirds open) and 30 stations, each inside a random grid of ``unit``."""
    rng = np.random.default_rng(seed)
    where = shapely.point_on_surface(unit.grids.geometry.values)
    picked = where[rng.choice(len(where), 300)]
    statuses = np.array(["reported", "assigned", "in_progress", "closed", "checked", "resolved"])
    incidents = gpd.GeoDataFrame(
        {"id": np.arange(1, 301), "category": "环境卫生", "description": "垃圾堆放",
         "reported_at": pd.Timestamp("2025-04-01", tz="UTC"),
         "status": np.where(np.arange(300) % 3 == 2, statuses[3 + rng.integers(0, 3, 300)],
                            statuses[rng.integers(0, 3, 300)])},
        geometry=picked, crs=4326)
    kinds = ["district_centre"] + ["street_centre"] * 4 + ["community_centre"] * 10 + ["post"] * 15
    stations = gpd.GeoDataFrame(
        {"code": [f"S{k:03d}" for k in range(30)], "kind": kinds,
         "name": [f"站点{k}" for k in range(30)], "floor_area_m2": rng.uniform(60, 3000, 30)},
        geometry=where[rng.choice(len(where), 30, replace=False)], crs=4326)
    return within(incidents, unit), stations


def bench_pages(browser, pages: list[str], grids: int, repeat: int) -> None:
    city = make_city(grids, seed=4, plant={"gap": 1, "overlap": 1})
    unit = select_unit(city.layers(), city.district["code"].iloc[0], max_grids=10**7)
    n = len(unit.grids)
    incidents, stations = synthetic_points(unit)
    report = unit_report(unit)
    build = {"problems": lambda s: problems_map(unit, report, settings=s, inline=True),
             "incidents": lambda s: incidents_map(unit, incidents, settings=s, inline=True),
             "stations": lambda s: stations_map(unit, stations, settings=s, inline=True)}
    print(f"\nother pages of a city of {n:,} grids, median of {repeat}")
    print(f"{'page':<12}{'mode':<10}{'build s':>8}{'MB':>7}{'open s':>8}")
    for name in pages:
        for mode, settings in (("svg", MapSettings(compact_above=10**7)),
                               ("compact", MapSettings())):
            t0 = time.perf_counter()
            html = build[name](settings)
            built = time.perf_counter() - t0
            runs = offline_runs(browser, open_time, html, n, repeat)
            print(f"{name:<12}{mode:<10}{built:>8.2f}{len(html.encode()) / 1e6:>7.2f}"
                  f"{statistics.median(runs):>8.2f}")


def offline_runs(browser, probe, html: str, n: int, repeat: int) -> list:
    """``probe(page, html, n)`` ``repeat`` times, each in a fresh context with every request refused."""
    runs = []
    for _ in range(repeat):
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.route("**/*", lambda route: route.abort())
        runs.append(probe(context.new_page(), html, n))
        context.close()
    return runs


def bench_coverage(browser, modes: list[str], grids: int, repeat: int) -> None:
    city = make_city(grids, seed=4, plant={})
    unit = select_unit(city.layers(), city.district["code"].iloc[0], max_grids=10**7)
    n = len(unit.grids)
    settings = {"svg": MapSettings(compact_above=10**7),
                "compact": MapSettings(),
                "compact-unsimplified": MapSettings(simplify_m=0)}
    print(f"coverage page of a city of {n:,} grids, median of {repeat}")
    print(f"{'mode':<22}{'build s':>8}{'MB':>7}{'open s':>8}{'zoom ms':>9}{'pan ms':>8}"
          f"{'click ms':>10}{'longest task ms':>17}")
    for mode in modes:
        t0 = time.perf_counter()
        html = coverage_map(unit, settings=settings[mode], inline=True)
        built = time.perf_counter() - t0
        runs = offline_runs(browser, measure, html, n, repeat)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{mode:<22}{built:>8.2f}{len(html.encode()) / 1e6:>7.2f}{med['open_s']:>8.2f}"
              f"{med['zoom_ms']:>9.0f}{med['pan_ms']:>8.0f}{med['click_ms']:>10.0f}"
              f"{med['long_ms']:>17.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grids", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--modes", default="svg,compact,compact-unsimplified",
                        help="coverage page modes ('' for none)")
    parser.add_argument("--pages", default="problems,incidents,stations",
                        help="other pages ('' for none)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        if args.modes:
            bench_coverage(browser, args.modes.split(","), args.grids, args.repeat)
        if args.pages:
            bench_pages(browser, args.pages.split(","), args.grids, args.repeat)
        browser.close()


if __name__ == "__main__":
    main()
