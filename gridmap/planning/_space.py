"""The metric workspace the planner's edits run in, and small geometry helpers they share.

Edits are computed in metres (a local equal-area projection) and handed back in WGS84. Going to
metres and back is not exact to the last bit, so a vertex the edit did not move would come back a
hair off where it was and stop matching its neighbour's copy of it. The workspace remembers the
lon/lat of every vertex it projected and gives back exactly those for the vertices it sees again;
only vertices the edit created are converted.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gridmap import coverage as cov
from gridmap.crs import WGS84, local_metric_crs
from gridmap.errors import CRSMissing, GridNotFound

# Vertices closer than this (metres) are one vertex: far under any survey's precision, far over
# the round-off of an overlay in a city-sized projection.
NODE_TOL = 1e-6


class Workspace:
    """Grids (and optionally buildings, parents) projected to metres, with the way back.

    ``grids``/``buildings``/``parents`` are the metric frames (same index and columns as given).
    """

    def __init__(self, grids: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame | None = None,
                 parents: gpd.GeoDataFrame | None = None):
        frames = [f for f in (grids, buildings, parents) if f is not None]
        for f in frames:
            if f.crs is None:
                raise CRSMissing("a layer given to an edit has no CRS")
        lonlat = [f if f.crs.equals(WGS84) else f.to_crs(WGS84) for f in frames]
        box = shapely.box(*lonlat[0].total_bounds)
        self.crs = local_metric_crs(np.array([box], dtype=object))
        metric = [f.to_crs(self.crs) for f in lonlat]
        self._to_ll = pyproj.Transformer.from_crs(self.crs, WGS84, always_xy=True)
        self._to_m = pyproj.Transformer.from_crs(WGS84, self.crs, always_xy=True)
        self._known: dict[tuple[float, float], tuple[float, float]] = {}
        for ll, m in zip(lonlat, metric):
            a = shapely.get_coordinates(np.asarray(ll.geometry.values, dtype=object))
            b = shapely.get_coordinates(np.asarray(m.geometry.values, dtype=object))
            self._known.update(zip(map(tuple, b), map(tuple, a)))
        self.grids = metric[0]
        self.buildings = metric[1] if buildings is not None else None
        self.parents = metric[-1] if parents is not None else None

    def to_lonlat(self, geoms) -> np.ndarray:
        """Metric geometries back to WGS84, vertices seen on the way in restored exactly."""
        known = self._known

        def back(xy):
            lon, lat = self._inverse(xy[:, 0], xy[:, 1])
            out = np.column_stack([lon, lat])
            for k, key in enumerate(map(tuple, xy)):
                hit = known.get(key)
                if hit is not None:
                    out[k] = hit
            return out

        out = shapely.transform(np.asarray(geoms, dtype=object), back)
        bad = np.flatnonzero(~shapely.is_valid(out) & ~shapely.is_missing(out))
        for k in bad:  # a ring valid in metres by a hair can touch itself once converted
            out[k] = polygonal(out[k])
        return out

    def _inverse(self, x, y):
        """Metres → lon/lat such that projecting again gives (x, y) back to ~1e-9 m.

        PROJ's ellipsoidal LAEA inverse goes through a series for the authalic latitude and lands
        about a millimetre off: enough for a new vertex on an edge to leave a sliver along it. A
        few rounds of ``ll += inv(xy) - inv(fwd(ll))`` remove it.
        """
        lon0, lat0 = self._to_ll.transform(x, y)
        lon, lat = np.array(lon0, dtype=float), np.array(lat0, dtype=float)
        for _ in range(4):
            fx, fy = self._to_m.transform(lon, lat)
            lon2, lat2 = self._to_ll.transform(fx, fy)
            lon, lat = lon + (lon0 - lon2), lat + (lat0 - lat2)
        return lon, lat


def index_of(frame: gpd.GeoDataFrame, codes, what: str = "grid") -> np.ndarray:
    """Positions of ``codes`` in ``frame['code']``; GridNotFound names the first missing one."""
    have = pd.Index(frame["code"].astype(str))
    codes = [str(c) for c in codes]
    pos = have.get_indexer(codes)
    if (pos < 0).any():
        missing = codes[int(np.flatnonzero(pos < 0)[0])]
        raise GridNotFound(f"no {what} with code {missing}")
    return pos


def homes(buildings: np.ndarray, grids: np.ndarray) -> np.ndarray:
    """For each building, the index of the grid holding most of it (-1 when none)."""
    out = np.full(len(buildings), -1, dtype=np.intp)
    if len(buildings) == 0 or len(grids) == 0:
        return out
    b, g, share = cov.building_shares(buildings, grids)
    order = np.lexsort((-share, b))
    first = np.ones(len(order), dtype=bool)
    first[1:] = b[order][1:] != b[order][:-1]
    out[b[order][first]] = g[order][first]
    return out


def household_values(buildings: gpd.GeoDataFrame | None) -> np.ndarray:
    if buildings is None or "households" not in buildings.columns:
        return np.zeros(0 if buildings is None else len(buildings))
    return pd.to_numeric(buildings["households"], errors="coerce").fillna(0).to_numpy(float)


def polygonal(geom):
    """The polygonal part of an overlay's result (lines and points dropped), valid."""
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    if not geom.is_valid:
        geom = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    return cov._polygonal_part(np.array([geom], dtype=object))[0]


def parts(geom) -> list:
    """The polygons of a (multi)polygon, largest first."""
    geom = polygonal(geom)
    if geom.is_empty:
        return []
    out = list(shapely.get_parts(geom))
    return sorted(out, key=lambda p: -p.area)


def border(a, b) -> float:
    """Length of the boundary two polygons share (0 when they only touch at points)."""
    if a.is_empty or b.is_empty:
        return 0.0
    shared = shapely.intersection(a.boundary, b.boundary, grid_size=None)
    length = shared.length
    if length == 0 and a.distance(b) < NODE_TOL:
        # Edges a hair apart (vertices not shared): measure what lies within the tolerance.
        length = shapely.intersection(a.boundary, b.buffer(NODE_TOL * 10)).length
    return float(length)


def fold_fragments(geoms: list, keep: set[int] | None = None, anchors: dict | None = None) -> list:
    """Make each polygon one piece: detached pieces go to the neighbour with the longest border.

    ``anchors`` maps an index to a geometry whose piece must be kept (e.g. the grid's buildings);
    otherwise the largest piece stays. Pieces with no neighbour at all stay where they are.
    """
    geoms = list(geoms)
    for i in range(len(geoms)):
        if keep is not None and i not in keep:
            continue
        pieces = parts(geoms[i])
        if len(pieces) <= 1:
            continue
        main = 0
        if anchors and i in anchors and not anchors[i].is_empty:
            main = int(np.argmax([p.intersection(anchors[i]).area for p in pieces]))
        stay = [pieces[main]]
        for k, piece in enumerate(pieces):
            if k == main:
                continue
            lengths = [border(piece, g) if j != i else 0.0 for j, g in enumerate(geoms)]
            j = int(np.argmax(lengths)) if lengths else -1
            if j < 0 or lengths[j] <= 0:
                stay.append(piece)
                continue
            geoms[j] = polygonal(shapely.union(geoms[j], piece))
        geoms[i] = polygonal(shapely.union_all(stay))
    return geoms


def clean(geoms: list, snap: float = NODE_TOL) -> list:
    """Make edges that should be shared match vertex for vertex (snapping within ``snap`` m)."""
    arr = np.array([polygonal(g) for g in geoms], dtype=object)
    present = ~shapely.is_empty(arr)
    if present.sum() > 1:
        arr[present] = shapely.coverage_clean(arr[present], snapping_distance=snap)
    return [polygonal(g) for g in arr]


def boundary_samples(geom, region, step: float) -> np.ndarray:
    """Points along ``geom``'s boundary near ``region``, about ``step`` metres apart."""
    near = shapely.intersection(geom.boundary, region.buffer(step * 2))
    if near.is_empty:
        return np.zeros((0, 2))
    return shapely.get_coordinates(shapely.segmentize(near, step))


def share_region(region, owners: list, step: float | None = None) -> list:
    """Split ``region`` among ``owners`` (polygons it touches) by the Voronoi of their boundaries.

    As maup's smart_repair does for gaps: every point of the region goes to the owner whose
    boundary is nearest. Returns one geometry per owner (empty for owners given nothing); every
    connected part touching one owner only goes wholly to it.
    """
    out = [shapely.Polygon() for _ in owners]
    for piece in parts(region):
        touching = [k for k, o in enumerate(owners) if border(piece, o) > 0]
        if not touching:
            touching = [k for k, o in enumerate(owners) if piece.distance(o) < NODE_TOL * 10]
        if not touching:
            continue
        if len(touching) == 1:
            k = touching[0]
            out[k] = shapely.union(out[k], piece)
            continue
        cells = _voronoi_split(piece, [owners[k] for k in touching], step)
        for k, cell in zip(touching, cells):
            out[k] = shapely.union(out[k], cell)
    return [polygonal(g) for g in out]


def _voronoi_split(piece, owners: list, step: float | None) -> list:
    size = max(np.sqrt(piece.area), piece.length / 8, 1e-3)
    step = step or max(size / 20, 0.05)
    points, labels = [], []
    for k, o in enumerate(owners):
        xy = boundary_samples(o, piece, step)
        points.append(xy)
        labels.append(np.full(len(xy), k))
    xy, lab = np.vstack(points), np.concatenate(labels)
    xy, first = np.unique(np.round(xy, 9), axis=0, return_index=True)
    lab = lab[first]
    if len(np.unique(lab)) < 2:
        return [piece if k == (lab[0] if len(lab) else 0) else shapely.Polygon()
                for k in range(len(owners))]
    cells = shapely.voronoi_polygons(shapely.multipoints(xy), extend_to=piece, ordered=True)
    cells = np.asarray(shapely.get_parts(cells), dtype=object)
    out = []
    taken = shapely.Polygon()
    for k in range(len(owners)):
        mine = shapely.union_all(cells[lab == k]) if (lab == k).any() else shapely.Polygon()
        got = polygonal(shapely.difference(shapely.intersection(piece, mine), taken))
        taken = shapely.union(taken, got)
        out.append(got)
    rest = polygonal(shapely.difference(piece, taken))
    if not rest.is_empty:  # round-off between cells: give it to the longest border
        k = int(np.argmax([border(rest, g) for g in out]))
        out[k] = polygonal(shapely.union(out[k], rest))
    return out


def keep_whole(pieces: list, footprints) -> list:
    """Give every footprint wholly to the piece holding most of it: no building split.

    ``pieces`` tile a region; the boundary between them bends around the footprints they share.
    """
    fps = [f for f in footprints if f is not None and not f.is_empty]
    if not fps or len(pieces) < 2:
        return list(pieces)
    arr = np.array(pieces, dtype=object)
    claims: list[list] = [[] for _ in pieces]
    for f in fps:
        inter = shapely.area(shapely.intersection(arr, f))
        if (inter > 0).sum() < 2:
            continue
        claims[int(np.argmax(inter))].append(shapely.intersection(f, shapely.union_all(arr)))
    if not any(claims):
        return list(pieces)
    taken = shapely.Polygon()
    claimed = []
    for c in claims:
        mine = polygonal(shapely.difference(shapely.union_all(c), taken)) if c else shapely.Polygon()
        taken = shapely.union(taken, mine)
        claimed.append(mine)
    return [polygonal(shapely.union(shapely.difference(p, taken), c))
            for p, c in zip(pieces, claimed)]


def building_cells(region, footprints: list, step: float | None = None) -> list:
    """The cell of each building in ``region``: its footprint and the ground nearer to it than to
    any other building (Voronoi of the footprints' outlines). The cells tile ``region`` exactly and
    no cell cuts another building's footprint.
    """
    fps = [polygonal(shapely.intersection(f, region)) for f in footprints]
    n = len(fps)
    if n == 0:
        return []
    if n == 1:
        return [region]
    taken, own = shapely.Polygon(), []
    for f in fps:
        mine = polygonal(shapely.difference(f, taken))
        own.append(mine)
        taken = shapely.union(taken, mine)
    step = step or max(np.sqrt(region.area) / 60, 0.5)
    pts, lab = [], []
    for k, f in enumerate(own):
        src = f if not f.is_empty else shapely.point_on_surface(footprints[k])
        xy = shapely.get_coordinates(shapely.segmentize(src.boundary if not f.is_empty else src, step))
        pts.append(xy)
        lab.append(np.full(len(xy), k))
    xy, lab = np.vstack(pts), np.concatenate(lab)
    xy, first = np.unique(np.round(xy, 9), axis=0, return_index=True)
    lab = lab[first]
    vor = np.asarray(shapely.get_parts(shapely.voronoi_polygons(
        shapely.multipoints(xy), extend_to=region, ordered=True)), dtype=object)
    free = polygonal(shapely.difference(region, taken))
    cells, got = [], shapely.Polygon()
    for k in range(n):
        ground = shapely.union_all(vor[lab == k]) if (lab == k).any() else shapely.Polygon()
        ground = polygonal(shapely.difference(shapely.intersection(ground, free), got))
        got = shapely.union(got, ground)
        cells.append(polygonal(shapely.union(ground, own[k])))
    rest = polygonal(shapely.difference(free, got))
    for piece in parts(rest):  # round-off between Voronoi cells
        k = int(np.argmax([border(piece, c) for c in cells]))
        cells[k] = polygonal(shapely.union(cells[k], piece))
    return cells


def tile(region, pieces: list) -> list:
    """``pieces`` made to tile ``region`` exactly: clipped to it, and what they leave of it (the
    slivers a noder leaves where it dropped a vertex) given to the piece with the longest border."""
    out = [polygonal(shapely.intersection(p, region)) for p in pieces]
    rest = polygonal(shapely.difference(region, shapely.union_all(out)))
    for piece in parts(rest):
        k = int(np.argmax([border(piece, p) for p in out]))
        out[k] = polygonal(shapely.union(out[k], piece))
    return out
