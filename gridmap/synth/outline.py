"""A city clipped to a real outline (:func:`clip_city_to_outline`), for the demo."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pyproj
import shapely

from gridmap.synth.city import WGS84, City, _frame, _rank_within
from gridmap.synth.households import _place_buildings, _spread, households_for
from gridmap.synth.lattice import _rings, lattice_cells

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
