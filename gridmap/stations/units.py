"""Station coverage of one unit (street, community, district…): what ``GET /stations/coverage``
and ``gridmap stations UNIT`` answer, built from :func:`coverage_report` and
:func:`suggest_site`."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely

from gridmap.crs import WGS84

from .areas import STRAIGHT_M, WALK_OFFSET_M, service_areas, walk_budget_m
from .coverage import coverage_report, suggest_site
from .network import WalkNetwork, build_network

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


def _service_area(network: bool, straight_m: float, walk: dict) -> dict:
    """How the service areas were drawn, for a supervisor reading the numbers."""
    if not network:
        return {"method": "straight_line", "radius_m": straight_m}
    return {"method": "network", "minutes": walk["minutes"], "speed_kmh": walk["speed_kmh"],
            "walk_m": round(walk_budget_m(walk["minutes"], walk["speed_kmh"]), 1),
            "offset_m": walk["offset_m"]}


def _off_network(net: WalkNetwork, stations: gpd.GeoDataFrame, budget: float) -> list[str]:
    """A note when stations lie farther from every road than the whole walk: they reach almost
    nothing, which usually means a road layer of another area."""
    if not len(stations):
        return []
    points = stations.geometry.to_crs(net.crs).to_numpy()
    _, dist = net.tree.query_nearest(points, return_distance=True, all_matches=False)
    far = int((dist > budget).sum())
    if not far:
        return []
    return [(f"{far} of {len(stations)} stations lie more than {budget:,.0f} m from every road "
             "of the road layer: does it cover this unit?")]


def unit_coverage(unit, stations: gpd.GeoDataFrame, *, straight_m: float = STRAIGHT_M,
                  roads=None, minutes: float = 15, speed_kmh: float = 4.5,
                  offset_m: float = WALK_OFFSET_M) -> dict:
    """The share of the unit's households inside some station's service area, per grid,
    community and street; the buildings left outside; and the one new service post that would
    serve the most of them (with how many households).

    ``unit`` is a :class:`gridmap.maps.units.Unit` (its buildings, grids, communities, streets).
    With `roads` (lines or a :class:`WalkNetwork`) the areas are walked along the streets
    (`minutes` at `speed_kmh`, `offset_m` either side) and the suggested post is scored by its
    walk too; without, they are circles of `straight_m`. ``service_area`` in the answer says which.
    """
    walk = {"minutes": minutes, "speed_kmh": speed_kmh, "offset_m": offset_m}
    net = None
    if roads is not None:
        net = roads if isinstance(roads, WalkNetwork) else build_network(roads)
    buildings = unit.layers.get("building")
    if buildings is None or not len(buildings):
        buildings = gpd.GeoDataFrame({"code": [], "households": []},
                                     geometry=gpd.GeoSeries([], crs=WGS84))
    # A station serves what it reaches: the circle, or the walk plus the depth beside a street.
    reach = straight_m if net is None else walk_budget_m(minutes, speed_kmh) + offset_m
    near = _near(stations, unit.bounds, reach) if len(stations) else stations
    areas = (service_areas(near, roads=net, straight_m=straight_m, **walk) if len(near)
             else gpd.GeoDataFrame({"code": [], "method": []}, geometry=gpd.GeoSeries([], crs=WGS84)))
    levels = {"grids": unit.grids, "communities": unit.communities,
              "streets": unit.outline if unit.level == "street" else unit.layers.get("street")}
    report = coverage_report(buildings, areas, **{k: v for k, v in levels.items()
                                                  if v is not None and len(v)})
    best = (suggest_site(buildings, areas, radius_m=straight_m, roads=net, k=1, **walk)
            if len(buildings) else None)
    suggestion = None
    if best is not None and len(best):
        site = best.geometry.iloc[0]
        suggestion = {"lon": round(site.x, 6), "lat": round(site.y, 6),
                      "households": int(best["households"].iloc[0]),
                      "buildings": int(best["buildings"].iloc[0]),
                      "method": str(best["method"].iloc[0])}
        if net is None:
            suggestion["radius_m"] = straight_m
    uncovered = report.uncovered
    service_area = _service_area(net is not None, straight_m, walk)
    return {
        "unit": {"code": unit.code, "name": unit.name, "level": unit.level},
        "stations": int(len(near)), "method": service_area["method"],
        "service_area": service_area,
        "households": report.households, "covered_households": report.covered_households,
        "share": _plain(report.share),
        "by_level": {level: [{k: _plain(v) for k, v in row.items()}
                             for row in table.to_dict("records")]
                     for level, table in report.by_level.items()},
        "uncovered": {"buildings": int(len(uncovered)),
                      "households": int(uncovered["households"].sum()) if "households" in uncovered else None,
                      "codes": [str(c) for c in uncovered.get("code", [])[:_SHOWN]]},
        "suggestion": suggestion,
        "notes": [] if net is None else _off_network(net, near, walk_budget_m(minutes, speed_kmh)),
    }
