"""Households and buildings: household counts per grid, their spread, building footprints."""

from __future__ import annotations

import numpy as np
import shapely

from gridmap.synth.city import metres_per_degree


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


def _straddle_boxes(centres, along, half_along, half_across) -> np.ndarray:
    """Vectorized :func:`straddle_box` for axis-aligned directions."""
    k = np.column_stack([111_320.0 * np.cos(np.radians(centres[:, 1])),
                         np.full(len(centres), 110_574.0)])
    d = along
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    rings = np.stack([centres + (sa * half_along * d + sc * half_across * n) / k
                      for sa, sc in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))], axis=1)
    return shapely.polygons(rings)


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
