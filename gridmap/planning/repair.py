"""Repair a coverage — bounded: fill gaps, remove overlaps, snap near-coincident edges.

An unbounded cleaner (``shapely.coverage_clean`` with default settings) makes any layer a valid
coverage, and on a dirty one it does so by deleting whatever overlaps: on the Shanghai streets it
removes 26.6 km² and empties two polygons without a word. Here every repair is measured before it
is made. A repair that would change a grid's area (or, with buildings, its households) by more than
``max_change`` of what it was is refused for that grid, left as it is, and reported with the
reason. Grids are never moved outside their parent.

- **Overlap** between two grids: it goes to one of them — the one that "surrounds" it, i.e. whose
  own boundary forms the smaller part of the overlap's outline (the other grid's edge is what
  pushed into it); when the two are about even, the larger grid keeps it. If that would change
  the other grid too much, the reverse is tried; if both are too much, the overlap is refused.
- **Gap**: a gap touching one grid goes to it; a gap touching several is split between them by
  the Voronoi diagram of their boundaries in the gap (as maup's ``smart_repair``), with buildings
  kept whole.
- **Outside the parent**: what a grid has outside its parent is cut off.
- **Snap**: vertices within ``snap`` metres are snapped together (``shapely.coverage_clean`` with
  no gap filling), so that shared edges match vertex for vertex.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap import coverage as cov
from gridmap.crs import WGS84
from gridmap.planning._space import (Workspace, border, homes, household_values, keep_whole,
                                     parts, polygonal, share_region)

__all__ = ["RepairResult", "repair_coverage"]

_EVEN = 0.1  # boundary shares within 10% of each other: "about even"
_NOISE = 0.01  # m²: repairs this small are made but not listed (round-off, as in validation)


@dataclass
class RepairResult:
    """The repaired grids (EPSG:4326), the repairs made and the ones refused.

    Each entry of ``fixed``/``refused`` is a dict: ``type`` (``overlap``, ``gap``,
    ``outside_parent``), ``codes``, ``area_m2``, and ``to`` (who got it) or ``reason``.
    """

    grids: gpd.GeoDataFrame
    fixed: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.refused


class _Budget:
    """How much each grid has changed so far, against ``max_change`` of its original size."""

    def __init__(self, geoms, fps, hh_b, max_change):
        self.area0 = shapely.area(geoms)
        self.max = max_change
        self.used = np.zeros(len(geoms))
        self.fps, self.hh_b = fps, hh_b
        self.hh0 = None
        if fps is not None and len(fps):
            home = homes(fps, geoms)
            self.hh0 = np.bincount(home[home >= 0], hh_b[home >= 0], minlength=len(geoms))
        self.hh_used = np.zeros(len(geoms))

    def households_in(self, region) -> float:
        if self.fps is None or region.is_empty or not len(self.fps):
            return 0.0
        hit = shapely.STRtree(self.fps).query(region, predicate="intersects")
        share = shapely.area(shapely.intersection(self.fps[hit], region)) / \
            np.maximum(shapely.area(self.fps[hit]), 1e-12)
        return float((self.hh_b[hit] * (share > 0.5)).sum())

    def why_not(self, i: int, region) -> str | None:
        """None when grid ``i`` may gain or lose ``region``; else the reason, in words."""
        area = region.area
        share = (self.used[i] + area) / self.area0[i] if self.area0[i] > 0 else np.inf
        if share > self.max:
            return f"would change its area by {share:.1%} (limit {self.max:.0%})"
        if self.hh0 is not None and self.hh0[i] > 0:
            hh = self.households_in(region)
            hshare = (self.hh_used[i] + hh) / self.hh0[i]
            if hshare > self.max:
                return f"would change its households by {hshare:.1%} (limit {self.max:.0%})"
        return None

    def spend(self, i: int, region) -> None:
        self.used[i] += region.area
        if self.hh0 is not None:
            self.hh_used[i] += self.households_in(region)


def repair_coverage(grids: gpd.GeoDataFrame, parents: gpd.GeoDataFrame | None = None,
                    buildings: gpd.GeoDataFrame | None = None, *, max_change: float = 0.05,
                    snap: float = 0.1) -> RepairResult:
    """Repair gaps, overlaps, overhangs and unmatched edges, never changing a grid by more than
    ``max_change`` (a fraction of its area, and of its households when buildings are given)."""
    ws = Workspace(grids, buildings, parents)
    geoms = cov.make_polygonal(np.asarray(ws.grids.geometry.values, dtype=object))
    geoms = np.array([polygonal(g) for g in geoms], dtype=object)
    before = geoms.copy()
    codes = grids["code"].astype(str).to_numpy() if "code" in grids.columns else \
        np.array([f"#{i + 1}" for i in range(len(grids))], dtype=object)
    fps = np.asarray(ws.buildings.geometry.values, dtype=object) if buildings is not None else None
    budget = _Budget(geoms, fps, household_values(ws.buildings), max_change)
    res = RepairResult(grids)
    owner = _owners(grids, ws, geoms)
    if ws.parents is not None:
        _clip_to_parents(geoms, ws, owner, codes, budget, res)
    stuck = _overlaps(geoms, codes, budget, res)
    _gaps(geoms, ws, owner, codes, budget, res)
    _snap(geoms, stuck, snap, res)
    changed = [i for i in range(len(geoms))
               if not shapely.equals_exact(shapely.normalize(geoms[i]),
                                           shapely.normalize(before[i]), tolerance=0)]
    out = grids.to_crs(WGS84) if not grids.crs.equals(WGS84) else grids.copy()
    geo = np.asarray(out.geometry.values, dtype=object).copy()
    if changed:
        geo[changed] = ws.to_lonlat(geoms[changed])
    res.grids = out.set_geometry(gpd.GeoSeries(geo, index=out.index, crs=WGS84))
    emptied = [codes[i] for i in changed if geoms[i].is_empty]
    if emptied:  # cannot happen within any max_change < 1, but never silently
        res.notes.append(f"emptied: {', '.join(emptied)}")
    return res


def _owners(grids, ws, geoms) -> np.ndarray:
    """Each grid's parent (position in the parent layer), -1 for none or without parents."""
    owner = np.full(len(geoms), -1, dtype=np.intp)
    if ws.parents is None:
        return owner
    pgeoms = np.asarray(ws.parents.geometry.values, dtype=object)
    if "parent_code" in grids.columns and "code" in ws.parents.columns:
        owner = pd.Index(ws.parents["code"].astype(str)).get_indexer(
            grids["parent_code"].astype(str)).astype(np.intp)
        if (owner >= 0).all():
            return owner
    pts = shapely.point_on_surface(geoms)
    src, dst = shapely.STRtree(pgeoms).query(pts, predicate="within")
    owner[src] = dst
    return owner


def _clip_to_parents(geoms, ws, owner, codes, budget, res) -> None:
    pgeoms = np.asarray(ws.parents.geometry.values, dtype=object)
    pcodes = ws.parents["code"].astype(str).to_numpy() if "code" in ws.parents.columns else \
        np.array([f"#{k + 1}" for k in range(len(pgeoms))], dtype=object)
    for i in np.flatnonzero(owner >= 0):
        excess = polygonal(shapely.difference(geoms[i], pgeoms[owner[i]]))
        if excess.area <= 0:
            continue
        entry = {"type": "outside_parent", "codes": [codes[i], pcodes[owner[i]]],
                 "area_m2": round(excess.area, 3)}
        why = budget.why_not(i, excess)
        if why:
            res.refused.append({**entry, "reason": f"cutting {codes[i]} back to its parent {why}"})
            continue
        geoms[i] = polygonal(shapely.intersection(geoms[i], pgeoms[owner[i]]))
        budget.spend(i, excess)
        if excess.area >= _NOISE:
            res.fixed.append({**entry, "to": None})


def _outline_share(region, geom) -> float:
    """Length of ``region``'s outline lying on ``geom``'s boundary."""
    return float(shapely.intersection(region.boundary, geom.boundary.buffer(1e-6)).length)


def _overlaps(geoms, codes, budget, res) -> set[int]:
    """Resolve overlaps smallest first; return the grids left in a refused overlap."""
    present = ~shapely.is_empty(geoms)
    flagged, _ = cov.flag_invalid_edges(geoms)
    flagged &= present
    i_s, j_s, _, areas = cov.find_overlaps(geoms, flagged)
    stuck: set[int] = set()
    for n in np.argsort(areas, kind="stable"):
        i, j = int(i_s[n]), int(j_s[n])
        region = polygonal(shapely.intersection(geoms[i], geoms[j]))
        if region.area <= 0:
            continue
        li, lj = _outline_share(region, geoms[i]), _outline_share(region, geoms[j])
        if abs(li - lj) <= _EVEN * max(li, lj):
            losers = [j, i] if budget.area0[i] >= budget.area0[j] else [i, j]
        else:
            losers = [i, j] if li > lj else [j, i]
        entry = {"type": "overlap", "codes": [codes[i], codes[j]], "area_m2": round(region.area, 3)}
        reasons = []
        for loser in losers:
            why = budget.why_not(loser, region)
            if why is None:
                geoms[loser] = polygonal(shapely.difference(geoms[loser], region))
                budget.spend(loser, region)
                winner = j if loser == i else i
                res.fixed.append({**entry, "to": codes[winner]})
                break
            reasons.append(f"giving it to {codes[j if loser == i else i]} {why} for {codes[loser]}")
        else:
            stuck |= {i, j}
            res.refused.append({**entry, "reason": "; ".join(reasons)})
    return stuck


def _gaps(geoms, ws, owner, codes, budget, res) -> None:
    if ws.parents is not None:
        pgeoms = np.asarray(ws.parents.geometry.values, dtype=object)
        regions = []
        for p in np.unique(owner[owner >= 0]):
            mine = np.flatnonzero(owner == p)
            hole = polygonal(shapely.difference(pgeoms[p], shapely.union_all(geoms[mine])))
            regions += [(g, mine) for g in parts(hole)]
    else:
        union = shapely.union_all(geoms)
        everyone = np.arange(len(geoms))
        regions = [(g, everyone) for g in cov.holes_of(union)]
    tree = shapely.STRtree(geoms)
    fps = budget.fps
    for gap, allowed in regions:
        if gap.area <= 0:
            continue
        near = [int(k) for k in tree.query(gap, predicate="intersects") if k in set(allowed)]
        near = [k for k in near if border(gap, geoms[k]) > 0]
        entry = {"type": "gap", "codes": [codes[k] for k in near], "area_m2": round(gap.area, 3)}
        if not near:
            res.refused.append({**entry, "reason": "the gap borders no grid"})
            continue
        pieces = share_region(gap, [geoms[k] for k in near])
        if fps is not None and len(fps):
            inside = fps[shapely.STRtree(fps).query(gap, predicate="intersects")]
            pieces = keep_whole(pieces, list(inside))
        reasons = [f"{codes[k]} {why}" for k, piece in zip(near, pieces)
                   if not piece.is_empty and (why := budget.why_not(k, piece))]
        if reasons:
            res.refused.append({**entry, "reason": "filling it: " + "; ".join(reasons)})
            continue
        for k, piece in zip(near, pieces):
            if not piece.is_empty:
                geoms[k] = polygonal(shapely.union(geoms[k], piece))
                budget.spend(k, piece)
        if gap.area >= _NOISE:
            res.fixed.append({**entry, "to": [codes[k] for k, p in zip(near, pieces) if not p.is_empty]})


def _snap(geoms, stuck: set[int], snap: float, res) -> None:
    """Snap near-coincident edges of every grid not caught in a refused overlap."""
    free = np.array([i for i in range(len(geoms)) if i not in stuck and not geoms[i].is_empty])
    if len(free) < 2 or snap <= 0:
        return
    try:
        cleaned = shapely.coverage_clean(geoms[free], snapping_distance=snap)
    except shapely.errors.GEOSException as exc:  # pragma: no cover - GEOS refusing odd input
        res.notes.append(f"edges were not snapped: {exc}")
        return
    moved = 0.0
    for i, g in zip(free, cleaned):
        g = polygonal(g)
        moved += shapely.symmetric_difference(g, geoms[i]).area
        geoms[i] = g
    if moved > 0:
        res.notes.append(f"snapped edges within {snap:g} m: {moved:.2f} m² moved in all")
