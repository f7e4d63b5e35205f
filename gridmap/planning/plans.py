"""One planner operation on one community, as the service and the CLI apply it to a plan.

A plan is a draft version (:mod:`gridmap.store`): every operation reads the community's grids and
buildings from the plan (or from the active version when there is no plan yet), applies one of
the library's edits, and hands back the whole grid and building layers with the community's part
replaced, the validation of the community afterwards, and the impact against the active version.
Nothing here touches a store: :func:`apply_operation` takes layers and returns layers.

Operations (``op`` and its fields, geometry as GeoJSON in ``crs``):

=============  ==========================================================================
``reshape``    ``grid``, ``geometry`` (Polygon): the grid's new boundary; neighbours adjust
``split``      ``grid``, ``line`` (LineString): split along a drawn line
``split_k``    ``grid``, ``k``: split into k parts of about equal households
``merge``      ``grids`` (codes), optional ``keep``: merge neighbours into one grid
``move``       ``buildings`` (codes), ``to``: move buildings to a neighbouring grid
``rebalance``  ``grids``: bring these grids and their neighbours back into the household band
``partition``  optional ``target``, ``tolerance``: redraw the whole community; codes carried over
``repair``     optional ``max_change``: fill gaps, remove overlaps, inside the community
``renumber``   renumber the community's grids west→east, north→south
=============  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.crs import WGS84, shift_geometries
from gridmap.errors import InputError, NotFound

__all__ = ["OPERATIONS", "PlanStep", "UnknownOperation", "apply_operation", "community_part",
           "drawn_geometry"]

OPERATIONS = ("reshape", "split", "split_k", "merge", "move", "rebalance", "partition", "repair",
              "renumber")


class UnknownOperation(InputError):
    """An operation name or field the planner does not know."""


class CommunityNotFound(NotFound):
    """No community with the code asked for."""


@dataclass
class PlanStep:
    """An operation's outcome: the whole layers, the community's grids, and what it said."""

    unit: str
    op: str
    grids: gpd.GeoDataFrame  # the whole grid layer after the operation
    buildings: gpd.GeoDataFrame  # the whole building layer (parent_code updated)
    community_grids: gpd.GeoDataFrame
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # operation-specific: moved, refused, report…


def drawn_geometry(value, kind: str, crs: str = "wgs84"):
    """A geometry a planner drew (GeoJSON dict), checked and back in WGS84."""
    if not isinstance(value, dict):
        raise UnknownOperation(f"{kind} must be a GeoJSON {kind} object")
    try:
        geom = shapely.from_geojson(__import__("json").dumps(value))
    except (shapely.errors.GEOSException, ValueError) as exc:
        raise InputError(f"drawn {kind} is not valid GeoJSON: {str(exc).splitlines()[0]}") from None
    if geom.geom_type != kind:
        raise InputError(f"drawn geometry is a {geom.geom_type}, expected a {kind}")
    if geom.is_empty:
        raise InputError(f"drawn {kind} is empty")
    xs, ys = shapely.get_coordinates(geom).T
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()) or np.abs(xs).max() > 180 \
            or np.abs(ys).max() > 90:
        raise InputError(f"drawn {kind} has coordinates outside lon/lat range")
    if crs.lower() == "gcj02":
        geom = shift_geometries(np.array([geom], dtype=object), "gcj02", inverse=True)[0]
    elif crs.lower() not in ("wgs84", "epsg:4326"):
        raise InputError(f"crs must be wgs84 or gcj02, not {crs!r}")
    if kind == "Polygon" and not geom.is_valid:
        raise InputError(f"drawn polygon is not valid: {shapely.is_valid_reason(geom)}")
    return geom


def community_part(layers: dict[str, gpd.GeoDataFrame], unit: str):
    """The community row, its grids and its buildings (positions in the whole layers)."""
    communities = layers["community"]
    row = communities[communities["code"].astype(str) == unit]
    if row.empty:
        raise CommunityNotFound(f"no community with code {unit}")
    grids = layers["grid"]
    mine = _grids_of(grids, unit)
    buildings = layers.get("building")
    if buildings is None or buildings.empty:
        return row, mine, np.array([], dtype=int)
    codes = set(grids["code"].astype(str).iloc[mine])
    if "parent_code" in buildings.columns and buildings["parent_code"].notna().any():
        held = np.flatnonzero(buildings["parent_code"].astype(str).isin(codes).to_numpy())
    else:
        inside = buildings.representative_point().within(row.geometry.iloc[0])
        held = np.flatnonzero(inside.to_numpy())
    return row, mine, held


def _grids_of(grids: gpd.GeoDataFrame, unit: str) -> np.ndarray:
    if "parent_code" in grids.columns and grids["parent_code"].notna().any():
        return np.flatnonzero((grids["parent_code"].astype(str) == unit).to_numpy())
    return np.flatnonzero(grids["code"].astype(str).str.startswith(unit).to_numpy())


def apply_operation(layers: dict[str, gpd.GeoDataFrame], unit: str, operation: dict, *,
                    crs: str = "wgs84", options=None, retired=frozenset()) -> PlanStep:
    """Apply one planner ``operation`` to community ``unit`` of ``layers`` (see the module doc)."""
    op = operation.get("op")
    if op not in OPERATIONS:
        raise UnknownOperation(f"unknown operation {op!r}; known: {', '.join(OPERATIONS)}")
    community, mine, held = community_part(layers, unit)
    grids = layers["grid"].iloc[mine].reset_index(drop=True)
    buildings = (layers["building"].iloc[held].reset_index(drop=True)
                 if len(held) else None)
    step = _APPLY[op](grids, buildings, community, operation, crs=crs, options=options,
                      retired=retired)
    new_grids, new_buildings, notes, details = step
    new_grids = _with_parent(new_grids, unit)
    whole = _replace(layers["grid"], mine, new_grids)
    whole_buildings = layers.get("building")
    if new_buildings is not None and len(held):
        whole_buildings = _replace(whole_buildings, held, new_buildings)
    return PlanStep(unit=unit, op=op, grids=whole, buildings=whole_buildings,
                    community_grids=new_grids, notes=list(notes), details=details)


def _with_parent(grids: gpd.GeoDataFrame, unit: str) -> gpd.GeoDataFrame:
    out = grids.to_crs(WGS84) if grids.crs is not None else grids.set_crs(WGS84)
    out = out.copy()
    out["parent_code"] = unit
    return out


def _replace(whole: gpd.GeoDataFrame, rows: np.ndarray, part: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    keep = whole.drop(whole.index[rows])
    part = part.to_crs(whole.crs) if part.crs is not None and whole.crs is not None else part
    columns = [c for c in whole.columns if c in part.columns]
    merged = pd.concat([keep, part[columns]], ignore_index=True)
    return gpd.GeoDataFrame(merged, geometry=whole.geometry.name, crs=whole.crs)


def _need(operation: dict, name: str):
    if name not in operation or operation[name] in (None, "", []):
        raise UnknownOperation(f"operation {operation.get('op')} needs {name!r}")
    return operation[name]


def _edit(result):
    details = {"added": result.added, "removed": result.removed, "changed": result.changed,
               "moved": {k: list(v) for k, v in result.moved.items()}}
    return result.grids, result.buildings, result.notes, details


def _reshape(grids, buildings, community, op, *, crs, **_):
    from gridmap.planning.edit import replace_boundary

    polygon = drawn_geometry(_need(op, "geometry"), "Polygon", crs)
    return _edit(replace_boundary(grids, str(_need(op, "grid")), polygon, buildings, community))


def _split(grids, buildings, community, op, *, crs, retired, **_):
    from gridmap.planning.edit import split_grid

    line = drawn_geometry(_need(op, "line"), "LineString", crs)
    return _edit(split_grid(grids, str(_need(op, "grid")), line, buildings, retired=retired))


def _split_k(grids, buildings, community, op, *, retired, **_):
    from gridmap.planning.edit import split_balanced

    k = _need(op, "k")
    if not isinstance(k, int) or not 2 <= k <= 20:
        raise UnknownOperation("k must be a whole number from 2 to 20")
    return _edit(split_balanced(grids, str(_need(op, "grid")), k, buildings, retired=retired))


def _merge(grids, buildings, community, op, **_):
    from gridmap.planning.edit import merge_grids

    return _edit(merge_grids(grids, [str(c) for c in _need(op, "grids")], buildings,
                             keep=op.get("keep")))


def _move(grids, buildings, community, op, **_):
    from gridmap.planning.edit import move_buildings

    if buildings is None:
        raise InputError("the community has no buildings to move")
    return _edit(move_buildings(grids, buildings, [str(c) for c in _need(op, "buildings")],
                                str(_need(op, "to"))))


def _rebalance(grids, buildings, community, op, *, options, **_):
    from gridmap.planning.rebalance import rebalance

    if buildings is None:
        raise InputError("the community has no buildings to rebalance")
    result = rebalance(grids, buildings, [str(c) for c in _need(op, "grids")], community, options)
    details = {"moved": {k: list(v) for k, v in result.moved.items()},
               "unresolved": result.unresolved, "minimal": result.minimal}
    notes = [f"grid {c}: {why}" for c, why in result.unresolved.items()]
    return result.grids, result.buildings, notes, details


def _partition(grids, buildings, community, op, *, options, retired, **_):
    from gridmap.planning.partition import partition_community
    from gridmap.planning.renumber import carry_codes

    if buildings is None:
        raise InputError("the community has no buildings to partition by")
    drawn = partition_community(community, buildings, target=op.get("target"),
                                tolerance=op.get("tolerance"), options=options)
    carried = carry_codes(grids, drawn.grids, buildings, retired=retired)
    new = carried.grids
    from gridmap.planning.impact import grid_of_points

    points = shapely.point_on_surface(np.asarray(buildings.geometry.values, dtype=object))
    at = grid_of_points(new, points)
    moved_buildings = buildings.copy()
    moved_buildings["parent_code"] = np.where(at >= 0, new["code"].astype(str).to_numpy()[
        np.maximum(at, 0)], None)
    details = {"report": drawn.report.to_dict(), "carried": sorted(carried.carried),
               "issued": carried.issued, "retired": sorted(carried.retired)}
    return new, moved_buildings, drawn.report.lines(), details


def _repair(grids, buildings, community, op, **_):
    from gridmap.planning.repair import repair_coverage

    result = repair_coverage(grids, community, buildings,
                             max_change=float(op.get("max_change", 0.05)))
    return result.grids, None, result.notes, {"fixed": result.fixed, "refused": result.refused}


def _renumber(grids, buildings, community, op, **_):
    from gridmap.planning.renumber import renumber_grids

    new, mapping = renumber_grids(grids)
    changed = {old: code for old, code in mapping.items() if old != code}
    moved = None
    if buildings is not None and "parent_code" in buildings.columns:
        moved = buildings.copy()
        moved["parent_code"] = moved["parent_code"].map(lambda c: mapping.get(str(c), c))
    return new, moved, [], {"renumbered": changed}


_APPLY = {"reshape": _reshape, "split": _split, "split_k": _split_k, "merge": _merge,
          "move": _move, "rebalance": _rebalance, "partition": _partition, "repair": _repair,
          "renumber": _renumber}
