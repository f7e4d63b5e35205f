"""Incidents and service stations as rows: what both stores keep, and the queries over them.

Boundaries are versioned layers; incidents and stations are not. An incident is a record that
changes (status, level, grid) under optimistic concurrency — each change bumps its ``revision``,
which equals the length of its append-only trail — and it keeps the grid and boundary version it
was routed to, so a later boundary version never rewrites it (DESIGN.md §2, 动态调整).

Stations are a table of their own, not a versioned layer: a station opens, moves or changes its
floor area on its own calendar, not with a boundary publication, and registering one must not
need a draft and a publish (nor hold up a planner's draft). Coverage is always computed against
the boundary version asked for, so a station needs no version of its own.

Both stores are SQL (SQLite inside the GeoPackage, PostgreSQL), so the filters are built here once
as SQL text with named parameters; each store says how a parameter is written (``:name`` for
sqlite3, ``%(name)s`` for psycopg2) and how a bbox is tested.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import pandas as pd
import shapely

from gridmap.errors import InputError
from gridmap.incidents import OPEN, Actor, Incident, Level, Role, Status, Transition

__all__ = ["INCIDENT_COLUMNS", "TRAIL_COLUMNS", "STATION_COLUMNS", "STATION_KINDS", "COUNT_BY",
           "IncidentQuery", "fingerprint", "incident_row", "trail_rows", "incident_from",
           "where_sql", "iso", "station_rows", "stations_frame"]

#: The columns of the incident table, in order (``geom`` is added by each store).
INCIDENT_COLUMNS = ("id", "idempotency_key", "fingerprint", "category", "description", "photo_url",
                    "contact", "lon", "lat", "status", "level", "reported_at", "deadline",
                    "updated_at", "version", "near_boundary", "grid_code", "grid_name",
                    "community_code", "street_code", "district_code", "worker", "revision")
TRAIL_COLUMNS = ("incident_id", "seq", "at", "actor", "role", "from_state", "to_state", "kind",
                 "note")
#: A station's kind: party-and-public service centres (党群服务中心) of each level, and the
#: service posts (驿站) in residential compounds.
STATION_KINDS = ("city_centre", "district_centre", "street_centre", "community_centre", "post")
STATION_COLUMNS = ("code", "name", "kind", "level", "unit_code", "floor_area_m2", "opening_hours",
                   "lon", "lat", "registered_at")
#: What incidents may be counted by (``GET /incidents/counts?by=``): column names, whitelisted.
COUNT_BY = {"grid": "grid_code", "community": "community_code", "street": "street_code",
            "district": "district_code", "status": "status", "category": "category",
            "level": "level", "worker": "worker"}
_UNIT = re.compile(r"[0-9A-Za-z_.-]{1,32}")


@dataclass(frozen=True)
class IncidentQuery:
    """Filters of an incident query; None means "any".

    ``unit`` matches an incident whose grid, community, street or district is that code, or whose
    grid code starts with it (codes are hierarchical: a street's 9 digits begin its grids' 15).
    ``overdue_at``: open incidents whose deadline is at or before that time.
    """

    status: tuple[str, ...] | None = None
    unit: str | None = None
    worker: str | None = None
    category: tuple[str, ...] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    overdue_at: dt.datetime | None = None
    unrouted: bool | None = None
    ids: tuple[int, ...] | None = None
    #: Access (gridmap.access.scope): only incidents whose grid lies under one of these codes.
    within: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.status is not None:
            for s in self.status:
                if s not in set(Status):
                    raise InputError(f"unknown status {s!r}; known: {', '.join(Status)}")
        if self.unit is not None and not _UNIT.fullmatch(self.unit):
            raise InputError(f"unit must be a code (letters, digits), not {self.unit[:40]!r}")
        for name in ("since", "until", "overdue_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise InputError(f"{name} needs a timezone (e.g. 2025-03-01T00:00:00Z)")
        if self.bbox is not None:
            minx, miny, maxx, maxy = self.bbox
            if not (minx <= maxx and miny <= maxy):
                raise InputError("bbox must be minx,miny,maxx,maxy with min ≤ max")


def iso(at: dt.datetime | None) -> str | None:
    """UTC ISO text of fixed width: compares as text in SQLite exactly as the times compare."""
    if at is None:
        return None
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _time(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.UTC)


def fingerprint(body: dict) -> str:
    """The identity of a request body for idempotency: canonical JSON, hashed."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def incident_row(incident: Incident, *, idempotency_key: str | None = None,
                 fingerprint: str | None = None) -> dict:
    """The incident's row (times as UTC ISO text; PostgreSQL parses it into timestamptz)."""
    last = incident.trail[-1].at if incident.trail else incident.reported_at
    return {"id": incident.id, "idempotency_key": idempotency_key, "fingerprint": fingerprint,
            "category": incident.category, "description": incident.description,
            "photo_url": incident.photo_url, "contact": incident.contact,
            "lon": float(incident.lon), "lat": float(incident.lat),
            "status": str(incident.status), "level": str(incident.level),
            "reported_at": iso(incident.reported_at), "deadline": iso(incident.deadline),
            "updated_at": iso(last), "version": incident.version,
            "near_boundary": bool(incident.near_boundary), "grid_code": incident.grid_code,
            "grid_name": incident.grid_name,
            "community_code": incident.community_code, "street_code": incident.street_code,
            "district_code": incident.district_code, "worker": incident.worker,
            "revision": incident.revision}


def trail_rows(incident: Incident, start: int = 0) -> list[tuple]:
    """Trail entries from ``start`` on, as rows (``seq`` counts from 1)."""
    return [(incident.id, i + 1, iso(e.at), e.actor.name, str(e.actor.role), str(e.from_state),
             str(e.to_state), e.kind, e.note)
            for i, e in enumerate(incident.trail[start:], start=start)]


def incident_from(row: dict, trail: list[tuple]) -> Incident:
    """An incident from its row and its trail rows (ordered by ``seq``)."""
    entries = tuple(Transition(at=_time(at), actor=Actor(actor, Role(role)),
                               from_state=Status(a), to_state=Status(b), kind=kind, note=note or "")
                    for _, _, at, actor, role, a, b, kind, note in trail)
    return Incident(id=int(row["id"]), category=row["category"], description=row["description"],
                    lon=float(row["lon"]), lat=float(row["lat"]), grid_code=row["grid_code"],
                    reported_at=_time(row["reported_at"]), deadline=_time(row["deadline"]),
                    version=row["version"], near_boundary=bool(row["near_boundary"]),
                    photo_url=row["photo_url"], status=Status(row["status"]),
                    level=Level(row["level"]), trail=entries,
                    community_code=row["community_code"], street_code=row["street_code"],
                    district_code=row["district_code"], worker=row["worker"],
                    contact=row["contact"], grid_name=row["grid_name"])


def where_sql(query: IncidentQuery, param: Callable[[str], str],
              bbox_sql: Callable[[Callable[[str], str]], str]) -> tuple[str, dict]:
    """The WHERE condition of ``query`` and its parameters.

    ``param(name)`` writes a named parameter in the driver's style; ``bbox_sql(param)`` the test
    of a point against the parameters ``minx``, ``miny``, ``maxx``, ``maxy``.
    """
    parts, args = ["TRUE"], {}

    def one_of(column: str, values, prefix: str) -> None:
        names = []
        for i, value in enumerate(values):
            args[f"{prefix}{i}"] = value
            names.append(param(f"{prefix}{i}"))
        parts.append(f"{column} IN ({', '.join(names)})" if names else "FALSE")

    if query.status is not None:
        one_of("status", [str(s) for s in query.status], "status")
    if query.category is not None:
        one_of("category", list(query.category), "category")
    if query.ids is not None:
        one_of("id", [int(i) for i in query.ids], "id")
    if query.unit is not None:
        args["unit"], args["unit_len"] = query.unit, len(query.unit)
        u = param("unit")
        parts.append(f"(grid_code = {u} OR community_code = {u} OR street_code = {u} OR "
                     f"district_code = {u} OR substr(grid_code, 1, {param('unit_len')}) = {u})")
    if query.within is not None:
        tests = []
        for i, code in enumerate(query.within):
            args[f"within{i}"], args[f"within_len{i}"] = code, len(code)
            tests.append(f"substr(grid_code, 1, {param(f'within_len{i}')}) = {param(f'within{i}')}")
        parts.append(f"({' OR '.join(tests)})" if tests else "FALSE")
    if query.worker is not None:
        args["worker"] = query.worker
        parts.append(f"worker = {param('worker')}")
    if query.since is not None:
        args["since"] = iso(query.since)
        parts.append(f"reported_at >= {param('since')}")
    if query.until is not None:
        args["until"] = iso(query.until)
        parts.append(f"reported_at < {param('until')}")
    if query.bbox is not None:
        args.update(zip(("minx", "miny", "maxx", "maxy"), (float(v) for v in query.bbox)))
        parts.append(bbox_sql(param))
    if query.overdue_at is not None:
        one_of("status", sorted(str(s) for s in OPEN), "open")
        args["now"] = iso(query.overdue_at)
        parts.append(f"deadline <= {param('now')}")
    if query.unrouted is not None:
        parts.append("grid_code IS NULL" if query.unrouted else "grid_code IS NOT NULL")
    return " AND ".join(parts), args


# -- stations ------------------------------------------------------------------------------------


def station_rows(stations: gpd.GeoDataFrame) -> list[dict]:
    """Checked rows of a stations layer: points with a unique ``code`` and a known ``kind``."""
    if stations.crs is None:
        raise InputError("the stations have no CRS")
    frame = stations.to_crs(4326) if stations.crs.to_epsg() != 4326 else stations
    if "code" not in frame.columns:
        raise InputError("every station needs a code")
    geoms = frame.geometry.to_numpy()
    if len(geoms) and not (shapely.get_type_id(geoms) == 0).all():
        raise InputError("stations must be points")
    codes = frame["code"].astype(str)
    if codes.duplicated().any():
        raise InputError(f"station code {codes[codes.duplicated()].iat[0]} appears more than once")
    now = iso(dt.datetime.now(dt.UTC))
    rows = []
    for i, (code, point) in enumerate(zip(codes, geoms)):
        record = frame.iloc[i]
        kind = _opt(record.get("kind"))
        if kind not in STATION_KINDS:
            raise InputError(f"station {code}: kind must be one of {', '.join(STATION_KINDS)}, "
                             f"not {kind!r}")
        area = record.get("floor_area_m2")
        area = None if area is None or pd.isna(area) else float(area)
        if area is not None and area < 0:
            raise InputError(f"station {code}: floor area must not be negative")
        rows.append({"code": code, "name": _opt(record.get("name")), "kind": kind,
                     "level": _opt(record.get("level")), "unit_code": _opt(record.get("unit_code")),
                     "floor_area_m2": area, "opening_hours": _opt(record.get("opening_hours")),
                     "lon": float(point.x), "lat": float(point.y),
                     "registered_at": _opt(record.get("registered_at")) or now})
    return rows


def stations_frame(rows: list) -> gpd.GeoDataFrame:
    """Stations read back: :data:`STATION_COLUMNS` and points, in code order, EPSG:4326."""
    table = pd.DataFrame.from_records(rows, columns=list(STATION_COLUMNS))
    table["floor_area_m2"] = pd.to_numeric(table["floor_area_m2"]).astype("float64")
    table["registered_at"] = [iso(_time(v)) for v in table["registered_at"]]
    points = shapely.points(table["lon"].astype(float).to_numpy(), table["lat"].astype(float).to_numpy())
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(points, crs="EPSG:4326"))


def _opt(value) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)
