"""The jittered-lattice city: :func:`make_city`, its lattice, hierarchy, buildings and plantings."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gridmap.coverage import union_by_group
from gridmap.synth.city import (PLANT_TYPES, WGS84, City, PlantedProblem, _frame, _rank_within,
                                default_plant)
from gridmap.synth.households import _boxes, _spread, _straddle_boxes, households_for
from gridmap.synth.plant import _PUSH, bow_tie, push_shared_vertex

_JITTER = 0.12  # corner jitter, in cells
_BEND = 0.10    # perpendicular offset of each edge's middle vertex, in cells
# Regular buildings stay within 0.125 cell of the cell's nominal centre; cell edges are at least
# 0.21 cell away, so planted bulges (0.08 cell) never reach a building.
_SLOTS = np.array([(x, y) for y in (0.09, 0.0, -0.09) for x in (-0.09, 0.0, 0.09)])
_BUILDING = (0.035, 0.025)  # half width/height of a regular building, in cells
_STRADDLE = (0.05, 0.04)    # half extents (along, across the edge) of a straddling building
_COMMUNITY = (3, 4)  # a community is a block of 3 rows by 4 columns of grids


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
    com_geoms = union_by_group(geoms, com, n_com)
    st_geoms = union_by_group(com_geoms, st, n_st)
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
