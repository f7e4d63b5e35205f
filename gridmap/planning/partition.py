"""Auto-partition (划实划小网格单元): draw the grids of one community or village.

>>> from gridmap.planning.partition_synth import make_community
>>> com = make_community(300, seed=2)
>>> grids, report = partition_community(com.parent, com.buildings, barriers=com.barriers)
>>> grids["code"].iat[0], int(grids["households"].sum()) == int(com.buildings["households"].sum())
('141002004003001', True)

The grids tile the parent exactly and never split a building, by construction (see
:mod:`gridmap.planning.partition_faces`); they follow the barriers, stay contiguous and compact,
and hold ``target ± tolerance`` households where the buildings allow it
(:mod:`gridmap.planning.partition_graph`). Dedicated sites (专属网格: a hospital, a school, a mall)
become grids of their own, exempt from the household rule. The report says which grids fall
outside the band and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gridmap.config import ValidationOptions
from gridmap.coverage import union_by_group
from gridmap.crs import local_metric_crs
from gridmap.errors import EmptyLayer, FieldMissing, InputError, NotPolygons
from gridmap.planning import partition_faces as pf
from gridmap.planning import partition_graph as pg
from gridmap.planning.partition_build import (
    Plan,
    anchor_faces,
    face_graph,
    merge_overlapping,
    merge_regions,
    region_grids,
    repair_contiguity,
)

__all__ = ["Partition", "PartitionReport", "partition_community", "reading_order"]

_M_PER_DEG_LAT = 110_900.0  # roughly; only the refinement's step size, not its fixed point
_REFINE = 3


@dataclass
class PartitionReport:
    """What the partition did: grids made, how many hold the band, and why the others do not."""

    target: float
    tolerance: float
    households: int
    grids: int
    dedicated: int
    in_band: int
    outside: list[dict] = field(default_factory=list)  # {"code", "households", "reason"}
    notes: list[str] = field(default_factory=list)

    @property
    def basic(self) -> int:
        return self.grids - self.dedicated

    def to_dict(self) -> dict:
        return {"target": self.target, "tolerance": self.tolerance,
                "households": self.households, "grids": self.grids,
                "dedicated": self.dedicated, "in_band": self.in_band,
                "outside": self.outside, "notes": self.notes}

    def lines(self) -> list[str]:
        """The report as readable lines, for the command line."""
        out = [(f"{self.grids} grids ({self.dedicated} dedicated) for {self.households:,} "
               f"households; {self.in_band} of {self.basic} basic grids hold "
               f"{self.target:g} ± {self.tolerance:g}")]
        out += [f"grid {o['code']}: {o['households']:g} households — {o['reason']}"
                for o in self.outside]
        return out + [f"note: {n}" for n in self.notes]


class Partition(NamedTuple):
    grids: gpd.GeoDataFrame
    report: PartitionReport


def partition_community(parent, buildings: gpd.GeoDataFrame, *, target: float | None = None,
                        tolerance: float | None = None, rural: bool | None = None,
                        barriers=None, dedicated=None, parent_code: str | None = None,
                        parent_name: str | None = None, drop_outside: bool = False,
                        options: ValidationOptions | None = None) -> Partition:
    """Draw the grids of one community: exact cover, whole buildings, balanced households.

    Parameters
    ----------
    parent : the community or village: a one-row GeoDataFrame (``code``, ``name``, ``kind`` are
        used when present) or a shapely polygon in WGS84.
    buildings : footprints (or address points) with ``households``.
    target, tolerance : households per grid; default 200 ± 50 urban, 50 ± 15 rural (settings).
    rural : use the rural band; default: the parent's ``kind`` is ``rural``.
    barriers : roads, walls, rivers (lines or polygons) that grids should not cross.
    dedicated : sites (polygons, optional ``name``) that become dedicated grids (专属网格).
    parent_code, parent_name : override the parent's code (12 digits) and name.
    drop_outside : ignore buildings wholly outside the parent instead of refusing them.

    Returns
    -------
    Partition(grids, report): grids in EPSG:4326 with ``code``, ``name``, ``kind``,
    ``households``, ``parent_code``; the :class:`PartitionReport`.
    """
    geom, code, name, kind = _parent(parent)
    code, name = parent_code or code, parent_name or name or "网格"
    opts = options or ValidationOptions()
    is_rural = (kind == "rural") if rural is None else rural
    default = opts.rural if is_rural else opts.urban
    band = pg.Band(target=float(default.target if target is None else target),
                   tolerance=float(default.tolerance if tolerance is None else tolerance))
    if band.target <= 0 or band.tolerance < 0 or band.tolerance >= band.target:
        raise InputError(f"target {band.target:g} ± {band.tolerance:g}: need a positive target "
                         "and a tolerance below it")
    # The local equal-area CRS the validator uses too: a vertex put on the parent's edge here is
    # on it there (a straight edge in one projection bends by centimetres in another).
    crs = local_metric_crs(np.array([geom], dtype=object))
    parent_m = shapely.make_valid(gpd.GeoSeries([geom], crs=4326).to_crs(crs).iat[0])
    bld, hh, notes = _buildings(buildings, parent_m, crs, drop_outside)
    sites, site_names = _sites(dedicated, parent_m, crs, notes)
    walls = _barriers(barriers, crs)
    plan = _plan(parent_m, bld, hh, sites, walls, band, notes)
    grids = _frame(plan, crs, code, name, site_names)
    report = _report(plan, grids, band, notes)
    return Partition(grids, report)


# -- inputs -------------------------------------------------------------------------------------


def _parent(parent):
    code = name = kind = None
    if isinstance(parent, (gpd.GeoDataFrame, gpd.GeoSeries)):
        if len(parent) == 0:
            raise EmptyLayer("the parent layer has no features")
        if len(parent) > 1:
            raise InputError(f"the parent layer has {len(parent)} features; give one community "
                             "(choose it by code)")
        frame = parent if isinstance(parent, gpd.GeoDataFrame) else gpd.GeoDataFrame(geometry=parent)
        if frame.crs is None:
            raise InputError("the parent layer has no CRS")
        row = frame.to_crs(4326).iloc[0]
        code = _text(row.get("code"))
        name, kind = _text(row.get("name")), _text(row.get("kind"))
        geom = frame.to_crs(4326).geometry.iat[0]
    else:
        geom = parent
    if not isinstance(geom, shapely.Geometry) or geom.is_empty:
        raise NotPolygons("the parent is empty or not a geometry; give a community polygon")
    if shapely.get_dimensions(geom) != 2:
        raise NotPolygons(f"the parent is a {geom.geom_type}; give a community polygon")
    return geom, code, name, kind


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _buildings(buildings, parent_m, crs, drop_outside: bool):
    if buildings is None or len(buildings) == 0:
        raise EmptyLayer("no buildings: the partition needs buildings (or address points) "
                         "with households")
    if not isinstance(buildings, gpd.GeoDataFrame):
        raise InputError("the buildings must be a layer (GeoDataFrame) with a households field")
    if "households" not in buildings.columns:
        raise FieldMissing("the buildings have no households field (map one with "
                           "--field households=THEIRS)")
    if buildings.crs is None:
        raise InputError("the buildings have no CRS")
    hh = pd.to_numeric(buildings["households"], errors="coerce")
    if hh.isna().any() or (hh < 0).any():
        i = int(np.flatnonzero((hh.isna() | (hh < 0)).to_numpy())[0])
        raise InputError(f"building {_label(buildings, i)} has households "
                         f"{buildings['households'].iat[i]!r}: need a number ≥ 0")
    geoms = shapely.make_valid(np.asarray(buildings.to_crs(crs).geometry.values, dtype=object))
    if (shapely.is_missing(geoms) | shapely.is_empty(geoms)).any():
        raise InputError("some buildings have empty geometries")
    if (shapely.get_dimensions(geoms) == 1).any():
        raise NotPolygons("the buildings are lines; give footprints or address points")
    shapely.prepare(parent_m)
    inside = shapely.intersects(parent_m, geoms)
    notes: list[str] = []
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        if not drop_outside or not inside.any():
            raise InputError(f"{(~inside).sum()} of {len(geoms)} buildings lie outside the "
                             f"parent (e.g. building {_label(buildings, i)}): wrong community or "
                             "CRS? (--drop-outside ignores them)")
        notes.append(f"{(~inside).sum()} buildings outside the parent were ignored")
    geoms, values = geoms[inside], hh.to_numpy(dtype=float)[inside]
    polygonal = shapely.get_dimensions(geoms) == 2
    clipped = np.where(polygonal, shapely.intersection(geoms, parent_m), geoms)
    sticking = polygonal & (shapely.area(clipped) < shapely.area(geoms) - 0.01)
    if sticking.any():
        notes.append(f"{sticking.sum()} buildings reach outside the parent: only the part "
                     "inside was used")
    clipped = np.array([shapely.union_all(shapely.get_parts(g)[shapely.get_dimensions(
        shapely.get_parts(g)) == 2]) if p and shapely.get_type_id(g) == 7 else g
        for g, p in zip(clipped, polygonal)], dtype=object)
    return clipped, values, notes


def _label(frame, i: int) -> str:
    return str(frame["code"].iat[i]) if "code" in frame.columns else f"#{i + 1}"


def _sites(dedicated, parent_m, crs, notes):
    if dedicated is None or len(dedicated) == 0:
        return np.empty(0, dtype=object), []
    if dedicated.crs is None:
        raise InputError("the dedicated sites have no CRS")
    geoms = shapely.make_valid(np.asarray(dedicated.to_crs(crs).geometry.values, dtype=object))
    if (shapely.get_dimensions(geoms) != 2).any():
        raise NotPolygons("dedicated sites must be polygons (a hospital's, a school's grounds)")
    names = [_text(v) for v in dedicated["name"]] if "name" in dedicated.columns \
        else [None] * len(geoms)
    out, kept, taken = [], [], shapely.Polygon()
    for i, g in enumerate(shapely.intersection(geoms, parent_m)):
        g = shapely.difference(g, taken)
        if shapely.area(g) < 1.0:
            notes.append(f"dedicated site {names[i] or i + 1} lies outside the parent or inside "
                         "another site: skipped")
            continue
        out.append(g)
        kept.append(names[i])
        taken = shapely.union(taken, g)
    return np.array(out, dtype=object), kept


def _barriers(barriers, crs) -> np.ndarray:
    if barriers is None or len(barriers) == 0:
        return np.empty(0, dtype=object)
    if barriers.crs is None:
        raise InputError("the barriers have no CRS")
    geoms = np.asarray(barriers.to_crs(crs).geometry.values, dtype=object)
    geoms = shapely.make_valid(geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))])
    parts = shapely.get_parts(geoms)
    return parts[shapely.get_dimensions(parts) >= 1]


# -- the plan -----------------------------------------------------------------------------------


def _plan(parent_m, bld, hh, sites, walls, band: pg.Band, notes: list[str]) -> Plan:
    units, unit_of, unit_hh = merge_overlapping(bld, hh, notes)
    unit_site, site_share = pf.assign_to(units, sites)
    unit_site[site_share <= 0.5] = -1
    remainder = shapely.difference(parent_m, shapely.union_all(sites)) if len(sites) else parent_m
    blocks = pf.split_blocks(remainder, walls)
    unit_block, block_share = pf.assign_to(units, blocks)
    unit_block[unit_site >= 0] = -1
    orphan = (unit_block < 0) & (unit_site < 0)
    if orphan.any():  # a building in a sliver no block kept: it goes with its largest site
        unit_site[orphan] = pf.assign_to(units[orphan], sites)[0]
    crossing = int(((unit_block >= 0) & (block_share < 0.98)).sum())
    if crossing and len(walls):
        notes.append(f"{crossing} buildings cross a barrier or a site's edge: each stays whole, "
                     "in the grid of the block holding most of it")
    faces = pf.build_faces(parent_m, units, unit_block, blocks, sites)
    anchor = anchor_faces(faces, units)
    graph, node_of_face, unit_node = face_graph(faces, units, unit_hh, unit_block, unit_site,
                                               band.target, band.tolerance, anchor)
    region, merged = merge_regions(graph, band)
    notes += merged
    grid = np.zeros(len(graph.weight), dtype=np.intp)
    n = 0
    for r in range(int(region.max()) + 1 if len(region) else 0):
        members = np.flatnonzero(region == r)
        big = graph.big[members]
        k = region_grids(graph.weight[members][~big].sum(), int(big.sum()), band)
        for group in pg.bisect_region(graph, members, k, band):
            grid[group] = n
            n += 1
    grid = pg.rebalance(graph, grid, region, band)
    n = int(grid.max()) + 1 if len(grid) else 0
    face_grid = np.where(node_of_face >= 0, grid[np.maximum(node_of_face, 0)], -1)
    face_grid = np.where(faces.site >= 0, n + faces.site, face_grid)
    weight = np.bincount(anchor, weights=unit_hh, minlength=len(faces.geoms))
    face_grid, repaired = repair_contiguity(faces, face_grid, weight, fixed_from=n)
    if repaired:
        notes.append(f"{repaired} detached pieces of ground were given to the neighbouring grid "
                     "they share most boundary with")
    return Plan(faces=faces, face_grid=face_grid, n_basic=n, n_sites=len(sites), units=units,
                unit_hh=unit_hh, unit_of=unit_of, anchor=anchor, region=region, graph=graph,
                node_of_face=node_of_face, band=band, unit_node=unit_node)


# -- the result ---------------------------------------------------------------------------------


def _frame(plan: Plan, crs, code, name, site_names) -> gpd.GeoDataFrame:
    total = plan.n_basic + plan.n_sites
    geoms = union_by_group(plan.faces.geoms, plan.face_grid, total)
    hh = np.bincount(plan.face_grid[plan.anchor], weights=plan.unit_hh, minlength=total)
    used = np.flatnonzero([g is not None and not g.is_empty for g in geoms])
    plan.used = used
    dedicated = used >= plan.n_basic
    rep = shapely.point_on_surface(geoms[used])
    size = np.sqrt(np.median(shapely.area(geoms[used]))) if len(used) else 1.0
    order = reading_order(shapely.get_coordinates(rep), size)
    used, dedicated, keep = used[order], dedicated[order], geoms[used][order]
    serial = [f"{i + 1:03d}" for i in range(len(used))]
    codes = [f"{code}{s}" if code else s for s in serial]
    names = [f"{name}{site_names[g - plan.n_basic] or ''}专属网格" if d else f"{name}第{i + 1}网格"
             for i, (g, d) in enumerate(zip(used, dedicated))]
    plan.code_of = dict(zip(used.tolist(), codes))
    return gpd.GeoDataFrame({
        "code": codes, "name": names,
        "kind": np.where(dedicated, "dedicated", "basic").astype(object),
        "households": np.round(hh[used]).astype(np.int64),
        "parent_code": [code] * len(used),
    }, geometry=_to_lonlat(keep, crs), crs=4326)


def _to_lonlat(geoms: np.ndarray, crs) -> np.ndarray:
    """Metric → WGS84, refined until going forward again lands within a nanometre.

    PROJ's ellipsoidal LAEA inverse is about 1 mm off in latitude: enough for a validator
    (which projects forward only) to see millimetre slivers along the parent's edges.
    """
    forward = pyproj.Transformer.from_crs(4326, crs, always_xy=True)
    inverse = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)

    def convert(xy):
        lon, lat = inverse.transform(xy[:, 0], xy[:, 1])
        for _ in range(_REFINE):
            fx, fy = forward.transform(lon, lat)
            lon = lon - (fx - xy[:, 0]) / (_M_PER_DEG_LAT * np.cos(np.radians(lat)) * 1.0034)
            lat = lat - (fy - xy[:, 1]) / _M_PER_DEG_LAT
        return np.c_[lon, lat]

    return shapely.transform(np.asarray(geoms, dtype=object), convert)


def reading_order(xy: np.ndarray, size: float) -> np.ndarray:
    """Order of points west→east within rows, rows north→south (统一赋码编号).

    A row is every point less than half a grid (``size`` metres) below the northernmost point
    not yet numbered: rows follow the grids instead of a fixed lattice whose lines could fall
    between two grids side by side.
    """
    left = np.argsort(-xy[:, 1], kind="stable") if len(xy) else np.zeros(0, dtype=np.intp)
    order = []
    while len(left):
        row = xy[left, 1] > xy[left[0], 1] - size / 2
        order.extend(left[row][np.argsort(xy[left[row], 0], kind="stable")].tolist())
        left = left[~row]
    return np.array(order, dtype=np.intp)


def _report(plan: Plan, grids: gpd.GeoDataFrame, band: pg.Band, notes) -> PartitionReport:
    basic = grids[grids["kind"] == "basic"]
    hh = basic["households"].to_numpy(dtype=float)
    inside = (hh >= band.low) & (hh <= band.high)
    reasons = plan.reasons()
    outside = [{"code": c, "households": float(h), "reason": reasons.get(c, "")}
               for c, h in zip(basic["code"][~inside], hh[~inside])]
    return PartitionReport(band.target, band.tolerance, round(plan.unit_hh.sum()),
                           len(grids), int((grids["kind"] == "dedicated").sum()),
                           int(inside.sum()), outside, notes)
