"""The SQL both stores run for incidents and stations, written once over a DB-API cursor.

SQLite (inside the GeoPackage) and PostgreSQL differ here only in how a parameter is written,
how a point geometry is made and how a bbox is tested: a :class:`Dialect` says that, the
functions below do the rest inside whatever transaction the store opened (and, for the
GeoPackage, under its write lock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

from gridmap.access import ApiKey
from gridmap.errors import (
    Conflict,
    IdempotencyKeyReused,
    IncidentNotFound,
    InputError,
    KeyNotFound,
    RevisionConflict,
)
from gridmap.incidents import Incident
from gridmap.store.records import (
    COUNT_BY,
    INCIDENT_COLUMNS,
    STATION_COLUMNS,
    TRAIL_COLUMNS,
    IncidentQuery,
    incident_from,
    incident_row,
    iso,
    trail_rows,
    where_sql,
)

__all__ = ["Dialect", "insert_incident", "update_incident", "get_incident", "select_incidents",
           "count_incidents", "insert_stations", "select_stations", "KEY_COLUMNS", "insert_key",
           "find_key", "select_keys", "revoke_key"]

_CHUNK = 500  # ids per IN (…) when reading trails: far below SQLite's parameter limit


@dataclass(frozen=True)
class Dialect:
    incident: str  # table names
    trail: str
    station: str
    param: Callable[[str], str]  # a named parameter as the driver writes it
    bbox: Callable[[Callable[[str], str]], str]  # the test of ``geom`` against minx … maxy
    point_sql: str  # the SQL of a point from the parameters lon, lat (and geom)
    point_args: Callable[[float, float], dict]
    key: str = "api_key"  # API keys (gridmap.access): their hashes, never the tokens


def _insert(table: str, columns, d: Dialect, extra: dict[str, str] | None = None) -> str:
    names = [*columns, *(extra or {})]
    values = [d.param(c) for c in columns] + list((extra or {}).values())
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(values)})"


def insert_incident(cur, d: Dialect, incident: Incident, *, idempotency_key: str | None,
                    fingerprint: str | None) -> tuple[Incident, bool]:
    """Store a new incident (its id is the store's), or return the one stored under the same key.

    Run in a transaction that also serialises writers (the GeoPackage's lock; PostgreSQL's unique
    index settles two concurrent inserts with one key, the loser's transaction then fails).
    """
    if idempotency_key is not None:
        cur.execute(f"SELECT id, fingerprint FROM {d.incident} WHERE idempotency_key = "
                    f"{d.param('key')}", {"key": idempotency_key})
        found = cur.fetchone()
        if found is not None:
            if found[1] != fingerprint:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {idempotency_key[:60]!r} was used for another report "
                    f"(incident {found[0]}); use a new key for a new report")
            return get_incident(cur, d, int(found[0])), False
    row = incident_row(incident, idempotency_key=idempotency_key, fingerprint=fingerprint)
    del row["id"]
    row.update(d.point_args(row["lon"], row["lat"]))
    cur.execute(_insert(d.incident, [c for c in INCIDENT_COLUMNS if c != "id"], d,
                        {"geom": d.point_sql}) + " RETURNING id", row)
    stored = replace(incident, id=int(cur.fetchone()[0]))
    _append_trail(cur, d, stored, 0)
    return stored, True


def _append_trail(cur, d: Dialect, incident: Incident, start: int) -> None:
    sql = _insert(d.trail, TRAIL_COLUMNS, d)
    for values in trail_rows(incident, start):
        cur.execute(sql, dict(zip(TRAIL_COLUMNS, values)))


def update_incident(cur, d: Dialect, incident: Incident, *, expected_revision: int) -> Incident:
    """Save ``incident`` if the stored one is still at ``expected_revision``: its row changes and
    the trail entries after that revision are appended (earlier ones are never touched)."""
    if incident.revision <= expected_revision:
        raise InputError(f"incident {incident.id}: nothing to save beyond revision {expected_revision}")
    row = incident_row(incident)
    changing = ("status", "level", "deadline", "updated_at", "version", "near_boundary",
                "grid_code", "grid_name", "community_code", "street_code", "district_code", "worker", "revision")
    sets = ", ".join(f"{c} = {d.param(c)}" for c in changing)
    args = {c: row[c] for c in changing} | {"id": incident.id, "expected": int(expected_revision)}
    cur.execute(f"UPDATE {d.incident} SET {sets} WHERE id = {d.param('id')} "
                f"AND revision = {d.param('expected')}", args)
    if cur.rowcount != 1:
        cur.execute(f"SELECT revision FROM {d.incident} WHERE id = {d.param('id')}",
                    {"id": incident.id})
        found = cur.fetchone()
        if found is None:
            raise IncidentNotFound(f"there is no incident {incident.id}")
        raise RevisionConflict(f"incident {incident.id} is at revision {found[0]}, not "
                               f"{expected_revision}: it changed since it was read; read it again")
    _append_trail(cur, d, incident, expected_revision)
    return incident


def _select(d: Dialect) -> str:
    return f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM {d.incident}"


def _with_trails(cur, d: Dialect, rows: list[tuple]) -> list[Incident]:
    records = [dict(zip(INCIDENT_COLUMNS, r)) for r in rows]
    trails: dict[int, list] = {r["id"]: [] for r in records}
    ids = list(trails)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        names = ", ".join(d.param(f"i{n}") for n in range(len(chunk)))
        cur.execute(f"SELECT {', '.join(TRAIL_COLUMNS)} FROM {d.trail} WHERE incident_id IN "
                    f"({names}) ORDER BY incident_id, seq", {f"i{n}": v for n, v in enumerate(chunk)})
        for entry in cur.fetchall():
            trails[entry[0]].append(entry)
    return [incident_from(r, trails[r["id"]]) for r in records]


def get_incident(cur, d: Dialect, incident_id: int) -> Incident:
    cur.execute(f"{_select(d)} WHERE id = {d.param('id')}", {"id": int(incident_id)})
    rows = cur.fetchall()
    if not rows:
        raise IncidentNotFound(f"there is no incident {incident_id}")
    return _with_trails(cur, d, rows)[0]


def select_incidents(cur, d: Dialect, query: IncidentQuery, *, limit: int | None,
                     offset: int = 0) -> tuple[list[Incident], int]:
    """A page of the incidents matching ``query`` in id order, and how many match in all."""
    if (limit is not None and limit < 0) or offset < 0:
        raise InputError("limit and offset must not be negative")
    where, args = where_sql(query, d.param, d.bbox)
    cur.execute(f"SELECT count(*) FROM {d.incident} WHERE {where}", args)
    total = int(cur.fetchone()[0])
    limit = 2**62 if limit is None else int(limit)  # "no limit" in both SQLite and PostgreSQL
    cur.execute(f"{_select(d)} WHERE {where} ORDER BY id LIMIT {limit} OFFSET {int(offset)}", args)
    return _with_trails(cur, d, cur.fetchall()), total


def count_incidents(cur, d: Dialect, query: IncidentQuery, by: str) -> dict[str | None, int]:
    """How many incidents match ``query`` per value of ``by`` (:data:`COUNT_BY`)."""
    if by not in COUNT_BY:
        raise InputError(f"count by one of {', '.join(COUNT_BY)}, not {by[:30]!r}")
    column = COUNT_BY[by]
    where, args = where_sql(query, d.param, d.bbox)
    cur.execute(f"SELECT {column}, count(*) FROM {d.incident} WHERE {where} GROUP BY {column}", args)
    return {key: int(n) for key, n in cur.fetchall()}


def insert_stations(cur, d: Dialect, rows: list[dict]) -> int:
    """Add stations; a code already registered is a Conflict (and nothing is added)."""
    if not rows:
        return 0
    codes = [r["code"] for r in rows]
    for start in range(0, len(codes), _CHUNK):
        chunk = codes[start:start + _CHUNK]
        names = ", ".join(d.param(f"c{n}") for n in range(len(chunk)))
        cur.execute(f"SELECT code FROM {d.station} WHERE code IN ({names}) ORDER BY code",
                    {f"c{n}": c for n, c in enumerate(chunk)})
        taken = [r[0] for r in cur.fetchall()]
        if taken:
            raise Conflict(f"station {taken[0]} is registered already"
                           + (f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""))
    sql = _insert(d.station, STATION_COLUMNS, d, {"geom": d.point_sql})
    for row in rows:
        cur.execute(sql, row | d.point_args(row["lon"], row["lat"]))
    return len(rows)


def select_stations(cur, d: Dialect) -> list[tuple]:
    cur.execute(f"SELECT {', '.join(STATION_COLUMNS)} FROM {d.station} ORDER BY code")
    return cur.fetchall()


# -- API keys ------------------------------------------------------------------------------------

KEY_COLUMNS = ("id", "hash", "prefix", "role", "unit", "name", "created_at", "revoked_at")


def _key(row) -> ApiKey:
    values = dict(zip(KEY_COLUMNS, row))
    for name in ("created_at", "revoked_at"):
        at = values[name]
        if isinstance(at, str):
            at = dt.datetime.fromisoformat(at)
        values[name] = at
    return ApiKey(**values)


def insert_key(cur, d: Dialect, key: ApiKey) -> ApiKey:
    row = {"hash": key.hash, "prefix": key.prefix, "role": key.role, "unit": key.unit,
           "name": key.name, "created_at": iso(key.created_at), "revoked_at": None}
    cur.execute(_insert(d.key, list(row), d) + " RETURNING id", row)
    return replace(key, id=int(cur.fetchone()[0]))


def find_key(cur, d: Dialect, hash_: str) -> ApiKey | None:
    cur.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM {d.key} WHERE hash = {d.param('hash')}",
                {"hash": hash_})
    row = cur.fetchone()
    return None if row is None else _key(row)


def select_keys(cur, d: Dialect) -> list[ApiKey]:
    cur.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM {d.key} ORDER BY id")
    return [_key(r) for r in cur.fetchall()]


def revoke_key(cur, d: Dialect, key_id: int) -> ApiKey:
    """Revoke a key (at once: every request looks its key up); revoking twice keeps the first time."""
    cur.execute(f"UPDATE {d.key} SET revoked_at = {d.param('at')} WHERE id = {d.param('id')} "
                f"AND revoked_at IS NULL", {"at": iso(dt.datetime.now(dt.UTC)), "id": int(key_id)})
    cur.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM {d.key} WHERE id = {d.param('id')}",
                {"id": int(key_id)})
    row = cur.fetchone()
    if row is None:
        raise KeyNotFound(f"there is no API key {key_id}")
    return _key(row)
