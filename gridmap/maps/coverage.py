"""The coverage page (grids coloured by households against their target) and the problems page."""

from __future__ import annotations

import html
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.config import MapSettings, ValidationOptions
from gridmap.maps import page
from gridmap.maps.units import OPEN, Unit

__all__ = ["coverage_map", "problems_map", "unit_report", "household_class", "BANDS"]

#: Household classes, their colours and what they mean (the legend).
BANDS = {
    "under": ("#6baed6", "fewer households than the target band"),
    "within": ("#41ab5d", "within the target band"),
    "over": ("#e6550d", "more households than the target band"),
    "dedicated": ("#9e9ac8", "dedicated grid (专属网格): exempt"),
    "unknown": ("#bdbdbd", "households not recorded"),
}
LEVEL_NAMES = {"grid": "Grids (网格)", "community": "Communities (社区/村)",
               "street": "Streets (街道/乡镇)"}
OUTLINE = {"community": ("#333333", 1.2, "4 3"), "street": ("#000000", 2.5, None)}


def household_class(grids: gpd.GeoDataFrame, communities: gpd.GeoDataFrame | None,
                    options: ValidationOptions) -> pd.Series:
    """Each grid's class against 200 ± 50 households (urban) or 50 ± 15 (rural): the kind of its
    community decides (urban when unknown); dedicated grids are exempt."""
    rural = pd.Series(False, index=grids.index)
    if communities is not None and "kind" in communities.columns and "parent_code" in grids:
        kinds = dict(zip(communities["code"].astype(str), communities["kind"]))
        rural = grids["parent_code"].astype(str).map(kinds).eq("rural")
    households = pd.to_numeric(grids.get("households"), errors="coerce") \
        if "households" in grids else pd.Series(np.nan, index=grids.index)
    low = np.where(rural, options.rural.low, options.urban.low)
    high = np.where(rural, options.rural.high, options.urban.high)
    out = np.select([households.isna(), households < low, households > high],
                    ["unknown", "under", "over"], "within")
    out = pd.Series(out, index=grids.index)
    if "kind" in grids.columns:
        out[grids["kind"].eq("dedicated")] = "dedicated"
    return out


def _grid_table(unit: Unit, incidents: gpd.GeoDataFrame | None,
                options: ValidationOptions) -> gpd.GeoDataFrame:
    grids = unit.grids.copy()
    for column in ("name", "kind", "worker"):
        if column not in grids.columns:
            grids[column] = ""
    grids["households"] = pd.to_numeric(grids.get("households", np.nan), errors="coerce")
    grids["band"] = household_class(grids, unit.communities, options)
    grids["open_incidents"] = 0
    if incidents is not None and len(incidents) and "grid_code" in incidents:
        open_ = incidents[incidents["status"].isin(OPEN)]
        counts = open_["grid_code"].value_counts()
        grids["open_incidents"] = grids["code"].map(counts).fillna(0).astype(int)
    grids["worker"] = grids["worker"].fillna("— none —").replace("", "— none —")
    grids["label"] = grids["code"].astype(str) + " " + grids["name"].fillna("").astype(str)
    return grids


def coverage_map(unit: Unit, *, incidents: gpd.GeoDataFrame | None = None,
                 settings: MapSettings | None = None, options: ValidationOptions | None = None,
                 inline: bool = False) -> str:
    """The grids of ``unit`` coloured by households against their target, with the community
    and street outlines, a layer per level, a popup per grid and a search box; HTML."""
    import folium

    settings = settings or MapSettings()
    options = options or ValidationOptions()
    if len(unit.grids) == 0:
        return page.message_page(f"Coverage of {unit.label}", f"{unit.label} has no grids.")
    compact = len(unit.grids) > settings.compact_above
    m = page.new_map(unit.bounds, settings, f"Coverage: {unit.label} — {len(unit.grids):,} grids",
                     canvas=compact)
    grids = page.display(page.simplify(_grid_table(unit, incidents, options), settings), settings)
    fields = ["code", "name", "kind", "households", "worker", "open_incidents"]
    aliases = ["code", "name", "kind", "households", "worker", "open incidents"]
    colours = {k: c for k, (c, _) in BANDS.items()}
    if compact:
        _compact_grids(m, grids, fields, aliases, colours)
    else:
        _svg_grids(m, grids, fields, aliases, colours)
    for level in ("community", "street"):
        frame = unit.layers.get(level)
        if frame is not None and len(frame) and level != unit.level:
            _outline(frame, level, settings, interactive=not compact).add_to(m)
    _outline(unit.outline, unit.level, settings, name=f"{unit.label} outline",
             interactive=not compact).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    band = (f"urban {options.urban.target:g} ± {options.urban.tolerance:g}, "
            f"rural {options.rural.target:g} ± {options.rural.tolerance:g} households per grid")
    page.add_legend(m, "Households against the target",
                    [(c, label) for c, label in BANDS.values()], note=band)
    return page.render(m, settings, inline=inline)


def _svg_grids(m, grids, fields, aliases, colours) -> None:
    """One SVG path per grid (``path.gridmap-grid``), its properties carried by its feature."""
    import folium
    from folium.plugins import Search

    layer = folium.FeatureGroup(name=LEVEL_NAMES["grid"])
    shapes = folium.GeoJson(
        page.geojson(grids, fields + ["band", "label"]), name="grids",
        style_function=lambda f: {"fillColor": colours[f["properties"]["band"]], "color": "#555",
                                  "weight": 0.6, "fillOpacity": 0.6, "className": "gridmap-grid"},
        highlight_function=lambda f: {"weight": 2.5, "color": "#000"},
        popup=folium.GeoJsonPopup(fields=fields, aliases=aliases), smooth_factor=0.5)
    shapes.add_to(layer)
    layer.add_to(m)
    Search(layer=shapes, geom_type="Polygon", search_label="label", collapsed=False,
           placeholder="grid code or name", position="topleft").add_to(m)
    # Match anywhere in "code name", so a grid is found by its name too (the default: the
    # start); once there, open the grid's popup (bound to the whole layer, so folium's own
    # openPopup of the found grid finds none).
    name = shapes.get_name()
    page.on_ready(m, f"var s = {name}searchControl; s.options.initial = false;"
                     "s.on('search:locationfound', function (e) { MAP.once('moveend', function () {"
                     f"{name}._popup._source = e.layer;"
                     f"{name}.openPopup(e.layer.getBounds().getCenter()); }}); }});")


def _compact_grids(m, grids, fields, aliases, colours) -> None:
    """Every grid on the map's canvas, popups built on click (see gridmap.maps.compact)."""
    from gridmap.maps.compact import draw_compact

    draw_compact(m, grids, fields, aliases, grids["band"].map(colours), LEVEL_NAMES["grid"])


def _outline(frame: gpd.GeoDataFrame, level: str, settings: MapSettings, name: str | None = None,
             interactive: bool = True):
    """A level's outlines. Not interactive on a canvas page: Leaflet's canvas hit-tests a polygon
    by its area even unfilled, so an outline would take the clicks meant for its grids."""
    import folium

    colour, weight, dash = OUTLINE.get(level, ("#000", 3, None))
    shown = page.display(frame, settings)
    columns = [c for c in ("code", "name") if c in shown.columns]
    return folium.GeoJson(
        page.geojson(shown, columns), name=name or LEVEL_NAMES.get(level, level),
        style_function=lambda f: {"fill": False, "color": colour, "weight": weight,
                                  "dashArray": dash, "className": f"gridmap-{level}"},
        tooltip=folium.GeoJsonTooltip(fields=columns) if columns and interactive else None,
        interactive=interactive and level != "street")


PROBLEM_COLOURS = {"gap": "#e31a1c", "overlap": "#ff7f00", "outside_parent": "#6a3d9a",
                   "split_building": "#1f78b4", "invalid_geometry": "#000000",
                   "size_out_of_range": "#b15928", "no_worker": "#fb9a99"}


def unit_report(unit: Unit, options: ValidationOptions | None = None):
    """The validation report of the unit's grids against their communities and buildings."""
    from gridmap.validate import validate_coverage

    if len(unit.grids) == 0:
        from gridmap.report import Report

        return Report([], {"grids": 0})
    return validate_coverage(unit.grids, parents=unit.communities,
                             buildings=unit.layers.get("building"), options=options)


def problems_map(unit: Unit, report, *, settings: MapSettings | None = None,
                 inline: bool = False) -> str:
    """A validation ``report`` drawn over the unit's grids: each problem type in its colour and
    layer with its message, and a list beside the map that zooms to a problem when clicked."""
    import folium

    settings = settings or MapSettings()
    located = [p for p in report.problems if p.geometry is not None and not p.geometry.is_empty]
    title = f"Problems: {unit.label} — {len(report.problems):,} found"
    compact = len(unit.grids) > settings.compact_above
    m = page.new_map(unit.bounds, settings, title, canvas=compact)
    grids = page.display(page.simplify(unit.grids, settings), settings)
    style = {"fillColor": "#ffffff", "color": "#888", "weight": 0.5, "fillOpacity": 0.3}
    if compact:
        from gridmap.maps.compact import draw_compact

        # Drawn first, so the problems on the same canvas take the clicks over them.
        fields = [c for c in ("code", "name") if c in grids.columns]
        draw_compact(m, grids, fields, fields, "#ffffff", LEVEL_NAMES["grid"], style=style,
                     search=False)
    elif len(grids):
        folium.GeoJson(page.geojson(grids, ["code"]), name=LEVEL_NAMES["grid"],
                       style_function=lambda f: {**style, "className": "gridmap-grid"},
                       tooltip=folium.GeoJsonTooltip(fields=["code"])).add_to(m)
    items = []
    for kind in sorted({p.type for p in located}):
        colour = PROBLEM_COLOURS.get(kind, "#e7298a")
        mine = [p for p in located if p.type == kind]
        frame = gpd.GeoDataFrame(
            {"type": kind, "severity": [p.severity for p in mine],
             "message": [p.message for p in mine]},
            geometry=[_visible(p.geometry) for p in mine], crs=4326)
        shown = page.display(frame, settings)
        folium.GeoJson(page.geojson(shown, ["type", "severity", "message"]),
                       name=f"{kind} ({len(mine)})",
                       style_function=lambda f, c=colour: {"color": c, "fillColor": c, "weight": 3,
                                                           "fillOpacity": 0.6,
                                                           "className": "gridmap-problem"},
                       popup=folium.GeoJsonPopup(fields=["type", "severity", "message"])).add_to(m)
        for p, shape in zip(mine, shown.geometry):
            items.append((colour, p, shape.bounds))
    folium.LayerControl(collapsed=False).add_to(m)
    page.add_legend(m, "Problems", [(PROBLEM_COLOURS.get(k, "#e7298a"), k)
                                   for k in sorted({p.type for p in located})] or
                    [("#ffffff", "no problems found")])
    _problem_list(m, report, items)
    return page.render(m, settings, inline=inline)


def _visible(geometry):
    """A problem as drawn: points and lines buffered a little (~3 m) so they can be clicked."""
    if geometry.geom_type in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        return shapely.buffer(geometry, 3e-5)
    return geometry


def _problem_list(m, report, items) -> None:
    import folium

    if not report.problems:
        body = '<p id="gridmap-clean">No problems: the coverage is clean.</p>'
    else:
        rows = []
        for colour, p, (minx, miny, maxx, maxy) in items:
            bounds = html.escape(json.dumps([[miny, minx], [maxy, maxx]]))
            rows.append(f'<li data-bounds="{bounds}" style="border-left:6px solid {colour}">'
                        f"<b>{html.escape(p.type)}</b> ({p.severity}) {html.escape(p.message)}</li>")
        unplaced = len(report.problems) - len(items)
        tail = f"<p>{unplaced} problems have no location (codes, workers).</p>" if unplaced else ""
        body = f'<ol id="gridmap-problems">{"".join(rows)}</ol>{tail}'
    m.get_root().html.add_child(folium.Element(
        # Beside the map, not over it: the map keeps its full controls.
        '<div id="gridmap-problem-list" style="position:fixed;top:0;right:0;bottom:0;width:340px;'
        'overflow:auto;background:#fff;padding:8px;box-sizing:border-box;font-size:12px;'
        'border-left:1px solid #ccc">'
        f"<b>{len(report.problems)} problems</b>{body}</div>"
        "<style>.folium-map{width:calc(100% - 340px) !important}"
        "#gridmap-problems{padding-left:22px}"
        "#gridmap-problems li{cursor:pointer;padding:3px 5px;margin:3px 0}"
        "#gridmap-problems li:hover{background:#eee}</style>"))
    page.on_ready(m, "document.querySelectorAll('#gridmap-problems li').forEach(function (li) {"
                     "li.addEventListener('click', function () {"
                     "MAP.fitBounds(JSON.parse(li.dataset.bounds), {maxZoom: 18}); });});")
