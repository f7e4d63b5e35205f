"""Stable grid codes (统一赋码编号): number grids west→east, north→south, and keep codes across redraws.

A grid code is its community's 12-digit code and a 3-digit serial (001–999). Serials are numbered
within the community in reading order (:func:`reading_order`). When boundaries are redrawn
(动态调整), a new grid that is essentially an old one keeps the old code (:func:`carry_codes`), so that
incidents, workers and statistics filed under it stay attached; every other new grid gets a serial
after the highest ever used in its community, and retired codes are never issued again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.errors import EditRefused, InputError
from gridmap.planning._space import Workspace, homes, household_values

__all__ = ["reading_order", "renumber_grids", "next_codes", "carry_codes", "CodeCarry"]

_COMMUNITY = 12
_MAX_SERIAL = 999


def _is_grid_code(code) -> bool:
    return isinstance(code, str) and len(code) == _COMMUNITY + 3 and code.isdigit()


def next_codes(community: str, used, n: int) -> list[str]:
    """``n`` new grid codes in ``community`` after the highest serial among ``used`` codes.

    ``used`` holds every code ever issued there (current and retired); codes of other communities
    are ignored. Raises EditRefused when the 3-digit serials run out.

    >>> next_codes("141002004003", ["141002004003007", "141002004003002"], 2)
    ['141002004003008', '141002004003009']
    """
    serials = [int(c[_COMMUNITY:]) for c in used if _is_grid_code(c) and c.startswith(community)]
    start = max(serials, default=0) + 1
    if start + n - 1 > _MAX_SERIAL:
        raise EditRefused(f"community {community} has no grid serials left "
                          f"(the highest used is {start - 1:03d}; serials stop at 999)")
    return [f"{community}{s:03d}" for s in range(start, start + n)]


def reading_order(geoms_m: np.ndarray) -> np.ndarray:
    """The order (indices) in which grids of one community are numbered: west→east, north→south.

    Precisely, in a metric CRS with y pointing north: each grid is placed by its representative
    point (``shapely.point_on_surface``, always inside it). The band height ``h`` is the median
    north–south extent of the grids' bounding boxes; grid ``i`` is in row
    ``floor((north - y_i) / h)`` where ``north`` is the northernmost bound of them all. Rows are
    read north to south; within a row, west to east by the point's x (then north first, then the
    given order, to break ties). Grids of one row in a map are thus read like a line of text even
    when their centres wander up and down a little.
    """
    geoms_m = np.asarray(geoms_m, dtype=object)
    if len(geoms_m) == 0:
        return np.zeros(0, dtype=np.intp)
    pts = shapely.point_on_surface(geoms_m)
    x, y = shapely.get_x(pts), shapely.get_y(pts)
    b = shapely.bounds(geoms_m)
    h = float(np.median(b[:, 3] - b[:, 1]))
    north = float(np.nanmax(b[:, 3]))
    row = np.floor((north - y) / h) if h > 0 else np.zeros(len(y))
    return np.lexsort((np.arange(len(y)), -y, x, row))


def _community_of(frame: gpd.GeoDataFrame) -> np.ndarray:
    if "parent_code" in frame.columns:
        parent = frame["parent_code"].astype(object).where(frame["parent_code"].notna(), None)
        out = parent.to_numpy(dtype=object)
    else:
        out = np.full(len(frame), None, dtype=object)
    if "code" in frame.columns:
        codes = frame["code"].to_numpy(dtype=object)
        for i in np.flatnonzero(pd.isna(out)):
            if _is_grid_code(codes[i]):
                out[i] = codes[i][:_COMMUNITY]
    return out


def renumber_grids(grids: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, dict[str, str]]:
    """Give every grid the serial of its place in :func:`reading_order` within its community.

    The community is ``parent_code`` (or the first 12 digits of the grid's code). Returns the
    renumbered grids (EPSG:4326, geometries untouched) and ``{old code: new code}``.
    """
    ws = Workspace(grids)
    community = _community_of(grids)
    if pd.isna(community).any():
        i = int(np.flatnonzero(pd.isna(community))[0])
        raise InputError(f"grid #{i + 1} has no parent_code and no 15-digit code: "
                         "cannot tell its community")
    out = grids.to_crs("EPSG:4326") if not grids.crs.equals("EPSG:4326") else grids.copy()
    new = np.empty(len(grids), dtype=object)
    geoms = np.asarray(ws.grids.geometry.values, dtype=object)
    for com in pd.unique(community):
        rows = np.flatnonzero(community == com)
        if len(rows) > _MAX_SERIAL:
            raise EditRefused(f"community {com} has {len(rows)} grids; serials stop at 999")
        order = rows[reading_order(geoms[rows])]
        new[order] = [f"{com}{k:03d}" for k in range(1, len(order) + 1)]
    old = grids["code"].astype(str).to_numpy() if "code" in grids.columns else \
        np.array([f"#{i + 1}" for i in range(len(grids))], dtype=object)
    out["code"] = new
    if "parent_code" not in out.columns or out["parent_code"].isna().any():
        out["parent_code"] = community
    return out, dict(zip(old, new))


@dataclass
class CodeCarry:
    """What :func:`carry_codes` did: the coded grids, which old codes were kept, issued, retired."""

    grids: gpd.GeoDataFrame
    carried: dict[str, int] = field(default_factory=dict)  # old code -> row of new_grids
    issued: list[str] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)


def carry_codes(old_grids: gpd.GeoDataFrame, new_grids: gpd.GeoDataFrame,
                buildings: gpd.GeoDataFrame | None = None, *, share: float = 0.5,
                retired=frozenset()) -> CodeCarry:
    """Code a redrawn layer: a new grid that is essentially an old one keeps the old code.

    "Essentially the same": more than ``share`` of the new grid's area lies in the old one and
    more than ``share`` of the old one's area lies in the new one — and, when ``buildings`` are
    given, the same both ways for households (buildings counted in the grid holding most of
    them; two grids with no households pass the household test). With ``share`` ≥ 0.5 a grid
    can match at most one other, so no code is kept twice.

    Every other new grid gets a new serial, in :func:`reading_order`, after the highest serial ever
    used in its community: among the old codes and ``retired``. Old codes not kept are retired and
    never issued again: the returned ``retired`` set is ``retired`` plus them.
    """
    if not 0.5 <= share < 1:
        raise InputError(f"share must be in [0.5, 1), not {share}")
    both = pd.concat([old_grids.to_crs("EPSG:4326")[["geometry"]],
                      new_grids.to_crs("EPSG:4326")[["geometry"]]], ignore_index=True)
    ws = Workspace(gpd.GeoDataFrame(both, geometry="geometry", crs="EPSG:4326"), buildings)
    geoms = np.asarray(ws.grids.geometry.values, dtype=object)
    old_g, new_g = geoms[:len(old_grids)], geoms[len(old_grids):]
    old_codes = old_grids["code"].astype(str).to_numpy()
    community = _community_of(new_grids)
    match = _matches(old_g, new_g, ws, share)
    for n in np.flatnonzero(pd.isna(community)):  # no parent_code: the community it lies in
        o = match.get(n, _largest_overlap(old_g, new_g[n]))
        community[n] = old_codes[o][:_COMMUNITY] if o is not None else None
    if pd.isna(community).any():
        raise InputError("a new grid has no parent_code and lies in no old grid")
    codes = np.full(len(new_grids), None, dtype=object)
    carried = {}
    for n, o in match.items():
        if old_codes[o][:_COMMUNITY] == community[n]:
            codes[n] = old_codes[o]
            carried[old_codes[o]] = int(n)
    used = set(old_codes) | {str(c) for c in retired}
    issued = []
    for com in pd.unique(community):
        todo = np.flatnonzero((community == com) & pd.isna(codes))
        if len(todo) == 0:
            continue
        order = todo[reading_order(new_g[todo])]
        fresh = next_codes(com, used, len(order))
        codes[order] = fresh
        issued += fresh
    out = new_grids.to_crs("EPSG:4326") if not new_grids.crs.equals("EPSG:4326") else new_grids.copy()
    out["code"] = codes
    out["parent_code"] = community
    gone = set(old_codes) - set(carried)
    return CodeCarry(out, carried, issued, {str(c) for c in retired} | gone)


def _largest_overlap(old_g: np.ndarray, geom):
    inter = shapely.area(shapely.intersection(old_g, geom))
    return int(np.argmax(inter)) if len(inter) and inter.max() > 0 else None


def _matches(old_g: np.ndarray, new_g: np.ndarray, ws: Workspace, share: float) -> dict[int, int]:
    """{new index: old index} for the pairs that are essentially the same grid."""
    tree = shapely.STRtree(old_g)
    n_idx, o_idx = tree.query(new_g, predicate="intersects")
    inter = shapely.area(shapely.intersection(new_g[n_idx], old_g[o_idx]))
    a_new, a_old = shapely.area(new_g[n_idx]), shapely.area(old_g[o_idx])
    ok = (inter > share * a_new) & (inter > share * a_old)
    if ws.buildings is not None:
        fps = np.asarray(ws.buildings.geometry.values, dtype=object)
        hh = household_values(ws.buildings)
        if not hh.any():
            hh = np.ones(len(fps))
        ho, hn = homes(fps, old_g), homes(fps, new_g)
        pair = pd.Series(hh).groupby([ho, hn]).sum()
        h_old = np.bincount(ho[ho >= 0], hh[ho >= 0], minlength=len(old_g))
        h_new = np.bincount(hn[hn >= 0], hh[hn >= 0], minlength=len(new_g))
        both = np.array([pair.get((o, n), 0.0) for n, o in zip(n_idx, o_idx)])
        empty = (h_old[o_idx] == 0) & (h_new[n_idx] == 0)
        ok &= empty | ((both > share * h_new[n_idx]) & (both > share * h_old[o_idx]))
    return {int(n): int(o) for n, o in zip(n_idx[ok], o_idx[ok])}
