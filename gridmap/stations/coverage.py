"""Which households lie inside a 15-minute service circle, and where a new station would help most.

Buildings are counted by their representative point (a point surely inside the footprint): a
building is served when that point is inside some service area. All lookups go through STRtrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.crs import WGS84, to_metric
from gridmap.errors import CRSMissing

from .areas import STRAIGHT_M, service_areas
from .network import WalkNetwork, build_network

__all__ = ["CoverageReport", "coverage_report", "covered", "suggest_site"]

# A grid code is its community's 12 digits plus 3; a community's is its street's 9 plus 3.
_PREFIX = {"community": 12, "street": 9}


@dataclass
class CoverageReport:
    """Households inside some service area: in all, per unit of each level given, and who is not."""

    households: int
    covered_households: int
    by_level: dict[str, pd.DataFrame]
    uncovered: gpd.GeoDataFrame

    @property
    def share(self) -> float:
        return self.covered_households / self.households if self.households else float("nan")


def _points(buildings: gpd.GeoDataFrame, crs) -> np.ndarray:
    if buildings.crs is None:
        raise CRSMissing("the buildings layer has no CRS")
    return shapely.point_on_surface(buildings.geometry.to_crs(crs).to_numpy())


def covered(points: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Boolean per point: inside (or on the edge of) at least one of `areas`."""
    out = np.zeros(len(points), dtype=bool)
    if len(points) and len(areas):
        hit, _ = shapely.STRtree(areas).query(points, predicate="intersects")
        out[hit] = True
    return out


def _households(buildings: pd.DataFrame) -> np.ndarray:
    if "households" not in buildings:
        return np.ones(len(buildings))
    return pd.to_numeric(buildings["households"], errors="coerce").fillna(0).to_numpy(float)


def _locate(points: np.ndarray, units: gpd.GeoDataFrame) -> np.ndarray:
    """The code of the unit containing each point (None where none does)."""
    geoms = units.geometry.to_crs(WGS84).to_numpy()
    pi, ui = shapely.STRtree(geoms).query(points, predicate="intersects")
    out = np.full(len(points), None, dtype=object)
    first = np.unique(pi, return_index=True)[1]
    out[pi[first]] = units["code"].astype(str).to_numpy()[ui[first]]
    return out


def _unit_codes(buildings, points, layers) -> dict[str, np.ndarray]:
    """Each building's grid, community and street code, as far as the layers given tell.

    A grid comes from the building's ``parent_code``, else from where its point lies; a level
    above from its child's ``parent_code`` in the child layer, else from the code prefix, else
    from where the point lies.
    """
    codes: dict[str, np.ndarray] = {}
    grid = None
    if "parent_code" in buildings:
        grid = buildings["parent_code"].astype("string").to_numpy(dtype=object, na_value=None)
    if layers["grid"] is not None and (grid is None or any(c is None for c in grid)):
        found = _locate(points, layers["grid"])
        grid = found if grid is None else np.where([c is None for c in grid], found, grid)
    codes["grid"] = grid
    child, child_layer = grid, layers["grid"]
    for level in ("community", "street"):
        if child is not None and child_layer is not None and "parent_code" in child_layer:
            parents = dict(zip(child_layer["code"].astype(str), child_layer["parent_code"]))
            mine = np.array([parents.get(c) for c in child], dtype=object)
        elif child is not None:
            mine = np.array([c[: _PREFIX[level]] if c else None for c in child], dtype=object)
        else:
            mine = _locate(points, layers[level]) if layers[level] is not None else None
        codes[level], child, child_layer = mine, mine, layers[level]
    return codes


def _table(units: gpd.GeoDataFrame, owner: np.ndarray, hh: np.ndarray, ok: np.ndarray):
    frame = pd.DataFrame({"code": owner, "households": hh, "covered_households": hh * ok})
    sums = frame.groupby("code", dropna=True)[["households", "covered_households"]].sum()
    table = pd.DataFrame({"code": units["code"].astype(str).to_numpy()})
    table = table.join(sums, on="code").fillna({"households": 0, "covered_households": 0})
    table["share"] = table["covered_households"] / table["households"].where(table["households"] > 0)
    return table


def coverage_report(buildings: gpd.GeoDataFrame, areas: gpd.GeoDataFrame, grids=None,
                    communities=None, streets=None) -> CoverageReport:
    """Share of households inside some service area, in all and per grid / community / street.

    `areas` is what :func:`service_areas` returns (any CRS). Units of each level are matched by
    the ``parent_code`` chain where the layers carry it, by code prefix otherwise (a grid's first
    12 digits are its community), by location as the last resort. Each table lists every unit of
    the layer given, with ``households``, ``covered_households`` and ``share`` (NaN when empty).
    """
    points = _points(buildings, WGS84)
    ok = covered(points, areas.geometry.to_crs(WGS84).to_numpy())
    hh = _households(buildings)
    layers = {"grid": grids, "community": communities, "street": streets}
    owners = _unit_codes(buildings, points, layers)
    by_level = {level: _table(layers[level], owners[level], hh, ok)
                for level in layers if layers[level] is not None and owners[level] is not None}
    cols = [c for c in ("code", "households") if c in buildings]
    uncovered = gpd.GeoDataFrame(buildings.loc[~ok, cols].reset_index(drop=True),
                                 geometry=buildings.geometry.to_crs(WGS84).to_numpy()[~ok], crs=WGS84)
    return CoverageReport(round(hh.sum()), round(hh[ok].sum()), by_level, uncovered)


def _candidate_points(points: np.ndarray, limit: int) -> np.ndarray:
    """The uncovered buildings' points, or a square grid over them when there are too many."""
    if len(points) <= limit:
        return points
    minx, miny, maxx, maxy = shapely.total_bounds(points)
    step = np.sqrt((maxx - minx) * (maxy - miny) / limit) or 1.0
    xs, ys = np.meshgrid(np.arange(minx, maxx + step, step), np.arange(miny, maxy + step, step))
    return shapely.points(xs.ravel(), ys.ravel())


def suggest_site(buildings: gpd.GeoDataFrame, areas: gpd.GeoDataFrame | None = None, *,
                 candidates: gpd.GeoDataFrame | None = None, radius_m: float = STRAIGHT_M,
                 roads=None, k: int = 1, network_top: int = 5, max_candidates: int = 5000,
                 **walk) -> gpd.GeoDataFrame:
    """Greedy maximal coverage: the `k` sites that would each serve the most households not yet served.

    Candidates default to the representative points of the uncovered buildings (a grid of about
    `max_candidates` points over them when there are more). Each round picks the candidate whose
    circle of `radius_m` covers the most uncovered households; with `roads` (lines or a
    :class:`WalkNetwork`), the `network_top` best candidates by circle are re-scored with their
    network service area (`walk` is passed to :func:`service_areas`) and the best of those wins.

    Returns a GeoDataFrame in WGS84: ``rank``, ``households`` and ``buildings`` newly covered,
    ``method``, and the site point.
    """
    metric, crs = to_metric(buildings)
    pts = shapely.point_on_surface(metric.geometry.to_numpy())
    hh = _households(buildings)
    if areas is not None and len(areas):
        todo = ~covered(pts, areas.geometry.to_crs(crs).to_numpy())
    else:
        todo = np.ones(len(pts), dtype=bool)
    if candidates is not None:
        cand = candidates.geometry.to_crs(crs).to_numpy()
    else:
        cand = _candidate_points(pts[todo], max_candidates)
    net = None
    if roads is not None:
        net = roads if isinstance(roads, WalkNetwork) else build_network(roads, crs=crs)
    ci, pi = shapely.STRtree(pts).query(cand, predicate="dwithin", distance=radius_m)
    rows = []
    for rank in range(1, k + 1):
        live = todo[pi]
        score = np.bincount(ci[live], weights=hh[pi[live]], minlength=len(cand))
        if not len(cand) or score.max() <= 0:
            break
        best, hit = _pick(score, ci[live], pi[live], cand, pts, hh, todo, net, network_top, walk,
                          crs)
        rows.append({"rank": rank, "households": round(hh[hit].sum()),
                     "buildings": int(hit.size), "method": "straight_line" if net is None
                     else "network", "geometry": cand[best]})
        todo[hit] = False
    out = gpd.GeoDataFrame(rows, columns=["rank", "households", "buildings", "method", "geometry"],
                           geometry="geometry", crs=crs)
    return out.to_crs(WGS84)


def _pick(score, ci, pi, cand, pts, hh, todo, net, top, walk, crs):
    """The winning candidate and the indices of the uncovered buildings it would serve.

    `cand` and `pts` are in `crs`, the buildings' metric CRS, which a prebuilt network's need
    not be: the areas are brought back into `crs` before they are compared with the points."""
    if net is None:
        best = int(score.argmax())
        return best, np.unique(pi[ci == best])
    shortlist = np.argsort(-score, kind="stable")[:top]
    shortlist = shortlist[score[shortlist] > 0]
    sites = gpd.GeoDataFrame(geometry=cand[shortlist], crs=crs)
    areas = service_areas(sites, roads=net, **walk).to_crs(crs).geometry.to_numpy()
    uncovered = np.flatnonzero(todo)
    hits = [uncovered[shapely.intersects(area, pts[uncovered])] for area in areas]
    i = int(np.argmax([hh[h].sum() for h in hits]))
    return int(shortlist[i]), hits[i]
