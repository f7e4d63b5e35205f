"""The parent cut into faces that share every vertex with their neighbours (the partition's atoms).

Why faces: a grid layer must tile its community exactly (无缝覆盖, no overlap) and never split a
building (一楼严禁分两格). Both hold *by construction* when every grid is a union of faces of one
planar subdivision in which each building is a union of faces:

1. the parent minus the dedicated sites is cut by the barriers (roads, walls, rivers) into blocks;
2. in each block, a Voronoi diagram of points along the outlines of its buildings gives each
   building the open ground nearest to it (a block with no building is one face of its own);
3. all of these outlines — blocks, Voronoi cells, buildings, sites — are noded once and
   polygonized, so neighbouring faces share identical vertices;
4. each face belongs to the building it lies in, else to the site it lies in, else to the building
   whose Voronoi cell it lies in.

A grid is then the coverage union of its faces. Face adjacency (with shared lengths) comes from
matching the faces' boundary segments, exactly and without any further overlay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from gridmap.coverage import union_by_group

__all__ = ["Faces", "assign_to", "build_faces", "face_pairs", "split_blocks"]

_SEED_SPACING = 15.0  # metres between Voronoi seeds along a building's outline
_GRID = 1e-6  # metres: the precision of the noding
_SEED_ROUNDING = (0.05, 0.5, 2.0, None)  # metres; None: one seed per unit
_SIMPLIFY = 0.2  # metres: outline vertices closer than this to a straight line add no seed


@dataclass
class Faces:
    """Faces of the parent: ``unit`` owns the face (building group; -1: empty block), ``site``
    the dedicated site it belongs to (-1: none), ``block`` its block (-1 in a site); adjacency
    ``a``–``b`` (a < b) with the ``length`` of boundary they share, in metres."""

    geoms: np.ndarray
    unit: np.ndarray
    site: np.ndarray
    block: np.ndarray
    a: np.ndarray
    b: np.ndarray
    length: np.ndarray


def split_blocks(area, barriers: np.ndarray) -> np.ndarray:
    """The blocks (街坊) of ``area`` cut by barrier lines and polygon outlines: its faces."""
    lines = [shapely.boundary(area)]
    if len(barriers):
        edges = shapely.boundary(barriers[shapely.get_dimensions(barriers) == 2])
        lines_in = np.concatenate([barriers[shapely.get_dimensions(barriers) == 1], edges])
        # Clipped to a box beyond the area, not to the area: a line cut exactly at the boundary
        # can end a hair short of it, a dangle that polygonize drops.
        frame = shapely.buffer(shapely.envelope(area), 10.0, join_style="mitre")
        clipped = shapely.intersection(lines_in, frame)
        lines += list(clipped[~shapely.is_empty(clipped)])
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.union_all(lines))))
    if len(faces) == 0:
        return np.array([area], dtype=object)
    shapely.prepare(area)
    inside = shapely.contains(area, shapely.point_on_surface(faces))
    return faces[inside & (shapely.area(faces) > 0)]


def assign_to(units: np.ndarray, zones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's zone (the one holding most of its area; -1 for none) and that zone's share."""
    owner = np.full(len(units), -1, dtype=np.intp)
    share = np.zeros(len(units))
    if len(zones) == 0 or len(units) == 0:
        return owner, share
    u, z = shapely.STRtree(zones).query(units, predicate="intersects")
    polygonal = shapely.get_dimensions(units) == 2
    area = np.where(polygonal[u], shapely.area(shapely.intersection(units[u], zones[z])), 1.0)
    whole = np.where(polygonal, shapely.area(units), 1.0)
    order = np.lexsort((-area, u))
    first = np.r_[True, u[order][1:] != u[order][:-1]]
    pick = order[first]
    owner[u[pick]] = z[pick]
    share[u[pick]] = area[pick] / np.maximum(whole[u[pick]], 1e-12)
    return owner, share


def _seeds(units: np.ndarray, unit_block: np.ndarray, blocks: np.ndarray):
    """Points along each unit's outline inside its block, plus one inside it: (xy, unit)."""
    active = np.flatnonzero(unit_block >= 0)
    polygonal = shapely.get_dimensions(units[active]) == 2
    outline = shapely.segmentize(
        shapely.boundary(shapely.simplify(units[active[polygonal]], _SIMPLIFY)), _SEED_SPACING)
    xy, idx = shapely.get_coordinates(outline, return_index=True)
    owner = active[polygonal][idx]
    keep = shapely.contains_xy(blocks[unit_block[owner]], xy[:, 0], xy[:, 1])
    inner = shapely.point_on_surface(shapely.intersection(units[active], blocks[unit_block[active]]))
    inner_xy = shapely.get_coordinates(inner, return_index=True)
    return (np.concatenate([xy[keep], inner_xy[0]]),
            np.concatenate([owner[keep], active[inner_xy[1]]]))


def _cells(blocks: np.ndarray, seed_xy: np.ndarray, seed_unit: np.ndarray, seed_block: np.ndarray):
    """Each unit's Voronoi zone in its block: the ground nearer its seeds than any other unit's.

    The raw cells of a block tile the plane exactly, so they are dissolved per unit with the
    linear-time coverage union before the one clip to the block.
    """
    zones, owners = [], []
    order = np.argsort(seed_block, kind="stable")
    bounds = np.searchsorted(seed_block[order], np.arange(len(blocks) + 1))
    for k, block in enumerate(blocks):
        mine = order[bounds[k]:bounds[k + 1]]
        if len(mine) == 0:
            continue
        units = np.unique(seed_unit[mine])
        zones.append(_zones(block, seed_xy[mine], seed_unit[mine], units))
        owners.append(units)
    if not zones:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.intp)
    return np.concatenate(zones), np.concatenate(owners)


def _zones(block, xy: np.ndarray, unit: np.ndarray, units: np.ndarray) -> np.ndarray:
    """One block's Voronoi zones, one per unit of ``units``.

    Seeds are rounded to a few centimetres first: GEOS's Delaunay fails on points closer than
    that (corners of touching footprints); on failure the rounding coarsens, finally to one seed
    per unit.
    """
    if len(units) == 1:
        return np.array([block], dtype=object)
    for step in _SEED_ROUNDING:
        if step is None:  # last resort: the first seed of each unit
            _, first = np.unique(unit, return_index=True)
            xy_r = xy[first]
        else:
            xy_r, first = np.unique(np.round(xy / step) * step, axis=0, return_index=True)
        local = np.searchsorted(units, unit[first])
        try:
            diagram = shapely.voronoi_polygons(shapely.multipoints(xy_r), extend_to=block,
                                               ordered=True)
        except shapely.errors.GEOSException:
            continue
        merged = union_by_group(shapely.get_parts(diagram), local, len(units))
        return shapely.intersection(merged, block)
    raise shapely.errors.GEOSException("cannot build the Voronoi zones of a block")


def build_faces(parent, units: np.ndarray, unit_block: np.ndarray, blocks: np.ndarray,
                sites: np.ndarray) -> Faces:
    """Node every outline once and polygonize: see the module's docstring."""
    seed_xy, seed_unit = _seeds(units, unit_block, blocks)
    cells, cell_unit = _cells(blocks, seed_xy, seed_unit, unit_block[seed_unit])
    polygonal = units[shapely.get_dimensions(units) == 2]
    outlines = np.concatenate([shapely.boundary(blocks), shapely.boundary(sites),
                               shapely.boundary(cells), shapely.boundary(polygonal)])
    # Snap-rounded noding on a micrometre grid: no two vertices closer than that survive, so no
    # ring can fold on itself when its coordinates are converted to degrees, while the parent's
    # edges move by at most half a micrometre (far under the validator's noise area).
    noded = shapely.union_all(outlines[~shapely.is_empty(outlines)], grid_size=_GRID)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    faces = faces[shapely.area(faces) > 0]
    rep = shapely.point_on_surface(faces)
    shapely.prepare(parent)
    keep = shapely.contains(parent, rep)
    faces, rep = faces[keep], rep[keep]
    n = len(faces)
    in_unit = _first_hit(units, rep, n)
    in_site = _first_hit(sites, rep, n)
    in_cell = _first_hit(cells, rep, n)
    unit = np.where(in_unit >= 0, in_unit,
                    np.where((in_site < 0) & (in_cell >= 0), cell_unit[np.maximum(in_cell, 0)], -1))
    site = np.where(in_unit >= 0, -1, in_site)
    block = _first_hit(blocks, rep, n)
    a, b, length = face_pairs(faces)
    return Faces(faces, unit, site, block, a, b, length)


def _first_hit(zones: np.ndarray, points: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.intp)
    if len(zones):
        p, z = shapely.STRtree(zones).query(points, predicate="intersects")
        out[p[::-1]] = z[::-1]
    return out


def face_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent faces (a < b) and the length of boundary they share, by matching segments.

    Faces of one polygonized noding share identical vertices, so a shared edge is the same
    segment in both faces' rings (perhaps reversed): sorting the segments finds every pair.
    """
    rings, ring_face = shapely.get_rings(faces, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    p, q = xy[:-1][same], xy[1:][same]
    face = ring_face[ring[:-1][same]]
    swap = (p[:, 0] > q[:, 0]) | ((p[:, 0] == q[:, 0]) & (p[:, 1] > q[:, 1]))
    lo, hi = np.where(swap[:, None], q, p), np.where(swap[:, None], p, q)
    order = np.lexsort((hi[:, 1], hi[:, 0], lo[:, 1], lo[:, 0]))
    lo, hi, face = lo[order], hi[order], face[order]
    match = np.flatnonzero((lo[1:] == lo[:-1]).all(axis=1) & (hi[1:] == hi[:-1]).all(axis=1)
                           & (face[1:] != face[:-1]))
    fa, fb = face[match], face[match + 1]
    seg = np.hypot(*(hi[match] - lo[match]).T)
    a, b = np.minimum(fa, fb), np.maximum(fa, fb)
    key, inverse = np.unique(a.astype(np.int64) * len(faces) + b, return_inverse=True)
    length = np.bincount(inverse, weights=seg, minlength=len(key))
    return (key // len(faces)).astype(np.intp), (key % len(faces)).astype(np.intp), length
