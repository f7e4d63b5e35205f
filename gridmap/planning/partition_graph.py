"""Grouping units (buildings with the ground nearest them) into grids of balanced households.

Two steps on the unit graph (units adjacent when their faces share a boundary), region by region
(blocks cut off by barriers, merged where they must be: :func:`~gridmap.planning.partition_build.
merge_regions`):

1. *bisection*: each region is cut in two along the straight line (tried at six angles) that
   best balances households for k₁ and k₂ grids and cuts the least boundary — boundary along a
   barrier is cheap to cut — then each half recursively; halves are kept contiguous;
2. *redraws*: a grid outside the band is pooled with one, two or three neighbours (a chain) and
   the pool redrawn as contiguous, compact grids — as many, or one fewer or more — while the
   households outside the band shrink (:func:`rebalance`)."""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from gridmap.config import HouseholdBand

__all__ = ["Band", "UnitGraph", "bisect_region", "components", "pieces", "rebalance"]

_ANGLES = np.deg2rad([0, 30, 60, 90, 120, 150])
_BARRIER_CUT = 0.2  # cutting along a barrier costs a fifth of cutting through a block
_MAX_ROUNDS = 60
_SEEDS = 40  # units a pool's parts are grown from, at most
_FIRSTS = 6  # first parts tried when a pool is cut in three or more
_QUADS = 10  # chains of four grids tried, at most, for a grid still outside the band


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
    """Redraw small groups of neighbouring grids while the households outside the band shrink.

    A grid outside the band and one or two neighbours in its region (a chain: each touches the
    group before it) are pooled and redrawn as as many contiguous grids, each grown from a unit
    by distance, so compact. Pooling three grids moves households along a chain — an ejection
    chain: the middle grid gives on one side what it takes on the other — which one boundary
    move at a time cannot do. Failing that, the pool is redrawn as one grid fewer (two grids
    under the band become one inside it) or one more (coarse buildings that fit four grids but
    not three). A grid holding a big building keeps it; it is outside the band anyway, so it
    gives and takes freely, but it never swallows a whole grid. Returns grid labels 0..n-1.
    """
    state = _State(graph, grid.copy(), band, region)
    for _ in range(_MAX_ROUNDS):
        bad = sorted(state.bad(), key=lambda g: -state.excess(g))
        if not bad or not any(_improve(state, g) for g in bad):
            break
    return np.unique(state.grid, return_inverse=True)[1].astype(np.intp).reshape(-1)


class _State:
    def __init__(self, graph: UnitGraph, grid: np.ndarray, band: Band, region: np.ndarray):
        self.graph, self.grid, self.band = graph, grid, band
        n = int(grid.max()) + 1 if len(grid) else 0
        self.load = list(np.bincount(grid, weights=graph.weight, minlength=n))
        self.members = [set(np.flatnonzero(grid == g).tolist()) for g in range(n)]
        self.flexible = set(np.unique(grid[graph.big]).tolist())
        self.owner = {int(u): int(grid[u]) for u in np.flatnonzero(graph.big)}
        self.n_big = {g: list(self.owner.values()).count(g) for g in self.flexible}
        self.w, self.xy = graph.weight.tolist(), graph.xy.tolist()
        home = np.zeros(n, dtype=np.intp)
        home[grid] = region
        self.home = home.tolist()
        self.version = [0] * n
        self.failed: dict = {}
        cost = graph.length * np.where(graph.barrier, _BARRIER_CUT, 1.0)
        self.cost: list[dict] = [{} for _ in range(len(graph.weight))]
        for i, j, c in zip(graph.a.tolist(), graph.b.tolist(), cost.tolist()):
            self.cost[i][j] = self.cost[j][i] = c

    def off(self, x: float) -> float:
        return max(self.band.low - x, 0.0) + max(x - self.band.high, 0.0)

    def excess(self, g: int) -> float:
        if g in self.flexible or not self.members[g]:
            return 0.0
        return self.off(self.load[g])

    def bad(self) -> list[int]:
        return [g for g in range(len(self.members)) if self.excess(g) > 0]

    def near(self, g: int) -> set[int]:
        grid, nb = self.grid, self.graph.neighbours
        out = {int(grid[v]) for u in self.members[g] for v in nb[u]} - {g}
        return {h for h in out if self.home[h] == self.home[g]}

    def assign(self, grids, parts) -> None:
        for g, part in zip(grids, parts):
            if g == len(self.members):  # a new grid
                self.members.append(set())
                self.load.append(0.0)
                self.home.append(self.home[grids[0]])
                self.version.append(0)
            self.members[g] = set(part)
            self.grid[list(part)] = g
            self.load[g] = float(self.graph.weight[list(part)].sum())
            self.version[g] += 1


def _improve(state: _State, g: int) -> bool:
    """Redraw ``g`` with one neighbour, else with two (a chain), else as one grid fewer or more;
    keep the first redraw that helps."""
    if state.excess(g) <= 0:
        return False
    near = state.near(g)
    pairs = [(g, h) for h in near]
    triples = sorted({tuple(sorted((g, h, c))) for h in near
                      for c in (near | state.near(h)) - {g, h}})
    tries = [(p, 0) for p in pairs + triples] + [(p, d) for d in (-1, 1) for p in pairs + triples]
    if any(_redraw(state, grids, d) for grids, d in tries):
        return True
    # Chains of four: the few whose households come nearest four grids of the target.
    quads = {q for t in triples for x in t for d in state.near(x)
             if len(q := tuple(sorted(set(t) | {d}))) == 4}
    target = 4 * state.band.target
    best = sorted(quads, key=lambda q: (abs(sum(state.load[x] for x in q) - target), q))
    return any(_redraw(state, q, 0) for q in best[:_QUADS])


def _redraw(state: _State, grids, delta: int) -> bool:
    """Pool ``grids`` and cut the pool into ``len(grids) + delta`` grids, if that helps."""
    grids = tuple(sorted(grids))
    stamp = (delta,) + tuple(state.version[x] for x in grids)
    if state.failed.get(grids + (delta,)) == stamp:
        return False
    if delta < 0 and any(x in state.flexible for x in grids):
        return False
    pool = sorted(set().union(*(state.members[x] for x in grids)))
    now = sum(state.excess(x) for x in grids)
    xy = state.graph.xy[pool]
    best = _split(state, pool, len(grids) + delta, max(float(np.ptp(xy, axis=0).max()), 1.0))
    if best is None or best[0] >= now - 1e-9:
        state.failed[grids + (delta,)] = stamp
        return False
    slots = grids + ((len(state.members),) if delta > 0 else ())
    order = _match(state, slots, best[2] + [[]] * -delta)
    if order is None:
        return False
    state.assign(slots, order)
    return True


def _match(state: _State, grids, parts):
    """Give each part to a grid: the one owning its big building, else the one it overlaps most."""
    best = None
    for order in itertools.permutations(parts):
        if any({state.owner[u] for u in p if u in state.owner} !=
               ({g} & state.flexible if g < len(state.members) else set())
               for g, p in zip(grids, order)):
            continue
        overlap = sum(len(state.members[g].intersection(p)) for g, p in zip(grids, order)
                      if g < len(state.members))
        if best is None or overlap > best[0]:
            best = (overlap, order)
    return None if best is None else best[1]


def _split(state: _State, pool: list, k: int, scale: float):
    """Best cut of ``pool`` (connected) into ``k`` connected parts: (excess, score, parts).

    Parts are grown from each unit by distance; for ``k`` > 2 the first part must hold the band
    (or a big building) and the rest is cut again, for the few best such first parts.
    """
    total = sum(state.w[u] for u in pool)
    bigs = _bigs(state, pool)
    if k == 1:
        return _score(state, total, bigs) + ([pool],) if _whole(state, bigs) else None
    if len(pool) < k:
        return None
    inside = set(pool)
    best, firsts = None, {}
    for part, load, cut, mine in _grow(state, pool):
        if not _whole(state, mine):
            continue
        exc, sec = _score(state, load, mine)
        if k > 2:
            key = frozenset(part)
            if exc == 0 and key not in firsts and _connected(state.graph, inside - part):
                firsts[key] = (bool(mine), sec + cut / scale)
            continue
        rest = {g: c - mine.get(g, 0) for g, c in bigs.items() if c > mine.get(g, 0)}
        if not _whole(state, rest):
            continue
        exc_r, sec_r = _score(state, total - load, rest)
        key = (exc + exc_r, sec + sec_r + cut / scale)
        if (best is None or key < best[:2]) and _connected(state.graph, inside - part):
            best = key + ([sorted(part), sorted(inside - part)],)
    # The best few of each kind: a part with a big building has no deviation to score, so it
    # would crowd out the others.
    ranked = sorted(firsts.items(), key=lambda kv: kv[1])
    for part, (_big, sec) in [kv for kv in ranked if kv[1][0]][:_FIRSTS] + [
            kv for kv in ranked if not kv[1][0]][:_FIRSTS]:
        sub = _split(state, sorted(inside - part), k - 1, scale)
        if sub is not None and (best is None or (sub[0], sub[1] + sec) < best[:2]):
            best = (sub[0], sub[1] + sec, [sorted(part)] + sub[2])
    return best


def _grow(state: _State, pool: list):
    """Parts of ``pool`` grown from each unit (at most ``_SEEDS`` of them), nearest first:
    yields (part, households, boundary cost to the rest of the pool, big buildings by grid)
    after each unit added."""
    inside, xy, w, owner = set(pool), state.xy, state.w, state.owner
    seeds = pool if len(pool) <= _SEEDS else [pool[i] for i in
                                              np.linspace(0, len(pool) - 1, _SEEDS).astype(int)]
    for s in seeds:
        heap, part, load, cut, mine = [(0.0, s)], set(), 0.0, 0.0, {}
        x0, y0 = xy[s]
        while heap and len(part) < len(pool) - 1:
            _, u = heapq.heappop(heap)
            if u in part:
                continue
            part.add(u)
            load += w[u]
            if u in owner:
                mine[owner[u]] = mine.get(owner[u], 0) + 1
            for v, c in state.cost[u].items():
                if v in part:
                    cut -= c
                elif v in inside:
                    cut += c
                    heapq.heappush(heap, (math.hypot(xy[v][0] - x0, xy[v][1] - y0), v))
            yield part, load, cut, mine


def _bigs(state: _State, units) -> dict[int, int]:
    """Big buildings among ``units``, counted by the grid owning them."""
    out: dict[int, int] = {}
    for u in units:
        if u in state.owner:
            out[state.owner[u]] = out.get(state.owner[u], 0) + 1
    return out


def _whole(state: _State, bigs: dict) -> bool:
    """Whether a part with these big buildings holds none, or all of one grid's."""
    return not bigs or (len(bigs) == 1 and all(state.n_big[g] == c for g, c in bigs.items()))


def _score(state: _State, load: float, bigs: dict) -> tuple[float, float]:
    """(households outside the band, squared deviation from the target) of one part."""
    if bigs:
        return 0.0, 0.0
    band = state.band
    return state.off(load), ((load - band.target) / band.tolerance) ** 2


def _connected(graph: UnitGraph, units: set) -> bool:
    return len(units) > 0 and len(pieces(graph, units)) == 1


def pieces(graph: UnitGraph, units: set) -> list[set]:
    """The connected pieces of ``units``."""
    left, out = set(units), []
    while left:
        start = left.pop()
        seen, stack = {start}, [start]
        while stack:
            for v in graph.neighbours[stack.pop()]:
                if v in left:
                    left.discard(v)
                    seen.add(v)
                    stack.append(v)
        out.append(seen)
    return out
