"""Service stations (服务站点) and their 15-minute service circles (15分钟服务圈), DESIGN.md §2.

Party-and-public service centres (党群服务中心) exist at street and community level, with service
posts (驿站) in compounds; planners check that every household is within a 15-minute walk of one.

- :func:`service_areas`: each station's area, along the walking network or as a straight circle;
- :func:`coverage_report`: the share of households served, per grid / community / street;
- :func:`suggest_site`: where new stations would serve the most households not yet served;
- :func:`check_stations`: centres under their minimum floor area;
- :func:`unit_coverage`: all of it for one unit, as the service and the command line answer it;
- :func:`cached_network`: the configured road file (``GRIDMAP_STATIONS__ROADS``) as a network,
  built once; :class:`RoadsUnavailable` when it cannot be used.
"""

from .areas import STRAIGHT_M, WALK_OFFSET_M, service_areas, walk_budget_m
from .checks import MIN_FLOOR_AREA_M2, check_stations
from .coverage import CoverageReport, coverage_report, covered, suggest_site
from .network import WalkNetwork, build_network, reach_lines, walkable_roads
from .roads import RoadsUnavailable, cached_network, load_network
from .units import unit_coverage

__all__ = [
    "MIN_FLOOR_AREA_M2",
    "STRAIGHT_M",
    "WALK_OFFSET_M",
    "CoverageReport",
    "RoadsUnavailable",
    "WalkNetwork",
    "build_network",
    "cached_network",
    "check_stations",
    "coverage_report",
    "covered",
    "load_network",
    "reach_lines",
    "service_areas",
    "suggest_site",
    "unit_coverage",
    "walk_budget_m",
    "walkable_roads",
]
