"""The geometry of coverage rules, on arrays of shapely geometries in a metric CRS.

Nothing here knows about codes, files or reports: each function takes geometry arrays and returns
indices, geometries and areas, vectorized where GEOS allows. :mod:`gridmap.validate` turns them into
problems.

The expensive questions (which polygons overlap, where are the gaps) are only asked where a cheap one
says they can have an answer: GEOS coverage validation flags every polygon that overlaps a
neighbour or fails to share its vertices, and area sums show which parents can hold a gap.
"""

from __future__ import annotations

import numpy as np
import shapely
import shapely.errors

__all__ = [
    "make_polygonal",
    "flag_invalid_edges",
    "find_overlaps",
    "slivers",
    "polygon_parts",
    "union_of",
    "union_by_group",
    "match_parents",
    "contained",
    "gaps_in_parents",
    "holes_of",
    "outside_parents",
    "building_shares",
]


def make_polygonal(geoms: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Valid polygonal versions of ``geoms`` (invalid ones repaired, collapsed parts dropped)."""
    out = geoms.copy()
    if valid is None:
        valid = shapely.is_valid(geoms)
    bad = ~valid & ~shapely.is_missing(geoms)
    if bad.any():
        fixed = shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)
        out[bad] = _polygonal_part(fixed)
    return out


def _polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygons of each geometry (intersections can return lines and points too)."""
    out = geoms.copy()
    mixed = shapely.get_type_id(geoms) == 7  # GeometryCollection
    for i in np.flatnonzero(mixed):
        parts = shapely.get_parts(geoms[i])
        polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[i] = shapely.union_all(polys) if len(polys) else shapely.Polygon()
    lines_or_points = ~np.isin(shapely.get_type_id(out), (3, 6))
    out[lines_or_points] = shapely.Polygon()
    return out


def flag_invalid_edges(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges of each polygon that break the coverage (overlap, or vertices not shared).

    Returns (flagged mask, invalid-edge geometries). Missing/empty geometries are never flagged.
    """
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    edges = np.full(len(geoms), None, dtype=object)
    edges[present] = shapely.coverage_invalid_edges(geoms[present])
    flagged = present.copy()
    flagged[present] = ~shapely.is_empty(edges[present])
    return flagged, edges


def find_overlaps(geoms: np.ndarray, flagged: np.ndarray):
    """Pairs (i < j) whose interiors overlap, with the overlap geometry and its area.

    Only flagged polygons can overlap anything: a polygon lying inside another flags itself but not
    the outer one, so flagged polygons are tested against all.
    """
    candidates = np.flatnonzero(flagged)
    if len(candidates) == 0:
        return _no_pairs()
    tree = shapely.STRtree(geoms)
    src, dst = tree.query(geoms[candidates], predicate="intersects")
    i = candidates[src]
    j = dst
    keep = i != j
    pairs = np.unique(np.sort(np.column_stack([i[keep], j[keep]]), axis=1), axis=0)
    if len(pairs) == 0:
        return _no_pairs()
    inter = _polygonal_part(shapely.intersection(geoms[pairs[:, 0]], geoms[pairs[:, 1]]))
    area = shapely.area(inter)
    real = area > 0
    return pairs[real, 0], pairs[real, 1], inter[real], area[real]


def _no_pairs():
    empty = np.array([], dtype=np.intp)
    return empty, empty, np.array([], dtype=object), np.array([], dtype=float)


def slivers(geoms: np.ndarray, gap_width: float, sliver_area: float) -> np.ndarray:
    """True where a gap or overlap is digitising noise: narrower than ``gap_width`` (it vanishes
    under an inward buffer of half that width) or smaller than ``sliver_area``."""
    small = shapely.area(geoms) < sliver_area
    if gap_width > 0:
        narrow = shapely.is_empty(shapely.buffer(geoms, -gap_width / 2, quad_segs=2))
        return small | narrow
    return small


def polygon_parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explode (multi)polygons into their polygons; returns (parts, index of the source)."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0)
    return parts[keep], index[keep]


def union_of(geoms: np.ndarray, flagged: np.ndarray):
    """Union of polygons that form a coverage except for the flagged ones.

    The unflagged polygons neither overlap nor mismatch their neighbours, so GEOS's linear-time
    coverage union is exact for them; the few flagged ones are added with a full overlay.
    """
    clean = geoms[~flagged]
    result = _coverage_union_or_none(clean) if len(clean) else shapely.Polygon()
    if result is None:  # not a coverage after all: the full overlay is always right
        return shapely.union_all(geoms)
    if flagged.any():
        result = shapely.union_all(np.concatenate([[result], geoms[flagged]]))
    return result


def union_by_group(geoms: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Coverage union of ``geoms`` per group (``group[k]`` in 0..n_groups-1, -1 for none).

    One vectorized GEOS call over a table padded with None, one row per group; the rare group far
    larger than the rest is unioned on its own so that the table stays small.
    """
    out = np.full(n_groups, None, dtype=object)
    member = np.flatnonzero(group >= 0)
    if len(member) == 0:
        return out
    g = group[member]
    sizes = np.bincount(g, minlength=n_groups)
    width = max(1, int(np.percentile(sizes[sizes > 0], 99)) * 2)
    order = np.argsort(g, kind="stable")
    slot = np.empty(len(g), dtype=np.intp)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    slot[order] = np.arange(len(g)) - first[g[order]]
    small = sizes[g] <= width
    table = np.full((n_groups, width), None, dtype=object)
    table[g[small], slot[small]] = geoms[member[small]]
    try:
        out[:] = shapely.coverage_union_all(table, axis=1)
    except shapely.errors.GEOSException:
        # Some family is not a coverage after all: union family by family, leaving it out.
        for row in range(n_groups):
            out[row] = _coverage_union_or_none(table[row])
    for big in np.flatnonzero(sizes > width):
        out[big] = _coverage_union_or_none(geoms[member[g == big]])
    return out


def _coverage_union_or_none(geoms: np.ndarray):
    try:
        return shapely.coverage_union_all(geoms)
    except shapely.errors.GEOSException:
        return None


def match_parents(parents: np.ndarray, children: np.ndarray, owner: np.ndarray,
                  flagged: np.ndarray) -> np.ndarray:
    """True for each parent that its children tile exactly, vertex for vertex.

    This is the common case — parents drawn as the union of their children — and it settles both
    containment and gaps for the whole family with one coverage union and one comparison, so only
    the other parents need overlay operations. A family with a flagged child never matches: the
    coverage union is only exact for a valid coverage.
    """
    n = len(parents)
    has_flagged = np.zeros(n, dtype=bool)
    has_flagged[owner[(owner >= 0) & flagged]] = True
    union = union_by_group(children, np.where(has_flagged[owner], -1, owner), n)
    present = ~shapely.is_missing(union) & ~shapely.is_missing(parents)
    same = np.zeros(n, dtype=bool)
    same[present] = shapely.equals_exact(shapely.normalize(union[present]),
                                         shapely.normalize(parents[present]), tolerance=0.0)
    return same & ~has_flagged


def contained(children: np.ndarray, parents: np.ndarray, owner: np.ndarray,
              settled: np.ndarray) -> np.ndarray:
    """True where a child lies wholly inside its own parent.

    Children of ``settled`` parents (tiled exactly) are inside by construction; the others take one
    prepared containment test each.
    """
    out = np.zeros(len(children), dtype=bool)
    owned = (owner >= 0) & ~shapely.is_missing(children)
    out[owned] = settled[owner[owned]]
    test = np.flatnonzero(owned & ~out)
    shapely.prepare(parents)
    out[test] = shapely.contains(parents[owner[test]], children[test])
    return out


def gaps_in_parents(parents: np.ndarray, children: np.ndarray, owner: np.ndarray,
                    inside: np.ndarray, flagged: np.ndarray, settled: np.ndarray):
    """Parts of each parent not covered by its own children.

    ``owner[k]`` is the parent index of child k (-1 for none), ``inside[k]`` whether child k lies
    wholly in its parent, ``settled`` the parents their children tile exactly. Of the others, the
    union of the children is only built for parents whose area is not accounted for by the areas
    of their children — or that hold a child which overlaps or mismatches a neighbour, where area
    sums prove nothing.

    Returns (gap parts, parent index of each part).
    """
    n = len(parents)
    owned = owner >= 0
    area = shapely.area(children)
    partial = owned & ~inside
    area[partial] = shapely.area(shapely.intersection(children[partial], parents[owner[partial]]))
    covered = np.bincount(owner[owned], weights=np.nan_to_num(area[owned]), minlength=n)
    parent_area = shapely.area(parents)
    # Summing areas of many polygons loses about 1e-12 of the total; anything above 1e-9 is real.
    suspect = parent_area - covered > 1e-9 * parent_area + 1e-6
    suspect[np.unique(owner[owned & flagged])] = True
    suspect &= ~settled
    gaps, where = [], []
    for p in np.flatnonzero(suspect):
        mine = owner == p
        union = union_of(children[mine], flagged[mine]) if mine.any() else shapely.Polygon()
        parts, _ = polygon_parts(np.array([shapely.difference(parents[p], union)]))
        gaps.extend(parts)
        where.extend([p] * len(parts))
    return np.array(gaps, dtype=object), np.array(where, dtype=np.intp)


def holes_of(union) -> np.ndarray:
    """The holes of a union as polygons: gaps enclosed by the polygons around them."""
    parts, _ = polygon_parts(np.array([union]))
    rings = [shapely.Polygon(r) for p in parts for r in p.interiors]
    return np.array([r for r in rings if r.area > 0], dtype=object)


def outside_parents(children: np.ndarray, parents: np.ndarray, owner: np.ndarray,
                    inside: np.ndarray):
    """What each child has outside its own parent: (child index, geometry, area) where non-empty."""
    check = np.flatnonzero((owner >= 0) & ~inside & ~shapely.is_missing(children))
    excess = _polygonal_part(shapely.difference(children[check], parents[owner[check]]))
    area = shapely.area(excess)
    keep = area > 0
    return check[keep], excess[keep], area[keep]


def building_shares(buildings: np.ndarray, grids: np.ndarray):
    """For each building, the grids it lies in and the share of its footprint in each.

    Returns (building index, grid index, share) for every pair with a positive share. A building
    wholly inside one grid (almost all of them) costs one prepared containment test.
    """
    tree = shapely.STRtree(grids)
    b, g = tree.query(buildings, predicate="intersects")
    many = np.bincount(b, minlength=len(buildings)) > 1
    single = ~many[b]
    share = np.ones(len(b))
    multi = np.flatnonzero(~single)
    if len(multi):
        area = shapely.area(buildings[b[multi]])
        inter = shapely.area(shapely.intersection(buildings[b[multi]], grids[g[multi]]))
        share[multi] = np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)
    keep = share > 0
    return b[keep], g[keep], share[keep]
