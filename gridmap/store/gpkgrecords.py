"""Incidents, stations and API keys in the GeoPackage store: records, written in place.

Copying a whole file per report would not do, so unlike boundary versions these are written into
the file itself, in one SQLite transaction, while holding the store's exclusive ``flock`` — a
boundary write (copy, change, rename) can never run between the copy and the rename of an
incident write and lose it. ``incident`` and ``station`` are registered GeoPackage feature tables
(point geometry, EPSG:4326) so QGIS shows them too; SQLite triggers refuse any UPDATE or DELETE of
``incident_trail``, which is append-only. The SQL itself is shared with PostGIS
(:mod:`gridmap.store.recordsql`).

:class:`RecordTables` is the half of :class:`~gridmap.store.geopackage.GeoPackageStore` that
does this; the other half (versions, locks, the file) is in ``geopackage.py``.
"""

from __future__ import annotations

import sqlite3
import struct
from contextlib import contextmanager

import geopandas as gpd
import shapely

from gridmap.access import ApiKey
from gridmap.errors import StoreUnavailable
from gridmap.incidents import Incident
from gridmap.store import recordsql
from gridmap.store.records import IncidentQuery, station_rows, stations_frame

#: Seconds an incident or station write waits for the lock: a resident's report should wait out
#: a long boundary import rather than fail.
RECORD_LOCK_TIMEOUT = 30.0

# Not registered in gpkg_contents: QGIS and GDAL do not list it (it holds no map data).
_KEYS = """
CREATE TABLE IF NOT EXISTS api_key (
    id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
    role TEXT NOT NULL, unit TEXT, name TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    revoked_at TEXT)"""

_RECORDS = """
CREATE TABLE IF NOT EXISTS incident (
    id INTEGER PRIMARY KEY AUTOINCREMENT, geom BLOB,
    idempotency_key TEXT UNIQUE, fingerprint TEXT, category TEXT NOT NULL,
    description TEXT NOT NULL, photo_url TEXT, contact TEXT, lon REAL NOT NULL, lat REAL NOT NULL,
    status TEXT NOT NULL, level TEXT NOT NULL, reported_at TEXT NOT NULL, deadline TEXT NOT NULL,
    updated_at TEXT NOT NULL, version INTEGER, near_boundary INTEGER NOT NULL DEFAULT 0,
    grid_code TEXT, grid_name TEXT, community_code TEXT, street_code TEXT, district_code TEXT, worker TEXT,
    revision INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS incident_status ON incident (status, deadline);
CREATE INDEX IF NOT EXISTS incident_grid ON incident (grid_code);
CREATE INDEX IF NOT EXISTS incident_reported ON incident (reported_at);
CREATE TABLE IF NOT EXISTS incident_trail (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incident (id), seq INTEGER NOT NULL,
    at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL, from_state TEXT NOT NULL,
    to_state TEXT NOT NULL, kind TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
    UNIQUE (incident_id, seq));
CREATE TRIGGER IF NOT EXISTS incident_trail_no_update BEFORE UPDATE ON incident_trail
BEGIN SELECT RAISE(ABORT, 'the incident trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS incident_trail_no_delete BEFORE DELETE ON incident_trail
BEGIN SELECT RAISE(ABORT, 'the incident trail is append-only'); END;
CREATE TABLE IF NOT EXISTS station (
    fid INTEGER PRIMARY KEY AUTOINCREMENT, geom BLOB, code TEXT NOT NULL UNIQUE, name TEXT,
    kind TEXT NOT NULL, level TEXT, unit_code TEXT, floor_area_m2 REAL, opening_hours TEXT,
    lon REAL NOT NULL, lat REAL NOT NULL, registered_at TEXT NOT NULL);
INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description, srs_id)
VALUES ('incident', 'features', 'incident', 'gridmap incident reports', 4326),
       ('station', 'features', 'station', 'gridmap service stations', 4326),
       ('incident_trail', 'attributes', 'incident_trail', 'gridmap incident trails', 0);
INSERT OR IGNORE INTO gpkg_geometry_columns VALUES ('incident', 'geom', 'POINT', 4326, 0, 0),
                                                   ('station', 'geom', 'POINT', 4326, 0, 0);
INSERT OR REPLACE INTO gridmap_meta VALUES ('schema_version', '2');
"""


def _gpkg_point(lon: float, lat: float) -> dict:
    """A GeoPackage geometry blob: 'GP', version 0, flags (little-endian, no envelope), SRS id, WKB."""
    wkb = shapely.to_wkb(shapely.Point(lon, lat), byte_order=1)
    return {"geom": b"GP\x00\x01" + struct.pack("<i", 4326) + wkb}


_SQLITE = recordsql.Dialect(
    incident="incident", trail="incident_trail", station="station", param=lambda n: f":{n}",
    bbox=lambda p: f"lon >= {p('minx')} AND lon <= {p('maxx')} AND lat >= {p('miny')} "
                   f"AND lat <= {p('maxy')}",
    point_sql=":geom", point_args=_gpkg_point)


def create_record_tables(con) -> None:
    """The incident, trail and station tables (and their registration) in ``con``'s file."""
    for statement in _RECORDS.split(";\n"):
        if statement.strip():
            con.execute(statement)


class RecordTables:
    """Incidents, stations and keys of a GeoPackage store (mixed into it: uses its ``path``,
    ``lock_timeout``, ``_locked``, ``_reading`` and ``_rewrite``)."""

    def add_incident(self, incident: Incident, *, idempotency_key: str | None = None,
                     fingerprint: str | None = None) -> tuple[Incident, bool]:
        with self._in_place() as cur:
            return recordsql.insert_incident(cur, _SQLITE, incident, idempotency_key=idempotency_key,
                                             fingerprint=fingerprint)

    def update_incident(self, incident: Incident, *, expected_revision: int) -> Incident:
        with self._in_place() as cur:
            return recordsql.update_incident(cur, _SQLITE, incident,
                                             expected_revision=expected_revision)

    def get_incident(self, incident_id: int) -> Incident:
        with self._records() as cur:
            if cur is None:
                return recordsql.get_incident(_Empty(), _SQLITE, incident_id)
            return recordsql.get_incident(cur, _SQLITE, incident_id)

    def query_incidents(self, query: IncidentQuery | None = None, *, limit: int | None = 100,
                        offset: int = 0) -> tuple[list[Incident], int]:
        with self._records() as cur:
            if cur is None:
                return [], 0
            return recordsql.select_incidents(cur, _SQLITE, query or IncidentQuery(),
                                              limit=limit, offset=offset)

    def count_incidents(self, query: IncidentQuery | None = None, *, by: str = "grid") -> dict:
        with self._records() as cur:
            if cur is None:
                return recordsql.count_incidents(_Empty(), _SQLITE, query or IncidentQuery(), by)
            return recordsql.count_incidents(cur, _SQLITE, query or IncidentQuery(), by)

    def add_stations(self, stations: gpd.GeoDataFrame) -> int:
        rows = station_rows(stations)
        with self._in_place() as cur:
            return recordsql.insert_stations(cur, _SQLITE, rows)

    def read_stations(self) -> gpd.GeoDataFrame:
        with self._records() as cur:
            return stations_frame([] if cur is None else recordsql.select_stations(cur, _SQLITE))

    # -- API keys (gridmap.access): a table written in place, like the incidents -------------

    def add_key(self, key: ApiKey) -> ApiKey:
        with self._in_place() as cur:
            cur.execute(_KEYS)
            return recordsql.insert_key(cur, _SQLITE, key)

    def find_key(self, hash_: str) -> ApiKey | None:
        with self._keys() as cur:
            return None if cur is None else recordsql.find_key(cur, _SQLITE, hash_)

    def list_keys(self) -> list[ApiKey]:
        with self._keys() as cur:
            return [] if cur is None else recordsql.select_keys(cur, _SQLITE)

    def revoke_key(self, key_id: int) -> ApiKey:
        with self._in_place() as cur:
            cur.execute(_KEYS)
            return recordsql.revoke_key(cur, _SQLITE, key_id)

    @contextmanager
    def _in_place(self):
        """A cursor in one SQLite transaction on the file itself, under the write lock."""
        with self._locked(timeout=max(self.lock_timeout, RECORD_LOCK_TIMEOUT)):
            if not self.path.exists():
                self._rewrite(lambda tmp: None)  # a new, empty store
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'station'").fetchone():
                        # A file written by schema 1: add the record tables, in this transaction.
                        create_record_tables(con)
                    yield con.cursor()
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StoreUnavailable(f"cannot write {self.path}: {exc}") from None
            finally:
                con.close()

    @contextmanager
    def _reading_table(self, table: str):
        """A read-only cursor in one snapshot (an incident's row and its trail rows are read by
        two statements), or None when the file holds no ``table`` yet."""
        if not self.path.exists():
            yield None
            return
        with self._reading() as con:
            found = con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
            if found:
                con.execute("BEGIN")
            yield con.cursor() if found else None

    def _records(self):
        return self._reading_table("incident")

    def _keys(self):
        return self._reading_table("api_key")



class _Empty:
    """A cursor over a file with no incident tables: every query finds nothing."""

    rowcount = 0

    def execute(self, sql, args=None):
        self._count = sql.lstrip().upper().startswith("SELECT COUNT")

    def fetchone(self):
        return (0,) if self._count else None

    def fetchall(self):
        return []
