"""What a plan changes for the people on the ground: its impact report (调整影响).

A plan is a redrawn grid layer; before it is published a supervisor wants to know which buildings
and households change grid, which grid workers gain or lose which buildings, and which open
incidents lie in grids that change. Buildings belong to the grid holding their representative
point (a building is never split in a valid coverage, so this is the grid that holds it).

>>> import geopandas as gpd, shapely
>>> box = shapely.box
>>> old = gpd.GeoDataFrame({"code": ["A", "B"], "worker": ["li", "wang"]},
...                        geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs=4326)
>>> new = gpd.GeoDataFrame({"code": ["A", "B"], "worker": ["li", "wang"]},
...                        geometry=[box(0, 0, 1.5, 1), box(1.5, 0, 2, 1)], crs=4326)
>>> bld = gpd.GeoDataFrame({"code": ["b1", "b2"], "households": [30, 12]},
...                        geometry=[box(.1, .1, .2, .2), box(1.2, .1, 1.3, .2)], crs=4326)
>>> report = impact_report(old, new, bld)
>>> [(m["building"], m["from_grid"], m["to_grid"]) for m in report.moves]
[('b2', 'B', 'A')]
>>> report.workers["li"]["gains"], report.workers["wang"]["loses"]
(['b2'], ['b2'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["Impact", "changed_grids", "grid_of_points", "impact_report"]


@dataclass
class Impact:
    """The impact report of a plan against the active version."""

    added: list[str] = field(default_factory=list)  # grid codes only in the plan
    removed: list[str] = field(default_factory=list)  # grid codes only in the active version
    changed: list[str] = field(default_factory=list)  # same code, other boundary or worker
    moves: list[dict] = field(default_factory=list)  # {building, households, from_grid, to_grid, …}
    workers: dict[str, dict] = field(default_factory=dict)  # worker → gains/loses/households
    incidents: list[dict] = field(default_factory=list)  # open incidents in changed grids

    @property
    def households_moved(self) -> int:
        return int(sum(m["households"] for m in self.moves))

    def as_dict(self) -> dict:
        return {"summary": {"grids_added": len(self.added), "grids_removed": len(self.removed),
                            "grids_changed": len(self.changed), "buildings_moved": len(self.moves),
                            "households_moved": self.households_moved,
                            "workers_affected": len(self.workers),
                            "open_incidents_in_changed_grids": len(self.incidents)},
                "added": self.added, "removed": self.removed, "changed": self.changed,
                "moves": self.moves, "workers": self.workers, "incidents": self.incidents}


def grid_of_points(grids: gpd.GeoDataFrame, points: np.ndarray) -> np.ndarray:
    """The row of ``grids`` holding each point (-1 where none does; the first on a shared edge)."""
    out = np.full(len(points), -1, dtype=np.int64)
    if len(points) == 0 or len(grids) == 0:
        return out
    tree = shapely.STRtree(np.asarray(grids.geometry.values, dtype=object))
    pi, gi = tree.query(points, predicate="intersects")
    order = np.lexsort((gi, pi))
    pi, gi = pi[order], gi[order]
    first = np.r_[True, pi[1:] != pi[:-1]] if len(pi) else np.array([], dtype=bool)
    out[pi[first]] = gi[first]
    return out


def _text(frame: gpd.GeoDataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    return frame[column].astype(object).where(frame[column].notna(), "").astype(str).to_numpy()


def changed_grids(active: gpd.GeoDataFrame, plan: gpd.GeoDataFrame, *,
                  tolerance_m2: float = 0.01) -> tuple[list[str], list[str], list[str]]:
    """Codes (added, removed, changed): changed = same code whose boundary differs by more than
    ``tolerance_m2`` (symmetric difference, in a local metric CRS) or whose worker differs."""
    from gridmap.crs import local_metric_crs

    old = dict(zip(active["code"].astype(str), range(len(active))))
    new = dict(zip(plan["code"].astype(str), range(len(plan))))
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    both = sorted(set(old) & set(new))
    if not both:
        return added, removed, []
    crs = local_metric_crs(np.asarray(active.geometry.values, dtype=object))
    a = active.iloc[[old[c] for c in both]].to_crs(crs)
    b = plan.iloc[[new[c] for c in both]].to_crs(crs)
    diff = shapely.area(shapely.symmetric_difference(a.geometry.values, b.geometry.values))
    workers = _text(a, "worker") != _text(b, "worker")
    changed = [c for c, d, w in zip(both, diff, workers) if d > tolerance_m2 or w]
    return added, removed, changed


def impact_report(active: gpd.GeoDataFrame, plan: gpd.GeoDataFrame,
                  buildings: gpd.GeoDataFrame | None = None,
                  incidents: gpd.GeoDataFrame | pd.DataFrame | None = None) -> Impact:
    """Compare a plan's grids with the active ones: grids added/removed/changed, every building
    that changes grid (with its households), each worker's gains and losses, and the open
    ``incidents`` (points with ``id``, ``status``; lon/lat geometry or columns) lying in a grid
    that changes, or in no grid of the plan."""
    added, removed, changed = changed_grids(active, plan)
    report = Impact(added=added, removed=removed, changed=changed)
    if buildings is not None and len(buildings):
        _moves(report, active, plan, buildings)
    if incidents is not None and len(incidents):
        touched = set(added) | set(removed) | set(changed)
        report.incidents = _incidents_in(incidents, active, plan, touched)
    return report


def _moves(report: Impact, active, plan, buildings) -> None:
    points = shapely.point_on_surface(np.asarray(buildings.geometry.values, dtype=object))
    before = grid_of_points(active, points)
    after = grid_of_points(plan, points)
    old_codes, new_codes = _text(active, "code"), _text(plan, "code")
    old_workers, new_workers = _text(active, "worker"), _text(plan, "worker")
    was = np.where(before >= 0, old_codes[np.maximum(before, 0)], "")
    now = np.where(after >= 0, new_codes[np.maximum(after, 0)], "")
    moved = np.flatnonzero(was != now)
    codes = _text(buildings, "code")
    households = (pd.to_numeric(buildings["households"], errors="coerce").fillna(0).astype(int)
                  .to_numpy() if "households" in buildings.columns else np.zeros(len(buildings), int))
    for i in moved:
        w_from = old_workers[before[i]] if before[i] >= 0 else ""
        w_to = new_workers[after[i]] if after[i] >= 0 else ""
        report.moves.append({"building": codes[i], "households": int(households[i]),
                             "from_grid": was[i] or None, "to_grid": now[i] or None,
                             "from_worker": w_from or None, "to_worker": w_to or None})
        if w_from == w_to:
            continue
        for worker, side, sign in ((w_from, "loses", -1), (w_to, "gains", 1)):
            if worker:
                entry = report.workers.setdefault(worker, {"gains": [], "loses": [],
                                                           "households": 0})
                entry[side].append(codes[i])
                entry["households"] += sign * int(households[i])


def _incidents_in(incidents, active, plan, touched: set[str]) -> list[dict]:
    from gridmap.incidents import OPEN

    open_states = {s.value for s in OPEN}
    frame = incidents
    if "status" in frame.columns:
        frame = frame[frame["status"].astype(str).isin(open_states)]
    if not len(frame):
        return []
    if isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame.columns:
        points = np.asarray(frame.geometry.values, dtype=object)
    else:
        points = shapely.points(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float))
    before = grid_of_points(active, points)
    after = grid_of_points(plan, points)
    old_codes, new_codes = _text(active, "code"), _text(plan, "code")
    ids = frame["id"].tolist() if "id" in frame.columns else list(range(len(frame)))
    out = []
    for k in range(len(frame)):
        was = old_codes[before[k]] if before[k] >= 0 else None
        now = new_codes[after[k]] if after[k] >= 0 else None
        if was in touched or now in touched or now is None:
            out.append({"id": ids[k], "status": str(frame["status"].iloc[k]) if "status" in
                        frame.columns else None, "grid_before": was, "grid_after": now,
                        "moves": was != now})
    return out
