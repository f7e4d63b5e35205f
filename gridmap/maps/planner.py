"""The planner's drawing page: pick a grid of a community, reshape it or draw a split line, see
the validation of the result at once, and save it as a plan (a draft version).

The page is a folium map with Leaflet-Geoman (vendored, like every other script) and a small
panel. It talks to the service's ``/plans`` routes: every edit is sent to ``POST /plans/preview``,
which applies it on the server with the same library functions as the CLI and answers the new
grids of the community and their validation; ``Save as plan`` sends the same edit to
``POST /plans``. The browser never decides whether a coverage is valid.

Over GCJ-02 tiles (``MapSettings.gcj02``) the page draws shifted coordinates and says so in every
request (``"crs": "gcj02"``), so the server shifts drawn geometry back to WGS84.
"""

from __future__ import annotations

import json

import geopandas as gpd

from gridmap.config import MapSettings
from gridmap.maps.page import add_legend, display, geojson, new_map, on_ready, render
from gridmap.maps.units import Unit

__all__ = ["plan_map", "planner_page"]

_PANEL = """<style>
#planner-panel { position: absolute; z-index: 1000; top: 50px; right: 10px; width: 270px;
  background: #fff; padding: 8px 10px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.35); }
#planner-panel button { margin: 2px 2px 2px 0; }
#planner-status { margin-top: 6px; font-weight: 600; }
#planner-status.ok { color: #1a7f37; } #planner-status.bad { color: #b42318; }
#planner-problems { max-height: 180px; overflow: auto; padding-left: 18px; margin: 4px 0; }
</style>
<div id="planner-panel">
  <div>Plan: <b id="planner-plan">new</b> · grid: <b id="planner-selected">click a grid</b></div>
  <div>
    <button id="planner-edit" disabled>Edit boundary</button>
    <button id="planner-split" disabled>Draw split line</button>
  </div>
  <div><button id="planner-undo" disabled>Undo</button>
    <button id="planner-save" disabled>Save as plan</button></div>
  <div id="planner-status">Select a grid to edit it.</div>
  <ol id="planner-problems"></ol>
</div>"""

_SCRIPT = """
var map = MAP, cfg = CONFIG, selected = null, pending = null, history = [];
var gridStyle = {color: '#1f4e79', weight: 1.2, fillColor: '#9ecae1', fillOpacity: 0.35};
var pickStyle = {color: '#d62728', weight: 3, fillColor: '#fdae6b', fillOpacity: 0.45};
var $ = function (id) { return document.getElementById(id); };
L.geoJSON(cfg.outline, {style: {color: '#000', weight: 2.5, fill: false}, interactive: false,
                        pmIgnore: true}).addTo(map);
L.geoJSON(cfg.buildings, {style: {color: '#666', weight: 0.5, fillColor: '#999', fillOpacity: 0.5},
                          interactive: false, pmIgnore: true}).addTo(map);
var grids = L.geoJSON(null, {style: gridStyle, pmIgnore: false, onEachFeature: function (f, layer) {
  layer.bindTooltip(f.properties.code + ' · ' + f.properties.households + ' households',
                    {sticky: true});
  layer.on('click', function () { if (!map.pm.globalDrawModeEnabled()) select(layer); });
}}).addTo(map);
function draw(fc) {
  grids.clearLayers(); grids.addData(fc); selected = null;
  $('planner-selected').textContent = 'click a grid';
  $('planner-edit').disabled = true; $('planner-split').disabled = true;
  map.getContainer().dataset.plannerGrids = grids.getLayers().length;
}
function layerOf(code) {
  return grids.getLayers().filter(function (l) { return l.feature.properties.code === code; })[0];
}
function select(layer) {
  if (selected && selected !== layer) { selected.pm.disable(); grids.resetStyle(selected); }
  selected = layer; layer.setStyle(pickStyle); layer.bringToFront();
  $('planner-selected').textContent = layer.feature.properties.code;
  $('planner-edit').disabled = false; $('planner-split').disabled = false;
  map.getContainer().dataset.plannerSelected = layer.feature.properties.code;
}
function status(text, ok) {
  var el = $('planner-status'); el.textContent = text;
  el.className = ok === undefined ? '' : (ok ? 'ok' : 'bad');
}
function problems(list) {
  var ol = $('planner-problems'); ol.innerHTML = '';
  (list || []).forEach(function (p) {
    var li = document.createElement('li'); li.textContent = p.message; ol.appendChild(li);
  });
}
function send(path, op) {
  var body = {unit: cfg.unit, plan: cfg.plan, crs: cfg.crs, operation: op};
  return fetch(cfg.api + path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                body: JSON.stringify(body)})
    .then(function (r) { return r.json().then(function (b) { return {ok: r.ok, body: b}; }); });
}
function preview(op) {
  status('Checking…');
  map.getContainer().dataset.plannerChecked = '';
  send('/plans/preview', op).then(function (res) {
    var b = res.body;
    if (!res.ok) {
      status('Refused: ' + (b.detail || b.title), false); problems([]);
      draw(cfg.current); pending = null; $('planner-save').disabled = true;
    } else {
      history.push(cfg.current); cfg.current = b.grids; draw(b.grids); pending = op;
      var n = b.validation.problems.length, s = b.impact.summary;
      status((b.valid ? 'Valid' : n + ' problem' + (n === 1 ? '' : 's')) + ' · ' +
             b.grids.features.length + ' grids · ' + s.buildings_moved + ' buildings (' +
             s.households_moved + ' households) change grid', b.valid);
      problems(b.validation.problems);
      $('planner-save').disabled = false; $('planner-undo').disabled = false;
      var code = op.grid && layerOf(op.grid); if (code) select(code);
    }
    map.getContainer().dataset.plannerChecked = res.ok ? (b.valid ? 'valid' : 'problems') : 'refused';
  }).catch(function (e) { status('Could not reach the service: ' + e, false); });
}
$('planner-edit').onclick = function () {
  if (!selected) return;
  selected.pm.enable({allowSelfIntersection: false, snappable: true});
  status('Drag the vertices; every change is checked.');
};
grids.on('pm:edit', function (e) {
  var code = e.layer.feature.properties.code;
  e.layer.pm.disable();
  preview({op: 'reshape', grid: code, geometry: e.layer.toGeoJSON().geometry});
});
$('planner-split').onclick = function () {
  if (!selected) return;
  map.pm.enableDraw('Line', {snappable: false, finishOn: 'dblclick'});
  status('Click across the grid; double-click to finish the line.');
};
map.on('pm:create', function (e) {
  var line = e.layer.toGeoJSON().geometry; map.removeLayer(e.layer);
  map.pm.disableDraw();
  if (selected) preview({op: 'split', grid: selected.feature.properties.code, line: line});
});
$('planner-undo').onclick = function () {
  if (!history.length) return;
  cfg.current = history.pop(); draw(cfg.current); pending = null;
  $('planner-save').disabled = true; $('planner-undo').disabled = !history.length;
  status('Undone.'); problems([]);
};
$('planner-save').onclick = function () {
  if (!pending) return;
  $('planner-save').disabled = true; status('Saving…');
  send('/plans', pending).then(function (res) {
    if (!res.ok) { status('Not saved: ' + (res.body.detail || res.body.title), false); return; }
    cfg.plan = res.body.id; pending = null; history = [];
    $('planner-plan').textContent = '#' + res.body.id; $('planner-undo').disabled = true;
    status('Saved as plan #' + res.body.id + (res.body.valid ? '' : ' (with problems)'),
           res.body.valid);
    map.getContainer().dataset.plannerSaved = res.body.id;
  });
};
draw(cfg.current);
window.gridmapPlanner = {map: map, grids: grids, select: function (code) { select(layerOf(code)); },
                         preview: preview};
"""

_GEOMAN_JS, _GEOMAN_CSS = "leaflet-geoman.js", "leaflet-geoman.css"


def _geoman():
    """Leaflet-Geoman's script and style on the page (they add ``map.pm`` to every map)."""
    from branca.element import MacroElement
    from folium.elements import JSCSSMixin

    class _Geoman(JSCSSMixin, MacroElement):
        default_js = [(_GEOMAN_JS, "")]
        default_css = [(_GEOMAN_CSS, "")]

    return _Geoman()


def planner_page(unit: Unit, *, plan: int | None = None, api: str = "",
                 settings: MapSettings | None = None, inline: bool = False) -> str:
    """The drawing page for the grids of a community ``unit`` (as in ``plan`` when given, else
    the active version); its requests go to ``api`` + ``/plans/…``."""
    settings = settings or MapSettings()
    title = f"Plan grids — {unit.label}" + (f" (plan #{plan})" if plan is not None else "")
    m = new_map(unit.bounds, settings, title)
    _geoman().add_to(m)
    grids = display(unit.grids, settings)
    buildings = unit.layers.get("building")
    config = {
        "unit": unit.code, "plan": plan, "api": api.rstrip("/"),
        "crs": "gcj02" if settings.gcj02 else "wgs84",
        "current": geojson(grids.assign(households=_households(grids)),
                           ["code", "name", "households", "worker"]),
        "outline": geojson(display(unit.outline, settings), ["code"]),
        "buildings": geojson(display(buildings, settings), ["code"])
        if buildings is not None and len(buildings) else {"type": "FeatureCollection",
                                                           "features": []},
    }
    import folium

    m.get_root().html.add_child(folium.Element(_PANEL))
    add_legend(m, "Planner", [("#9ecae1", "grid"), ("#fdae6b", "selected grid"),
                              ("#999", "building")],
               note="Edits are checked by the service; nothing changes the active map until a "
                    "plan is published.")
    payload = json.dumps(config, ensure_ascii=False).replace("</", "<\\/")
    on_ready(m, _SCRIPT.replace("CONFIG", payload))
    return render(m, settings, inline=inline)


def _households(grids: gpd.GeoDataFrame):
    if "households" not in grids.columns:
        return 0
    return grids["households"].fillna(0).astype(int)


def plan_map(unit: Unit, plan_grids: gpd.GeoDataFrame, impact, *, plan: int | None = None,
             settings: MapSettings | None = None, inline: bool = False) -> str:
    """Before and after: the active grids of ``unit`` (grey, dashed) under the plan's grids,
    the grids that change filled orange, new grids green, and the buildings that change grid
    marked; the impact summary in the legend."""
    import folium

    from gridmap.maps.page import notice

    settings = settings or MapSettings()
    title = f"Plan #{plan} — {unit.label}" if plan is not None else f"Plan — {unit.label}"
    m = new_map(unit.bounds, settings, title)
    touched = set(impact.changed)
    fill = {"added": "#74c476", "changed": "#fd8d3c", "same": "#deebf7"}
    after = display(plan_grids, settings)
    after = after.assign(households=_households(after),
                         change=["added" if c in impact.added else
                                 "changed" if c in touched else "same"
                                 for c in after["code"].astype(str)])
    folium.GeoJson(
        geojson(after, ["code", "name", "households", "worker", "change"]), name="After (plan)",
        style_function=lambda f: {"color": "#1f4e79", "weight": 1.5, "fillOpacity": 0.45,
                                  "fillColor": fill[f["properties"]["change"]]},
        tooltip=folium.GeoJsonTooltip(["code", "households", "worker", "change"]),
    ).add_to(m)
    before = display(unit.grids, settings)
    folium.GeoJson(
        geojson(before, ["code"]), name="Before (active)", interactive=False,
        style_function=lambda f: {"color": "#333", "weight": 2, "dashArray": "5 4",
                                  "fill": False},
    ).add_to(m)
    moved = {mv["building"]: mv for mv in impact.moves}
    buildings = unit.layers.get("building")
    if buildings is not None and len(buildings) and moved:
        shown = display(buildings[buildings["code"].astype(str).isin(moved)], settings)
        shown = shown.assign(move=[f"{moved[c]['from_grid']} → {moved[c]['to_grid']}"
                                   for c in shown["code"].astype(str)],
                             households=[moved[c]["households"] for c in shown["code"].astype(str)])
        folium.GeoJson(geojson(shown, ["code", "households", "move"]), name="Buildings that move",
                       style_function=lambda f: {"color": "#b42318", "weight": 2,
                                                 "fillColor": "#b42318", "fillOpacity": 0.7},
                       tooltip=folium.GeoJsonTooltip(["code", "households", "move"])).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    s = impact.as_dict()["summary"]
    add_legend(m, "Plan against the active map",
               [(fill["changed"], f"changed grid ({s['grids_changed']})"),
                (fill["added"], f"new grid ({s['grids_added']})"),
                ("#b42318", f"building that changes grid ({s['buildings_moved']})")],
               note=f"{s['households_moved']} households change grid; {s['grids_removed']} grids "
                    f"retired; {s['open_incidents_in_changed_grids']} open incidents in changed "
                    "grids. Dashed: the active boundaries.")
    if not (touched or impact.added or impact.removed):
        notice(m, "This plan changes nothing in this unit.")
    return render(m, settings, inline=inline)
