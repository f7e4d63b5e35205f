"""Planner's edits (动态调整): split, merge, move buildings, redraw a boundary.

Every edit takes the grid layer (``code``, ``name``, ``kind``, ``households``, ``worker``,
geometry; any CRS) and, where buildings matter, the building layer (``code``, ``households``), and
returns an :class:`EditResult`: the whole grid layer after the edit, in EPSG:4326, and what changed.
The work is done in metres. Every edit keeps the rules of DESIGN.md §2: the community stays covered
exactly (no gap, no overlap, nothing outside it), and no building is split between grids
(一楼严禁分两格) — where a drawn line or polygon crosses a building, the building goes wholly to the
side holding most of it and the boundary bends around it.

New grids get new serials after the highest in their community (and after ``retired`` codes);
a piece that keeps more than half of the old grid's area and households keeps its code
(the rule of :func:`gridmap.planning.renumber.carry_codes`).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.ops

from gridmap.errors import EditRefused
from gridmap.planning._result import Changes, EditResult, finish
from gridmap.planning._space import (Workspace, border, building_cells, fold_fragments, homes,
                                     household_values, index_of, keep_whole, parts, polygonal,
                                     share_region, tile)
from gridmap.planning.renumber import next_codes

__all__ = ["EditResult", "split_grid", "split_balanced", "merge_grids", "move_buildings",
           "replace_boundary"]


def _community(grids: gpd.GeoDataFrame, i: int) -> str:
    if "parent_code" in grids.columns and pd.notna(grids["parent_code"].iat[i]):
        return str(grids["parent_code"].iat[i])
    return str(grids["code"].iat[i])[:12]


def _members(grids: gpd.GeoDataFrame, i: int) -> np.ndarray:
    com = _community(grids, i)
    if "parent_code" in grids.columns:
        same = grids["parent_code"].astype(str).to_numpy() == com
    else:
        same = grids["code"].astype(str).str[:12].to_numpy() == com
    return np.flatnonzero(same)


def _metric_geom(ws: Workspace, geom, crs):
    """A drawn geometry (WGS84 unless ``crs`` says otherwise) in the workspace's metres."""
    s = gpd.GeoSeries([geom], crs=crs or "EPSG:4326").to_crs(ws.crs)
    return s.iat[0]


def _footprints(ws: Workspace, grid_geoms: np.ndarray, rows) -> tuple[np.ndarray, np.ndarray]:
    """Positions and footprints (metres) of the buildings whose home is one of ``rows``."""
    if ws.buildings is None:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=object)
    fps = np.asarray(ws.buildings.geometry.values, dtype=object)
    home = homes(fps, grid_geoms)
    pos = np.flatnonzero(np.isin(home, list(rows)))
    return pos, fps[pos]


def _pieces_to_changes(grids, ws, i, pieces, retired, fps_pos) -> Changes:
    """Old grid ``i`` becomes ``pieces``: one may keep the code, the others are new grids."""
    ch = Changes()
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    old = metric[i]
    fps = np.asarray(ws.buildings.geometry.values, dtype=object)[fps_pos] \
        if ws.buildings is not None else np.zeros(0, dtype=object)
    hh = household_values(ws.buildings)[fps_pos] if ws.buildings is not None else np.zeros(0)
    piece_home = homes(fps, np.array(pieces, dtype=object)) if len(fps) else np.zeros(0, int)
    piece_hh = np.bincount(piece_home[piece_home >= 0], hh[piece_home >= 0], minlength=len(pieces))
    area = np.array([p.area for p in pieces])
    total_hh = piece_hh.sum()
    keeps = (area > 0.5 * old.area) & ((piece_hh > 0.5 * total_hh) if total_hh > 0 else True)
    keep = int(np.flatnonzero(keeps)[0]) if keeps.any() else -1
    # The grid worker stays with most of their households: with the piece that keeps the code,
    # else with the new piece holding the most households (the most ground without buildings).
    heir = keep if keep >= 0 else int(np.argmax(piece_hh if total_hh > 0 else area))
    com = _community(grids, i)
    fresh = next_codes(com, set(grids["code"].astype(str)) | set(retired),
                       len(pieces) - (keep >= 0))
    row0 = grids.iloc[i]
    base_hh = pd.to_numeric(pd.Series([row0.get("households")]), errors="coerce").iat[0]
    share = area / area.sum()
    if keep < 0:
        ch.geoms[i] = shapely.Polygon()
    for k, piece in enumerate(pieces):
        est = None if ws.buildings is not None or pd.isna(base_hh) else float(base_hh) * share[k]
        if k == keep:
            ch.geoms[i] = piece
            if est is not None:
                ch.households[i] = est
            continue
        code = fresh.pop(0)
        row = {"code": code, "geometry": piece, "kind": "basic",
               "worker": row0.get("worker") if k == heir else None,
               "name": f"{row0.get('name') or row0['code']}-{code[-3:]}"}
        if "parent_code" in grids.columns:
            row["parent_code"] = row0["parent_code"]
        if "level" in grids.columns:
            row["level"] = row0["level"]
        if est is not None:
            ch.households[("new", len(ch.rows))] = est
        ch.rows.append(row)
    if ws.buildings is None and not pd.isna(base_hh):
        ch.notes.append("no buildings given: households were shared out by area")
    return ch


def split_grid(grids: gpd.GeoDataFrame, code: str, line, buildings: gpd.GeoDataFrame | None = None,
               *, crs=None, retired=()) -> EditResult:
    """Split grid ``code`` along a drawn ``line`` (a LineString crossing it from edge to edge).

    A building the line crosses goes wholly to the side holding most of it; the new boundary bends
    around it. A line crossing the grid several times makes several grids. Raises EditRefused when
    the line does not divide the grid.
    """
    ws = Workspace(grids, buildings)
    i = int(index_of(grids, [code])[0])
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    cut = _metric_geom(ws, line, crs)
    pieces = [p for p in shapely.get_parts(shapely.ops.split(metric[i], cut)) if p.area > 0] \
        if cut.intersects(metric[i]) else []
    if len(pieces) < 2:
        raise EditRefused(f"the line does not cut grid {code} in two: it must cross the grid "
                          "from one edge to another")
    pieces = tile(metric[i], pieces)
    pos, fps = _footprints(ws, metric, [i])
    pieces = fold_fragments(keep_whole(pieces, fps))
    pieces = [p for p in pieces if not p.is_empty]
    if len(pieces) < 2:
        raise EditRefused(f"the line only crosses buildings of grid {code}: no building may be "
                          "split, so nothing is left on one side")
    ch = _pieces_to_changes(grids, ws, i, pieces, retired, pos)
    return finish(ws, grids, buildings, ch)


def split_balanced(grids: gpd.GeoDataFrame, code: str, k: int,
                   buildings: gpd.GeoDataFrame | None = None, *, retired=()) -> EditResult:
    """Split grid ``code`` into ``k`` grids with about equal households (area without buildings).

    Recursive bisection: each cut is a straight line across the longer axis of the piece, placed
    between two buildings where the households on either side come nearest the wanted shares.
    """
    if k < 2:
        raise EditRefused("split into at least 2 parts")
    ws = Workspace(grids, buildings)
    i = int(index_of(grids, [code])[0])
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    pos, fps = _footprints(ws, metric, [i])
    hh = household_values(ws.buildings)[pos] if len(pos) else np.zeros(0)
    if len(fps) and hh.sum() <= 0:
        hh = np.ones(len(fps))
    if len(fps) and len(fps) < k:
        raise EditRefused(f"grid {code} holds {len(fps)} buildings: it cannot make {k} grids "
                          "with households in each")
    pieces = _bisect(metric[i], list(fps), hh, k)
    pieces = fold_fragments(pieces, anchors={n: shapely.union_all(
        [f for f in fps if f.intersects(p)]) for n, p in enumerate(pieces)})
    pieces = [p for p in pieces if not p.is_empty]
    ch = _pieces_to_changes(grids, ws, i, pieces, retired, pos)
    return finish(ws, grids, buildings, ch)


def _bisect(region, fps: list, weight: np.ndarray, k: int) -> list:
    if k == 1:
        return [region]
    k1 = k // 2
    rect = region.minimum_rotated_rectangle
    xy = np.asarray(rect.exterior.coords)[:3]
    sides = [xy[1] - xy[0], xy[2] - xy[1]]
    u = max(sides, key=lambda v: np.hypot(*v))
    u = u / (np.hypot(*u) or 1.0)
    v = np.array([-u[1], u[0]])
    origin = np.asarray(region.centroid.coords[0])
    if fps:
        centres = shapely.get_coordinates(shapely.centroid(np.array(fps, dtype=object)))
        t = (centres - origin) @ u
        order = np.argsort(t)
        cum = np.cumsum(weight[order])
        cut_after = int(np.argmin(np.abs(cum[:-1] - cum[-1] * k1 / k))) if len(t) > 1 else 0
        pos = (t[order][cut_after] + t[order][min(cut_after + 1, len(t) - 1)]) / 2
    else:
        pos = _area_cut(region, origin, u, v, k1 / k)
    low = _half_plane(origin, u, v, pos, region)
    a = polygonal(shapely.intersection(region, low))
    b = polygonal(shapely.difference(region, a))
    if a.is_empty or b.is_empty:
        return [region] + [shapely.Polygon()] * (k - 1)
    a, b = keep_whole([a, b], fps)
    a, b = fold_fragments([a, b])
    side = homes(np.array(fps, dtype=object), np.array([a, b], dtype=object)) if fps else []
    fa = [f for f, s in zip(fps, side) if s == 0]
    fb = [f for f, s in zip(fps, side) if s == 1]
    wa = weight[np.asarray(side) == 0] if fps else weight
    wb = weight[np.asarray(side) == 1] if fps else weight
    return _bisect(a, fa, wa, k1) + _bisect(b, fb, wb, k - k1)


def _half_plane(origin, u, v, pos, region):
    big = 4 * max(region.length, 1.0)
    c = origin + u * pos
    return shapely.Polygon([c + v * big, c - v * big, c - v * big - u * big, c + v * big - u * big])


def _area_cut(region, origin, u, v, frac) -> float:
    lo, hi = -region.length, region.length
    for _ in range(50):
        mid = (lo + hi) / 2
        if shapely.intersection(region, _half_plane(origin, u, v, mid, region)).area < frac * region.area:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def merge_grids(grids: gpd.GeoDataFrame, codes, buildings: gpd.GeoDataFrame | None = None,
                *, keep: str | None = None) -> EditResult:
    """Merge grids of one community that share a boundary into one grid.

    The merged grid keeps ``keep``'s code, name, kind and worker (by default the grid with most
    households, then the largest); the other codes are removed (retire them). Raises EditRefused
    when the grids are in different communities or do not form one connected piece.
    """
    codes = [str(c) for c in codes]
    if len(set(codes)) < 2:
        raise EditRefused("name at least two different grids to merge")
    ws = Workspace(grids, buildings)
    idx = index_of(grids, codes)
    coms = {_community(grids, int(i)) for i in idx}
    if len(coms) > 1:
        raise EditRefused(f"grids {', '.join(codes)} lie in different communities "
                          f"({', '.join(sorted(coms))}): a grid never crosses its community")
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    merged = polygonal(shapely.union_all(metric[idx]))
    if len(parts(merged)) != 1:
        raise EditRefused(f"grids {', '.join(codes)} do not share boundaries: only adjacent "
                          "grids can be merged")
    hh = pd.to_numeric(grids["households"], errors="coerce").fillna(0).to_numpy()[idx] \
        if "households" in grids.columns else np.zeros(len(idx))
    if keep is None:
        best = np.lexsort((-shapely.area(metric[idx]), -hh))[0]
        keep_i = int(idx[best])
    else:
        if str(keep) not in codes:
            raise EditRefused(f"keep={keep} is not one of the grids merged")
        keep_i = int(idx[codes.index(str(keep))])
    ch = Changes()
    for i in idx:
        ch.geoms[int(i)] = merged if i == keep_i else shapely.Polygon()
    ch.households[keep_i] = float(hh.sum())
    return finish(ws, grids, buildings, ch)


def move_buildings(grids: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, building_codes,
                   to: str) -> EditResult:
    """Move buildings to the neighbouring grid ``to``; the boundary follows them.

    Each building takes its cell with it: its footprint and the ground of its grid nearer to it than
    to the grid's other buildings. Refused when a cell does not touch ``to``, when the grid it
    leaves would be emptied or cut in two, or when the grids are in different communities.
    """
    ws = Workspace(grids, buildings)
    t = int(index_of(grids, [to])[0])
    bidx = index_of(buildings, building_codes, "building")
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    fps = np.asarray(ws.buildings.geometry.values, dtype=object)
    home = homes(fps, metric)
    ch = Changes()
    target = metric[t]
    for s in np.unique(home[bidx]):
        mine = bidx[home[bidx] == s]
        names = ", ".join(buildings["code"].astype(str).to_numpy()[mine])
        if s < 0:
            raise EditRefused(f"building(s) {names} lie in no grid")
        if s == t:
            continue
        if _community(grids, int(s)) != _community(grids, t):
            raise EditRefused(f"building(s) {names} are in another community than grid {to}")
        in_s = np.flatnonzero(home == s)
        cells = building_cells(metric[s], list(fps[in_s]))
        region = polygonal(shapely.union_all([c for b, c in zip(in_s, cells) if b in set(mine)]))
        source = polygonal(shapely.difference(metric[s], region))
        if border(region, target) <= 0:
            raise EditRefused(f"building(s) {names} do not border grid {to}: move the buildings "
                              "between them first, or merge")
        if source.is_empty or source.area < 1e-6 * metric[s].area:
            raise EditRefused(f"moving {names} would empty grid {grids['code'].iat[s]}: merge instead")
        target = polygonal(shapely.union(target, region))
        source, target = fold_fragments([source, target])
        if len(parts(source)) != 1 or len(parts(target)) != 1:
            raise EditRefused(f"moving {names} would cut grid {grids['code'].iat[s]} in two")
        ch.geoms[int(s)] = source
    ch.geoms[t] = target
    return finish(ws, grids, buildings, ch)


def replace_boundary(grids: gpd.GeoDataFrame, code: str, polygon,
                     buildings: gpd.GeoDataFrame | None = None,
                     parents: gpd.GeoDataFrame | None = None, *, crs=None) -> EditResult:
    """Redraw grid ``code`` as ``polygon`` (clipped to its community); neighbours give and take.

    Neighbours lose what the new boundary takes; ground the grid gives up goes to the neighbours
    bordering it (split between them by nearest boundary). A building the new boundary crosses
    goes wholly to the side holding most of it. A neighbour left in pieces keeps its main piece
    (the one with most of its buildings, else the largest); the others join the grid they border
    most. A neighbour swallowed whole is removed.
    """
    ws = Workspace(grids, buildings, parents)
    i = int(index_of(grids, [code])[0])
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    members = [int(m) for m in _members(grids, i)]
    parent = _parent_geom(ws, grids, i, metric[members])
    drawn = polygonal(shapely.intersection(_metric_geom(ws, polygon, crs), parent))
    if drawn.is_empty:
        raise EditRefused(f"the polygon drawn for grid {code} lies outside its community")
    pos, fps = _footprints(ws, metric, members)
    if len(fps):
        inside, outside = keep_whole([drawn, polygonal(shapely.difference(parent, drawn))], fps)
        drawn = inside
    main = parts(drawn)
    new_a = main[0] if main else shapely.Polygon()
    if new_a.is_empty:
        raise EditRefused(f"the polygon drawn for grid {code} holds nothing once buildings are whole")
    others = [m for m in members if m != i]
    geoms = {m: polygonal(shapely.difference(metric[m], new_a)) for m in others}
    left = polygonal(shapely.difference(metric[i], new_a))
    if not left.is_empty:
        owners = [geoms[m] for m in others]
        shares = share_region(left, owners) if owners else []
        if len(fps):
            gained = keep_whole(shares + [polygonal(shapely.difference(
                left, shapely.union_all(shares + [shapely.Polygon()])))], fps)
            shares, back = gained[:-1], gained[-1]
        else:
            back = polygonal(shapely.difference(left, shapely.union_all(shares + [shapely.Polygon()])))
        for m, got in zip(others, shares):
            geoms[m] = polygonal(shapely.union(geoms[m], got))
        new_a = polygonal(shapely.union(new_a, back))
    order = [i] + others
    arr = [new_a] + [geoms[m] for m in others]
    anchors = {}
    for k, m in enumerate(order):
        mine = [f for f in fps if f.intersects(arr[k])]
        if mine:
            anchors[k] = shapely.union_all(mine)
    arr = fold_fragments(arr, anchors=anchors)
    ch = Changes()
    for m, g in zip(order, arr):
        if m == i or not shapely.equals_exact(g, metric[m], tolerance=0):
            ch.geoms[m] = g
    emptied = [str(grids["code"].iat[m]) for m in others if arr[order.index(m)].is_empty]
    if emptied:
        ch.notes.append(f"grid(s) {', '.join(emptied)} lay wholly inside the new boundary and were removed")
    if ws.buildings is None:
        ch.notes.append("no buildings given: households were not recounted")
    return finish(ws, grids, buildings, ch)


def _parent_geom(ws: Workspace, grids, i: int, member_geoms):
    com = _community(grids, i)
    if ws.parents is not None and "code" in ws.parents.columns:
        hit = np.flatnonzero(ws.parents["code"].astype(str).to_numpy() == com)
        if len(hit):
            return polygonal(ws.parents.geometry.iat[int(hit[0])])
    return polygonal(shapely.coverage_union_all(np.asarray(member_geoms, dtype=object)))
