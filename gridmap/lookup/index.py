"""The lookup index: build it over a boundary version, then locate points and shape the answers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gridmap.crs import WGS84, local_metric_crs
from gridmap.errors import EmptyLayer, FieldMissing, PointOutsideGrids
from gridmap.lookup.coords import to_wgs84_point, to_wgs84_points, transformer
from gridmap.lookup.edges import Edges, find_across, metric_segments, ring_segments
from gridmap.lookup.raster import Raster

#: The levels above a grid, bottom up, each found by the child's ``parent_code``.
CHAIN = ("community", "street", "district", "city")


@dataclass
class Located:
    """What :meth:`LookupIndex.locate` finds: one entry per point, indexes into the grid layer.

    ``grid`` is -1 for a point in no grid; then ``nearest``/``nearest_distance_m`` name the
    closest grid (else -1/NaN). ``neighbour`` is -1 unless ``near_boundary``. ``lon``/``lat`` are
    the WGS84 coordinates that were looked up. ``distance_to_edge_m`` is NaN for a point in no
    grid, and, when located with ``distances=False``, for a point no shared edge comes near.
    """

    lon: np.ndarray
    lat: np.ndarray
    grid: np.ndarray
    near_boundary: np.ndarray
    neighbour: np.ndarray
    neighbour_distance_m: np.ndarray
    distance_to_edge_m: np.ndarray
    nearest: np.ndarray
    nearest_distance_m: np.ndarray


class LookupIndex:
    """A point → grid index over one boundary version; build it with :meth:`build`."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @classmethod
    def build(cls, layers: dict[str, gpd.GeoDataFrame], *, version: int | None = None,
              near_m: float = 30.0) -> LookupIndex:
        """Index the ``grid`` layer (required) and the chain above it (optional levels).

        Parameters
        ----------
        layers : ``{"grid": …, "community": …, "street": …, "district": …, "city": …}``, any CRS;
            each with ``code`` (and ``name``, ``parent_code``; grids ``kind``, ``worker``).
        version : the boundary version that answers, echoed in :meth:`answer`.
        near_m : metres from a shared edge within which a point is ``near_boundary``.
        """
        if "grid" not in layers or len(layers["grid"]) == 0:
            raise EmptyLayer("a lookup needs a grid layer with at least one grid")
        grid = layers["grid"]
        if "code" not in grid.columns:
            raise FieldMissing("the grid layer has no code field; map one with --field code=…")
        if grid.crs is not None and not pyproj.CRS(grid.crs).equals(WGS84):
            grid = grid.to_crs(WGS84)
        geoms = np.asarray(grid.geometry.values, dtype=object)
        geoms = np.where(shapely.is_missing(geoms), shapely.Polygon(), geoms)
        codes = grid["code"].astype(str).to_numpy(dtype=object)
        order = np.argsort(codes, kind="stable")  # the shared-edge rule: lowest code first
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        attrs = {k: (grid[k].to_numpy(dtype=object) if k in grid.columns else
                     np.full(len(grid), None, dtype=object)) for k in ("name", "kind", "worker")}
        metric = local_metric_crs(geoms)
        to_metric = transformer(WGS84, metric)
        shapely.prepare(geoms)
        seg_xy, seg_grid = ring_segments(geoms)
        raster = Raster(geoms, rank, order, seg_xy, seg_grid)
        seg_m = metric_segments(seg_xy, to_metric)
        across, shared = find_across(seg_xy, seg_grid, seg_m, raster.which)
        raster.build_near(seg_xy[shared], near_m)
        return cls(codes=codes, attrs=attrs, geoms=geoms, rank=rank, order=order,
                   version=version, near_m=float(near_m), metric=metric, to_metric=to_metric,
                   chain=_chain(layers, grid), raster=raster,
                   edges=Edges(seg_m, seg_grid, len(geoms), across),
                   metric_tree=shapely.STRtree(shapely.transform(geoms, _xy_to(to_metric))))

    def __len__(self) -> int:
        return len(self.codes)

    def _which(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The grid holding each WGS84 point under the shared-edge rule, -1 for none."""
        return self.raster.which(x, y)

    def which(self, lon, lat, crs="wgs84") -> np.ndarray:
        """The grid of each point (an index into the grid layer, -1 for none) and nothing else:
        the fastest batch path, answering what a spatial join answers."""
        x, y = to_wgs84_points(lon, lat, crs)
        return self._which(x, y)

    def locate(self, lon, lat, crs="wgs84", *, distances: bool = True) -> Located:
        """Look up many points at once (vectorized); see :class:`Located` for what comes back.

        With ``distances=False`` the points that no shared edge comes within ``near_m`` of (the
        raster knows which) skip the distance pass: their ``distance_to_edge_m`` is NaN, and
        every other output is the same as with ``distances=True``.

        Raises
        ------
        CoordinatesOutOfRange
            NaN, inf or out-of-range coordinates, naming the first bad point.
        CRSUnknown
            For a `crs` nobody knows.
        """
        x, y = to_wgs84_points(lon, lat, crs)
        return self._locate(x, y, distances=distances)

    def _locate(self, x, y, *, distances: bool = True) -> Located:
        n = len(x)
        grid = self._which(x, y)
        measure = grid >= 0
        if not distances:
            measure[measure] = self.raster.may_be_near(x[measure], y[measure])
        edge, shared, across = np.full(n, np.nan), np.full(n, np.inf), np.full(n, -1, np.int64)
        m = np.flatnonzero(measure)
        mx, my = self.to_metric.transform(x[m], y[m])
        edge[m], shared[m], across[m] = self.edges.distances(mx, my, grid[m])
        near = shared <= self.near_m
        nearest, nearest_m = self._nearest(x, y, np.flatnonzero(grid < 0))
        return Located(x, y, grid, near, np.where(near, across, -1),
                       np.where(near, shared, np.nan), edge, nearest, nearest_m)

    def _nearest(self, x, y, out):
        """The closest grid to each point in `out` (lowest code among equals), and its distance."""
        nearest, nearest_m = np.full(len(x), -1, np.int64), np.full(len(x), np.nan)
        if out.size:
            mx, my = self.to_metric.transform(x[out], y[out])
            (pt, g), dist = self.metric_tree.query_nearest(
                shapely.points(mx, my), return_distance=True, all_matches=True)
            pick = np.lexsort((self.rank[g], pt))
            pts, first = np.unique(pt[pick], return_index=True)
            nearest[out[pts]], nearest_m[out[pts]] = g[pick[first]], dist[pick[first]]
        return nearest, nearest_m

    def grid_codes(self, idx) -> np.ndarray:
        """The codes of grid indexes (None for -1)."""
        idx = np.asarray(idx)
        return np.where(idx >= 0, self.codes[np.maximum(idx, 0)], None)

    def _label(self, g: int) -> str:
        name = self.attrs["name"][g]
        return f"{self.codes[g]} ({name})" if name is not None and not pd.isna(name) else self.codes[g]

    def _record(self, loc: Located, i: int) -> dict:
        g = int(loc.grid[i])
        out = {"grid": {"code": self.codes[g], **{k: _plain(v[g]) for k, v in self.attrs.items()}}}
        for level, (codes, names, idx) in self.chain.items():
            j = idx[g]
            out[level] = None if j < 0 else {"code": codes[j], "name": _plain(names[j])}
        h = int(loc.neighbour[i])
        edge = float(loc.distance_to_edge_m[i])
        out.update(version=self.version, near_boundary=bool(loc.near_boundary[i]),
                   neighbour=None if h < 0 else {"code": self.codes[h], "name": _plain(
                       self.attrs["name"][h]), "distance_m": round(float(loc.neighbour_distance_m[i]), 2)},
                   distance_to_edge_m=None if np.isnan(edge) else round(edge, 2),
                   lon=float(loc.lon[i]), lat=float(loc.lat[i]))
        return out

    def answer(self, lon: float, lat: float, crs="wgs84") -> dict:
        """The HTTP answer for one point: the grid, its chain, worker, version, boundary flags.

        The same answer as :meth:`records` gives for the point after :meth:`locate`, computed
        without arrays of length one (see :meth:`find`).

        Raises
        ------
        PointOutsideGrids
            The point is in no grid; ``nearest`` and ``distance_m`` name the closest grid.
        """
        found = self.find(lon, lat, crs)
        if found is None:
            loc = self.locate(lon, lat, crs)
            g, d = int(loc.nearest[0]), float(loc.nearest_distance_m[0])
            raise PointOutsideGrids(f"no grid at {float(lon):.4f}, {float(lat):.4f}; the nearest "
                                    f"is {self._label(g)}, {d:.1f} m away",
                                    nearest=self.codes[g], distance_m=round(d, 1))
        return found

    def find(self, lon: float, lat: float, crs="wgs84") -> dict | None:
        """:meth:`answer` for one point, or None when it is in no grid (without looking for the
        nearest one). The scalar path: plain-float range checks, the raster cell by integer
        arithmetic, one transformer call on floats, the distance pass over the grid's own row,
        and the grid's part of the answer from lists made once per index.

        Raises
        ------
        CoordinatesOutOfRange, CRSUnknown
            As :meth:`locate` raises them.
        """
        x, y = to_wgs84_point(lon, lat, crs)
        g = self.raster.which_one(x, y)
        if g < 0:
            return None
        plain = self.__dict__.get("_plain_lists") or self._make_plain_lists()
        codes, attrs, chain, names = plain
        mx, my = self.to_metric.transform(x, y)
        edge, shared, across = self.edges.distances_one(mx, my, g)
        grid = {"code": codes[g]}
        for key, values in attrs:
            grid[key] = values[g]
        out = {"grid": grid}
        for level, level_codes, level_names, idx in chain:
            j = idx[g]
            out[level] = None if j < 0 else {"code": level_codes[j], "name": level_names[j]}
        near = shared <= self.near_m
        out["version"] = self.version
        out["near_boundary"] = near
        out["neighbour"] = None if not near or across < 0 else {
            "code": codes[across], "name": names[across], "distance_m": round(shared, 2)}
        out["distance_to_edge_m"] = None if math.isnan(edge) else round(edge, 2)
        out["lon"] = x
        out["lat"] = y
        return out

    def _make_plain_lists(self):
        """The codes, attributes and chain as Python lists of plain values (as :func:`_plain`
        makes them), built on the first :meth:`find` and kept: indexing them is what an answer
        costs instead of numpy scalar indexing and ``pd.isna`` per field."""
        attrs = tuple((key, _plain_list(values)) for key, values in self.attrs.items())
        chain = tuple((level, codes.tolist(), _plain_list(names), idx.tolist())
                      for level, (codes, names, idx) in self.chain.items())
        names = dict(attrs)["name"]
        self._plain_lists = (self.codes.tolist(), attrs, chain, names)
        return self._plain_lists

    def records(self, loc: Located) -> list[dict]:
        """One answer per located point, as :meth:`answer` gives it (``distance_to_edge_m`` None
        where `loc` has none); a point in no grid gets
        ``{"grid": None, "nearest": {"code", "name", "distance_m"}, …}`` instead of an error."""
        out = []
        for i, g in enumerate(loc.grid):
            if g >= 0:
                out.append(self._record(loc, i))
                continue
            n = int(loc.nearest[i])
            nearest = None if n < 0 else {
                "code": self.codes[n], "name": _plain(self.attrs["name"][n]),
                "distance_m": round(float(loc.nearest_distance_m[i]), 1)}
            out.append({"grid": None, "nearest": nearest, "version": self.version,
                        "lon": float(loc.lon[i]), "lat": float(loc.lat[i])})
        return out

    def answer_many(self, lon, lat, crs="wgs84") -> list[dict | None]:
        """:meth:`answer` for many points: a dict each, None for a point in no grid."""
        loc = self.locate(lon, lat, crs)
        return [self._record(loc, i) if loc.grid[i] >= 0 else None for i in range(len(loc.grid))]


def _xy_to(to_metric: pyproj.Transformer):
    return lambda xy: np.column_stack(to_metric.transform(xy[:, 0], xy[:, 1]))


def _plain_list(values: np.ndarray) -> list:
    return [v if type(v) is str else _plain(v) for v in values.tolist()]


def _plain(value):
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else (
        value.item() if hasattr(value, "item") else value)


def _chain(layers: dict[str, gpd.GeoDataFrame], grid: gpd.GeoDataFrame) -> dict:
    """Per level above the grid: (codes, names, index of each grid's ancestor or -1)."""
    parents = (grid["parent_code"].astype("string").to_numpy(dtype=object)
               if "parent_code" in grid.columns else np.full(len(grid), None, dtype=object))
    below = np.arange(len(grid))
    chain = {}
    for level in CHAIN:
        frame = layers.get(level)
        if frame is None or "code" not in frame.columns or len(frame) == 0:
            break  # the chain stops at the first level the store does not hold
        codes = frame["code"].astype(str).to_numpy(dtype=object)
        names = (frame["name"].to_numpy(dtype=object) if "name" in frame.columns
                 else np.full(len(frame), None, dtype=object))
        known = pd.Index(codes)
        first = np.flatnonzero(~known.duplicated())
        pos = known[first].get_indexer(pd.Index(parents, dtype=object))
        pos = np.where(pos >= 0, first[np.maximum(pos, 0)], -1)
        below = np.where(below >= 0, pos[np.maximum(below, 0)], -1)
        chain[level] = (codes, names, below)
        parents = (frame["parent_code"].astype("string").to_numpy(dtype=object)
                   if "parent_code" in frame.columns else np.full(len(frame), None, dtype=object))
    return chain
