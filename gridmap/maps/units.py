"""The unit a page is about (city, district, street or community, chosen by code) and what is in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd

from gridmap.errors import InputError, NotFound
from gridmap.incidents import OPEN as _OPEN_STATES

UNIT_LEVELS = ("city", "district", "street", "community")
_BELOW = ("district", "street", "community", "grid", "building")
#: Incident statuses still waiting for someone, from the workflow itself (reopened included).
OPEN = tuple(sorted(status.value for status in _OPEN_STATES))


class UnitNotFound(NotFound):
    """No city, district, street or community has the code asked for."""


class UnitTooLarge(InputError):
    """More grids than one page can draw: choose a smaller unit."""

    status = 422


@dataclass
class Unit:
    code: str
    name: str
    level: str
    outline: gpd.GeoDataFrame
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)  # the levels below it

    @property
    def grids(self) -> gpd.GeoDataFrame:
        return self.layers["grid"]

    @property
    def communities(self) -> gpd.GeoDataFrame | None:
        """The communities of the unit (the unit itself when it is one): their kind sets the
        household target of their grids."""
        return self.outline if self.level == "community" else self.layers.get("community")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})" if self.name else self.code

    @property
    def bounds(self):
        return tuple(self.outline.total_bounds)


def unit_not_found(code: str, levels=UNIT_LEVELS) -> UnitNotFound:
    """The error for a unit code nobody has (also what a key sees for a unit outside its own)."""
    return UnitNotFound(f"no unit has the code {str(code).strip()!r} (looked in: "
                        f"{', '.join(levels)})")


def select_unit(layers: dict[str, gpd.GeoDataFrame], code: str, *, max_grids: int | None = None) -> Unit:
    """The unit with ``code`` and every feature below it, found down the ``parent_code`` chain
    (or, in a layer without parent codes, by the code prefix: codes are hierarchical).

    Raises UnitNotFound for an unknown code, UnitTooLarge beyond ``max_grids`` grids.
    """
    code = str(code).strip()
    level = next((lv for lv in UNIT_LEVELS if lv in layers and len(layers[lv])
                  and (layers[lv]["code"].astype(str) == code).any()), None)
    if level is None:
        raise unit_not_found(code, [lv for lv in UNIT_LEVELS if lv in layers])
    row = layers[level][layers[level]["code"].astype(str) == code]
    unit = Unit(code, str(row["name"].iloc[0]) if "name" in row.columns else "", level, row)
    wanted = {code}
    for lower in _BELOW[_BELOW.index(level) + 1 if level != "city" else 0:]:
        frame = layers.get(lower)
        if frame is None:
            continue
        if "parent_code" in frame.columns and frame["parent_code"].notna().any():
            picked = frame[frame["parent_code"].astype(str).isin(wanted)]
        else:
            picked = frame[frame["code"].astype(str).str.startswith(code)]
        unit.layers[lower] = picked
        wanted = set(picked["code"].astype(str))
    unit.layers.setdefault("grid", _empty(layers))
    if max_grids is not None and len(unit.grids) > max_grids:
        raise UnitTooLarge(f"{unit.label} has {len(unit.grids):,} grids, more than the "
                           f"{max_grids:,} one map draws; choose one of its streets or communities")
    return unit


def _empty(layers) -> gpd.GeoDataFrame:
    grid = layers.get("grid")
    if grid is not None:
        return grid.iloc[:0]
    return gpd.GeoDataFrame({"code": []}, geometry=gpd.GeoSeries([], crs=4326))


def read_points(kind: str, source=None, *, bbox=None) -> gpd.GeoDataFrame:
    """Service stations (``station``) or incident reports (``incident``), WGS84.

    ``source`` is a store (:class:`gridmap.store.base.Store`: what the service and ``gridmap map``
    use), or a GeoPackage with ``station``/``incident`` layers (default: the demo file). From a
    store, incidents come with ``id``, ``category``, ``description``, ``reported_at``,
    ``status``, ``level``, ``deadline``, ``grid_code`` and ``worker``; ``bbox`` (lon/lat) keeps
    those inside it.
    """
    if isinstance(source, dict):  # frames read already (from a store that is closed now)
        return source.get(kind, gpd.GeoDataFrame({"code": []}, geometry=gpd.GeoSeries([], crs=4326)))
    if source is not None and hasattr(source, "read_stations"):
        return _store_points(kind, source, bbox)
    from gridmap.demo import DEMO
    from gridmap.io import list_layers

    path = Path(source) if source is not None else DEMO
    if kind not in list_layers(path):
        return gpd.GeoDataFrame({"code": []}, geometry=gpd.GeoSeries([], crs=4326))
    frame = gpd.read_file(path, layer=kind)
    return frame.to_crs(4326) if frame.crs is not None and frame.crs.to_epsg() != 4326 else frame


def _store_points(kind: str, store, bbox) -> gpd.GeoDataFrame:
    if kind == "station":
        return store.read_stations()
    from gridmap.store.records import IncidentQuery

    found, _ = store.query_incidents(IncidentQuery(bbox=tuple(bbox) if bbox is not None else None),
                                     limit=None)
    table = pd.DataFrame({
        "id": pd.Series([i.id for i in found], dtype="int64"),
        "category": [i.category for i in found], "description": [i.description for i in found],
        "reported_at": pd.to_datetime([i.reported_at for i in found], utc=True),
        "status": [str(i.status) for i in found], "level": [str(i.level) for i in found],
        "deadline": pd.to_datetime([i.deadline for i in found], utc=True),
        "grid_code": [i.grid_code for i in found], "worker": [i.worker for i in found]})
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy([i.lon for i in found],
                                                               [i.lat for i in found]), crs=4326)


def within(points: gpd.GeoDataFrame, unit: Unit) -> gpd.GeoDataFrame:
    """The points inside the unit's outline, with the ``grid_code`` of the grid holding each."""
    if len(points) == 0:
        return points.assign(grid_code=pd.Series([], dtype=object))
    inside = points[points.intersects(unit.outline.geometry.union_all())]
    grids = unit.grids[["code", "geometry"]]
    joined = gpd.sjoin(inside, grids, how="left", predicate="within")
    joined = joined[~joined.index.duplicated()]
    return inside.assign(grid_code=joined["code"].reindex(inside.index))
