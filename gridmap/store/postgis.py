"""The server store: PostgreSQL + PostGIS through psycopg2.

gridmap creates and upgrades its own schema: the numbered files in ``gridmap/store/sql``
(``001_init.sql``, …) are applied in order, each once, inside one transaction, and recorded in
``gridmap_schema``. Every write is one transaction (layers arrive by COPY), so a failed or killed
import leaves the database as it was; writers serialise on an advisory lock, and one that waits
longer than ``lock_timeout`` gets Conflict. Connection failures become StoreUnavailable, naming
host and port but never the password.

Incidents and stations (schema 2) use the same SQL as the GeoPackage store
(:mod:`gridmap.store.recordsql`); the trail is append-only, enforced by a trigger.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import io
import re
import select
import threading
import time
from contextlib import contextmanager

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool
import shapely

from gridmap.errors import Conflict, FeatureNotFound, StoreUnavailable
from gridmap.access import ApiKey
from gridmap.incidents import Incident
from gridmap.store import recordsql
from gridmap.store.records import IncidentQuery, station_rows, stations_frame
from gridmap.store import (ROW_COLUMNS, bbox_polygon, check_base, check_level, check_page,
                           check_publish_date, from_rows, pick_draft, resolve_version, to_rows)
from gridmap.store.base import STORE_LAYERS, LayerChange, PublishResult, Version

__all__ = ["PostGISStore", "migrations"]

# Advisory lock keys ("gridmap" and "gridmap-migrate" folded to 32 bits), held per transaction.
_WRITE_LOCK = 0x67726964
_MIGRATE_LOCK = 0x67726D69
_SELECT = ("SELECT code, name, parent_code, kind, households, worker, props::text, "
           "ST_AsBinary(geom) FROM gridmap_feature")
_COPY = ("COPY gridmap_feature (version_id, level, code, name, parent_code, kind, households, "
         "worker, props, geom) FROM STDIN")
_DIFF = """
SELECT coalesce(d.level, a.level), coalesce(d.code, a.code),
       CASE WHEN a.code IS NULL THEN 'added' WHEN d.code IS NULL THEN 'removed' ELSE 'changed' END
  FROM (SELECT * FROM gridmap_feature WHERE version_id = %(draft)s) d
  FULL JOIN (SELECT * FROM gridmap_feature WHERE version_id = %(active)s) a
    ON a.level = d.level AND a.code = d.code
 WHERE a.code IS NULL OR d.code IS NULL
    OR (d.name, d.parent_code, d.kind, d.households, d.worker, d.props)
       IS DISTINCT FROM (a.name, a.parent_code, a.kind, a.households, a.worker, a.props)
    OR ST_AsBinary(d.geom) <> ST_AsBinary(a.geom)
"""


_PG = recordsql.Dialect(
    incident="gridmap_incident", trail="gridmap_incident_trail", station="gridmap_station",
    param=lambda n: f"%({n})s",
    bbox=lambda p: f"geom && ST_MakeEnvelope({p('minx')}, {p('miny')}, {p('maxx')}, {p('maxy')}, 4326)",
    point_sql="ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)", point_args=lambda lon, lat: {},
    key="gridmap_api_key")


def migrations() -> list[tuple[int, str, str]]:
    """The schema migrations shipped with gridmap: ``(number, file name, SQL)`` in order."""
    folder = importlib.resources.files("gridmap.store").joinpath("sql")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d+)_\w+\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class PostGISStore:
    """Boundary versions in a PostGIS database; the schema is created on first connection.

    ``url`` is kept with its password masked, for messages and logs.
    """

    def __init__(self, url: str, *, minconn: int = 1, maxconn: int = 8, lock_timeout: float = 5.0,
                 connect_timeout: int = 5, pool_timeout: float = 10.0):
        self.url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
        self.lock_timeout = lock_timeout
        # psycopg2's pool raises at once when every connection is out; the service runs routes
        # on ~40 threads, so requests queue here for a connection instead (bench_load.py saw 20%
        # of mixed requests at 32 clients answered 503 "connection pool exhausted").
        self._slots = threading.BoundedSemaphore(maxconn)
        self._pool_timeout = pool_timeout
        self._where = _host_port(url)
        try:
            self._pool = psycopg2.pool.ThreadedConnectionPool(
                minconn, maxconn, dsn=url, connect_timeout=connect_timeout)
        except psycopg2.Error as exc:
            raise StoreUnavailable(f"PostGIS at {self._where} is not reachable: "
                                   f"{_first_line(exc, url)}") from None
        self._migrate()

    # -- reading -----------------------------------------------------------------------------

    def versions(self) -> list[Version]:
        with self._cursor() as cur:
            return self._versions(cur)

    def resolve(self, *, version: int | None = None, on: dt.date | None = None) -> Version:
        return resolve_version(self.versions(), version=version, on=on)

    def read_layer(self, level: str, version: int) -> gpd.GeoDataFrame:
        check_level(level)
        with self._cursor() as cur:
            resolve_version(self._versions(cur), version=version)
            cur.execute(f"{_SELECT} WHERE version_id = %s AND level = %s ORDER BY code",
                        (int(version), level))
            return _frame(level, cur.fetchall())

    def query_features(self, level: str, version: int, *, bbox=None, parent_code: str | None = None,
                       limit: int = 100, offset: int = 0) -> tuple[gpd.GeoDataFrame, int]:
        check_level(level)
        check_page(limit, offset)
        where = ["version_id = %(version)s", "level = %(level)s"]
        args = {"version": int(version), "level": level, "limit": int(limit), "offset": int(offset)}
        if bbox is not None:
            args["box"] = shapely.to_wkb(bbox_polygon(bbox))
            where.append("geom && ST_GeomFromWKB(%(box)s, 4326) "
                         "AND ST_Intersects(geom, ST_GeomFromWKB(%(box)s, 4326))")
        if parent_code is not None:
            args["parent"] = parent_code
            where.append("parent_code = %(parent)s")
        condition = " AND ".join(where)
        with self._cursor() as cur:
            resolve_version(self._versions(cur), version=version)
            cur.execute(f"SELECT count(*) FROM gridmap_feature WHERE {condition}", args)
            total = int(cur.fetchone()[0])
            cur.execute(f"{_SELECT} WHERE {condition} ORDER BY code LIMIT %(limit)s "
                        "OFFSET %(offset)s", args)
            return _frame(level, cur.fetchall()), total

    def get_feature(self, level: str, version: int, code: str) -> gpd.GeoDataFrame:
        check_level(level)
        with self._cursor() as cur:
            resolve_version(self._versions(cur), version=version)
            cur.execute(f"{_SELECT} WHERE version_id = %s AND level = %s AND code = %s",
                        (int(version), level, str(code)))
            rows = cur.fetchall()
        if not rows:
            raise FeatureNotFound(f"no {level} with code {code} in version {version}")
        return _frame(level, rows)

    # -- writing -----------------------------------------------------------------------------

    def write_draft(self, layers: dict[str, gpd.GeoDataFrame], note: str = "", *,
                    draft: int | None = None) -> Version:
        return self._draft(layers, note, draft=draft, new=False)

    def new_draft(self, layers: dict[str, gpd.GeoDataFrame], note: str = "") -> Version:
        return self._draft(layers, note, draft=None, new=True)

    def _draft(self, layers, note: str, *, draft: int | None, new: bool) -> Version:
        prepared = {level: to_rows(level, frame) for level, frame in layers.items()}
        with self._cursor() as cur:
            self._lock(cur)
            current = self._versions(cur)
            target = None if new else pick_draft(current, draft)
            active = next((v for v in current if v.status == "active"), None)
            if target is None:
                # Numbered under the write lock rather than by the sequence, which a rolled-back
                # import would leave with a hole in the version numbers.
                cur.execute("INSERT INTO gridmap_version (id, status, note, base) SELECT "
                            "coalesce(max(id), 0) + 1, 'draft', %s, %s FROM gridmap_version "
                            "RETURNING id", (note, active.id if active else None))
                draft_id = cur.fetchone()[0]
                if active is not None:
                    # A new draft starts as a copy of what is in force.
                    cur.execute(
                        "INSERT INTO gridmap_feature SELECT %s, level, code, name, parent_code, kind,"
                        " households, worker, props, geom FROM gridmap_feature"
                        " WHERE version_id = %s AND NOT (level = ANY(%s))",
                        (draft_id, active.id, list(prepared)))
            else:
                draft_id = target.id
                if note:
                    cur.execute("UPDATE gridmap_version SET note = %s WHERE id = %s", (note, draft_id))
                cur.execute("DELETE FROM gridmap_feature WHERE version_id = %s AND level = ANY(%s)",
                            (draft_id, list(prepared)))
            for level, rows in prepared.items():
                self._write_layer(cur, draft_id, level, rows)
            return resolve_version(self._versions(cur), version=draft_id)

    def publish(self, *, commit: bool, on: dt.date | None = None,
                draft: int | None = None) -> PublishResult:
        with self._cursor() as cur:
            if commit:
                self._lock(cur)
            current = self._versions(cur)
            chosen = pick_draft(current, draft, publishing=True)
            active = next((v for v in current if v.status == "active"), None)
            cur.execute(_DIFF, {"draft": chosen.id, "active": active.id if active else -1})
            changes = _changes(cur.fetchall())
            if not commit:
                return PublishResult(draft=chosen, previous=active, changes=changes, committed=False)
            check_base(chosen, active)
            on = on or dt.date.today()
            check_publish_date(on, current)
            cur.execute("UPDATE gridmap_version SET status = 'retired' WHERE status = 'active'")
            cur.execute("UPDATE gridmap_version SET status = 'active', published_on = %s "
                        "WHERE id = %s", (on, chosen.id))
            after = self._versions(cur)
        return PublishResult(draft=resolve_version(after, version=chosen.id),
                             previous=resolve_version(after, version=active.id) if active else None,
                             changes=changes, committed=True)

    def discard_draft(self, draft: int) -> None:
        with self._cursor() as cur:
            self._lock(cur)
            target = pick_draft(self._versions(cur), draft)
            cur.execute("UPDATE gridmap_version SET base = NULL WHERE base = %s", (target.id,))
            cur.execute("DELETE FROM gridmap_version WHERE id = %s", (target.id,))

    # -- incidents and stations --------------------------------------------------------------

    def add_incident(self, incident: Incident, *, idempotency_key: str | None = None,
                     fingerprint: str | None = None) -> tuple[Incident, bool]:
        try:
            with self._cursor() as cur:
                return recordsql.insert_incident(cur, _PG, incident, idempotency_key=idempotency_key,
                                                 fingerprint=fingerprint)
        except psycopg2.errors.UniqueViolation:
            # Another request with the same key committed between our check and our insert.
            with self._cursor() as cur:
                return recordsql.insert_incident(cur, _PG, incident, idempotency_key=idempotency_key,
                                                 fingerprint=fingerprint)

    def update_incident(self, incident: Incident, *, expected_revision: int) -> Incident:
        with self._cursor() as cur:
            return recordsql.update_incident(cur, _PG, incident, expected_revision=expected_revision)

    def get_incident(self, incident_id: int) -> Incident:
        with self._snapshot() as cur:
            return recordsql.get_incident(cur, _PG, incident_id)

    def query_incidents(self, query: IncidentQuery | None = None, *, limit: int | None = 100,
                        offset: int = 0) -> tuple[list[Incident], int]:
        with self._snapshot() as cur:
            return recordsql.select_incidents(cur, _PG, query or IncidentQuery(), limit=limit,
                                              offset=offset)

    def count_incidents(self, query: IncidentQuery | None = None, *, by: str = "grid") -> dict:
        with self._cursor() as cur:
            return recordsql.count_incidents(cur, _PG, query or IncidentQuery(), by)

    def add_stations(self, stations: gpd.GeoDataFrame) -> int:
        rows = station_rows(stations)
        with self._cursor() as cur:
            cur.execute("LOCK TABLE gridmap_station IN SHARE ROW EXCLUSIVE MODE")
            return recordsql.insert_stations(cur, _PG, rows)

    def read_stations(self) -> gpd.GeoDataFrame:
        with self._cursor() as cur:
            return stations_frame(recordsql.select_stations(cur, _PG))

    # -- API keys (schema 4) -------------------------------------------------------------------

    def add_key(self, key: ApiKey) -> ApiKey:
        with self._cursor() as cur:
            return recordsql.insert_key(cur, _PG, key)

    def find_key(self, hash_: str) -> ApiKey | None:
        with self._cursor() as cur:
            return recordsql.find_key(cur, _PG, hash_)

    def list_keys(self) -> list[ApiKey]:
        with self._cursor() as cur:
            return recordsql.select_keys(cur, _PG)

    def revoke_key(self, key_id: int) -> ApiKey:
        with self._cursor() as cur:
            return recordsql.revoke_key(cur, _PG, key_id)

    def close(self) -> None:
        if not self._pool.closed:
            self._pool.closeall()

    # -- internals ---------------------------------------------------------------------------

    def _write_layer(self, cur, version_id: int, level: str, rows: pd.DataFrame) -> None:
        """COPY one layer's rows into the open transaction (the step tests make fail)."""
        if rows.empty:
            return
        geoms = shapely.to_wkb(shapely.set_srid(rows["geometry"].to_numpy(), 4326), hex=True,
                               include_srid=True)
        households = [r"\N" if np.isnan(h) else repr(h)
                      for h in rows["households"].astype("float64").tolist()]
        text = [_copy_text(rows[name].tolist()) for name in ("code", "name", "parent_code", "kind")]
        lead = f"{int(version_id)}\t{level}"
        lines = "\n".join(
            "\t".join(cells) for cells in zip([lead] * len(rows), *text, households,
                                              _copy_text(rows["worker"].tolist()),
                                              _copy_text(rows["props"].tolist()), geoms.tolist()))
        cur.copy_expert(_COPY, io.StringIO(lines + "\n"))

    def _versions(self, cur) -> list[Version]:
        cur.execute("SELECT id, status, created_at, published_on, note, base FROM gridmap_version "
                    "ORDER BY id")
        return [Version(id=r[0], status=r[1], created_at=r[2], published_on=r[3], note=r[4] or "",
                        base=r[5]) for r in cur.fetchall()]

    def _lock(self, cur) -> None:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            if cur.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise Conflict("the store is being written by another import or publish; "
                               "try again when it has finished")
            time.sleep(0.05)

    @contextmanager
    def _snapshot(self):
        """A read cursor whose statements all see one snapshot: an incident row and its trail
        rows are read by separate statements, and a write committed between them must not show
        a trail entry without the change it made (REPEATABLE READ)."""
        with self._cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield cur

    @contextmanager
    def _cursor(self):
        """A cursor in a transaction of its own: committed on success, else rolled back."""
        if not self._slots.acquire(timeout=self._pool_timeout):
            raise StoreUnavailable(f"PostGIS at {self._where}: every connection has been busy for "
                                   f"{self._pool_timeout:g} s")
        try:
            conn = self._checkout()
        except BaseException:
            self._slots.release()
            raise
        broken = False
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = True
            raise StoreUnavailable(f"PostGIS at {self._where} failed: {_first_line(exc)}") from None
        except BaseException:
            try:
                conn.rollback()
            except psycopg2.Error:
                broken = True
            raise
        finally:
            self._pool.putconn(conn, close=broken or bool(conn.closed))
            self._slots.release()

    def _checkout(self):
        """A pooled connection that is still open. An idle connection's socket has nothing to
        read unless the server said goodbye or went away (stopped, restarted, connection killed):
        such a connection is dropped and another taken, so the first request after the database
        comes back succeeds instead of failing on a dead connection."""
        for _ in range(self._pool.maxconn + 1):
            try:
                conn = self._pool.getconn()
            except psycopg2.pool.PoolError as exc:
                raise StoreUnavailable(f"PostGIS at {self._where}: {exc}") from None
            except psycopg2.Error as exc:
                raise StoreUnavailable(f"PostGIS at {self._where} is not reachable: "
                                       f"{_first_line(exc)}") from None
            if not conn.closed and not _readable(conn):
                return conn
            self._pool.putconn(conn, close=True)
        raise StoreUnavailable(f"PostGIS at {self._where} keeps dropping connections")

    def _migrate(self) -> None:
        shipped = migrations()
        with self._cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
            if cur.fetchone() is None:
                try:
                    cur.execute("CREATE EXTENSION postgis")
                except psycopg2.Error as exc:
                    raise StoreUnavailable(
                        f"PostGIS at {self._where}: the postgis extension is not installed in the "
                        f"database and gridmap cannot create it ({_first_line(exc)}); "
                        "a superuser must run CREATE EXTENSION postgis") from None
            cur.execute("CREATE TABLE IF NOT EXISTS gridmap_schema (version integer PRIMARY KEY, "
                        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            cur.execute("SELECT version FROM gridmap_schema")
            applied = {r[0] for r in cur.fetchall()}
            newest = max((n for n, _, _ in shipped), default=0)
            if applied and max(applied) > newest:
                raise StoreUnavailable(
                    f"PostGIS at {self._where} has gridmap schema {max(applied)}, newer than this "
                    f"gridmap knows ({newest}): upgrade gridmap")
            for number, name, sql in shipped:
                if number not in applied:
                    cur.execute(sql)
                    cur.execute("INSERT INTO gridmap_schema (version, name) VALUES (%s, %s)",
                                (number, name))


# -- module helpers -----------------------------------------------------------------------------


def _frame(level: str, rows: list[tuple]) -> gpd.GeoDataFrame:
    table = pd.DataFrame.from_records(rows, columns=[*ROW_COLUMNS, "wkb"])
    table["households"] = pd.to_numeric(table["households"], errors="coerce").astype("float64")
    geoms = shapely.from_wkb(np.array([bytes(w) for w in table["wkb"]], dtype=object))
    return from_rows(level, table, geoms)


def _changes(rows: list[tuple]) -> dict[str, LayerChange]:
    found: dict[str, dict[str, list[str]]] = {
        level: {"added": [], "removed": [], "changed": []} for level in STORE_LAYERS}
    for level, code, what in rows:
        found[level][what].append(code)
    return {level: LayerChange(**{k: sorted(v) for k, v in kinds.items()})
            for level, kinds in found.items()}


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(values: list) -> list[str]:
    """Text for COPY's text format: backslash escapes, ``\\N`` for NULL (None or NaN)."""
    present = [v for v in values if isinstance(v, str)]
    joined = "".join(present)
    escape = any(c in joined for c in "\\\t\n\r")
    return [(v.translate(_ESCAPES) if escape else v) if isinstance(v, str) else r"\N"
            for v in values]


def _readable(conn) -> bool:
    """Whether an idle connection's socket has something to read (poll, not select: a busy
    server process may hold descriptors beyond select's limit)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _host_port(url: str) -> str:
    try:
        params = psycopg2.extensions.parse_dsn(url)
    except psycopg2.Error:
        raise StoreUnavailable("the PostGIS URL is not valid (expected "
                               "postgresql://user@host:port/database)") from None
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


def _first_line(exc: Exception, url: str | None = None) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if url:
        password = psycopg2.extensions.parse_dsn(url).get("password")
        if password:
            text = text.replace(password, "***")
    return text[:300]
