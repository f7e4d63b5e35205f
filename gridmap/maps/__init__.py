"""Supervisor maps (folium pages that work offline): coverage, problems, incidents, stations and
the dashboard. Pure functions over GeoDataFrames returning complete HTML; folium is imported
inside them, so the rest of gridmap does not need it.

>>> from gridmap.maps import coverage_map, select_unit          # doctest: +SKIP
>>> html = coverage_map(select_unit(layers, "141002001"))
"""

from gridmap.maps.coverage import coverage_map, problems_map, unit_report
from gridmap.maps.page import show
from gridmap.maps.units import OPEN, Unit, UnitNotFound, UnitTooLarge, read_points, select_unit, within

__all__ = ["coverage_map", "problems_map", "unit_report", "incidents_map", "stations_map", "dashboard_page",
           "select_unit", "read_points", "show", "within", "Unit", "UnitNotFound", "UnitTooLarge", "OPEN"]


def __getattr__(name):  # the later pages load on first use
    if name in ("incidents_map", "stations_map"):
        from gridmap.maps import points

        return getattr(points, name)
    if name == "dashboard_page":
        from gridmap.maps.dashboard import dashboard_page

        return dashboard_page
    raise AttributeError(name)
