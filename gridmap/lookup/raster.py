"""The cell raster (MapIt-style subdivision) that answers "which grid" without GEOS for most points.

A raster of cells, square in metres, about 16 per grid, covers the grids' bounds. Cells no edge
touches and one grid covers answer by array lookup; cells no grid covers answer "none"; only the
rest keep a list of candidate grids, sorted by code, tested in that order with GEOS's prepared
point-in-polygon (the first hit is the shared-edge rule's answer).

A second, finer bit raster marks the cells that come within ``near_m`` of a shared edge, so the
near-boundary pass can skip every point that cannot be near one.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

_CELLS_PER_GRID = 16
_MIN_CELLS, _MAX_CELLS = 1 << 16, 1 << 23
_MAX_NEAR_CELLS = 1 << 23   # 1 MiB of bits; past that the near cells grow beyond near_m
_EPS = 1e-7                 # cell units: a segment within this of a cell marks it (conservative)
# The near raster works in degrees scaled at one latitude, distances are metres in a local
# projection: 5 % and a metre more than near_m cover the scale change across a city, the
# projection's own distortion and float32 rounding (4 mm), so no near point is ever skipped.
_NEAR_SLACK, _NEAR_PAD_M = 1.05, 1.0
_BLOCK = 1 << 15
EMPTY, MIXED = -2, -1


def ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of `counts` items: each item's group and its position in the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    within = np.arange(group.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return group, within


def _floors(a: np.ndarray):
    """floor(a - _EPS), and floor(a + _EPS) where it differs: the cells a line at `a` touches."""
    lo, hi = np.floor(a - _EPS), np.floor(a + _EPS)
    two = np.flatnonzero(lo != hi)
    return np.concatenate([np.arange(len(a)), two]), np.concatenate([lo, hi[two]])


def _touching(u0, v0, u1, v1, nx, ny):
    """(segment, cell) pairs: every cell each segment comes within _EPS of (a supercover)."""
    segs, cols, rows = [], [], []
    iu, fu = _floors(u0)  # the first end; the second is the next segment's first
    iv, fv = _floors(v0[iu])
    segs.append(iu[iv]), cols.append(fu[iv]), rows.append(fv)
    for a0, b0, a1, b1, flip in ((u0, v0, u1, v1, False), (v0, u0, v1, u1, True)):
        k0 = np.ceil(np.minimum(a0, a1))
        n = np.where(a0 != a1, np.floor(np.maximum(a0, a1)) - k0 + 1, 0).astype(np.int64)
        seg, within = ranges(np.maximum(n, 0))
        k = k0[seg] + within
        i, along = _floors(b0[seg] + (k - a0[seg]) * (b1[seg] - b0[seg]) / (a1[seg] - a0[seg]))
        for side in (k[i] - 1, k[i]):  # the cells either side of the crossed cell side
            segs.append(seg[i])
            cols.append(along if flip else side), rows.append(side if flip else along)
    seg, col, row = np.concatenate(segs), np.concatenate(cols), np.concatenate(rows)
    ok = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    return seg[ok], row[ok].astype(np.int64) * nx + col[ok].astype(np.int64)


def _scanline(u0, v0, u1, v1, seg_grid, nx, ny):
    """How many grids cover each cell centre, and the sum of their ids + 1 (even-odd rule)."""
    vlo, vhi = np.minimum(v0, v1), np.maximum(v0, v1)
    r0 = np.ceil(vlo - 0.5)
    seg, within = ranges((np.ceil(vhi - 0.5) - r0).astype(np.int64))
    row = (r0[seg] + within).astype(np.int64)
    u = u0[seg] + (row + 0.5 - v0[seg]) * (u1[seg] - u0[seg]) / (v1[seg] - v0[seg])
    grid = seg_grid[seg]
    order = np.lexsort((u, row, grid))  # a closed ring crosses a row an even number of times
    u, row, grid = u[order], row[order], grid[order]
    first = np.clip(np.ceil(u[0::2] - 0.5), 0, nx).astype(np.int64)
    stop = np.clip(np.ceil(u[1::2] - 0.5), 0, nx).astype(np.int64)
    row, grid = row[0::2], grid[0::2]
    keep = first < stop
    start, end = row[keep] * (nx + 1) + first[keep], row[keep] * (nx + 1) + stop[keep]
    size, weight = ny * (nx + 1), grid[keep] + 1.0
    count = np.bincount(start, minlength=size) - np.bincount(end, minlength=size)
    ids = np.bincount(start, weight, size) - np.bincount(end, weight, size)
    count = np.cumsum(count.reshape(ny, nx + 1), axis=1)[:, :nx].ravel()
    ids = np.cumsum(ids.reshape(ny, nx + 1), axis=1)[:, :nx].ravel()
    return count, np.rint(ids).astype(np.int64) - 1


def _thick_spans(u0, v0, u1, v1, ru, rv, nx, ny):
    """The column spans the segments cover when grown by (ru, rv): (start, stop) cell indexes of
    the cell raster with one extra row, for a difference array summed down the rows."""
    umin, umax = np.minimum(u0, u1), np.maximum(u0, u1)
    k0 = np.ceil(umin - ru - 1)
    seg, within = ranges((np.floor(umax + ru) - k0 + 1).astype(np.int64))
    k = k0[seg] + within
    a, du = u0[seg], (u1 - u0)[seg]
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (k - ru - a) / du, (k + 1 + ru - a) / du
    flat = du == 0  # a vertical segment lies in every column its range spans
    tlo = np.where(flat, 0.0, np.maximum(np.minimum(ta, tb), 0.0))
    thi = np.where(flat, 1.0, np.minimum(np.maximum(ta, tb), 1.0))
    b, dv = v0[seg], (v1 - v0)[seg]
    va, vb = b + tlo * dv, b + thi * dv
    lo = np.clip(np.ceil(np.minimum(va, vb) - rv - 1), 0, ny).astype(np.int64)
    hi = np.clip(np.floor(np.maximum(va, vb) + rv) + 1, 0, ny).astype(np.int64)
    ok = (tlo <= thi) & (k >= 0) & (k < nx) & (lo < hi)
    col = k[ok].astype(np.int64)
    return lo[ok] * nx + col, hi[ok] * nx + col


def _thick_cover(u0, v0, u1, v1, ru, rv, nx, ny) -> np.ndarray:
    """Per cell, whether a segment meets the cell grown by (ru, rv) cell units on each side.

    Column by column: the part of each segment inside the column grown by ru spans rows
    [vmin - rv, vmax + rv]; the spans go into a difference array summed down the rows. Segments
    are taken in blocks so the temporaries stay small (a first touch of fresh memory is slow).
    """
    spans = [_thick_spans(u0[i:i + _BLOCK], v0[i:i + _BLOCK], u1[i:i + _BLOCK], v1[i:i + _BLOCK],
                          ru, rv, nx, ny) for i in range(0, len(u0), _BLOCK)]
    size = (ny + 1) * nx
    start = np.concatenate([np.zeros(0, np.int64)] + [a for a, _ in spans])
    stop = np.concatenate([np.zeros(0, np.int64)] + [b for _, b in spans])
    diff = (np.bincount(start, minlength=size) - np.bincount(stop, minlength=size)).astype(np.int32)
    return np.cumsum(diff.reshape(ny + 1, nx), axis=0)[:ny].ravel() > 0


class Raster:
    """The cells over the grids' bounds: owner per cell, candidates of mixed cells, near bits."""

    def __init__(self, geoms: np.ndarray, rank: np.ndarray, order: np.ndarray,
                 seg_xy: np.ndarray, seg_grid: np.ndarray):
        self.geoms, self.rank, self.order = geoms, rank, order
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        self.per_deg = np.array([111_320.0 * np.cos(np.radians((miny + maxy) / 2)), 110_574.0])
        self.extent = np.maximum([(maxx - minx) * self.per_deg[0],
                                  (maxy - miny) * self.per_deg[1]], 1e-3)
        self.max_lat = max(abs(miny), abs(maxy))
        cells = np.clip(_CELLS_PER_GRID * len(geoms), _MIN_CELLS, _MAX_CELLS)
        size_m = np.sqrt(self.extent[0] * self.extent[1] / cells)
        size_m = max(size_m, self.extent.max() / 8192)  # a long thin city still stays bounded
        self.cell = size_m / self.per_deg
        self.origin = np.array([minx, miny])
        self.nx, self.ny = (np.floor(self.extent / size_m) + 1).astype(int)
        self._build_owner(seg_xy, seg_grid)
        # The same doubles as plain floats, for :meth:`which_one` (float arithmetic on them is the
        # arithmetic numpy does on float64, so both paths pick the same cell).
        self._one = (float(self.origin[0]), float(self.origin[1]), float(self.cell[0]),
                     float(self.cell[1]), int(self.nx), int(self.ny))

    def _units(self, xy: np.ndarray, cell: np.ndarray):
        return (xy[:, 0] - self.origin[0]) / cell[0], (xy[:, 1] - self.origin[1]) / cell[1]

    def _build_owner(self, s: np.ndarray, seg_grid: np.ndarray) -> None:
        (u0, v0), (u1, v1) = self._units(s[:, :2], self.cell), self._units(s[:, 2:], self.cell)
        seg, touched = _touching(u0, v0, u1, v1, self.nx, self.ny)
        count, ids = _scanline(u0, v0, u1, v1, seg_grid, self.nx, self.ny)
        ncell = self.nx * self.ny
        boundary = np.bincount(touched, minlength=ncell) > 0
        self.owner = np.where(boundary | (count > 1), MIXED,
                              np.where(count == 1, ids, EMPTY)).astype(np.int32)
        # Candidates of mixed cells: the grids with an edge there, the one covering the centre, and
        # (overlaps only) every grid covering the centre.
        pair_cell, pair_grid = [touched], [seg_grid[seg]]
        one = np.flatnonzero(boundary & (count == 1))
        pair_cell.append(one), pair_grid.append(ids[one])
        many = np.flatnonzero(count > 1)
        if many.size:
            centre = self.origin + (np.column_stack([many % self.nx, many // self.nx]) + 0.5) * self.cell
            pt, g = shapely.STRtree(self.geoms).query(shapely.points(centre), "intersects")
            pair_cell.append(many[pt]), pair_grid.append(g)
        n = len(self.geoms)
        key = np.sort(np.concatenate(pair_cell) * n + self.rank[np.concatenate(pair_grid)])
        key = key[np.r_[True, key[1:] != key[:-1]]]
        self.cand_grid = self.order[key % n].astype(np.int32)
        self.cand_start = np.searchsorted(key // n, np.arange(ncell + 1)).astype(np.int64)

    def build_near(self, shared_xy: np.ndarray, near_m: float) -> None:
        """Mark the near cells (about near_m square) that come within near_m of a shared segment."""
        size_m = max(near_m, np.sqrt(self.extent[0] * self.extent[1] / _MAX_NEAR_CELLS), 1e-3)
        self.near_cell = size_m / self.per_deg
        self.near_nx, self.near_ny = (np.floor(self.extent / size_m) + 1).astype(int)
        # Metres per degree of longitude shrink towards the pole: measure reach at the widest latitude.
        m_per_cell = self.near_cell * [111_320.0 * np.cos(np.radians(min(self.max_lat, 89.9))),
                                       110_574.0]
        ru, rv = (near_m * _NEAR_SLACK + _NEAR_PAD_M) / m_per_cell
        (u0, v0) = self._units(shared_xy[:, :2], self.near_cell)
        (u1, v1) = self._units(shared_xy[:, 2:], self.near_cell)
        near = _thick_cover(u0, v0, u1, v1, ru, rv, self.near_nx, self.near_ny)
        self.near_bits = np.packbits(near, bitorder="little")

    def may_be_near(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """False where no shared segment comes within near_m of the point (True is only maybe)."""
        col = np.floor((x - self.origin[0]) / self.near_cell[0])
        row = np.floor((y - self.origin[1]) / self.near_cell[1])
        on = (col >= 0) & (col < self.near_nx) & (row >= 0) & (row < self.near_ny)
        cell = np.where(on, row * self.near_nx + col, 0).astype(np.int64)
        return on & ((self.near_bits[cell >> 3] >> (cell & 7).astype(np.uint8)) & 1).astype(bool)

    def which_one(self, x: float, y: float) -> int:
        """:meth:`which` for one point given as floats, without arrays: the same cell, the same
        candidates in the same order, the same answer (-1 for none)."""
        ox, oy, cx, cy, nx, ny = self._one
        col = math.floor((x - ox) / cx)
        row = math.floor((y - oy) / cy)
        if not (0 <= col < nx and 0 <= row < ny):
            return -1
        cell = row * nx + col
        owner = int(self.owner[cell])
        if owner != MIXED:
            return owner if owner >= 0 else -1
        geoms = self.geoms
        for g in self.cand_grid[int(self.cand_start[cell]):int(self.cand_start[cell + 1])].tolist():
            if shapely.intersects_xy(geoms[g], x, y):
                return g
        return -1

    def which(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The grid holding each WGS84 point under the shared-edge rule, -1 for none."""
        col = np.floor((x - self.origin[0]) / self.cell[0])
        row = np.floor((y - self.origin[1]) / self.cell[1])
        on = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        cell = np.where(on, row * self.nx + col, 0).astype(np.int64)
        out = np.where(on, self.owner[cell], EMPTY).astype(np.int64)
        todo = np.flatnonzero(out == MIXED)
        todo = todo[np.argsort(cell[todo], kind="stable")]  # neighbours together: warm caches
        out[out < 0] = -1
        start = self.cand_start[cell[todo]]
        count = self.cand_start[cell[todo] + 1] - start
        k = 0
        while todo.size:  # round k tests each point's k-th candidate, in code order
            cand = self.cand_grid[start + k]
            hit = shapely.intersects_xy(self.geoms[cand], x[todo], y[todo])
            out[todo[hit]] = cand[hit]
            k += 1
            left = ~hit & (count > k)
            todo, start, count = todo[left], start[left], count[left]
        return out
