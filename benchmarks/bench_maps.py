"""How fast a big coverage page opens and answers, in headless Chromium: the SVG page against the
compact canvas page (``MapSettings.compact_above``).

    python benchmarks/bench_maps.py [--grids 12000] [--repeat 3] [--chromium /usr/bin/chromium]

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
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gridmap.config import MapSettings  # noqa: E402
from gridmap.maps import coverage_map, select_unit  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grids", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--modes", default="svg,compact,compact-unsimplified")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    city = make_city(args.grids, seed=4, plant={})
    unit = select_unit(city.layers(), city.district["code"].iloc[0], max_grids=10**7)
    n = len(unit.grids)
    modes = {"svg": MapSettings(compact_above=10**7),
             "compact": MapSettings(),
             "compact-unsimplified": MapSettings(simplify_m=0)}
    print(f"coverage page of a city of {n:,} grids, median of {args.repeat}")
    print(f"{'mode':<22}{'build s':>8}{'MB':>7}{'open s':>8}{'zoom ms':>9}{'pan ms':>8}"
          f"{'click ms':>10}{'longest task ms':>17}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            html = coverage_map(unit, settings=modes[mode], inline=True)
            built = time.perf_counter() - t0
            runs = []
            for _ in range(args.repeat):
                context = browser.new_context(viewport={"width": 1280, "height": 860})
                context.route("**/*", lambda route: route.abort())
                runs.append(measure(context.new_page(), html, n))
                context.close()
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{mode:<22}{built:>8.2f}{len(html.encode()) / 1e6:>7.2f}{med['open_s']:>8.2f}"
                  f"{med['zoom_ms']:>9.0f}{med['pan_ms']:>8.0f}{med['click_ms']:>10.0f}"
                  f"{med['long_ms']:>17.0f}")
        browser.close()


if __name__ == "__main__":
    main()
