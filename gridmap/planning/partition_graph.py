"""Grouping units (buildings with the ground nearest them) into grids of balanced households.

Three steps, all on the unit graph (units adjacent when their faces share a boundary):

1. *regions*: blocks cut off by barriers (管理服务不跨街) whose households cannot make whole grids
   (too few, or between k·high and (k+1)·low) are merged with a neighbour, smallest first;
2. *bisection*: each region is cut in two along the straight line (tried at six angles) that
   best balances households for k₁ and k₂ grids and cuts the least boundary — boundary along a
   barrier is cheap to cut — then each half recursively; halves are kept contiguous;
3. *boundary moves*: a grid outside the band gives a unit to (or takes one from) a neighbour in
   its region while both stay contiguous and the total excess shrinks.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from gridmap.config import HouseholdBand

__all__ = [
    "Band",
    "UnitGraph",
    "bisect_region",
    "components",
    "feasible",
    "grid_count",
    "merge_regions",
    "rebalance",
    "region_grids",
    "region_ok",
]

_ANGLES = np.deg2rad([0, 30, 60, 90, 120, 150])
_BARRIER_CUT = 0.2  # cutting along a barrier costs a fifth of cutting through a block
_MAX_ROUNDS = 60


#: Households per grid, target ± tolerance (两侧: both bounds matter).
Band = HouseholdBand


@dataclass
class UnitGraph:
    """Units with households ``weight`` (capped at the target), ``big`` (more households than
    a grid may hold), position ``xy``, ``block``; edges a–b with ``length`` (metres of shared
    boundary) and ``barrier`` (the edge runs along a barrier)."""

    weight: np.ndarray
    big: np.ndarray
    xy: np.ndarray
    block: np.ndarray
    a: np.ndarray
    b: np.ndarray
    length: np.ndarray
    barrier: np.ndarray = field(init=False)
    neighbours: list = field(init=False)

    def __post_init__(self):
        self.barrier = self.block[self.a] != self.block[self.b]
        self.neighbours = [set() for _ in range(len(self.weight))]
        for i, j in zip(self.a.tolist(), self.b.tolist()):
            self.neighbours[i].add(j)
            self.neighbours[j].add(i)


def feasible(total: float, band: Band) -> bool:
    """Whether ``total`` households can make whole grids inside the band."""
    if total <= 0:
        return False
    return math.ceil(total / band.high - 1e-9) <= math.floor(total / band.low + 1e-9)


def grid_count(total: float, band: Band) -> int:
    """How many grids ``total`` households make: inside the band if possible, nearest the target."""
    best = max(1, round(total / band.target))
    if band.low <= 0:
        return best
    lo, hi = math.ceil(total / band.high - 1e-9), math.floor(total / band.low + 1e-9)
    if lo <= hi:
        return min(max(best, lo), hi)
    return best


def region_ok(rest: float, n_big: int, band: Band) -> bool:
    """Whether a region makes whole grids: ``rest`` households beside ``n_big`` big buildings.

    A big building's grid is outside the band anyway, so it can take any remainder.
    """
    return n_big > 0 or feasible(rest, band)


def region_grids(rest: float, n_big: int, band: Band) -> int:
    """Grids for a region: one per big building, the rest balanced (its excess to the big ones)."""
    if n_big == 0:
        return grid_count(rest, band)
    if feasible(rest, band):
        return n_big + grid_count(rest, band)
    return n_big + int(rest // band.low)


def components(n: int, a: np.ndarray, b: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Connected-component label (smallest member) of each unit of ``members``; -1 elsewhere."""
    label = np.full(n, -1, dtype=np.intp)
    label[members] = members
    inside = (label[a] >= 0) & (label[b] >= 0)
    ea, eb = a[inside], b[inside]
    while True:
        new = label.copy()
        np.minimum.at(new, ea, label[eb])
        np.minimum.at(new, eb, label[ea])
        new[members] = new[new[members]]
        if np.array_equal(new, label):
            return label
        label = new


def merge_regions(graph: UnitGraph, band: Band) -> tuple[np.ndarray, list[str]]:
    """Region of each unit: blocks, merged across barriers only where their households must be.

    Returns the region labels (0..r-1) and one note per merge.
    """
    region = np.unique(graph.block, return_inverse=True)[1].astype(np.intp)
    rest_w = np.where(graph.big, 0.0, graph.weight)
    total = {int(r): float(w) for r, w in enumerate(np.bincount(region, weights=rest_w))}
    nbig = {int(r): int(c) for r, c in enumerate(np.bincount(region, weights=graph.big))}
    touching: dict[int, dict[int, float]] = {r: {} for r in total}
    ra, rb = region[graph.a], region[graph.b]
    for i, j, w in zip(ra.tolist(), rb.tolist(), graph.length.tolist()):
        if i != j:
            touching[i][j] = touching[i].get(j, 0.0) + w
            touching[j][i] = touching[j].get(i, 0.0) + w
    parent = {r: r for r in total}
    notes: list[str] = []
    stuck: set[int] = set()
    while True:
        todo = [r for r in total if r not in stuck and not (
            region_ok(total[r], nbig[r], band) and (total[r] > 0 or nbig[r] > 0))]
        if not todo:
            break
        r = min(todo, key=lambda x: (total[x], x))
        if not touching[r]:
            stuck.add(r)
            continue
        s = min(touching[r], key=lambda x: _merge_key(total[r], total[x], nbig[r] + nbig[x],
                                                      touching[r][x], band))
        if total[r] > 0:
            notes.append(f"a block of {total[r]:g} households cannot make a grid of "
                         f"{band.low:g}–{band.high:g} on its own: merged across a barrier with "
                         f"its neighbour of {total[s]:g}")
        nbig[s] += nbig.pop(r)
        _absorb(r, s, total, touching, parent)
    lookup = {r: _root(parent, r) for r in parent}
    roots = np.array([lookup[int(r)] for r in region])
    return np.unique(roots, return_inverse=True)[1].astype(np.intp), notes


def _merge_key(mine: float, theirs: float, n_big: int, shared: float, band: Band):
    if mine <= 0:  # empty ground (a park, a road's median) goes with its longest border
        return (0, 0.0, -shared)
    merged = mine + theirs
    return (not region_ok(merged, n_big, band), merged, -shared)


def _absorb(r: int, s: int, total, touching, parent) -> None:
    total[s] += total.pop(r)
    for x, w in touching.pop(r).items():
        touching[x].pop(r, None)
        if x != s:
            touching[s][x] = touching[s].get(x, 0.0) + w
            touching[x][s] = touching[x].get(s, 0.0) + w
    parent[r] = s


def _root(parent: dict, r: int) -> int:
    while parent[r] != r:
        r = parent[r]
    return r


def bisect_region(graph: UnitGraph, members: np.ndarray, k: int, band: Band) -> list[np.ndarray]:
    """Cut a region's units into ``k`` contiguous, compact groups of balanced households."""
    if k <= 1 or len(members) <= 1:
        return [members]
    k1 = k // 2
    a_side, b_side = _best_cut(graph, members, k1, k, band)
    if len(a_side) == 0 or len(b_side) == 0:
        return [members]
    return bisect_region(graph, a_side, k1, band) + bisect_region(graph, b_side, k - k1, band)


def _best_cut(graph: UnitGraph, members: np.ndarray, k1: int, k: int, band: Band):
    w = graph.weight[members]
    total = w.sum()
    ideal = total * k1 / k
    lo = max(k1 * band.low, total - (k - k1) * band.high)
    hi = min(k1 * band.high, total - (k - k1) * band.low)
    pos = np.full(len(graph.weight), -1, dtype=np.intp)
    pos[members] = np.arange(len(members))
    inner = (pos[graph.a] >= 0) & (pos[graph.b] >= 0)
    ea, eb = pos[graph.a[inner]], pos[graph.b[inner]]
    cost = graph.length[inner] * np.where(graph.barrier[inner], _BARRIER_CUT, 1.0)
    xy = graph.xy[members]
    scale = max(float(np.ptp(xy, axis=0).max()), 1.0)
    best = None
    for theta in _ANGLES:
        order = np.argsort(xy @ np.array([math.cos(theta), math.sin(theta)]), kind="stable")
        rank = np.empty(len(order), dtype=np.intp)
        rank[order] = np.arange(len(order))
        first, last = np.minimum(rank[ea], rank[eb]), np.maximum(rank[ea], rank[eb])
        cut = np.cumsum(np.bincount(first, cost, len(order)) - np.bincount(last, cost, len(order)))
        cum = np.cumsum(w[order])
        off = np.maximum(lo - cum, 0) + np.maximum(cum - hi, 0)
        score = ((cum - ideal) / band.tolerance) ** 2 + 50 * off / band.tolerance + cut / scale
        score[-1] = np.inf
        i = int(np.argmin(score))
        side = np.zeros(len(members), dtype=bool)
        side[order[: i + 1]] = True
        side = _contiguous(graph, members, side)
        a_w = w[side].sum()
        off = max(lo - a_w, 0) + max(a_w - hi, 0)
        final = ((a_w - ideal) / band.tolerance) ** 2 + 50 * off / band.tolerance + cut[i] / scale
        if best is None or final < best[0]:
            best = (final, side)
    side = best[1]
    return members[side], members[~side]


def _contiguous(graph: UnitGraph, members: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Give each side's stray pieces (cut off from its main piece) to the other side."""
    n = len(graph.weight)
    for flag in (True, False):
        mine = members[side == flag]
        if len(mine) == 0:
            continue
        label = components(n, graph.a, graph.b, mine)[mine]
        if np.all(label == label[0]):
            continue
        _keys, inverse = np.unique(label, return_inverse=True)
        weight = np.bincount(inverse, weights=graph.weight[mine] + 1e-6)
        stray = inverse != int(np.argmax(weight))
        idx = np.flatnonzero(side == flag)[stray]
        side[idx] = not flag
    return side


def rebalance(graph: UnitGraph, grid: np.ndarray, region: np.ndarray, band: Band) -> np.ndarray:
    """Boundary moves that shrink the households outside the band, keeping grids contiguous.

    A grid with too few households takes the part of a neighbour nearest to it (grown unit by
    unit from their common border, so it stays in one piece and compact); a grid with too many
    gives such a part away. A move is kept when the households outside the band shrink. A grid
    holding a big building is outside the band whatever it holds, so it gives and takes freely.
    """
    grid = grid.copy()
    n_grids = int(grid.max()) + 1 if len(grid) else 0
    state = _State(graph, grid, band, n_grids)
    for _ in range(_MAX_ROUNDS):
        bad = sorted((g for g in range(n_grids) if state.excess(g, state.load[g]) > 0),
                     key=lambda g: -state.excess(g, state.load[g]))
        if not bad or not any(_improve(state, g, region) for g in bad):
            break
    return state.grid


class _State:
    def __init__(self, graph: UnitGraph, grid: np.ndarray, band: Band, n_grids: int):
        self.graph, self.grid, self.band = graph, grid, band
        self.load = np.bincount(grid, weights=graph.weight, minlength=n_grids)
        self.members = [set(np.flatnonzero(grid == g).tolist()) for g in range(n_grids)]
        self.flexible = set(np.unique(grid[graph.big]).tolist())

    def excess(self, g: int, x: float) -> float:
        if g in self.flexible:
            return 0.0
        return max(self.band.low - x, 0.0) + max(x - self.band.high, 0.0)

    def room(self, src: int, dst: int) -> tuple[float, float]:
        """Households that ``src`` should give ``dst``: (at least, at most)."""
        band, load, inf = self.band, self.load, math.inf
        need = max(0.0 if src in self.flexible else load[src] - band.high,
                   0.0 if dst in self.flexible else band.low - load[dst], 0.0)
        most = min(inf if src in self.flexible else load[src] - band.low,
                   inf if dst in self.flexible else band.high - load[dst])
        return need, most


def _improve(state: _State, g: int, region: np.ndarray) -> bool:
    """One transfer between grid ``g`` (outside the band) and a neighbour in its region."""
    graph, members, load, grid = state.graph, state.members, state.load, state.grid
    if not members[g]:
        return False
    home = region[next(iter(members[g]))]
    near = {int(grid[v]) for u in members[g] for v in graph.neighbours[u]} - {g}
    best = None
    for h in near:
        if region[next(iter(members[h]))] != home:
            continue
        src, dst = (g, h) if load[g] > state.band.high else (h, g)
        chunk = _chunk(state, src, dst)
        if chunk is None:
            continue
        w = graph.weight[list(chunk)].sum()
        before = state.excess(src, load[src]) + state.excess(dst, load[dst])
        after = state.excess(src, load[src] - w) + state.excess(dst, load[dst] + w)
        gain = before - after
        if gain > 1e-9 and (best is None or gain > best[0]):
            best = (gain, chunk, src, dst, w)
    if best is None:
        return False
    _, chunk, src, dst, w = best
    members[src] -= chunk
    members[dst] |= chunk
    grid[list(chunk)] = dst
    load[src] -= w
    load[dst] += w
    return True


def _chunk(state: _State, src: int, dst: int):
    """The units of ``src`` nearest ``dst`` whose households move both toward the band."""
    graph, members = state.graph, state.members
    lo, hi = state.room(src, dst)
    if hi <= 0 or hi < lo:
        return None
    centre = graph.xy[list(members[dst])].mean(axis=0)
    start = [u for u in members[src] if graph.neighbours[u] & members[dst] and not graph.big[u]]
    heap = [(float(np.hypot(*(graph.xy[u] - centre))), u) for u in start]
    heapq.heapify(heap)
    chunk, seen, w = set(), set(start), 0.0
    while heap:
        _, u = heapq.heappop(heap)
        if w + graph.weight[u] > hi + 1e-9:
            continue
        chunk.add(u)
        w += graph.weight[u]
        if w >= lo - 1e-9 and w > 0:
            rest = members[src] - chunk
            return chunk if rest and _connected(graph, rest) else None
        for v in graph.neighbours[u]:
            if v in members[src] and v not in seen and not graph.big[v]:
                seen.add(v)
                heapq.heappush(heap, (float(np.hypot(*(graph.xy[v] - centre))), v))
    return None


def _connected(graph: UnitGraph, units: set) -> bool:
    start = next(iter(units))
    seen, stack = {start}, [start]
    while stack:
        for v in graph.neighbours[stack.pop()]:
            if v in units and v not in seen:
                seen.add(v)
                stack.append(v)
    return len(seen) == len(units)
