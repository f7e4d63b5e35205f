"""Rebalance after an edit (规模适度): move the fewest buildings that bring grids back into the band.

After a split, merge or redraw, the edited grid's neighbours may hold too many or too few
households (about 200 ± 50 in an urban community, 50 ± 15 in a rural village; dedicated grids are
exempt). :func:`rebalance` moves buildings that lie on a boundary, each with its cell (its footprint
and the ground nearer to it than to its grid's other buildings), from one grid to an adjacent one,
so that every grid stays one connected piece and no building is split.

The search is exact: iterative deepening over sets of moves, so the first solution found moves the
fewest buildings (among moves of buildings to grids their cell borders, directly or through
another moved cell). It is bounded by ``max_moves`` and ``max_states``; when the bound is hit the
best partial answer is returned with ``minimal=False`` and the grids still out of band are reported
with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely

from gridmap.config import HouseholdBand, ValidationOptions
from gridmap.planning._result import Changes, finish
from gridmap.planning._space import (Workspace, border, building_cells, homes, household_values,
                                     index_of, parts, polygonal)

__all__ = ["RebalanceResult", "rebalance"]


@dataclass
class RebalanceResult:
    """The grids after rebalancing (EPSG:4326), the buildings moved, and what could not be fixed."""

    grids: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)
    unresolved: dict[str, str] = field(default_factory=dict)  # grid code -> why
    minimal: bool = True
    states: int = 0


@dataclass
class _Atom:
    grid: int  # position in the grid layer
    building: int  # position in the building layer, -1 for a grid with no building
    households: float
    geom: object


def rebalance(grids: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, codes,
              parents: gpd.GeoDataFrame | None = None, options: ValidationOptions | None = None,
              *, max_moves: int = 6, max_states: int = 200_000) -> RebalanceResult:
    """Bring ``codes`` (the edited grids) and their neighbours into the household band.

    Bands come from ``options`` (urban/rural); a grid is rural when its community in ``parents``
    has ``kind == "rural"``. Households are counted from ``buildings``.
    """
    opts = options or ValidationOptions()
    ws = Workspace(grids, buildings)
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    fps = np.asarray(ws.buildings.geometry.values, dtype=object)
    home = homes(fps, metric)
    hh_b = household_values(ws.buildings)
    edited = [int(i) for i in index_of(grids, codes)]
    group = _neighbourhood(grids, metric, edited)
    bands = _bands(grids, parents, opts)
    atoms = _atoms(metric, fps, home, hh_b, group)
    graph = _adjacency(atoms)
    hh = {g: sum(a.households for a in atoms if a.grid == g) for g in group}
    out_band = [g for g in group if bands[g] is not None and not _inside(hh[g], bands[g])]
    result_moves, best_left, exhausted, states = [], out_band, False, 0
    if out_band:
        search = _Search(atoms, graph, group, bands, hh, max_states)
        result_moves, best_left = search.run(max_moves)
        exhausted, states = search.exhausted, search.states
    ch = Changes()
    if result_moves:
        owner = {k: a.grid for k, a in enumerate(atoms)}
        for k, t in result_moves:
            owner[k] = t
        for g in {atoms[k].grid for k, _ in result_moves} | {t for _, t in result_moves}:
            ch.geoms[g] = polygonal(shapely.union_all([atoms[k].geom for k in owner
                                                       if owner[k] == g]))
    res = finish(ws, grids, buildings, ch)
    codes_all = grids["code"].astype(str).to_numpy()
    why = _reasons(best_left, group, hh, bands, codes_all, max_moves, exhausted)
    return RebalanceResult(res.grids, res.buildings, res.moved, why,
                           minimal=not exhausted, states=states)


def _inside(value: float, band: HouseholdBand) -> bool:
    return band.low <= value <= band.high


def _neighbourhood(grids, metric, edited) -> list[int]:
    """The edited grids and the grids of their communities that share a boundary with them."""
    com = grids["parent_code"].astype(str).to_numpy() if "parent_code" in grids.columns \
        else grids["code"].astype(str).str[:12].to_numpy()
    tree = shapely.STRtree(metric)
    out = set(edited)
    for i in edited:
        for j in tree.query(metric[i], predicate="intersects"):
            if com[j] == com[i] and border(metric[i], metric[j]) > 0:
                out.add(int(j))
    return sorted(out)


def _bands(grids, parents, opts) -> dict[int, HouseholdBand | None]:
    kind = grids["kind"].astype(str).to_numpy() if "kind" in grids.columns else \
        np.full(len(grids), "basic")
    rural_coms = set()
    if parents is not None and "kind" in parents.columns:
        rural_coms = set(parents.loc[parents["kind"] == "rural", "code"].astype(str))
    com = grids["parent_code"].astype(str).to_numpy() if "parent_code" in grids.columns \
        else grids["code"].astype(str).str[:12].to_numpy()
    return {i: None if kind[i] == "dedicated" else (opts.rural if com[i] in rural_coms
                                                     else opts.urban)
            for i in range(len(grids))}


def _atoms(metric, fps, home, hh_b, group) -> list[_Atom]:
    atoms = []
    for g in group:
        mine = np.flatnonzero(home == g)
        if len(mine) == 0:
            atoms.append(_Atom(g, -1, 0.0, metric[g]))
            continue
        for b, cell in zip(mine, building_cells(metric[g], list(fps[mine]))):
            atoms.append(_Atom(g, int(b), float(hh_b[b]), cell))
    return atoms


def _adjacency(atoms: list[_Atom]) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(len(atoms)))
    geoms = np.array([a.geom for a in atoms], dtype=object)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    for a, b in zip(left, right):
        if a < b and border(geoms[a], geoms[b]) > 0:
            graph.add_edge(int(a), int(b))
    return graph


class _Search:
    """Iterative deepening over sets of (atom, target grid) moves, cheapest first."""

    def __init__(self, atoms, graph, group, bands, hh, max_states):
        self.atoms, self.graph, self.bands, self.hh = atoms, graph, bands, hh
        self.max_states, self.states, self.exhausted = max_states, 0, False
        movable = {g for g in group if bands[g] is not None}
        self.moves = []
        for k, a in enumerate(atoms):
            if a.building < 0 or a.grid not in movable:
                continue
            near = nx.single_source_shortest_path_length(graph, k, cutoff=2)
            targets = sorted({atoms[j].grid for j in near} & movable - {a.grid})
            self.moves += [(k, t) for t in targets]
        self.best = (len([g for g in hh if self._out(g, hh[g])]), [])

    def _out(self, g, value) -> bool:
        return self.bands[g] is not None and not _inside(value, self.bands[g])

    def run(self, max_moves: int):
        for depth in range(1, max_moves + 1):
            found = self._dfs(depth, 0, [], dict(self.hh), set())
            if found is not None:
                return found, []
            if self.exhausted:
                break
        after = self._apply(self.best[1])
        left = [g for g in after if self._out(g, after[g])]
        return self.best[1], left

    def _apply(self, moves):
        hh = dict(self.hh)
        for k, t in moves:
            a = self.atoms[k]
            hh[a.grid] -= a.households
            hh[t] += a.households
        return hh

    def _dfs(self, depth, start, chosen, hh, used):
        self.states += 1
        if self.states > self.max_states:
            self.exhausted = True
            return None
        out = sum(1 for g, v in hh.items() if self._out(g, v))
        if chosen and out < self.best[0] and self._contiguous(chosen):
            self.best = (out, list(chosen))
        if out == 0 and chosen:
            return list(chosen) if self._contiguous(chosen) else None
        left = depth - len(chosen)
        if left == 0 or out > 2 * left:
            return None
        for n in range(start, len(self.moves)):
            k, t = self.moves[n]
            if k in used:
                continue
            a = self.atoms[k]
            hh[a.grid] -= a.households
            hh[t] += a.households
            used.add(k)
            chosen.append((k, t))
            found = self._dfs(depth, n + 1, chosen, hh, used)
            chosen.pop()
            used.discard(k)
            hh[a.grid] += a.households
            hh[t] -= a.households
            if found is not None or self.exhausted:
                return found
        return None

    def _contiguous(self, chosen) -> bool:
        """Every grid touched stays one piece, and keeps at least one atom."""
        owner = {k: a.grid for k, a in enumerate(self.atoms)}
        for k, t in chosen:
            owner[k] = t
        touched = {self.atoms[k].grid for k, _ in chosen} | {t for _, t in chosen}
        for g in touched:
            nodes = [k for k, v in owner.items() if v == g]
            if not nodes or not nx.is_connected(self.graph.subgraph(nodes)):
                return False
            if len(parts(shapely.union_all([self.atoms[k].geom for k in nodes]))) != 1:
                return False
        return True


def _reasons(left, group, hh, bands, codes, max_moves, exhausted) -> dict[str, str]:
    out = {}
    movable = [g for g in group if bands[g] is not None]
    total = sum(hh[g] for g in movable)
    for g in left:
        band = bands[g]
        low, high = band.low * len(movable), band.high * len(movable)
        if not low <= total <= high:
            why = (f"grid {codes[g]} and its neighbours hold {total:g} households for "
                   f"{len(movable)} grids: no sharing gives every grid {band.low:g}–{band.high:g}; "
                   + ("merge" if total < low else "split") + " a grid instead")
        elif exhausted:
            why = (f"grid {codes[g]} holds {hh[g]:g} households: the search stopped at its bound "
                   "before finding moves that bring it into the band")
        else:
            why = (f"grid {codes[g]} holds {hh[g]:g} households: no set of at most {max_moves} "
                   f"boundary buildings brings it into {band.low:g}–{band.high:g} while every grid "
                   "stays one piece")
        out[str(codes[g])] = why
    return out
