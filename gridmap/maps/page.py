"""What every supervisor page shares: an offline folium map, the legend, the tiles, the output.

Offline first (intranets): folium's defaults point at CDNs; every script and stylesheet a page
uses is rewritten to the copies vendored in ``gridmap/static/vendor`` (see its README), served by
gridmap at ``MapSettings.assets``, or inlined into one self-contained file for the command line.
A script folium wants that is not vendored is an error, never a silent CDN reference.
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from gridmap.config import MapSettings

VENDOR = Path(__file__).resolve().parents[1] / "static" / "vendor"

#: folium's asset names → the vendored file (relative to VENDOR), or None: not needed by our pages
#: (Bootstrap and Font Awesome style folium's icon markers, which the pages do not use).
ASSETS: dict[str, str | None] = {
    "leaflet": "leaflet/dist/leaflet.js",
    "leaflet_css": "leaflet/dist/leaflet.css",
    "jquery": "jquery/dist/jquery.min.js",
    "bootstrap": None, "bootstrap_css": None, "glyphicons_css": None,
    "awesome_markers": None, "awesome_markers_css": None, "awesome_markers_font_css": None,
    "awesome_rotate_css": None,
    "markerclusterjs": "leaflet.markercluster/dist/leaflet.markercluster.js",
    "markerclustercss": "leaflet.markercluster/dist/MarkerCluster.css",
    "markerclusterdefaultcss": "leaflet.markercluster/dist/MarkerCluster.Default.css",
    "leaflet-heat.js": "leaflet.heat/dist/leaflet-heat.js",
    "Leaflet.Search.js": "leaflet-search/dist/leaflet-search.min.js",
    "Leaflet.Search.css": "leaflet-search/dist/leaflet-search.min.css",
    "leaflet-geoman.js": "leaflet-geoman/dist/leaflet-geoman.js",  # the planner page
    "leaflet-geoman.css": "leaflet-geoman/dist/leaflet-geoman.css",
}

_STYLE = """<style>
body, .leaflet-container { font: 13px/1.4 "Noto Sans CJK SC", "Noto Sans", sans-serif; }
.leaflet-container { background: #f2efe9; }
.gridmap-legend { position: absolute; z-index: 1000; bottom: 24px; right: 10px; background: #fff;
  padding: 6px 9px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.35); font-size: 12px; }
.gridmap-legend i { display: inline-block; width: 14px; height: 14px; margin-right: 6px;
  vertical-align: -2px; border: 1px solid #555; }
.gridmap-title { position: absolute; z-index: 1000; top: 10px; left: 56px; background: #fff;
  padding: 4px 10px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.35); font-weight: 600; }
</style>"""


def new_map(bounds, settings: MapSettings, title: str, *, canvas: bool = False):
    """A folium map fitted to ``bounds`` (minx, miny, maxx, maxy, WGS84) with the configured tiles;
    its vector layers drawn on one canvas when ``canvas`` (big units), else as SVG paths."""
    import folium

    tiles = None if settings.tiles.strip().lower() in ("", "none") else settings.tiles
    # maxZoom on the map itself: marker clusters need it even with no tile layer.
    m = folium.Map(tiles=None, control_scale=True, maxZoom=settings.max_zoom,
                   prefer_canvas=canvas)
    if tiles:
        folium.TileLayer(tiles, attr=settings.attribution or "tiles", name="Base map",
                         max_zoom=settings.max_zoom, subdomains=settings.subdomains,
                         overlay=False, control=False).add_to(m)
    minx, miny, maxx, maxy = display_bounds(bounds, settings)
    m.fit_bounds([[miny, minx], [maxy, maxx]])
    root = m.get_root()
    root.header.add_child(folium.Element(_STYLE), name="gridmap_style")
    root.title = title
    root.html.add_child(folium.Element(
        f'<div class="gridmap-title" id="gridmap-title">{html.escape(title)}</div>'))
    return m


def add_legend(m, heading: str, rows: list[tuple[str, str]], note: str = "") -> None:
    """A legend box: ``rows`` of (colour, what it means)."""
    import folium

    items = "".join(f'<div><i style="background:{c}"></i>{html.escape(label)}</div>'
                    for c, label in rows)
    extra = f'<div style="color:#555;max-width:260px">{html.escape(note)}</div>' if note else ""
    m.get_root().html.add_child(folium.Element(
        f'<div class="gridmap-legend" id="gridmap-legend"><b>{html.escape(heading)}</b>'
        f"{items}{extra}</div>"))


def on_ready(m, js: str) -> None:
    """Run ``js`` once the page's scripts have run (the map exists as ``MAP``)."""
    import folium

    code = js.replace("MAP", m.get_name())
    m.get_root().html.add_child(folium.Element(
        f"<script>document.addEventListener('DOMContentLoaded', function () {{{code}}});</script>"))


def display(frame: gpd.GeoDataFrame, settings: MapSettings) -> gpd.GeoDataFrame:
    """``frame`` as drawn: shifted into GCJ-02 over GCJ-02 tiles, coordinates to ~0.1 m."""
    from gridmap.crs import shift_geometries

    if len(frame) == 0:
        return frame
    geoms = np.asarray(frame.geometry.values, dtype=object)
    if settings.gcj02:
        geoms = shift_geometries(geoms, "gcj02", inverse=False)
    out = frame.copy()
    out.geometry = gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs)
    return out


def display_bounds(bounds, settings: MapSettings):
    if not settings.gcj02:
        return tuple(bounds)
    from gridmap.crs import wgs84_to_gcj02

    xs, ys = wgs84_to_gcj02(np.array([bounds[0], bounds[2]]), np.array([bounds[1], bounds[3]]))
    return xs[0], ys[0], xs[1], ys[1]


def simplify(frame: gpd.GeoDataFrame, settings: MapSettings) -> gpd.GeoDataFrame:
    """Grids beyond ``simplify_above`` simplified as one coverage: shared edges stay shared, so
    the map shows no slivers between neighbours (``shapely.coverage_simplify``)."""
    if len(frame) <= settings.simplify_above or settings.simplify_m <= 0:
        return frame
    tolerance = settings.simplify_m / 111_000  # metres → degrees of latitude
    geoms = np.asarray(frame.geometry.values, dtype=object)
    try:
        simple = shapely.coverage_simplify(geoms, tolerance)
    except shapely.errors.GEOSException:  # not a valid coverage: simplify each on its own
        simple = shapely.simplify(geoms, tolerance, preserve_topology=True)
    out = frame.copy()
    out.geometry = gpd.GeoSeries(simple, index=frame.index, crs=frame.crs)
    return out


def geojson(frame: gpd.GeoDataFrame, columns: list[str]) -> dict:
    """A FeatureCollection of ``columns`` with coordinates rounded to 1e-6° (~0.1 m)."""
    geoms = shapely.set_precision(np.asarray(frame.geometry.values, dtype=object), 1e-6,
                                  mode="pointwise")
    texts = shapely.to_geojson(geoms)
    records = json.loads(frame[columns].to_json(orient="records", force_ascii=False))
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": json.loads(g), "properties": r}
                         for g, r in zip(texts, records)]}


def render(m, settings: MapSettings, *, inline: bool = False) -> str:
    """The complete HTML of ``m`` with every asset vendored: referenced under
    ``settings.assets``, or inlined (one self-contained file, for the command line)."""
    _offline(m)
    page = m.get_root().render()
    page = page.replace("@@VENDOR@@", settings.assets.rstrip("/"))
    if inline:
        page = _inline(page, settings.assets.rstrip("/"))
    return page


def _offline(element) -> None:
    """Point every element's scripts and styles at the vendored copies (dropping unneeded ones)."""
    for attr in ("default_js", "default_css"):
        assets = getattr(element, attr, None)
        if assets:
            rewritten = []
            for name, url in assets:
                if name not in ASSETS:
                    raise RuntimeError(f"folium asset {name} ({url}) is not vendored: add it to "
                                       "gridmap/static/vendor/fetch.sh and gridmap.maps.page.ASSETS")
                if ASSETS[name]:
                    rewritten.append((name, f"@@VENDOR@@/{ASSETS[name]}"))
            setattr(element, attr, rewritten)
    for child in list(getattr(element, "_children", {}).values()):
        _offline(child)


def _inline(page: str, base: str) -> str:
    def script(match):
        text = (VENDOR / match.group(1)).read_text(encoding="utf-8")
        return "<script>" + text.replace("</script", "<\\/script") + "</script>"

    def style(match):
        path = VENDOR / match.group(1)
        css = re.sub(r"url\(([^)\"']+)\)", lambda u: f"url({_data_uri(path.parent / u.group(1))})",
                     path.read_text(encoding="utf-8"))
        return f"<style>{css}</style>"

    prefix = re.escape(base + "/")
    page = re.sub(rf'<script src="{prefix}([^"]+)"></script>', script, page)
    return re.sub(rf'<link rel="stylesheet" href="{prefix}([^"]+)"/>', style, page)


def _data_uri(path: Path) -> str:
    if not path.is_file():
        return "''"
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def notice(m, text: str) -> None:
    """A message over the map (e.g. "no incidents in the last 7 days"): never a silent blank."""
    import folium

    m.get_root().html.add_child(folium.Element(
        '<div id="gridmap-notice" style="position:absolute;z-index:1000;top:50px;left:50%;'
        "transform:translateX(-50%);background:#fff3cd;border:1px solid #e0c36c;padding:6px 12px;"
        f'border-radius:4px">{html.escape(text)}</div>'))


def show(page: str, height: int = 520):
    """A page shown inline in a notebook (an iframe of its HTML); build it with ``inline=True`` so
    it needs no server."""
    from IPython.display import HTML

    return HTML(f'<iframe srcdoc="{html.escape(page)}" style="width:100%;height:{height}px;'
                'border:1px solid #ccc"></iframe>')


def message_page(title: str, message: str) -> str:
    """A plain page that says what is wrong, instead of a blank map."""
    return (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title></head><body style="font:15px sans-serif;margin:3em">'
            f'<h1>{html.escape(title)}</h1><p id="gridmap-message">{html.escape(message)}</p>'
            "</body></html>")
