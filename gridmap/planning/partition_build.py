"""Between faces and grids: building units, the unit graph, contiguity repair, and the reasons.

A *unit* is a building, or several whose footprints overlap (OSM building parts): they must share
a grid, so they move as one. Empty ground that no building claims (a block with no building: a
park, a strip between two carriageways) becomes a unit of 0 households, so it joins a grid like
any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from gridmap.planning import partition_graph as pg
from gridmap.planning.partition_faces import Faces

__all__ = ["Plan", "anchor_faces", "face_graph", "merge_overlapping", "repair_contiguity"]

_OVERLAP_M2 = 0.5  # footprints overlapping by less than this only touch (digitising noise)
_REPAIR_ROUNDS = 10


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
                 if not pg.region_ok(region_total[r], int(region_big[r]), band)}
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
            elif regions & towered:
                out[code] = ("its block also holds a building larger than the band, which takes "
                             "a grid of its own: the rest of the block does not make whole grids")
            else:
                largest = self.unit_hh[big] if big is not None else 0
                out[code] = ("buildings too coarse to balance here (the largest holds "
                             f"{largest:g} households)")
        return out


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
               unit_site: np.ndarray, cap: float, tolerance: float):
    """The unit graph from face adjacency; returns (graph, node of each face, node of each unit).

    A unit's weight is its households, but a building larger than a grid may hold (more than
    ``cap + tolerance``) counts as one grid's worth (``cap``), so it ends up alone instead of starving the grids around it.

    Faces of buildings inside a dedicated site are moved to the site (``faces.site``) here.
    """
    in_site_unit = (faces.unit >= 0) & (unit_site[np.maximum(faces.unit, 0)] >= 0)
    faces.site = np.where(in_site_unit, unit_site[np.maximum(faces.unit, 0)], faces.site)
    real = np.flatnonzero(unit_site < 0)
    unit_node = np.full(len(units), -1, dtype=np.intp)
    unit_node[real] = np.arange(len(real))
    node = np.where((faces.unit >= 0) & (faces.site < 0), unit_node[np.maximum(faces.unit, 0)], -1)
    empty = np.flatnonzero((faces.unit < 0) & (faces.site < 0))
    # Empty ground: one unit per block, or per face when it lies in no block.
    key = np.where(faces.block[empty] >= 0, faces.block[empty], -1 - empty)
    keys, pseudo = np.unique(key, return_inverse=True)
    node[empty] = len(real) + pseudo
    n_nodes = len(real) + len(keys)
    area = shapely.area(faces.geoms[empty])
    centre = shapely.get_coordinates(shapely.centroid(faces.geoms[empty]))
    weight_sum = np.maximum(np.bincount(pseudo, weights=area, minlength=len(keys)), 1e-12)
    pseudo_xy = np.c_[np.bincount(pseudo, weights=area * centre[:, 0], minlength=len(keys)),
                      np.bincount(pseudo, weights=area * centre[:, 1], minlength=len(keys))]
    xy = np.r_[shapely.get_coordinates(shapely.centroid(units[real])),
               pseudo_xy / weight_sum[:, None]]
    block = np.r_[unit_block[real], np.where(keys >= 0, keys, keys - 10**6)]
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
