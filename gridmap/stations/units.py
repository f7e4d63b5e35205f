"""Station coverage of one unit (street, community, district…): what ``GET /stations/coverage``
and ``gridmap stations coverage`` answer, built from :func:`coverage_report` and
:func:`suggest_site`."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely

from gridmap.crs import WGS84

from .areas import STRAIGHT_M, service_areas
from .coverage import coverage_report, suggest_site

__all__ = ["unit_coverage"]

_SHOWN = 200  # uncovered building codes listed in the answer


def _near(stations: gpd.GeoDataFrame, bounds, radius_m: float) -> gpd.GeoDataFrame:
    """Stations that can reach into the unit: inside its bounds grown by the radius."""
    minx, miny, maxx, maxy = bounds
    dlat = radius_m / 111_000
    dlon = dlat / max(math.cos(math.radians((miny + maxy) / 2)), 0.01)
    box = shapely.box(minx - dlon, miny - dlat, maxx + dlon, maxy + dlat)
    return stations[stations.to_crs(WGS84).intersects(box)]


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else round(float(value), 4)
    return value.item() if isinstance(value, np.generic) else value


def unit_coverage(unit, stations: gpd.GeoDataFrame, *, straight_m: float = STRAIGHT_M,
                  roads=None, **walk) -> dict:
    """The share of the unit's households inside some station's service area, per grid,
    community and street; the buildings left outside; and the one new service post that would
    serve the most of them (with how many households).

    ``unit`` is a :class:`gridmap.maps.units.Unit` (its buildings, grids, communities, streets).
    """
    buildings = unit.layers.get("building")
    if buildings is None or not len(buildings):
        buildings = gpd.GeoDataFrame({"code": [], "households": []},
                                     geometry=gpd.GeoSeries([], crs=WGS84))
    near = _near(stations, unit.bounds, straight_m) if len(stations) else stations
    areas = (service_areas(near, roads=roads, straight_m=straight_m, **walk) if len(near)
             else gpd.GeoDataFrame({"code": [], "method": []}, geometry=gpd.GeoSeries([], crs=WGS84)))
    levels = {"grids": unit.grids, "communities": unit.communities,
              "streets": unit.outline if unit.level == "street" else unit.layers.get("street")}
    report = coverage_report(buildings, areas, **{k: v for k, v in levels.items()
                                                  if v is not None and len(v)})
    best = suggest_site(buildings, areas, radius_m=straight_m, k=1) if len(buildings) else None
    suggestion = None
    if best is not None and len(best):
        site = best.geometry.iloc[0]
        suggestion = {"lon": round(site.x, 6), "lat": round(site.y, 6),
                      "households": int(best["households"].iloc[0]),
                      "buildings": int(best["buildings"].iloc[0]), "radius_m": straight_m}
    uncovered = report.uncovered
    return {
        "unit": {"code": unit.code, "name": unit.name, "level": unit.level},
        "stations": int(len(near)), "method": "network" if roads is not None else "straight_line",
        "households": report.households, "covered_households": report.covered_households,
        "share": _plain(report.share),
        "by_level": {level: [{k: _plain(v) for k, v in row.items()}
                             for row in table.to_dict("records")]
                     for level, table in report.by_level.items()},
        "uncovered": {"buildings": int(len(uncovered)),
                      "households": int(uncovered["households"].sum()) if "households" in uncovered else None,
                      "codes": [str(c) for c in uncovered.get("code", [])[:_SHOWN]]},
        "suggestion": suggestion,
    }
