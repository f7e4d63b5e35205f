"""Planting problems (the table in :mod:`gridmap.synth`): vertex surgery and any-city planting.

:func:`push_shared_vertex` and :func:`bow_tie` edit one geometry; :func:`plant_problems` plants by
geometry alone on any :class:`~gridmap.synth.city.City` (the demo), where
:func:`~gridmap.synth.lattice.make_city` plants by lattice index.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import shapely

from gridmap.synth.city import PLANT_TYPES, City, PlantedProblem, metres_per_degree
from gridmap.synth.households import straddle_box

_PUSH = 0.08    # depth of a planted gap/overlap/outside bulge, in cells (12 m at 150 m)


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


_PLANTABLE = PLANT_TYPES + ("split_building",)


def plant_problems(city: City, plant: dict[str, int], *, seed: int = 0,
                   communities=None) -> City:
    """A copy of ``city`` with problems planted by geometry alone (any city, demo scale).

    Types as :data:`PLANT_TYPES` plus ``split_building`` (a building centred on a vertex two grids
    share); each planting in its own community, away from the others, and clear of buildings.
    The ground truth is added to ``planted`` exactly as in the table of :mod:`gridmap.synth`.
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
