"""Synthetic cities (合成城市): exact multi-level coverages with planted problems, seeded.

For tests, benchmarks and the demo. Every level is an *exact* coverage: grids are cells of a
jittered lattice whose vertices (four corners plus one bent vertex on each edge) are shared by the
cells that meet there, communities are blocks of cells, streets blocks of communities, and each
parent is the coverage union of its children, so neighbours share identical vertices at every level.

Planted problems (:class:`PlantedProblem`) are the ground truth: exactly what a correct validator
reports, as ``(type, codes)`` compared order-insensitively by :func:`problem_key` (for
``split_building`` the building's code first). With ``gridmap.validate.validate_hierarchy`` on
``city.layers()`` and ``city.building`` each planting gives exactly one problem, and a city with
nothing planted validates with no problem at all:

================= ============================================== ===================================
type              what is done                                   codes reported (severity)
================= ============================================== ===================================
gap               grid A's middle vertex on its edge with grid B ``[community, A, B]`` (error);
                  (same community) pulled 0.08 cell into A       ``[A, B]`` without parents
overlap           the same vertex pushed 0.08 cell into B        ``[A, B]`` (error)
outside_parent    A's middle vertex on the district's outer      ``[A, community]`` (error); nothing
                  border pushed 0.08 cell outwards (no           without parents
                  neighbour there, so no overlap)
split_building    a building centred on a vertex that grids A    ``[building, A, B]`` (error)
                  and B share (``straddle_per_grid`` of them)
duplicate_code    the last grid of a community takes the code    ``[code]`` (error)
                  of the one before it (serials stay in order)
bad_code          the last grid of a community gets a 14-digit   ``[new code]`` (error)
                  code (one serial digit dropped)
invalid_geometry  a 2 m triangle pinched into A's ring at a      ``[A]`` (error); the loop turns
                  vertex (ring self-intersection, a bow-tie      like the ring and lies inside A,
                  knot)                                          so the repaired grid is exactly A
no_worker         ``worker`` emptied                             ``[A]`` (warning)
size_out_of_range households set to 320 (urban) or 100 (rural),  ``[A]`` (warning)
                  spread over A's buildings
================= ============================================== ===================================

Gap and overlap regions touch only A and B: the shared edge gets two extra vertices (in both grids)
either side of the moved one. Plantings stay clear of buildings; each lies in its own community,
preferably one with no planted neighbour, and no straddling building is placed in a planted
community.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

__all__ = ["PLANT_TYPES", "PlantedProblem", "City", "make_city", "problem_key",
           "default_plant", "lattice_cells", "households_for", "metres_per_degree",
           "push_shared_vertex", "bow_tie", "straddle_box", "clip_city_to_outline",
           "plant_problems"]

PLANT_TYPES = ("gap", "overlap", "outside_parent", "duplicate_code", "bad_code",
               "invalid_geometry", "no_worker", "size_out_of_range")
WGS84 = "EPSG:4326"
_JITTER = 0.12  # corner jitter, in cells
_BEND = 0.10    # perpendicular offset of each edge's middle vertex, in cells
_PUSH = 0.08    # depth of a planted gap/overlap/outside bulge, in cells (12 m at 150 m)
# Regular buildings stay within 0.125 cell of the cell's nominal centre; cell edges are at least
# 0.21 cell away, so planted bulges (0.08 cell) never reach a building.
_SLOTS = np.array([(x, y) for y in (0.09, 0.0, -0.09) for x in (-0.09, 0.0, 0.09)])
_BUILDING = (0.035, 0.025)  # half width/height of a regular building, in cells
_STRADDLE = (0.05, 0.04)    # half extents (along, across the edge) of a straddling building


def problem_key(type_: str, codes) -> tuple:
    """Order-insensitive identity of a reported problem: ``(type, codes)``."""
    codes = [str(c) for c in codes]
    if type_ == "split_building":
        return (type_, codes[0], tuple(sorted(set(codes[1:]))))
    return (type_, tuple(sorted(set(codes))))


@dataclass(frozen=True)
class PlantedProblem:
    """One planted problem: its report type and the codes a correct validator names."""

    type: str
    codes: tuple[str, ...]

    def key(self) -> tuple:
        return problem_key(self.type, self.codes)


@dataclass
class City:
    """A synthetic city: one GeoDataFrame per level (EPSG:4326) and the planted ground truth."""

    district: gpd.GeoDataFrame
    street: gpd.GeoDataFrame
    community: gpd.GeoDataFrame
    grid: gpd.GeoDataFrame
    building: gpd.GeoDataFrame
    planted: list[PlantedProblem] = field(default_factory=list)

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """The polygon levels, as ``validate_hierarchy`` takes them."""
        return {"district": self.district, "street": self.street,
                "community": self.community, "grid": self.grid}

    def expected(self) -> set[tuple]:
        """The planted problems as :func:`problem_key` tuples."""
        return {p.key() for p in self.planted}


def default_plant(n_grids: int) -> dict[str, int]:
    """One of each type, two from 1,000 grids, three from 10,000…, at most five; none below 100."""
    if n_grids < 100:
        return {}
    k = max(1, min(5, int(math.log10(max(n_grids, 10))) - 1))
    return {t: k for t in PLANT_TYPES}


def metres_per_degree(lat: float) -> np.ndarray:
    """Metres per degree of (lon, lat) at latitude ``lat`` (spherical; for offsets of metres)."""
    return np.array([111_320.0 * math.cos(math.radians(lat)), 110_574.0])


# -- the lattice --------------------------------------------------------------------------------


def lattice_cells(nx: int, ny: int, cell_m: float, rng: np.random.Generator, to_lonlat,
                  x0: float = 0.0, y0: float = 0.0):
    """A jittered lattice of ``ny`` rows (north first) by ``nx`` columns of 8-vertex cells.

    Returns (corners, hmid, vmid) in lon/lat — arrays (ny+1, nx+1, 2), (ny+1, nx, 2), (ny, nx+1, 2)
    — and the nominal cell centres in metres (ny, nx, 2). ``to_lonlat(x, y)`` converts metres once
    per lattice point, so every cell gathers bit-identical shared vertices.
    """
    xs = x0 + np.arange(nx + 1) * cell_m
    ys = y0 - np.arange(ny + 1) * cell_m
    corners = np.empty((ny + 1, nx + 1, 2))
    corners[..., 0] = xs[None, :]
    corners[..., 1] = ys[:, None]
    corners += rng.uniform(-_JITTER, _JITTER, corners.shape) * cell_m
    hmid = (corners[:, :-1] + corners[:, 1:]) / 2
    hmid[..., 1] += rng.uniform(-_BEND, _BEND, hmid.shape[:2]) * cell_m
    vmid = (corners[:-1] + corners[1:]) / 2
    vmid[..., 0] += rng.uniform(-_BEND, _BEND, vmid.shape[:2]) * cell_m
    centres = np.empty((ny, nx, 2))
    centres[..., 0] = (xs[:-1] + cell_m / 2)[None, :]
    centres[..., 1] = (ys[:-1] - cell_m / 2)[:, None]
    flat = np.concatenate([a.reshape(-1, 2) for a in (corners, hmid, vmid)])
    lon, lat = to_lonlat(flat[:, 0], flat[:, 1])
    flat = np.column_stack([lon, lat])
    a, b = corners.size // 2, hmid.size // 2
    return (flat[:a].reshape(corners.shape), flat[a:a + b].reshape(hmid.shape),
            flat[a + b:].reshape(vmid.shape), centres)


def _rings(corners, hmid, vmid, r, c) -> np.ndarray:
    """Counter-clockwise rings (n, 9, 2): SW, bottom, SE, right, NE, top, NW, left, SW."""
    sw, se = corners[r + 1, c], corners[r + 1, c + 1]
    ne, nw = corners[r, c + 1], corners[r, c]
    return np.stack([sw, hmid[r + 1, c], se, vmid[r, c + 1], ne, hmid[r, c], nw, vmid[r, c], sw],
                    axis=1)


def _metric_frame(origin):
    lon0, lat0 = origin
    local = pyproj.CRS.from_proj4(f"+proj=laea +lat_0={lat0} +lon_0={lon0} +ellps=WGS84 +units=m")
    return pyproj.Transformer.from_crs(local, WGS84, always_xy=True).transform


def _rank_within(groups: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """1-based rank of each item within its group, by ``order_key`` (stable)."""
    order = np.lexsort((order_key, groups))
    sorted_groups = groups[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first + 1
    return rank


def _pad_union(geoms: np.ndarray, group: np.ndarray, slot: np.ndarray, n_groups: int,
               width: int) -> np.ndarray:
    """Coverage union of ``geoms`` per group in one vectorized call (groups padded with None)."""
    table = np.full((n_groups, width), None, dtype=object)
    table[group, slot] = geoms
    return shapely.coverage_union_all(table, axis=1)


# -- households and buildings -------------------------------------------------------------------


def households_for(kind: np.ndarray, rural: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Households per grid inside the size rule: urban 165–235, rural 40–60, dedicated 0–30."""
    out = rng.integers(165, 236, len(kind))
    out[rural] = rng.integers(40, 61, int(rural.sum()))
    dedicated = kind == "dedicated"
    out[dedicated] = rng.integers(0, 31, int(dedicated.sum()))
    return out


def _spread(total: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split each grid's households over its buildings (integers that sum exactly)."""
    w = rng.uniform(0.5, 1.5, len(owner))
    wsum = np.bincount(owner, weights=w, minlength=len(total))
    out = np.floor(total[owner] * w / wsum[owner]).astype(np.int64)
    rest = total - np.bincount(owner, weights=out, minlength=len(total)).astype(np.int64)
    order = np.argsort(owner, kind="stable")
    first = order[np.r_[0, np.flatnonzero(np.diff(owner[order])) + 1]]
    out[first] += rest[owner[first]]
    return out


def _boxes(cx, cy, hx, hy, to_lonlat) -> np.ndarray:
    """Axis-aligned rectangles (metres) as polygons in lon/lat."""
    xs = np.stack([cx - hx, cx + hx, cx + hx, cx - hx, cx - hx], axis=1)
    ys = np.stack([cy - hy, cy - hy, cy + hy, cy + hy, cy - hy], axis=1)
    lon, lat = to_lonlat(xs.ravel(), ys.ravel())
    return shapely.polygons(np.stack([lon, lat], axis=1).reshape(-1, 5, 2))


def straddle_box(vertex, half_along: float, half_across: float, direction) -> shapely.Polygon:
    """A rectangle (metres) centred on ``vertex`` (lon/lat) and turned along ``direction``."""
    k = metres_per_degree(vertex[1])
    d = np.asarray(direction, dtype=float) * k
    d /= np.hypot(*d)
    n = np.array([-d[1], d[0]])
    corners = [vertex + (sa * half_along * d + sc * half_across * n) / k
               for sa, sc in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return shapely.Polygon(corners)


# -- planting on geometries ---------------------------------------------------------------------


def _shared_path(a, b) -> np.ndarray | None:
    """Coordinates of the longest shared boundary path of ``a`` and ``b`` (or ``b`` a line)."""
    other = b if b.geom_type in ("LineString", "MultiLineString", "LinearRing") else b.boundary
    inter = shapely.line_merge(shapely.intersection(a.exterior, other))
    lines = [g for g in shapely.get_parts(inter) if g.geom_type == "LineString"]
    if not lines:
        return None
    coords = np.asarray(max(lines, key=lambda g: g.length).coords)
    return coords if len(coords) >= 3 else None


def _ring(poly) -> list:
    return [tuple(p) for p in np.asarray(poly.exterior.coords)[:-1]]


def _insert_between(ring: list, v, u, p) -> None:
    """Insert ``p`` between the neighbouring ring vertices ``v`` and ``u``."""
    n = len(ring)
    i = ring.index(v)
    if ring[(i + 1) % n] == u:
        ring.insert(i + 1, p)
    elif ring[i - 1] == u:
        ring.insert(i, p)
    else:
        raise ValueError("vertices are not neighbours")


def push_shared_vertex(a, b, metres: float, into_b: bool):
    """Move the middle vertex of the path ``a`` shares with ``b`` by ``metres``.

    ``b`` is a neighbour polygon (its ring gets the same two new vertices either side of the moved
    one, so the gap or overlap touches nobody else) or a line (an outer border). ``into_b`` pushes
    outwards (overlap, outside_parent), otherwise inwards (gap). Returns (new a, new b or None,
    the region between old and new a), or None if ``a`` and ``b`` share no suitable path.
    """
    path = _shared_path(a, b)
    if path is None:
        return None
    k = len(path) // 2
    v, c1, c2 = (tuple(path[i]) for i in (k, k - 1, k + 1))
    ring_a = _ring(a)
    if v not in ring_a:
        return None
    p1 = tuple((np.array(c1) + np.array(v)) / 2)
    p3 = tuple((np.array(v) + np.array(c2)) / 2)
    scale = metres_per_degree(v[1])
    t = (np.array(c2) - np.array(c1)) * scale
    normal = np.array([-t[1], t[0]]) / np.hypot(*t)
    probe = np.array(v) + normal * 0.01 / scale
    inward = 1.0 if a.contains(shapely.Point(probe)) else -1.0
    moved = tuple(np.array(v) + normal * inward * (-metres if into_b else metres) / scale)
    new_b = None
    if isinstance(b, shapely.Polygon):
        ring_b = _ring(b)
        for ring in (ring_a, ring_b):
            _insert_between(ring, v, c1, p1)
            _insert_between(ring, v, c2, p3)
        new_b = shapely.Polygon(ring_b)
    ring_a[ring_a.index(v)] = moved
    new_a = shapely.Polygon(ring_a)
    if not new_a.is_valid:
        return None
    return new_a, new_b, shapely.symmetric_difference(a, new_a)


def bow_tie(poly, metres: float = 2.0):
    """``poly`` with a small loop pinched into its ring at its first vertex (a bow-tie knot).

    The ring passes through that vertex twice, with a triangle of side ``metres`` between the two
    passes (GEOS: "Ring Self-intersection"). The triangle turns the same way as the ring and lies
    inside the polygon, so the repaired polygon (``make_valid``, either method keeps it) is exactly
    the original: the only problem is the invalid geometry itself.
    """
    ring = _ring(poly)
    v = np.array(ring[0])
    scale = metres_per_degree(v[1])
    u = (np.array(shapely.centroid(poly).coords[0]) - v) * scale
    u /= np.hypot(*u)
    w = np.array([-u[1], u[0]])
    a = v + metres * (u + 0.5 * w) / scale
    b = v + metres * (u - 0.5 * w) / scale
    # Cross product of (a - v, b - v) is negative: (v, a, b) turns clockwise; match the shell.
    if shapely.is_ccw(poly.exterior):
        a, b = b, a
    return shapely.Polygon([tuple(v), tuple(a), tuple(b)] + ring)


# -- make_city ----------------------------------------------------------------------------------

_COMMUNITY = (3, 4)  # a community is a block of 3 rows by 4 columns of grids


def make_city(n_grids: int, *, seed: int = 0, origin: tuple[float, float] = (111.52, 36.08),
              cell_m: float = 150.0, buildings_per_grid: float = 1.5,
              straddle_per_grid: float = 0.15, plant: dict[str, int] | None = None,
              district_code: str = "141002", district_name: str = "示范区") -> City:
    """A seeded synthetic city of exactly ``n_grids`` grids around ``origin`` (lon, lat).

    Grids are 12 to a community (3 rows × 4 columns), communities 4 × 4 (or more, to keep at most
    999 streets) to a street, one district. Communities far from the centre (a quarter) are rural;
    2% of urban grids are dedicated. ``plant`` maps problem types (:data:`PLANT_TYPES`) to counts;
    ``None`` plants :func:`default_plant`, ``{}`` plants nothing but the straddling buildings
    (``straddle_per_grid`` of them per grid, each a ``split_building``).

    Vectorized throughout (only the few plantings loop): a million grids take about 15 s.

    Examples
    --------
    >>> city = make_city(500, seed=1)
    >>> len(city.grid), city.grid["code"].iat[0], city.grid["parent_code"].iat[0]
    (500, '141002001001001', '141002001001')
    >>> sorted({p.type for p in city.planted})[:3]
    ['bad_code', 'duplicate_code', 'gap']
    """
    if n_grids < 1:
        raise ValueError("n_grids must be at least 1")
    rng = np.random.default_rng(seed)
    plant = default_plant(n_grids) if plant is None else dict(plant)
    unknown = set(plant) - set(PLANT_TYPES)
    if unknown:
        raise ValueError(f"cannot plant {sorted(unknown)}; plantable: {', '.join(PLANT_TYPES)}")
    ny = max(1, round(math.sqrt(n_grids)))
    nx = -(-n_grids // ny)
    ny = -(-n_grids // nx)
    to_lonlat = _metric_frame(origin)
    corners, hmid, vmid, centres = lattice_cells(nx, ny, cell_m, rng, to_lonlat,
                                                  -nx * cell_m / 2, ny * cell_m / 2)
    idx = np.arange(n_grids)
    r, c = idx // nx, idx % nx
    geoms = shapely.polygons(_rings(corners, hmid, vmid, r, c))

    # The hierarchy: blocks of cells, blocks of blocks.
    bh, bw = _COMMUNITY
    ncr, ncc = -(-ny // bh), -(-nx // bw)
    s = max(4 if ncr * ncc >= 64 else 2, math.ceil(math.sqrt(ncr * ncc / 900)))
    block = (r // bh) * ncc + (c // bw)
    blocks, com = np.unique(block, return_inverse=True)
    cr, cc = blocks // ncc, blocks % ncc
    nsc = -(-ncc // s)
    sblocks, st = np.unique((cr // s) * nsc + (cc // s), return_inverse=True)
    n_com, n_st = len(blocks), len(sblocks)
    com_geoms = _pad_union(geoms, com, (r % bh) * bw + c % bw, n_com, bh * bw)
    st_geoms = _pad_union(com_geoms, st, (cr % s) * s + cc % s, n_st, s * s)
    district_geom = shapely.coverage_union_all(st_geoms)

    st_serial = np.arange(1, n_st + 1)  # street blocks are already in reading order
    com_serial = _rank_within(st, blocks)
    grid_serial = _rank_within(com, idx)
    st_code = int(district_code) * 1000 + st_serial
    com_code = st_code[st] * 1000 + com_serial
    grid_code = com_code[com] * 1000 + grid_serial

    dist = np.hypot(cr + 0.5 - ncr / 2, (cc + 0.5 - ncc / 2) * bw / bh)
    rural_com = dist > np.quantile(dist, 0.75) if n_com > 3 else np.zeros(n_com, dtype=bool)
    rural = rural_com[com]
    kind = np.where(~rural & (rng.random(n_grids) < 0.02), "dedicated", "basic").astype(object)

    picks = _pick_plantings(plant, rng, com, blocks, ncc, r, c, nx, n_grids, kind, grid_serial)
    planted_com = np.zeros(n_com, dtype=bool)
    planted_com[[com[p[1]] for p in picks]] = True

    # Buildings: 1 + Poisson(bpg - 1) per grid in distinct slots, plus the straddlers.
    nb = np.minimum(1 + rng.poisson(max(buildings_per_grid - 1.0, 0.0), n_grids), len(_SLOTS))
    owner = np.repeat(idx, nb)
    local = np.arange(len(owner)) - np.repeat(np.cumsum(nb) - nb, nb)
    slot = (rng.integers(0, len(_SLOTS), n_grids)[owner] + 4 * local) % len(_SLOTS)
    size = rng.uniform(0.7, 1.0, len(owner)) * cell_m
    cxy = centres[r[owner], c[owner]] + _SLOTS[slot] * cell_m
    b_geoms = _boxes(cxy[:, 0], cxy[:, 1], _BUILDING[0] * size, _BUILDING[1] * size, to_lonlat)
    sa, sb, s_geoms = _straddlers(rng, straddle_per_grid, n_grids, nx, r, c, com, planted_com,
                                  hmid, vmid, cell_m)
    # Regular buildings: grid code + B + serial; straddlers: code of their first grid + S + serial.
    s_local = _rank_within(sa, np.arange(len(sa))) if len(sa) else np.array([], dtype=np.int64)
    b_code = np.r_[
        (pd.Series(grid_code[owner]).astype(str) + "B"
         + pd.Series(local + 1).astype(str).str.zfill(2)).to_numpy(dtype=object),
        (pd.Series(grid_code[sa], dtype="int64").astype(str) + "S"
         + pd.Series(s_local, dtype="int64").astype(str).str.zfill(2)).to_numpy(dtype=object)]
    owner = np.r_[owner, sa]
    b_geoms = np.r_[b_geoms, s_geoms]

    grid = pd.DataFrame({
        "code": pd.Series(grid_code).astype(str).to_numpy(dtype=object),
        "parent_code": pd.Series(com_code[com]).astype(str).to_numpy(dtype=object),
        "level": "grid", "kind": kind, "households": households_for(kind, rural, rng),
        "worker": ("网格员" + pd.Series(idx + 1).astype(str).str.zfill(4)).to_numpy(dtype=object),
    })
    planted, geoms = _apply_plantings(picks, grid, geoms, com_code, com, rural, district_geom,
                                      cell_m)
    final = grid["code"].to_numpy(dtype=object)
    planted += [PlantedProblem("split_building", (bc, final[a], final[b]))
                for bc, a, b in zip(b_code[len(b_code) - len(sa):], sa, sb)]
    b_households = _spread(grid["households"].to_numpy(), owner, rng)

    com_names = _names(com_serial, st_serial[st], rural_com)
    grid["name"] = (pd.Series(com_names, dtype=object)[com].to_numpy(dtype=object)
                    + "第" + pd.Series(grid_serial).astype(str).to_numpy(dtype=object) + "网格")
    return City(
        district=_frame({"code": [district_code], "name": [district_name], "parent_code":
                         [district_code[:4] + "00"], "level": ["district"]}, [district_geom]),
        street=_frame({"code": st_code.astype(str), "name": [f"第{i}街道" for i in st_serial],
                       "parent_code": district_code, "level": "street"}, st_geoms),
        community=_frame({"code": com_code.astype(str), "name": com_names,
                          "parent_code": st_code[st].astype(str), "level": "community",
                          "kind": np.where(rural_com, "rural", "urban")}, com_geoms),
        grid=gpd.GeoDataFrame(grid[["code", "name", "parent_code", "level", "kind", "households",
                                    "worker"]], geometry=geoms, crs=WGS84),
        building=gpd.GeoDataFrame({"code": b_code, "households": b_households,
                                   "parent_code": grid["code"].to_numpy(dtype=object)[owner]},
                                  geometry=b_geoms, crs=WGS84),
        planted=planted,
    )


def _frame(columns: dict, geoms) -> gpd.GeoDataFrame:
    frame = pd.DataFrame({k: np.asarray(v, dtype=object) if not np.isscalar(v) else v
                          for k, v in columns.items()})
    return gpd.GeoDataFrame(frame, geometry=np.asarray(geoms, dtype=object), crs=WGS84)


def _names(com_serial, street_serial, rural) -> list[str]:
    return [f"{s}街{n}{'村' if r else '社区'}" for n, s, r in zip(com_serial, street_serial, rural)]


def _pick_plantings(plant, rng, com, blocks, ncc, r, c, nx, n, kind, serial) -> list[tuple]:
    """(type, grid A, grid B or -1) for each planting, each in its own isolated community."""
    jobs = [t for t in PLANT_TYPES for _ in range(plant.get(t, 0))]
    if not jobs:
        return []
    order = np.argsort(com, kind="stable")
    start = np.searchsorted(com[order], np.arange(len(blocks)))
    end = np.r_[start[1:], n]
    taken: set[tuple[int, int]] = set()
    picks = []
    # Border plantings first: they can only use communities on the district's north edge.
    jobs.sort(key=lambda t: t != "outside_parent")
    for job in jobs:
        pool = np.flatnonzero(blocks < ncc) if job == "outside_parent" else np.arange(len(blocks))
        pool = rng.permutation(pool)
        # Prefer a community with no planted neighbour; in a small city settle for an unused one
        # (plantings never reach outside their own grids, so the truth stays exact either way).
        for spread in (1, 0):
            pick = _first_fit(job, pool, spread, taken, blocks, ncc, order, start, end,
                              (com, r, c, nx, n, kind, serial))
            if pick is not None:
                taken.add(pick[0])
                picks.append((job, *pick[1]))
                break
        else:
            raise ValueError(f"the city is too small to plant {len(jobs)} problems")
    return picks


def _first_fit(job, pool, spread, taken, blocks, ncc, order, start, end, cells_info):
    for k in pool:
        br, bc = divmod(int(blocks[k]), ncc)
        if any(abs(br - tr) <= spread and abs(bc - tc) <= spread for tr, tc in taken):
            continue
        pick = _pick_cell(job, order[start[k]:end[k]], *cells_info)
        if pick is not None:
            return (br, bc), pick
    return None


def _pick_cell(job, cells, com, r, c, nx, n, kind, serial):
    basic = cells[kind[cells] == "basic"]
    if job in ("gap", "overlap"):
        right = cells + 1
        ok = (c[cells] < nx - 1) & (right < n)
        ok[ok] &= com[right[ok]] == com[cells[ok]]
        return (int(cells[ok][0]), int(cells[ok][0] + 1)) if ok.any() else None
    if job == "outside_parent":
        top = cells[r[cells] == 0]
        return (int(top[len(top) // 2]), -1) if len(top) else None
    if job in ("duplicate_code", "bad_code"):
        if len(cells) < 2:
            return None
        last = cells[np.argmax(serial[cells])]
        return int(last), int(cells[serial[cells] == serial[last] - 1][0])
    return (int(basic[0]), -1) if len(basic) else None


def _straddlers(rng, per_grid, n, nx, r, c, com, planted_com, hmid, vmid, cell_m):
    """Buildings centred on the middle vertex of edges between two unplanted grids."""
    want = int(round(per_grid * n))
    idx = np.arange(n)
    free = ~planted_com[com]
    east = idx[(c < nx - 1) & (idx + 1 < n)]
    east = east[free[east] & free[east + 1]]
    south = idx[idx + nx < n]
    south = south[free[south] & free[south + nx]]
    pool = len(east) + len(south)
    none = np.array([], dtype=np.intp)
    if want == 0 or pool == 0:
        return none, none, np.array([], dtype=object)
    pick = np.sort(rng.choice(pool, size=min(want, pool), replace=False))
    is_east = pick < len(east)
    a = np.r_[east[pick[is_east]], south[pick[~is_east] - len(east)]]
    is_east = np.r_[np.ones(is_east.sum(), bool), np.zeros((~is_east).sum(), bool)]
    b = np.where(is_east, a + 1, a + nx)
    mids = np.where(is_east[:, None], vmid[r[a], np.minimum(c[a] + 1, nx)],
                    hmid[np.minimum(r[a] + 1, len(hmid) - 1), c[a]])
    along = np.where(is_east[:, None], [0.0, 1.0], [1.0, 0.0])
    geoms = _straddle_boxes(mids, along, _STRADDLE[0] * cell_m, _STRADDLE[1] * cell_m)
    return a.astype(np.intp), b.astype(np.intp), geoms


def _straddle_boxes(centres, along, half_along, half_across) -> np.ndarray:
    """Vectorized :func:`straddle_box` for axis-aligned directions."""
    k = np.column_stack([111_320.0 * np.cos(np.radians(centres[:, 1])),
                         np.full(len(centres), 110_574.0)])
    d = along
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    rings = np.stack([centres + (sa * half_along * d + sc * half_across * n) / k
                      for sa, sc in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))], axis=1)
    return shapely.polygons(rings)


def _apply_plantings(picks, grid, geoms, com_code, com, rural, district_geom, cell_m):
    """Plant each picked problem in place; returns (truth, grid geometries)."""
    truth: list[PlantedProblem] = []
    geoms = geoms.copy()
    codes = grid["code"].to_numpy(dtype=object).copy()
    households = grid["households"].to_numpy().copy()
    workers = grid["worker"].to_numpy(dtype=object).copy()
    depth = _PUSH * cell_m
    for job, a, b in picks:
        ca, cb = codes[a], codes[b] if b >= 0 else None
        if job in ("gap", "overlap"):
            geoms[a], geoms[b], _ = push_shared_vertex(geoms[a], geoms[b], depth, job == "overlap")
            extra = (str(com_code[com[a]]),) if job == "gap" else ()
            truth.append(PlantedProblem(job, extra + (ca, cb)))
        elif job == "outside_parent":
            geoms[a] = push_shared_vertex(geoms[a], district_geom.boundary, depth, True)[0]
            truth.append(PlantedProblem(job, (ca, str(com_code[com[a]]))))
        elif job == "duplicate_code":
            codes[a] = cb
            truth.append(PlantedProblem(job, (cb,)))
        elif job == "bad_code":
            codes[a] = ca[:12] + ca[13:]
            truth.append(PlantedProblem(job, (codes[a],)))
        elif job == "invalid_geometry":
            geoms[a] = bow_tie(geoms[a], metres=min(2.0, cell_m / 50))
            truth.append(PlantedProblem(job, (ca,)))
        elif job == "no_worker":
            workers[a] = None
            truth.append(PlantedProblem(job, (ca,)))
        elif job == "size_out_of_range":
            households[a] = 100 if rural[a] else 320
            truth.append(PlantedProblem(job, (ca,)))
    grid["code"], grid["households"], grid["worker"] = codes, households, workers
    return truth, geoms


# -- a city clipped to a real outline ---------------------------------------------------------

_SITES = ("医院", "学校", "商场", "工业园", "物流园")
_URBAN_A = "东西南北新安和平兴华康乐福明光永顺丰泰宁鼓文"
_URBAN_B = ("城", "苑", "园", "里", "坊", "街", "华", "安", "宁", "康", "泰", "盛", "馨", "秀")
_RURAL_A = "王李张刘陈杨赵郭段贾吴柴席高上下大小东西南北"
_RURAL_B = ("庄", "家庄", "堡", "坡", "沟", "店", "营", "屯", "峪", "寨", "头", "家湾", "洼")


def clip_city_to_outline(outline, *, seed: int = 0, cell_m: float = 900.0,
                         centre: tuple[float, float] | None = None, urban_radius_m: float = 4000.0,
                         street_names: tuple[str, ...] = ("第一街道", "第二街道", "第三街道"),
                         town_names: tuple[str, ...] = ("第一镇", "第二镇", "第三镇"),
                         district_code: str = "141002", district_name: str = "示范区",
                         buildings_per_grid: tuple[int, int] = (2, 5),
                         min_face_share: float = 0.3) -> City:
    """A city whose district is exactly ``outline`` (a WGS84 polygon), for demos.

    The lattice is laid over the outline's bounding box (cells within ``urban_radius_m`` of
    ``centre`` split in four), its lines are noded with the outline's boundary and polygonized, so
    faces share vertices exactly; faces inside the outline are grids, and any smaller than
    ``min_face_share`` of their cell is merged into the neighbour it shares most boundary with.
    Urban communities are 2 cells (8 grids), rural villages 2 × 2 cells (4 grids); streets group
    urban communities by k-means, towns group villages by direction from ``centre``. Nothing is
    planted: see :func:`plant_problems`. Demo scale only (a few thousand grids; Python loops).
    """
    rng = np.random.default_rng(seed)
    outline = shapely.union_all(shapely.get_parts(outline))
    if centre is None:
        centre = tuple(shapely.centroid(outline).coords[0])
    local = pyproj.CRS.from_proj4(f"+proj=laea +lat_0={centre[1]} +lon_0={centre[0]} "
                                  "+ellps=WGS84 +units=m")
    to_lonlat = pyproj.Transformer.from_crs(local, WGS84, always_xy=True).transform
    to_m = pyproj.Transformer.from_crs(WGS84, local, always_xy=True).transform

    def metric(geoms):
        return shapely.transform(geoms, lambda xy: np.column_stack(to_m(xy[:, 0], xy[:, 1])))

    minx, miny, maxx, maxy = metric(outline).bounds
    x0, y0 = (math.floor(minx / cell_m) - 1) * cell_m, (math.ceil(maxy / cell_m) + 1) * cell_m
    nx = int(math.ceil((maxx - x0) / cell_m)) + 1
    ny = int(math.ceil((y0 - miny) / cell_m)) + 1
    nx += nx % 2
    ny += ny % 2
    corners, hmid, vmid, centres = lattice_cells(nx, ny, cell_m, rng, to_lonlat, x0, y0)
    r, c = np.divmod(np.arange(nx * ny), nx)
    block_c = centres[(r // 2) * 2, (c // 2) * 2] + cell_m / 2 * np.array([1, -1])
    urban = np.hypot(block_c[:, 0], block_c[:, 1]) < urban_radius_m
    cells, keys = _cells_with_quarters(corners, hmid, vmid, centres, r, c, urban, to_lonlat,
                                       rng)

    lines = list(shapely.get_exterior_ring(cells)) + [outline.boundary]
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(
        shapely.union_all(np.array(lines, dtype=object)))))
    faces = faces[shapely.contains(outline, shapely.point_on_surface(faces))]
    src, dst = shapely.STRtree(cells).query(shapely.point_on_surface(faces), predicate="within")
    owner = np.full(len(faces), -1)
    owner[src] = dst
    nominal = shapely.area(metric(cells))[owner]
    faces, owner = _merge_small(faces, owner, shapely.area(metric(faces)) / nominal,
                                min_face_share, keys)
    fkeys = keys[owner]
    is_urban = urban[fkeys[:, 2]]
    # Half-cell keys: a village is 2 × 2 cells, an urban community 2 cells stacked.
    com_key = fkeys[:, 0] // 4 * 100_000 + np.where(is_urban, 50_000 + fkeys[:, 1] // 2,
                                                     fkeys[:, 1] // 4)
    com, com_geoms, com_urban = _communities(faces, com_key, is_urban)
    cen = shapely.get_coordinates(metric(shapely.point_on_surface(com_geoms)))
    street, st_geoms, st_urban = _streets(com_geoms, cen, com_urban, len(street_names),
                                          len(town_names), rng)
    return _assemble_outline_city(faces, fkeys, com, com_geoms, com_urban, cen, street, st_geoms,
                                  st_urban, street_names, town_names, district_code,
                                  district_name, buildings_per_grid, rng, metric, to_lonlat)


def _cells_with_quarters(corners, hmid, vmid, centres, r, c, urban, to_lonlat, rng):
    """Cell polygons, urban cells cut in four through their edge middles and their centre.

    Returns (polygons, keys) with keys = (row, column) in half cells plus the cell index.
    """
    whole = shapely.polygons(_rings(corners, hmid, vmid, r, c))
    u = np.flatnonzero(urban)
    mid_xy = centres[r[u], c[u]]
    lon, lat = to_lonlat(mid_xy[:, 0], mid_xy[:, 1])
    m = np.column_stack([lon, lat])
    ru, cu = r[u], c[u]
    sw, se = corners[ru + 1, cu], corners[ru + 1, cu + 1]
    ne, nw = corners[ru, cu + 1], corners[ru, cu]
    bot, rgt, top, lft = hmid[ru + 1, cu], vmid[ru, cu + 1], hmid[ru, cu], vmid[ru, cu]
    # Each half-line from an edge middle to the centre gets a bent vertex of its own, so quarters
    # sharing one have a middle vertex to plant problems on.
    def bend(p):
        return (p + m) / 2 + rng.uniform(-0.05, 0.05, p.shape) * np.abs(p - m).max()

    qt, qr, qb, ql = bend(top), bend(rgt), bend(bot), bend(lft)
    quads = [((nw, top, qt, m, ql, lft), 0, 0), ((top, ne, rgt, qr, m, qt), 0, 1),
             ((lft, ql, m, qb, bot, sw), 1, 0), ((m, qr, rgt, se, bot, qb), 1, 1)]
    polys = [whole[~urban]]
    keys = [np.column_stack([2 * r[~urban], 2 * c[~urban], np.flatnonzero(~urban)])]
    for ring, dr, dc in quads:
        polys.append(shapely.polygons(np.stack(ring + (ring[0],), axis=1)))
        keys.append(np.column_stack([2 * ru + dr, 2 * cu + dc, u]))
    return np.concatenate(polys), np.concatenate(keys)


def _merge_small(faces, owner, share, min_share, keys):
    """Merge faces under ``min_share`` of their cell into the neighbour they border most."""
    faces = faces.copy()
    alive = np.ones(len(faces), dtype=bool)
    root = np.arange(len(faces))
    tree = shapely.STRtree(faces.copy())

    def find(i):
        while root[i] != i:
            i = root[i]
        return i

    for i in np.argsort(share):
        if share[i] >= min_share:
            break
        best, best_len = -1, 0.0
        for j in {find(j) for j in tree.query(faces[i], predicate="intersects")} - {i}:
            length = shapely.length(shapely.intersection(faces[i].boundary, faces[j].boundary))
            same = keys[owner[j], 2] == keys[owner[i], 2]
            if length > 0 and (length + same * 1e9) > best_len:
                best, best_len = j, length + same * 1e9
        if best >= 0:
            faces[best] = shapely.coverage_union_all(np.array([faces[best], faces[i]]))
            alive[i] = False
            root[i] = best
    return faces[alive], owner[alive]


def _communities(faces, com_key, is_urban):
    """Community per face (blocks of cells, split where the outline cuts a block apart)."""
    uniq, com = np.unique(com_key, return_inverse=True)
    geoms = shapely.coverage_union_all(
        _table(faces, com, len(uniq)), axis=1)
    out = np.empty(len(faces), dtype=np.intp)
    parts_all, urban_all = [], []
    for k, g in enumerate(geoms):
        parts = shapely.get_parts(g)
        mine = np.flatnonzero(com == k)
        if len(parts) == 1:
            which = np.zeros(len(mine), dtype=np.intp)
        else:
            src, dst = shapely.STRtree(parts).query(shapely.point_on_surface(faces[mine]),
                                                    predicate="within")
            which = np.zeros(len(mine), dtype=np.intp)
            which[src] = dst
        for p in range(len(parts)):
            sel = mine[which == p]
            out[sel] = len(parts_all)
            parts_all.append(shapely.coverage_union_all(faces[sel]))
            urban_all.append(bool(is_urban[sel].any()))
    return out, np.array(parts_all, dtype=object), np.array(urban_all)


def _table(geoms, group, n_groups):
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=n_groups)
    slot = np.arange(len(group)) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((n_groups, counts.max()), None, dtype=object)
    table[group[order], slot] = geoms[order]
    return table


def _streets(com_geoms, cen, urban, n_streets, n_towns, rng):
    """Urban communities → ``n_streets`` streets by k-means; villages → towns by direction."""
    street = np.zeros(len(cen), dtype=np.intp)
    u = np.flatnonzero(urban)
    pts = cen[u]
    seeds = pts[rng.choice(len(pts), n_streets, replace=False)]
    for _ in range(30):
        lab = np.argmin(((pts[:, None] - seeds[None]) ** 2).sum(-1), axis=1)
        seeds = np.array([pts[lab == k].mean(0) if (lab == k).any() else seeds[k]
                          for k in range(n_streets)])
    street[u] = lab
    v = np.flatnonzero(~urban)
    angle = np.arctan2(cen[v, 1], cen[v, 0])
    street[v[np.argsort(angle)]] = n_streets + np.arange(len(v)) * n_towns // len(v)
    _contiguous(street, com_geoms)
    groups = np.unique(street)
    street = np.searchsorted(groups, street)
    st_geoms = shapely.coverage_union_all(_table(com_geoms, street, len(groups)), axis=1)
    st_urban = groups < n_streets
    return street, st_geoms, st_urban


def _contiguous(group, geoms, rounds: int = 5) -> None:
    """Give detached pieces of a group to the neighbouring group they share most border with."""
    tree = shapely.STRtree(geoms)
    for _ in range(rounds):
        changed = False
        for g in np.unique(group):
            mine = np.flatnonzero(group == g)
            parts = shapely.get_parts(shapely.coverage_union_all(geoms[mine]))
            if len(parts) < 2:
                continue
            keep = int(np.argmax(shapely.area(parts)))
            for p, part in enumerate(parts):
                if p == keep:
                    continue
                inside = mine[shapely.within(shapely.point_on_surface(geoms[mine]), part)]
                near = np.setdiff1d(tree.query(part, predicate="intersects"), mine)
                if len(near) == 0:
                    continue
                shared = shapely.length(shapely.intersection(part.boundary, geoms[near]))
                group[inside] = group[near[int(np.argmax(shared))]]
                changed = True
        if not changed:
            return


def _reading_order(xy: np.ndarray, band: float) -> np.ndarray:
    """Rank (0-based) west→east within bands of ``band`` metres, bands north→south."""
    return np.lexsort((xy[:, 0], -np.floor(xy[:, 1] / band)))


def _unique_names(rng, first: str, second, suffix: str, n: int) -> list[str]:
    pool = [a + b for a in first for b in second]
    names = [pool[i] + suffix for i in rng.permutation(len(pool))[:n]]
    return names + [f"{names[i % len(names)][:-len(suffix)]}{i // len(names) + 1}{suffix}"
                    for i in range(len(names), n)]


def _assemble_outline_city(faces, fkeys, com, com_geoms, com_urban, cen, street, st_geoms,
                           st_urban, street_names, town_names, district_code, district_name,
                           per_grid, rng, metric, to_lonlat) -> City:
    n_st = len(st_geoms)
    st_cen = shapely.get_coordinates(metric(shapely.point_on_surface(st_geoms)))
    st_serial = np.empty(n_st, dtype=np.int64)
    for is_u, base, names in ((True, 1, street_names), (False, 100, town_names)):
        idx = np.flatnonzero(st_urban == is_u)
        st_serial[idx[_reading_order(st_cen[idx], 5000.0)]] = base + np.arange(len(idx))
    st_name = np.empty(n_st, dtype=object)
    for is_u, base, names in ((True, 1, street_names), (False, 100, town_names)):
        idx = np.flatnonzero(st_urban == is_u)
        st_name[idx] = [names[(k - base) % len(names)] for k in st_serial[idx]]
    st_code = int(district_code) * 1000 + st_serial

    rank = np.empty(len(cen), dtype=np.int64)
    rank[_reading_order(cen, 1000.0)] = np.arange(len(cen))
    com_serial = _rank_within(street, rank)
    com_code = st_code[street] * 1000 + com_serial
    n_u = int(com_urban.sum())
    com_name = np.empty(len(cen), dtype=object)
    com_name[com_urban] = _unique_names(rng, _URBAN_A, _URBAN_B, "社区", n_u)
    com_name[~com_urban] = _unique_names(rng, _RURAL_A, _RURAL_B, "村", len(cen) - n_u)

    face_xy = shapely.get_coordinates(shapely.centroid(faces))
    order_key = np.lexsort((face_xy[:, 0], fkeys[:, 1], fkeys[:, 0]))
    frank = np.empty(len(faces), dtype=np.int64)
    frank[order_key] = np.arange(len(faces))
    serial = _rank_within(com, frank)
    code = (com_code[com] * 1000 + serial).astype(str).astype(object)
    rural = ~com_urban[com]
    kind = np.where(~rural & (rng.random(len(faces)) < 0.03), "dedicated", "basic").astype(object)
    households = households_for(kind, rural, rng)
    name = [f"{com_name[k]}{_SITES[i % len(_SITES)]}专属网格" if kd == "dedicated"
            else f"{com_name[k]}第{s}网格" for i, (k, s, kd) in enumerate(zip(com, serial, kind))]
    grid = gpd.GeoDataFrame({
        "code": code, "name": name, "parent_code": com_code[com].astype(str).astype(object),
        "level": "grid", "kind": kind, "households": households,
        "worker": [f"网格员{i + 1:04d}" for i in range(len(faces))]},
        geometry=faces, crs=WGS84)
    b_geoms, b_owner = _place_buildings(metric(faces), ~rural, per_grid, rng, to_lonlat)
    b_local = _rank_within(b_owner, np.arange(len(b_owner)))
    building = gpd.GeoDataFrame({
        "code": [f"{code[g]}B{k:02d}" for g, k in zip(b_owner, b_local)],
        "households": _spread(households, b_owner, rng),
        "parent_code": code[b_owner]}, geometry=b_geoms, crs=WGS84)
    district = shapely.coverage_union_all(st_geoms)
    return City(
        district=_frame({"code": [district_code], "name": [district_name],
                         "parent_code": [district_code[:4] + "00"], "level": ["district"]},
                        [district]),
        street=_frame({"code": st_code.astype(str), "name": st_name,
                       "parent_code": district_code, "level": "street",
                       "kind": np.where(st_urban, "street", "town")}, st_geoms),
        community=_frame({"code": com_code.astype(str), "name": com_name,
                          "parent_code": st_code[street].astype(str), "level": "community",
                          "kind": np.where(com_urban, "urban", "rural")}, com_geoms),
        grid=grid, building=building)


def _place_buildings(faces_m, urban, per_grid, rng, to_lonlat):
    """A few rectangles well inside each grid (metres in, lon/lat out), none touching another."""
    rects, owner = [], []
    inner = shapely.buffer(faces_m, -25.0)
    for g, (poly, is_urban) in enumerate(zip(inner, urban)):
        if poly.is_empty:
            poly = shapely.buffer(faces_m[g], -3.0)
        minx, miny, maxx, maxy = poly.bounds
        shapely.prepare(poly)
        want, placed = rng.integers(per_grid[0], per_grid[1] + 1), []
        for _ in range(200):
            if len(placed) == want:
                break
            w, h = (rng.uniform(20, 40), rng.uniform(12, 18)) if is_urban else \
                (rng.uniform(10, 18), rng.uniform(8, 12))
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            box = shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2)
            if poly.contains(box) and not any(box.distance(p) < 5 for p in placed):
                placed.append(box)
        rects += placed
        owner += [g] * len(placed)
    geoms = shapely.transform(np.array(rects, dtype=object),
                              lambda xy: np.column_stack(to_lonlat(xy[:, 0], xy[:, 1])))
    return geoms, np.array(owner, dtype=np.intp)


# -- planting on any city -----------------------------------------------------------------------

_PLANTABLE = PLANT_TYPES + ("split_building",)


def plant_problems(city: City, plant: dict[str, int], *, seed: int = 0,
                   communities=None) -> City:
    """A copy of ``city`` with problems planted by geometry alone (any city, demo scale).

    Types as :data:`PLANT_TYPES` plus ``split_building`` (a building centred on a vertex two grids
    share); each planting in its own community, away from the others, and clear of buildings.
    The ground truth is added to ``planted`` exactly as in the table of the module docstring.
    ``communities`` (codes) limits where problems may be planted.
    """
    unknown = set(plant) - set(_PLANTABLE)
    if unknown:
        raise ValueError(f"cannot plant {sorted(unknown)}; plantable: {', '.join(_PLANTABLE)}")
    rng = np.random.default_rng(seed)
    grid, building = city.grid.copy(), city.building.copy()
    geoms = grid.geometry.to_numpy().copy()
    codes = grid["code"].to_numpy(dtype=object).copy()
    com_codes = city.community["code"].to_numpy(dtype=object)
    com_of = pd.Index(com_codes).get_indexer(grid["parent_code"])
    com_tree = shapely.STRtree(city.community.geometry.to_numpy())
    grid_tree = shapely.STRtree(geoms.copy())
    b_tree = shapely.STRtree(building.geometry.to_numpy())
    blocked: set[int] = set()
    truth = list(city.planted)
    border = city.district.geometry.iat[0].boundary
    kinds = city.community["kind"].to_numpy(dtype=object) if "kind" in city.community \
        else np.full(len(com_codes), "urban", dtype=object)
    rural_codes = frozenset(com_codes[kinds == "rural"])
    jobs = [t for t in _PLANTABLE for _ in range(plant.get(t, 0))]
    for job in jobs:
        allowed = np.arange(len(com_codes)) if communities is None else \
            np.flatnonzero(np.isin(com_codes, list(communities)))
        for k in rng.permutation(allowed):
            if k in blocked:
                continue
            mine = np.flatnonzero(com_of == k)
            done = _plant_one(job, mine, geoms, codes, grid, building, grid_tree, b_tree,
                              com_codes[k], border, rng, rural_codes)
            if done is not None:
                truth.append(done)
                blocked |= set(com_tree.query(city.community.geometry.iat[k]).tolist())
                break
        else:
            raise ValueError(f"found no place to plant {job}")
    grid["code"] = codes
    grid = grid.set_geometry(geoms)
    building["parent_code"] = building["parent_code"].map(
        dict(zip(city.grid["code"], codes))).fillna(building["parent_code"])
    return City(city.district, city.street, city.community, grid, building, truth)


def _plant_one(job, mine, geoms, codes, grid, building, grid_tree, b_tree, com_code, border, rng,
               rural_codes=frozenset()):
    """Plant ``job`` on a grid of community ``mine``; the truth, or None if it does not fit."""
    if len(mine) < 2:
        return None
    serial = np.argsort(np.argsort(codes[mine].astype(str)))
    last, before = mine[serial == len(mine) - 1][0], mine[serial == len(mine) - 2][0]
    basic = mine[grid["kind"].to_numpy()[mine] == "basic"]
    a = int(basic[0]) if len(basic) else int(mine[0])
    if job == "duplicate_code":
        codes[last] = codes[before]
        return PlantedProblem(job, (codes[before],))
    if job == "bad_code":
        codes[last] = codes[last][:12] + codes[last][13:]
        return PlantedProblem(job, (codes[last],))
    if job == "no_worker":
        grid.iloc[a, grid.columns.get_loc("worker")] = None
        return PlantedProblem(job, (codes[a],))
    if job == "invalid_geometry":
        geoms[a] = bow_tie(geoms[a])
        return PlantedProblem(job, (codes[a],))
    if job == "size_out_of_range":
        rural = com_code in rural_codes
        want = 100 if rural else 320
        grid.iloc[a, grid.columns.get_loc("households")] = want
        mine_b = np.flatnonzero(building["parent_code"].to_numpy() == codes[a])
        if len(mine_b):
            hh = building["households"].to_numpy()[mine_b].astype(float)
            new = np.floor(hh / max(hh.sum(), 1) * want).astype(int)
            new[0] += want - new.sum()
            building.iloc[mine_b, building.columns.get_loc("households")] = new
        return PlantedProblem(job, (codes[a],))
    for a in rng.permutation(mine):
        if job == "outside_parent":
            found = _try_push(a, None, border, geoms, grid_tree, b_tree, True)
            if found:
                return PlantedProblem(job, (codes[a], com_code))
            continue
        for b in grid_tree.query(geoms[a], predicate="touches"):
            if job == "split_building":
                box = _try_straddle(a, b, geoms, grid_tree, b_tree)
                if box is None:
                    continue
                hh = building["households"].to_numpy()
                donor = np.flatnonzero(building["parent_code"].to_numpy() == codes[a])
                moved = int(min(10, hh[donor].max())) if len(donor) else 0
                if len(donor):
                    building.iloc[donor[np.argmax(hh[donor])],
                                  building.columns.get_loc("households")] -= moved
                bcode = f"{codes[a]}S01"
                building.loc[len(building)] = {"code": bcode, "households": moved,
                                               "parent_code": codes[a], "geometry": box}
                return PlantedProblem(job, (bcode, codes[a], codes[b]))
            if b not in mine:
                continue
            if _try_push(a, b, None, geoms, grid_tree, b_tree, job == "overlap"):
                extra = (com_code,) if job == "gap" else ()
                return PlantedProblem(job, extra + (codes[a], codes[b]))
    return None


def _try_push(a, b, border, geoms, grid_tree, b_tree, outward) -> bool:
    """Push or pull a shared vertex of grid ``a`` (with ``b`` or the border), if it stays clean."""
    depth = _PUSH * math.sqrt(_area_m2(geoms[a]))
    done = push_shared_vertex(geoms[a], geoms[b] if b is not None else border, depth, outward)
    if done is None or (done[1] is not None and not done[1].is_valid):
        return False
    new_a, new_b, region = done
    if _area_m2(region) < 20 or len(b_tree.query(region, predicate="intersects")):
        return False
    others = set(grid_tree.query(region, predicate="intersects").tolist()) - {a, b}
    if any(shapely.area(shapely.intersection(region, geoms[o])) > 0 for o in others):
        return False
    geoms[a] = new_a
    if b is not None:
        geoms[b] = new_b
    return True


def _try_straddle(a, b, geoms, grid_tree, b_tree):
    path = _shared_path(geoms[a], geoms[b])
    if path is None:
        return None
    k = len(path) // 2
    side = math.sqrt(_area_m2(geoms[a]))
    box = straddle_box(path[k], min(15.0, side * 0.05), min(10.0, side * 0.04),
                       path[k + 1] - path[k - 1])
    hits = set(grid_tree.query(box, predicate="intersects").tolist())
    near = b_tree.query(shapely.buffer(box, 1e-4))
    return box if hits == {a, b} and len(near) == 0 else None


def _area_m2(geom) -> float:
    k = metres_per_degree(shapely.centroid(geom).y)
    return float(shapely.area(geom) * k[0] * k[1])
