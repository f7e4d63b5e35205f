"""Between faces and grids: building units, the unit graph, regions, contiguity repair, reasons.

A *unit* is a building, or several whose footprints overlap (OSM building parts): they must share
a grid, so they move as one. Empty ground that no building claims (a block with no building: a
park, a strip between two carriageways; a piece of a building's ground cut off from it by another
footprint) becomes a unit of 0 households, so it joins a grid like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from gridmap.planning import partition_graph as pg
from gridmap.planning.partition_faces import Faces

__all__ = ["Plan", "anchor_faces", "balanced", "face_graph", "feasible", "grid_count",
           "merge_overlapping", "merge_regions", "region_grids", "region_ok", "repair_contiguity"]

_OVERLAP_M2 = 0.5  # footprints overlapping by less than this only touch (digitising noise)
_REPAIR_ROUNDS = 10
_EXHAUSTIVE = 16  # units in a block small enough to search every grouping of
_SEARCH = 200_000  # groupings the exhaustive search looks at before it gives up


@dataclass
class Plan:
    """Everything the partition decided, in the metric CRS; grids are labels of faces."""

    faces: Faces
    face_grid: np.ndarray
    n_basic: int
    n_sites: int
    units: np.ndarray
    unit_hh: np.ndarray
    unit_of: np.ndarray
    anchor: np.ndarray
    region: np.ndarray
    graph: pg.UnitGraph
    node_of_face: np.ndarray
    band: pg.Band
    unit_node: np.ndarray | None = None
    used: np.ndarray | None = None
    code_of: dict = field(default_factory=dict)

    def reasons(self) -> dict[str, str]:
        """Why each basic grid outside the band is there, by grid code."""
        band, out = self.band, {}
        grid_of_unit = self.face_grid[self.anchor]
        hh = np.bincount(grid_of_unit, weights=self.unit_hh, minlength=self.n_basic)
        building_count = np.bincount(self.unit_of, minlength=len(self.units))
        graph = self.graph
        region_total = np.bincount(self.region, weights=np.where(graph.big, 0, graph.weight))
        region_big = np.bincount(self.region, weights=graph.big)
        stuck = {r for r in range(len(region_total))
                 if not region_ok(region_total[r], int(region_big[r]), band)}
        towered = {r for r in range(len(region_total)) if region_big[r] > 0}
        for g, code in self.code_of.items():
            if g >= self.n_basic or band.low <= hh[g] <= band.high:
                continue
            mine = np.flatnonzero(grid_of_unit == g)
            big = mine[np.argmax(self.unit_hh[mine])] if len(mine) else None
            regions = {int(self.region[self.unit_node[u]]) for u in mine
                       if self.unit_node[u] >= 0}
            if big is not None and self.unit_hh[big] > band.high:
                what = ("one building" if building_count[big] == 1
                        else f"{building_count[big]} overlapping buildings")
                out[code] = (f"{what} of {self.unit_hh[big]:g} households is larger than the band "
                             f"({band.low:g}–{band.high:g})")
            elif regions & stuck:
                t = sum(region_total[r] for r in regions & stuck)
                out[code] = (f"block cut off by barriers holds only {t:g} households"
                             if t < band.low else
                             f"block cut off by barriers holds {t:g} households, which cannot make "
                             f"whole grids of {band.low:g}–{band.high:g}")
            else:
                nodes = [self.unit_node[u] for u in mine if self.unit_node[u] >= 0]
                out[code] = self._cannot(nodes, hh[g]) or (
                    "its block also holds a building larger than the band, which takes a grid of "
                    "its own: the rest of the block does not make whole grids"
                    if regions & towered else "buildings too coarse to balance here (the largest "
                    f"holds {self.unit_hh[big] if big is not None else 0:g} households)")
        return out

    def _cannot(self, nodes: list, households: float) -> str | None:
        """Why no grid here can hold the band, when that is certain: the ground the grid can reach
        without crossing a barrier or a building larger than the band holds too few households,
        or (a small block without such buildings) no grouping of its buildings fits the band."""
        graph, band = self.graph, self.band
        if not nodes:
            return None
        r = self.region[nodes[0]]
        block = np.flatnonzero(self.region == r)
        label = pg.components(len(graph.weight), graph.a, graph.b, block[~graph.big[block]])
        reach = np.flatnonzero(label == label[nodes[0]])
        total = graph.weight[reach].sum()
        if households < band.low and total < band.low and graph.big[block].any():
            return (f"walled in by barriers and buildings larger than the band: the ground it can "
                    f"reach holds only {total:g} households")
        if graph.big[block].any() or len(block) > _EXHAUSTIVE or balanced(
                graph, block, band) is not False:
            return None
        return (f"its block, cut off by barriers, holds {total:g} households in "
                f"{int((graph.weight[block] > 0).sum())} buildings that no grouping into "
                f"connected grids of {band.low:g}–{band.high:g} can hold (checked exhaustively)")


def merge_overlapping(geoms: np.ndarray, hh: np.ndarray, notes: list[str]):
    """Units: groups of overlapping footprints. Returns (unit geometries, unit of each building,
    households per unit)."""
    n = len(geoms)
    polygonal = np.flatnonzero(shapely.get_dimensions(geoms) == 2)
    i, j = shapely.STRtree(geoms[polygonal]).query(geoms[polygonal], predicate="intersects")
    i, j = polygonal[i], polygonal[j]
    keep = i < j
    i, j = i[keep], j[keep]
    overlap = shapely.area(shapely.intersection(geoms[i], geoms[j])) > _OVERLAP_M2
    i, j = i[overlap], j[overlap]
    if len(i) == 0:
        return geoms, np.arange(n), hh.astype(float)
    label = pg.components(n, i, j, np.arange(n))
    keys, unit_of = np.unique(label, return_inverse=True)
    sizes = np.bincount(unit_of)
    units = np.empty(len(keys), dtype=object)
    units[unit_of] = geoms
    for u in np.flatnonzero(sizes > 1):
        units[u] = shapely.union_all(geoms[unit_of == u])
    notes.append(f"{int((sizes > 1).sum())} groups of overlapping buildings "
                 f"({int(sizes[sizes > 1].sum())} footprints) are kept together, each in one grid")
    return units, unit_of, np.bincount(unit_of, weights=hh)


def face_graph(faces: Faces, units: np.ndarray, unit_hh: np.ndarray, unit_block: np.ndarray,
               unit_site: np.ndarray, cap: float, tolerance: float,
               anchor: np.ndarray | None = None):
    """The unit graph from face adjacency; returns (graph, node of each face, node of each unit).

    A unit's weight is its households, but a building larger than a grid may hold (more than
    ``cap + tolerance``) counts as one grid's worth (``cap``), so it ends up alone instead of
    starving the grids around it. ``anchor``: the face holding each unit's households
    (:func:`anchor_faces`, computed when not given).

    Faces of buildings inside a dedicated site are moved to the site (``faces.site``) here.
    """
    in_site_unit = (faces.unit >= 0) & (unit_site[np.maximum(faces.unit, 0)] >= 0)
    faces.site = np.where(in_site_unit, unit_site[np.maximum(faces.unit, 0)], faces.site)
    real = np.flatnonzero(unit_site < 0)
    unit_node = np.full(len(units), -1, dtype=np.intp)
    unit_node[real] = np.arange(len(real))
    n_faces, owner = len(faces.geoms), np.maximum(faces.unit, 0)
    # A unit's node is the piece of its faces holding its households (its anchor face); a piece
    # of its ground cut off from that one (another footprint between) is free ground, or the
    # grid would be contiguous in the graph and not on the map.
    owned = (faces.unit >= 0) & (faces.site < 0)
    same = owned[faces.a] & owned[faces.b] & (faces.unit[faces.a] == faces.unit[faces.b])
    piece = pg.components(n_faces, faces.a[same], faces.b[same], np.arange(n_faces))
    anchor = anchor_faces(faces, units) if anchor is None else anchor
    core = owned & (piece == piece[anchor[owner]])
    node = np.where(core, unit_node[owner], -1)
    # Free ground (a block with no building, a detached piece): one unit per connected stretch
    # of it within a block; a face in no block is a unit of its own.
    free = ~core & (faces.site < 0)
    joined = free[faces.a] & free[faces.b] & (faces.block[faces.a] == faces.block[faces.b]) \
        & (faces.block[faces.a] >= 0)
    stretch = pg.components(n_faces, faces.a[joined], faces.b[joined], np.flatnonzero(free))
    empty = np.flatnonzero(free)
    keys, first, pseudo = np.unique(stretch[empty], return_index=True, return_inverse=True)
    node[empty] = len(real) + pseudo
    n_nodes = len(real) + len(keys)
    area = shapely.area(faces.geoms[empty])
    centre = shapely.get_coordinates(shapely.centroid(faces.geoms[empty]))
    weight_sum = np.maximum(np.bincount(pseudo, weights=area, minlength=len(keys)), 1e-12)
    pseudo_xy = np.c_[np.bincount(pseudo, weights=area * centre[:, 0], minlength=len(keys)),
                      np.bincount(pseudo, weights=area * centre[:, 1], minlength=len(keys))]
    xy = np.r_[shapely.get_coordinates(shapely.centroid(units[real])),
               pseudo_xy / weight_sum[:, None]]
    pseudo_block = faces.block[empty[first]]
    block = np.r_[unit_block[real],
                  np.where(pseudo_block >= 0, pseudo_block, -10**6 - np.arange(len(keys)))]
    na, nb = node[faces.a], node[faces.b]
    ok = (na >= 0) & (nb >= 0) & (na != nb)
    lo, hi = np.minimum(na[ok], nb[ok]), np.maximum(na[ok], nb[ok])
    edge, inverse = np.unique(lo.astype(np.int64) * n_nodes + hi, return_inverse=True)
    length = np.bincount(inverse, weights=faces.length[ok], minlength=len(edge))
    big = np.r_[unit_hh[real] > cap + tolerance, np.zeros(len(keys), dtype=bool)]
    weight = np.where(big, cap, np.r_[unit_hh[real], np.zeros(len(keys))])
    graph = pg.UnitGraph(weight, big, xy, block, (edge // n_nodes).astype(np.intp),
                         (edge % n_nodes).astype(np.intp), length)
    return graph, node, unit_node


def balanced(graph: pg.UnitGraph, units, band: pg.Band, budget: int = _SEARCH) -> bool | None:
    """Whether ``units`` (connected, no big building) can be cut into connected grids that all
    hold the band: an exhaustive search; None when it gives up after ``budget`` groupings.

    The grid of the unit first in order is one of the connected sets holding it, enumerated
    each once (a set grows only by neighbours not yet ruled out); what is left must split into
    pieces that can each be balanced in turn.
    """
    weight, nb, left = graph.weight, graph.neighbours, {int(u) for u in units}
    count = [0]

    def sets(u: int, pool: set):
        def grow(part, load, ext, out):
            yield part, load
            ext = set(ext)
            while ext:
                v = ext.pop()
                out = out | {v}
                if load + weight[v] <= band.high + 1e-9:
                    yield from grow(part | {v}, load + weight[v],
                                    ext | {x for x in nb[v] if x in pool and x not in out}, out)
        yield from grow({u}, weight[u], {x for x in nb[u] if x in pool}, {u})

    def solve(pool: set) -> bool:
        for part, load in sets(min(pool), pool):
            count[0] += 1
            if count[0] > budget:
                raise _GiveUp
            if load < band.low - 1e-9:
                continue
            rest = pool - part
            pieces = pg.pieces(graph, rest)
            if all(weight[list(p)].sum() >= band.low - 1e-9 for p in pieces) and all(
                    solve(p) for p in pieces):
                return True
        return False

    try:
        return solve(left) if left else False
    except _GiveUp:
        return None


class _GiveUp(Exception):
    pass


# -- regions: blocks, merged across barriers where they must be -------------------------------


def feasible(total: float, band: pg.Band) -> bool:
    """Whether ``total`` households can make whole grids inside the band."""
    if total <= 0:
        return False
    return math.ceil(total / band.high - 1e-9) <= math.floor(total / band.low + 1e-9)


def grid_count(total: float, band: pg.Band) -> int:
    """How many grids ``total`` households make: inside the band if possible, nearest the target."""
    best = max(1, round(total / band.target))
    if band.low <= 0:
        return best
    lo, hi = math.ceil(total / band.high - 1e-9), math.floor(total / band.low + 1e-9)
    if lo <= hi:
        return min(max(best, lo), hi)
    return best


def region_ok(rest: float, n_big: int, band: pg.Band) -> bool:
    """Whether a region makes whole grids: ``rest`` households beside ``n_big`` big buildings.

    A big building's grid is outside the band anyway, so it can take any remainder.
    """
    return n_big > 0 or feasible(rest, band)


def region_grids(rest: float, n_big: int, band: pg.Band) -> int:
    """Grids for a region: one per big building, the rest balanced (its excess to the big ones)."""
    if n_big == 0:
        return grid_count(rest, band)
    if feasible(rest, band):
        return n_big + grid_count(rest, band)
    return n_big + int(rest // band.low)


def merge_regions(graph: pg.UnitGraph, band: pg.Band) -> tuple[np.ndarray, list[str]]:
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


def _merge_key(mine: float, theirs: float, n_big: int, shared: float, band: pg.Band):
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


def anchor_faces(faces: Faces, units: np.ndarray) -> np.ndarray:
    """The face holding each unit's representative point: where its households are counted."""
    points = shapely.point_on_surface(units)
    p, f = shapely.STRtree(faces.geoms).query(points, predicate="intersects")
    anchor = np.zeros(len(units), dtype=np.intp)
    anchor[p[::-1]] = f[::-1]
    return anchor


def repair_contiguity(faces: Faces, label: np.ndarray, weight: np.ndarray,
                      fixed_from: int) -> tuple[np.ndarray, int]:
    """Give every piece of a grid cut off from its main piece to the neighbour sharing most
    boundary with it, until each grid is one piece. Labels ≥ ``fixed_from`` (dedicated sites)
    receive pieces only when no basic grid touches them. Returns (labels, pieces moved)."""
    label = label.copy()
    n, moved = len(label), 0
    area = shapely.area(faces.geoms)
    for _ in range(_REPAIR_ROUNDS):
        same = label[faces.a] == label[faces.b]
        comp = pg.components(n, faces.a[same], faces.b[same], np.arange(n))
        stats = pd.DataFrame({"label": label, "comp": comp, "w": weight, "area": area})
        per = stats.groupby(["label", "comp"], as_index=False)[["w", "area"]].sum()
        per = per.sort_values(["label", "w", "area"], ascending=[True, False, False])
        main = set(per.drop_duplicates("label")["comp"].tolist())
        loose = (~np.isin(comp, list(main)) | (label < 0)) & (label < fixed_from)
        if not loose.any():
            break
        target = _best_neighbour(faces, label, comp, loose, fixed_from)
        if not target:
            break
        for c, t in target.items():
            label[comp == c] = t
        moved += len(target)
    return label, moved


def _best_neighbour(faces: Faces, label, comp, loose, fixed_from) -> dict[int, int]:
    a, b, length = faces.a, faces.b, faces.length
    rows = []
    for x, y in ((a, b), (b, a)):
        edge = loose[x] & (comp[x] != comp[y]) & (label[y] >= 0)
        rows.append(pd.DataFrame({"comp": comp[x][edge], "to": label[y][edge],
                                  "len": length[edge]}))
    edges = pd.concat(rows)
    edges = edges[edges["to"] != pd.Series(label)[edges["comp"].to_numpy()].to_numpy()]
    if edges.empty:
        return {}
    edges["site"] = edges["to"] >= fixed_from
    best = (edges.groupby(["comp", "to", "site"], as_index=False)["len"].sum()
            .sort_values(["comp", "site", "len"], ascending=[True, True, False])
            .drop_duplicates("comp"))
    return dict(zip(best["comp"].tolist(), best["to"].tolist()))
