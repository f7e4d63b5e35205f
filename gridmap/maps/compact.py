"""Grids of a big unit (a city of 10,000+) drawn compact: one canvas, compact coordinates, and
popups built on click from a table of rows instead of properties carried by every feature.

Every page that draws grids (coverage, problems, incidents, stations) switches to this layer above
``MapSettings.compact_above`` grids; each passes its own popup fields, a fill colour per grid (or
one for all) and its outline style.

What a big page costs is not vertices (a grid has ~8) but one SVG path and one properties object
per grid, and one style entry per grid in folium's style map. Measured with
``benchmarks/bench_maps.py`` for 12,000 grids: 8.5 MB and 2.7–4.3 s to open as SVG, against
~3.2 MB and ~1 s here; a pan repaints in ~80 ms, a zoom in ~280 ms (Leaflet re-projecting
every polygon).

Coordinates are integers in 1e-6° (~0.1 m) from the first point, each ring a flat array of
differences (x, y, dx, dy, ...): a ring of 8 vertices is ~60 characters instead of ~200. Fill
colours travel as a small palette and one index per grid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["CompactGrids", "draw_compact", "encode", "SCRIPT"]

SCALE = 1_000_000  # 1e-6° ≈ 0.1 m


def _ring(coords: np.ndarray, origin: np.ndarray) -> list[int]:
    # Leaflet closes polygons itself: the repeated last point is dropped.
    ints = np.rint((coords[:-1] - origin) * SCALE).astype(np.int64)
    deltas = np.vstack([ints[:1], np.diff(ints, axis=0)])
    return deltas.ravel().tolist()


def encode(geometries, origin: tuple[float, float]) -> list[list[list[list[int]]]]:
    """Each (multi)polygon as a list of polygons, each a list of rings as integer differences."""
    base = np.asarray(origin, dtype=float)
    out = []
    for geom in geometries:
        parts = shapely.get_parts(geom) if geom.geom_type == "MultiPolygon" else [geom]
        out.append([[_ring(np.asarray(p.exterior.coords)[:, :2], base)] +
                    [_ring(np.asarray(r.coords)[:, :2], base) for r in p.interiors]
                    for p in parts])
    return out


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _layer_class():
    from folium.elements import JSCSSMixin
    from folium.map import Layer
    from folium.template import Template

    class _CompactGrids(JSCSSMixin, Layer):
        _template = Template("""
            {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = gridmapCompactGrids({{ this._parent.get_name() }},
                {{ this.payload|safe }});
            {% endmacro %}
        """)

        def __init__(self, payload: str, name: str, search: bool):
            super().__init__(name=name, overlay=True, control=True, show=True)
            self._name = "CompactGrids"
            self.payload = payload
            if search:  # the plugin only where a page offers the search box
                self.default_js = [("Leaflet.Search.js", "")]
                self.default_css = [("Leaflet.Search.css", "")]

    return _CompactGrids


#: Outline of every grid unless a page says otherwise (the coverage page's).
STYLE = {"color": "#555", "weight": 0.6, "fillOpacity": 0.6}


def CompactGrids(grids: gpd.GeoDataFrame, fields: list[str], aliases: list[str],
                 fill: str | Sequence[str], name: str, *, style: dict | None = None,
                 search: bool = True):
    """A folium layer of ``grids`` on the map's canvas: its popup a table of ``fields`` (shown as
    ``aliases``), each grid filled with its colour in ``fill`` (one per grid, in order) or all
    with one colour, outlined as ``style`` says (Leaflet path options over :data:`STYLE`).

    With ``search``, a search box over "code name" (the first two fields). The page marks the
    map ``data-gridmap-drawn`` with the number of grids once drawn.
    """
    minx, miny = grids.total_bounds[:2]
    origin = (round(float(minx), 6), round(float(miny), 6))
    colours = [fill] * len(grids) if isinstance(fill, str) else list(fill)
    if len(colours) != len(grids):
        raise ValueError(f"{len(colours)} fill colours for {len(grids)} grids")
    index, palette = pd.factorize(pd.Series(colours, dtype=object))
    rows = json.loads(grids[fields].to_json(orient="values", force_ascii=False))
    payload = {"origin": origin, "scale": SCALE, "fields": aliases,
               "style": {**STYLE, **(style or {})}, "search": bool(search),
               "colours": [str(c) for c in palette], "fill": index.tolist(),
               "rows": rows, "shapes": encode(grids.geometry.values, origin)}
    return _layer_class()(_json(payload), name, search)


def draw_compact(m, grids: gpd.GeoDataFrame, fields: list[str], aliases: list[str],
                 fill: str | Sequence[str], name: str, **options) -> None:
    """Add :func:`CompactGrids` (and the script that decodes it, once) to the map ``m``."""
    import folium

    m.get_root().header.add_child(folium.Element(SCRIPT), name="gridmap_compact")
    CompactGrids(grids, fields, aliases, fill, name, **options).add_to(m)


#: Decodes the payload into polygons on the map's canvas, one shared popup built on click, and
#: (when asked) a search control over the labels; exposed as ``window.gridmapGrids`` for scripts
#: and tests.
SCRIPT = """<script>
function gridmapCompactGrids(map, d) {
  var x0 = d.origin[0], y0 = d.origin[1], s = d.scale;
  function ring(r) {
    var out = new Array(r.length / 2), x = 0, y = 0;
    for (var k = 0; k < r.length; k += 2) {
      x += r[k]; y += r[k + 1];
      out[k / 2] = [y0 + y / s, x0 + x / s];
    }
    return out;
  }
  var group = L.featureGroup();
  var base = d.style;
  for (var i = 0; i < d.shapes.length; i++) {
    var latlngs = d.shapes[i].map(function (p) { return p.map(ring); });
    var row = d.rows[i];
    var poly = L.polygon(latlngs.length === 1 ? latlngs[0] : latlngs, L.extend(
      {fillColor: d.colours[d.fill[i]], smoothFactor: 0.5,
       label: d.search ? row[0] + (row.length > 1 ? ' ' + row[1] : '') : undefined},
      base));
    poly.gridmapIndex = i;
    group.addLayer(poly);
  }
  function escape(v) {
    return String(v === null ? '' : v).replace(/[&<>"]/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c];
    });
  }
  function content(i) {
    var row = d.rows[i], cells = '';
    for (var k = 0; k < d.fields.length; k++)
      cells += '<tr><th>' + escape(d.fields[k]) + '</th><td>' + escape(row[k]) + '</td></tr>';
    return '<table class="gridmap-popup">' + cells + '</table>';
  }
  function open(layer, latlng) {
    L.popup({maxWidth: 300}).setLatLng(latlng).setContent(content(layer.gridmapIndex)).openOn(map);
  }
  group.on('click', function (e) { open(e.layer, e.latlng); });
  group.on('mouseover', function (e) { e.layer.setStyle({weight: 2.5, color: '#000'}); });
  group.on('mouseout', function (e) { e.layer.setStyle(base); });
  group.on('add', function () {
    requestAnimationFrame(function () { map.getContainer().dataset.gridmapDrawn = d.shapes.length; });
  });
  if (d.search) {
    var search = new L.Control.Search({layer: group, propertyName: 'label', initial: false,
      marker: false, collapsed: false, textPlaceholder: 'grid code or name', position: 'topleft',
      moveToLocation: function (latlng, title, map) {
        map.fitBounds(latlng.layer.getBounds(), {maxZoom: 18, animate: false});
      }});
    search.on('search:locationfound', function (e) {
      open(e.layer, e.layer.getBounds().getCenter());
    });
    map.addControl(search);
  }
  window.gridmapGrids = group;
  return group;
}
</script>"""
