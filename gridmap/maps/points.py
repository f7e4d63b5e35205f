"""The incidents page (clusters, heat, open incidents per grid) and the stations page (centres,
posts and their 15-minute service circles, with the buildings left outside every circle)."""

from __future__ import annotations

import datetime as dt
import html

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.config import MapSettings
from gridmap.crs import to_metric
from gridmap.maps import page
from gridmap.maps.units import OPEN, Unit

__all__ = ["incidents_map", "stations_map", "recent", "served", "near"]

STATUS_COLOURS = {"reported": "#e31a1c", "assigned": "#fd8d3c", "in_progress": "#feb24c",
                  "resolved": "#74c476", "checked": "#31a354", "closed": "#006d2c"}
OPEN_CLASSES = [(0, "#ffffff", "no open incident"), (1, "#fcbba1", "1 open incident"),
                (2, "#fb6a4a", "2 open incidents"), (3, "#a50f15", "3 or more")]
STATION_STYLE = {  # kind → (colour, radius px, layer name)
    "district_centre": ("#54278f", 10, "District centre (区党群服务中心)"),
    "street_centre": ("#2171b5", 8, "Street centres (街道党群服务中心)"),
    "community_centre": ("#41ab5d", 6, "Community centres (社区党群服务中心)"),
    "post": ("#d94801", 5, "Service posts (驿站)"),
}
DAY_CHOICES = (7, 30, 90)


def recent(incidents: gpd.GeoDataFrame, days: int | None, as_of: dt.date | None = None):
    """The incidents reported in the ``days`` days up to the end of ``as_of`` (default today)."""
    if days is None or len(incidents) == 0:
        return incidents
    end = pd.Timestamp(as_of or dt.datetime.now(dt.timezone.utc).date(), tz="UTC") \
        + pd.Timedelta(days=1)
    when = pd.to_datetime(incidents["reported_at"], utc=True)
    return incidents[(when >= end - pd.Timedelta(days=days)) & (when < end)]


def incidents_map(unit: Unit, incidents: gpd.GeoDataFrame, *, days: int | None = None,
                  as_of: dt.date | None = None, settings: MapSettings | None = None,
                  links: bool = True, inline: bool = False) -> str:
    """Incidents of ``unit``: markers clustered and coloured by status, a heat map, a choropleth
    of open incidents per grid, and links for the last 7 / 30 / 90 days."""
    import folium
    from folium.plugins import HeatMap, MarkerCluster

    settings = settings or MapSettings()
    if len(unit.grids) == 0:
        return page.message_page(f"Incidents of {unit.label}", f"{unit.label} has no grids.")
    shown = recent(incidents, days, as_of)
    period = f"last {days} days" if days else "all time"
    compact = len(unit.grids) > settings.compact_above
    m = page.new_map(unit.bounds, settings,
                     f"Incidents: {unit.label} — {len(shown):,} ({period})", canvas=compact)
    _choropleth(m, unit, shown, settings, compact=compact)
    points = page.display(shown, settings)
    cluster = MarkerCluster(name=f"Incidents ({len(points):,})")
    for row in points.itertuples():
        colour = STATUS_COLOURS.get(row.status, "#666")
        text = (f"<b>#{row.id} {html.escape(str(row.category))}</b><br>"
                f"{html.escape(str(row.description))}<br>{row.status} · "
                f"{pd.Timestamp(row.reported_at):%Y-%m-%d %H:%M}")
        folium.CircleMarker([row.geometry.y, row.geometry.x], radius=7, color="#333", weight=1,
                            fill=True, fill_color=colour, fill_opacity=0.9,
                            popup=folium.Popup(text, max_width=280)).add_to(cluster)
    cluster.add_to(m)
    heat = folium.FeatureGroup(name="Heat map", show=False)
    if len(points):
        HeatMap([[p.y, p.x] for p in points.geometry], radius=25, blur=18).add_to(heat)
    heat.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    page.add_legend(m, "Incidents by status",
                    [(c, s.replace("_", " ")) for s, c in STATUS_COLOURS.items()] +
                    [(c, f"grid: {label}") for _, c, label in OPEN_CLASSES])
    if links:
        _day_links(m, unit.code, days)
    if len(shown) == 0:
        page.notice(m, f"No incidents in {unit.label} ({period}).")
    return page.render(m, settings, inline=inline)


def _choropleth(m, unit: Unit, incidents: gpd.GeoDataFrame, settings: MapSettings, *,
                compact: bool) -> None:
    """Grids filled by their open incidents; on a big unit the compact canvas layer (a popup on
    click instead of a tooltip on hover)."""
    import folium

    grids = unit.grids[["code", "name", "geometry"]].copy()
    counts = incidents[incidents["status"].isin(OPEN)]["grid_code"].value_counts() \
        if len(incidents) else pd.Series(dtype=int)
    grids["open_incidents"] = grids["code"].map(counts).fillna(0).astype(int)
    grids = page.display(page.simplify(grids, settings), settings)
    colours = [c for _, c, _ in OPEN_CLASSES]
    fields, aliases = ["code", "name", "open_incidents"], ["grid", "name", "open incidents"]
    style = {"color": "#777", "weight": 0.5, "fillOpacity": 0.55}
    name = "Open incidents per grid"
    if compact:
        from gridmap.maps.compact import draw_compact

        fill = [colours[min(n, 3)] for n in grids["open_incidents"]]
        draw_compact(m, grids, fields, aliases, fill, name, style=style, search=False)
        return
    folium.GeoJson(
        page.geojson(grids, fields), name=name,
        style_function=lambda f: {
            "fillColor": colours[min(f["properties"]["open_incidents"], 3)], **style,
            "className": "gridmap-grid"},
        tooltip=folium.GeoJsonTooltip(fields=fields, aliases=aliases)).add_to(m)


def _day_links(m, code: str, days: int | None) -> None:
    import folium

    choices = [(d, f"last {d} days") for d in DAY_CHOICES] + [(None, "all")]
    parts = []
    for d, label in choices:
        href = f"?unit={code}" + (f"&days={d}" if d else "")
        weight = "font-weight:700;" if d == days else ""
        parts.append(f'<a href="{href}" style="{weight}margin:0 4px">{label}</a>')
    m.get_root().html.add_child(folium.Element(
        '<div id="gridmap-days" style="position:absolute;z-index:1000;top:10px;left:50%;'
        "transform:translateX(-50%);background:#fff;padding:4px 8px;border-radius:4px;"
        f'box-shadow:0 1px 4px rgba(0,0,0,.35)">Reported: {"".join(parts)}</div>'))


def served(buildings: gpd.GeoDataFrame, stations: gpd.GeoDataFrame, radius_m: float) -> np.ndarray:
    """Which buildings lie (wholly or partly) within ``radius_m`` of some station, straight-line."""
    if len(buildings) == 0 or len(stations) == 0:
        return np.zeros(len(buildings), dtype=bool)
    metric, crs = to_metric(buildings)
    centres = stations.to_crs(crs)
    circles = shapely.buffer(np.asarray(centres.geometry.values, dtype=object), radius_m)
    tree = shapely.STRtree(circles)
    hit, _ = tree.query(np.asarray(metric.geometry.values, dtype=object), predicate="intersects")
    inside = np.zeros(len(buildings), dtype=bool)
    inside[np.unique(hit)] = True
    return inside


def near(stations: gpd.GeoDataFrame, unit: Unit, radius_m: float) -> gpd.GeoDataFrame:
    """The stations whose circle reaches into the unit: a neighbour's station serves it too."""
    if len(stations) == 0:
        return stations
    outline, crs = to_metric(unit.outline)
    reach = shapely.buffer(outline.geometry.union_all(), radius_m)
    return stations[shapely.intersects(reach, stations.to_crs(crs).geometry.values)]


def stations_map(unit: Unit, stations: gpd.GeoDataFrame, *, settings: MapSettings | None = None,
                 inline: bool = False) -> str:
    """Centres and posts by level, their service circles (``settings.service_radius_m``,
    straight-line) and the buildings outside every circle, shaded."""
    import folium

    settings = settings or MapSettings()
    if len(unit.grids) == 0:
        return page.message_page(f"Stations of {unit.label}", f"{unit.label} has no grids.")
    radius = settings.service_radius_m
    stations = near(stations, unit, radius)
    buildings = unit.layers.get("building")
    compact = len(unit.grids) > settings.compact_above
    m = page.new_map(unit.bounds, settings, f"Service stations: {unit.label} — {len(stations):,}",
                     canvas=compact)
    grids = page.display(page.simplify(unit.grids, settings), settings)
    style = {"fillColor": "#fff", "color": "#aaa", "weight": 0.5, "fillOpacity": 0.2}
    if compact:
        from gridmap.maps.compact import draw_compact

        # Clickable here (a popup naming the grid): the stations, drawn later on the same
        # canvas, still take the clicks over them, and the circles take none.
        fields = [c for c in ("code", "name", "worker") if c in grids.columns]
        draw_compact(m, grids, fields, fields, "#fff", "Grids (网格)", style=style, search=False)
    else:
        folium.GeoJson(page.geojson(grids, ["code"]), name="Grids (网格)",
                       style_function=lambda f: {**style, "className": "gridmap-grid"},
                       interactive=False).add_to(m)
    shown = page.display(stations, settings)
    circles = folium.FeatureGroup(name=f"15-minute service circles ({radius:,.0f} m)")
    for p in shown.geometry:
        folium.Circle([p.y, p.x], radius=radius, color="#3182bd", weight=1, fill=True,
                      fill_opacity=0.08, interactive=False).add_to(circles)
    circles.add_to(m)
    outside = 0
    if buildings is not None and len(buildings):
        left = buildings[~served(buildings, stations, radius)]
        outside = len(left)
        layer = folium.FeatureGroup(name=f"Buildings outside every circle ({outside:,})")
        if outside:
            columns = [c for c in ("code", "households") if c in left.columns]
            folium.GeoJson(page.geojson(page.display(left, settings), columns),
                           style_function=lambda f: {"color": "#a50f15", "fillColor": "#de2d26",
                                                     "weight": 1, "fillOpacity": 0.8,
                                                     "className": "gridmap-unserved"},
                           tooltip=folium.GeoJsonTooltip(fields=columns)).add_to(layer)
        layer.add_to(m)
    for kind, (colour, size, name) in STATION_STYLE.items():
        mine = shown[shown["kind"] == kind] if "kind" in shown.columns else shown.iloc[:0]
        group = folium.FeatureGroup(name=f"{name} ({len(mine)})")
        for row in mine.itertuples():
            area = getattr(row, "floor_area_m2", None)
            text = f"<b>{html.escape(str(row.name))}</b><br>{kind.replace('_', ' ')}" + \
                (f"<br>{area:,.0f} m²" if area is not None and area == area else "")
            folium.CircleMarker([row.geometry.y, row.geometry.x], radius=size, color="#fff",
                                weight=1.5, fill=True, fill_color=colour, fill_opacity=1,
                                popup=folium.Popup(text, max_width=260)).add_to(group)
        group.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    walked = 15 / 60 * 4500
    page.add_legend(m, "Service stations",
                    [(c, name) for c, _, name in STATION_STYLE.values()] +
                    [("#c6dbef", f"service circle: {radius:,.0f} m straight-line"),
                     ("#de2d26", "building outside every circle")],
                    note=f"15 minutes at 4.5 km/h is {walked:,.0f} m walked; streets are not "
                         f"straight, so the circle is {radius:,.0f} m as the crow flies.")
    if len(stations) == 0:
        page.notice(m, f"No service stations recorded in {unit.label}.")
    return page.render(m, settings, inline=inline)
