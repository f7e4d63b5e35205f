"""Where boundary versions live: a GeoPackage file (the embedded default) or PostGIS.

``open_store(url)`` chooses by URL: ``postgresql://…`` or ``postgres://…`` is PostGIS, anything
else (``gridmap.gpkg``, ``file:gridmap.gpkg``) a GeoPackage path. Both keep the contract of
:class:`gridmap.store.base.Store`; the helpers below turn a layer into the rows both stores keep
and back, so that the two read back exactly the same frames.

Rows kept per feature: our fields (``code``, ``name``, ``parent_code``, ``kind``, ``households``,
``worker``), any other columns as one JSON object (``props``), and the geometry in EPSG:4326.
``level`` is the layer itself. Layers read back ordered by code.
"""

from __future__ import annotations

import datetime as dt
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.errors import (Conflict, CRSMissing, InputError, LayerNotFound, NothingToPublish,
                            VersionNotFound)
from gridmap.store.base import STORE_LAYERS, LayerChange, PublishResult, Store, Version

__all__ = ["open_store", "GeoPackageStore", "PostGISStore", "Store", "Version", "LayerChange",
           "PublishResult", "STORE_LAYERS"]

#: Columns every layer reads back with, in this order, before any extra columns and the geometry.
COLUMNS = ("code", "name", "parent_code", "level", "kind", "households", "worker")
#: The columns each row keeps (``level`` is the layer; ``props`` holds any other columns).
ROW_COLUMNS = ("code", "name", "parent_code", "kind", "households", "worker", "props")
TEXT = ("code", "name", "parent_code", "kind", "worker")
NOTHING_PUBLISHED = "nothing published yet: import a layer and run gridmap publish --commit"


def open_store(url: str) -> Store:
    """The store at ``url``: PostGIS for ``postgresql://``/``postgres://``, else a GeoPackage.

    >>> open_store("/tmp/gridmap-doctest.gpkg").url
    '/tmp/gridmap-doctest.gpkg'
    """
    url = str(url)
    if url.startswith(("postgresql://", "postgres://")):
        from gridmap.store.postgis import PostGISStore

        return PostGISStore(url)
    from gridmap.store.geopackage import GeoPackageStore

    path = url.removeprefix("file://") if url.startswith("file://") else url.removeprefix("file:")
    return GeoPackageStore(path)


def __getattr__(name: str):
    # The implementations load on first use, so the GeoPackage store never imports psycopg2.
    if name == "GeoPackageStore":
        from gridmap.store.geopackage import GeoPackageStore

        return GeoPackageStore
    if name == "PostGISStore":
        from gridmap.store.postgis import PostGISStore

        return PostGISStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- shared by both stores: layer ⇄ rows -----------------------------------------------------------


def check_level(level: str) -> str:
    if level not in STORE_LAYERS:
        raise LayerNotFound(f"no layer {level!r} in the store; layers: {', '.join(STORE_LAYERS)}")
    return level


def to_rows(level: str, frame: gpd.GeoDataFrame) -> pd.DataFrame:
    """The rows a store keeps for one layer: :data:`ROW_COLUMNS` and ``geometry`` (shapely, 4326).

    Sorted by code. Refuses (InputError) what neither store could keep faithfully: missing or
    repeated codes, missing geometries, a ``level`` column naming another layer, NUL characters.
    """
    check_level(level)
    where = f"{level} layer"
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame.columns:
        raise InputError(f"{where}: not a layer with geometries")
    if frame.crs is None:
        raise CRSMissing(f"{where}: the layer has no CRS; give it one before storing it")
    if frame.crs.to_epsg() != 4326:
        frame = frame.to_crs(4326)
    if "code" not in frame.columns:
        raise InputError(f"{where}: no code column; every stored feature needs a code")
    geom_name = frame.geometry.name
    codes = _text(frame["code"])
    if codes.isna().any():
        raise InputError(f"{where}: {int(codes.isna().sum())} features have no code")
    repeated = codes[codes.duplicated()]
    if len(repeated):
        raise InputError(f"{where}: code {repeated.iat[0]} appears more than once "
                         f"({repeated.nunique()} codes repeated); codes must be unique to be stored")
    geoms = np.asarray(frame.geometry.values, dtype=object)
    missing = shapely.is_missing(geoms)
    if missing.any():
        raise InputError(f"{where}: feature {codes.iat[int(np.flatnonzero(missing)[0])]} has no geometry")
    if "level" in frame.columns:
        other = _text(frame["level"])
        wrong = other.notna() & (other != level)
        if wrong.any():
            raise InputError(f"{where}: feature {codes[wrong].iat[0]} has level "
                             f"{other[wrong].iat[0]!r}; import it as that level")
    n = len(frame)
    rows = pd.DataFrame({"code": pd.Series(codes.to_numpy(), dtype=object)})
    for name in ("name", "parent_code", "kind", "worker"):
        rows[name] = pd.Series(_text(frame[name]).to_numpy() if name in frame.columns
                               else [None] * n, dtype=object)
    if "households" in frame.columns:
        rows["households"] = pd.to_numeric(frame["households"], errors="coerce").astype("float64").to_numpy()
    else:
        rows["households"] = np.nan
    extras = [c for c in frame.columns if c not in COLUMNS and c != geom_name]
    rows["props"] = pd.Series(_props(frame[extras]) if extras else [None] * n, dtype=object)
    for name in (*TEXT, "props"):
        if "\x00" in "".join(v for v in rows[name] if isinstance(v, str)):
            raise InputError(f"{where}: column {name} holds a NUL character, which cannot be stored")
    rows["geometry"] = geoms
    rows = rows[[*ROW_COLUMNS, "geometry"]]
    return rows.sort_values("code", kind="stable", ignore_index=True)


def from_rows(level: str, rows: pd.DataFrame, geometry) -> gpd.GeoDataFrame:
    """A layer from stored rows (:data:`ROW_COLUMNS`, in code order) and their geometries."""
    out = pd.DataFrame(index=pd.RangeIndex(len(rows)))
    for name in COLUMNS:
        if name == "level":
            out[name] = pd.Series([level] * len(rows), index=out.index, dtype="str")
        elif name == "households":
            out[name] = _households(rows["households"]).to_numpy()
        else:
            out[name] = pd.Series(_text(rows[name]).to_numpy(), index=out.index, dtype="str")
    props = rows["props"] if "props" in rows.columns else pd.Series([], dtype=object)
    if props.notna().any():
        parsed = pd.DataFrame.from_records(
            [json.loads(p) if isinstance(p, str) else {} for p in props], index=out.index)
        for name in parsed.columns:
            out[name] = parsed[name]
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(np.asarray(geometry, dtype=object),
                                                        index=out.index, crs="EPSG:4326"))


def empty_rows() -> pd.DataFrame:
    rows = pd.DataFrame({name: pd.Series([], dtype=object) for name in ROW_COLUMNS})
    rows["households"] = rows["households"].astype("float64")
    return rows


# -- shared by both stores: versions, pages ------------------------------------------------------


def resolve_version(versions: list[Version], *, version: int | None = None,
             on: dt.date | None = None) -> Version:
    """Pick the version asked for from the list of all."""
    if version is not None and on is not None:
        raise InputError("give a version number or a date, not both")
    if version is not None:
        found = next((v for v in versions if v.id == int(version)), None)
        if found is None:
            have = f"versions are {versions[0].id}–{versions[-1].id}" if versions else NOTHING_PUBLISHED
            raise VersionNotFound(f"there is no version {version}; {have}")
        return found
    published = [v for v in versions if v.status in ("active", "retired") and v.published_on]
    if not published:
        raise VersionNotFound(NOTHING_PUBLISHED)
    if on is None:
        active = [v for v in published if v.status == "active"]
        if not active:
            raise VersionNotFound(NOTHING_PUBLISHED)
        return active[0]
    in_force = [v for v in published if v.published_on <= on]
    if not in_force:
        first = min(v.published_on for v in published)
        raise VersionNotFound(f"no version was in force on {on}: the first was published on {first}")
    return max(in_force, key=lambda v: (v.published_on, v.id))


def check_publish_date(on: dt.date, versions: list[Version]) -> None:
    later = [v for v in versions if v.published_on and v.published_on > on]
    if later:
        raise Conflict(f"cannot publish on {on}: version {later[-1].id} was published later, "
                       f"on {later[-1].published_on}")


def pick_draft(versions: list[Version], draft: int | None, *, publishing: bool = False):
    """The draft (plan) to write into or publish: ``draft`` by number, else the only open one.

    Writing with no number and several plans open goes to the newest; publishing with no number
    then is refused (which plan is meant?). None when writing and no draft is open.
    """
    drafts = [v for v in versions if v.status == "draft"]
    if draft is not None:
        found = next((v for v in versions if v.id == int(draft)), None)
        if found is None:
            raise VersionNotFound(f"there is no plan {draft}")
        if found.status != "draft":
            raise Conflict(f"version {draft} is {found.status}, no longer an open plan")
        return found
    if not drafts:
        if publishing:
            raise NothingToPublish("nothing to publish: there is no draft; import a layer first")
        return None
    if publishing and len(drafts) > 1:
        raise InputError(f"{len(drafts)} plans are open ({', '.join(str(v.id) for v in drafts)}): "
                         "say which one to publish")
    return drafts[-1]


def check_base(draft: Version, active: Version | None) -> None:
    """Refuse to publish a plan drawn on a version that is no longer active (Conflict): of two
    planners publishing at once, the second is told, and their plan stays open."""
    if draft.base is None:  # drawn before anything was published, or by an older gridmap
        if active is None or draft.id > active.id:
            return
    elif active is not None and draft.base == active.id:
        return
    raise Conflict(f"plan {draft.id} was drawn on version {draft.base or 'none'}, but version "
                   f"{active.id if active else 'none'} is active now: redraw it on the active map "
                   "(nothing was published)")


def check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise InputError(f"limit and offset must not be negative (got {limit}, {offset})")


def bbox_polygon(bbox) -> shapely.Geometry:
    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(f"bbox must be four numbers minx, miny, maxx, maxy (got {bbox!r})") from None
    if not (minx <= maxx and miny <= maxy):
        raise InputError(f"bbox {minx}, {miny}, {maxx}, {maxy}: min must not exceed max")
    return shapely.box(minx, miny, maxx, maxy)


# -- small pieces ----------------------------------------------------------------------------------


def _text(column: pd.Series) -> pd.Series:
    """Text as Python ``str`` or None (codes stay text: no float, no lost leading zero)."""
    if pd.api.types.is_float_dtype(column):
        whole = column.dropna()
        if len(whole) and (whole == whole.round()).all():
            column = column.astype("Int64")
    if isinstance(column.dtype, pd.StringDtype):
        values = column.to_numpy(dtype=object, na_value=None)
    else:
        values = column.to_numpy(dtype=object).copy()
        missing = pd.isna(values)
        present = values[~missing]
        if len(present) and pd.api.types.infer_dtype(present, skipna=False) != "string":
            values[~missing] = [v if isinstance(v, str) else str(v) for v in present]
        values[missing] = None
    return pd.Series(values, index=column.index, dtype=object)


def _households(column: pd.Series) -> pd.Series:
    """Counts come back as integers when they are whole and present, else as floats."""
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    if values.notna().all() and (values == values.round()).all():
        return values.astype("int64")
    return values


def _props(extras: pd.DataFrame) -> list:
    """Other columns as one canonical JSON object per row (None when all are empty)."""
    records = json.loads(extras.to_json(orient="records", date_format="iso", force_ascii=False,
                                        default_handler=str))
    out = []
    for record in records:
        kept = {k: v for k, v in record.items() if v is not None}
        out.append(json.dumps(kept, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                   if kept else None)
    return out
