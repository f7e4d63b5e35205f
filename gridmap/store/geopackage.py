"""The embedded store: one GeoPackage file that a planner can also open in QGIS.

Each level (``city`` … ``building``) is one spatial layer holding every version's features, told
apart by an integer ``version`` column; ``gridmap_version`` lists the versions and ``gridmap_meta``
the schema version. Readers open the file as it is; every write works on a copy beside it and
renames the copy over the file (after fsync), so a failed or killed import leaves the file exactly
as it was, and readers see either the old file or the new, never half of a write. Writers take an
exclusive ``flock`` on ``<file>.lock``; one that waits longer than ``lock_timeout`` gets Conflict.

Incidents, stations and API keys are records, not versions, written in place under the same
``flock``: :mod:`gridmap.store.gpkgrecords`.

Layers read back are cached in memory per (file, version, level), with geopandas' STRtree as the
in-memory spatial index for bbox queries (DESIGN.md §5).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import sqlite3
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from contextlib import closing, contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from gridmap.errors import (
    Conflict,
    FeatureNotFound,
    FileUnreadable,
    StoreUnavailable,
    VersionNotFound,
)
from gridmap.store import (
    NOTHING_PUBLISHED,
    ROW_COLUMNS,
    bbox_polygon,
    check_base,
    check_level,
    check_page,
    check_publish_date,
    empty_rows,
    from_rows,
    pick_draft,
    resolve_version,
    to_rows,
)
from gridmap.store.base import STORE_LAYERS, LayerChange, PublishResult, Version
from gridmap.store.gpkgrecords import (
    RECORD_LOCK_TIMEOUT,
    RecordTables,
    create_record_tables,
)

__all__ = ["GeoPackageStore", "SCHEMA_VERSION"]

#: The layout of the file; a file with a newer number was written by a newer gridmap.
SCHEMA_VERSION = 2  # 2: incidents, their trail, stations
_CACHE_SIZE = 12
_DIFF = {
    "added": 'SELECT code FROM "{t}" d WHERE version = :new AND NOT EXISTS '
             '(SELECT 1 FROM "{t}" a WHERE a.version = :old AND a.code = d.code)',
    "removed": 'SELECT code FROM "{t}" a WHERE version = :old AND NOT EXISTS '
               '(SELECT 1 FROM "{t}" d WHERE d.version = :new AND d.code = a.code)',
    "changed": 'SELECT d.code FROM "{t}" d JOIN "{t}" a ON a.version = :old AND a.code = d.code '
               'WHERE d.version = :new AND (d.geom IS NOT a.geom OR {attributes})',
}

_TABLES = """
CREATE TABLE gridmap_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE gridmap_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    created_at TEXT NOT NULL,
    published_on TEXT,
    note TEXT NOT NULL DEFAULT '',
    base INTEGER);
INSERT INTO gpkg_contents (table_name, data_type, identifier, description)
VALUES ('gridmap_version', 'attributes', 'gridmap_version', 'gridmap boundary versions'),
       ('gridmap_meta', 'attributes', 'gridmap_meta', 'gridmap store schema');
"""


class GeoPackageStore(RecordTables):
    """Boundary versions in a GeoPackage file (created on the first write).

    >>> import tempfile, os
    >>> store = GeoPackageStore(os.path.join(tempfile.mkdtemp(), "gridmap.gpkg"))
    >>> store.versions()
    []
    """

    def __init__(self, path: str | os.PathLike, *, lock_timeout: float = 5.0):
        self.path = Path(path)
        self.url = str(path)
        self.lock_timeout = lock_timeout
        self._cache: OrderedDict[tuple, gpd.GeoDataFrame] = OrderedDict()
        self._cache_lock = threading.Lock()  # the HTTP service reads from several threads
        if self.path.exists():
            self._check()

    # -- reading -----------------------------------------------------------------------------

    def versions(self) -> list[Version]:
        if not self.path.exists():
            return []
        with self._reading() as con:
            base = "base" if _has_base(con) else "NULL"
            rows = con.execute(f"SELECT id, status, created_at, published_on, note, {base} "
                               "FROM gridmap_version ORDER BY id").fetchall()
        return [_version(row) for row in rows]

    def resolve(self, *, version: int | None = None, on: dt.date | None = None) -> Version:
        return resolve_version(self.versions(), version=version, on=on)

    def read_layer(self, level: str, version: int) -> gpd.GeoDataFrame:
        return self._layer(level, version).copy()

    def query_features(self, level: str, version: int, *, bbox=None, parent_code: str | None = None,
                       limit: int = 100, offset: int = 0) -> tuple[gpd.GeoDataFrame, int]:
        check_page(limit, offset)
        frame = self._layer(level, version)
        keep = np.ones(len(frame), dtype=bool)
        if bbox is not None:
            keep[:] = False
            keep[frame.sindex.query(bbox_polygon(bbox), predicate="intersects")] = True
        if parent_code is not None:
            keep &= (frame["parent_code"] == parent_code).to_numpy(dtype=bool)
        hits = np.flatnonzero(keep)  # the frame is in code order, so its positions are too
        page = frame.iloc[hits[offset:offset + limit]].reset_index(drop=True)
        return page, int(len(hits))

    def get_feature(self, level: str, version: int, code: str) -> gpd.GeoDataFrame:
        frame = self._layer(level, version)
        found = frame[frame["code"] == code]
        if found.empty:
            raise FeatureNotFound(f"no {level} with code {code} in version {version}")
        return found.reset_index(drop=True)

    # -- writing -----------------------------------------------------------------------------

    def write_draft(self, layers: dict[str, gpd.GeoDataFrame], note: str = "", *,
                    draft: int | None = None) -> Version:
        prepared = {level: to_rows(level, frame) for level, frame in layers.items()}
        with self._locked():
            current = self.versions()
            target = pick_draft(current, draft)
            return self._version(self._rewrite(self._drafting(current, target, prepared, note)))

    def new_draft(self, layers: dict[str, gpd.GeoDataFrame], note: str = "") -> Version:
        prepared = {level: to_rows(level, frame) for level, frame in layers.items()}
        with self._locked():
            current = self.versions()
            return self._version(self._rewrite(self._drafting(current, None, prepared, note)))

    def _drafting(self, current: list[Version], draft: Version | None, prepared: dict, note: str):
        """The change writing ``prepared`` into ``draft``, or into a new draft that starts as a
        copy of the active version and remembers it as its base."""
        active = next((v for v in current if v.status == "active"), None)

        def change(tmp: Path) -> int:
            with closing(sqlite3.connect(tmp)) as con, con:
                if not _has_base(con):  # a file from before plans had bases
                    con.execute("ALTER TABLE gridmap_version ADD COLUMN base INTEGER")
                if draft is None:
                    draft_id = con.execute(
                        "INSERT INTO gridmap_version (status, created_at, note, base) "
                        "VALUES ('draft', ?, ?, ?)",
                        (_now(), note, active.id if active else None)).lastrowid
                else:
                    draft_id = draft.id
                    if note:
                        con.execute("UPDATE gridmap_version SET note = ? WHERE id = ?",
                                    (note, draft_id))
                    for level in prepared:
                        con.execute(f'DELETE FROM "{level}" WHERE version = ?', (draft_id,))
            if draft is None and active is not None:
                # A new draft starts as a copy of what is in force.
                for level in STORE_LAYERS:
                    if level not in prepared:
                        rows = _read_rows(tmp, level, active.id)
                        self._write_layer(tmp, draft_id, level, rows)
            for level, rows in prepared.items():
                self._write_layer(tmp, draft_id, level, rows)
            return draft_id

        return change

    def publish(self, *, commit: bool, on: dt.date | None = None,
                draft: int | None = None) -> PublishResult:
        with self._locked():
            current = self.versions()
            chosen = pick_draft(current, draft, publishing=True)
            active = next((v for v in current if v.status == "active"), None)
            changes = {level: self._diff(level, active, chosen) for level in STORE_LAYERS}
            if not commit:
                return PublishResult(draft=chosen, previous=active, changes=changes,
                                     committed=False)
            check_base(chosen, active)
            on = on or dt.date.today()
            check_publish_date(on, current)

            def change(tmp: Path) -> None:
                with closing(sqlite3.connect(tmp)) as con, con:
                    con.execute("UPDATE gridmap_version SET status = 'retired' WHERE status = 'active'")
                    con.execute("UPDATE gridmap_version SET status = 'active', published_on = ? "
                                "WHERE id = ?", (on.isoformat(), chosen.id))

            self._rewrite(change)
        return PublishResult(draft=self._version(chosen.id),
                             previous=self._version(active.id) if active else None,
                             changes=changes, committed=True)

    def discard_draft(self, draft: int) -> None:
        with self._locked():
            target = pick_draft(self.versions(), draft)

            def change(tmp: Path) -> None:
                with closing(sqlite3.connect(tmp)) as con, con:
                    for level in STORE_LAYERS:
                        con.execute(f'DELETE FROM "{level}" WHERE version = ?', (target.id,))
                    con.execute("DELETE FROM gridmap_version WHERE id = ?", (target.id,))

            self._rewrite(change)

    def close(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # -- internals ---------------------------------------------------------------------------

    def _version(self, version: int) -> Version:
        return resolve_version(self.versions(), version=version)

    def _layer(self, level: str, version: int) -> gpd.GeoDataFrame:
        check_level(level)
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise VersionNotFound(f"there is no version {version}: {NOTHING_PUBLISHED}") from None
        with self._shared():
            # Keyed by the boundary generation, not the file's mtime: incident and station
            # writes change the file in place but never a boundary layer, and must not evict.
            key = (self._generation(stat), level, int(version))
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            self._version(version)
            rows = _read_rows(self.path, level, int(version))
        frame = from_rows(level, rows, rows["geometry"].to_numpy())
        frame.sindex  # built now, once, rather than by concurrent first queries
        with self._cache_lock:
            self._cache[key] = frame
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return frame

    def _diff(self, level: str, old: Version | None, new: Version) -> LayerChange:
        """Codes added, removed and changed, compared in SQLite.

        Geometry blobs compare byte for byte: GDAL writes the same blob for the same WKB, and
        both versions' rows were written by it. Props are canonical JSON (see to_rows).
        """
        attributes = " OR ".join(f"d.{c} IS NOT a.{c}" for c in ROW_COLUMNS[1:])
        args = {"new": new.id, "old": old.id if old else -1}
        with self._reading() as con:
            found = {kind: [row[0] for row in con.execute(sql.format(t=level, attributes=attributes), args)]
                     for kind, sql in _DIFF.items()}
        return LayerChange(**{kind: sorted(codes) for kind, codes in found.items()})

    def _write_layer(self, target: Path, version_id: int, level: str, rows: pd.DataFrame) -> None:
        """Append one layer's rows to the copy being written (the step tests make fail)."""
        if rows.empty:
            return
        frame = gpd.GeoDataFrame(rows[list(ROW_COLUMNS)].assign(version=int(version_id)),
                                 geometry=gpd.GeoSeries(rows["geometry"].to_numpy(), crs="EPSG:4326"))
        pyogrio.write_dataframe(frame, target, layer=level, driver="GPKG", append=True,
                                promote_to_multi=False, use_arrow=True)

    def _rewrite(self, change):
        """Apply ``change`` to a copy of the file, then swap the copy in (the lock is held)."""
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp.gpkg")
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
            else:
                _create(tmp)
            result = change(tmp)
            with closing(sqlite3.connect(tmp)) as con, con:  # readers' caches key on this
                con.execute("INSERT OR REPLACE INTO gridmap_meta VALUES ('generation', ?)",
                            (uuid.uuid4().hex,))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return result

    def _generation(self, stat) -> str:
        """The boundary generation: a token every boundary write stamps (a file written before
        tokens falls back to its inode, size and time)."""
        with self._reading() as con:
            row = con.execute("SELECT value FROM gridmap_meta WHERE key = 'generation'").fetchone()
        return row[0] if row else f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"

    @contextmanager
    def _shared(self):
        """A shared lock on ``<file>.lock`` while GDAL reads a layer: GDAL reading the file while
        an incident is written into it in place saw half-written pages under load (500s in
        benchmarks/bench_load.py). Writers hold the lock exclusively; readers wait for them."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only folder: nobody can be writing here
            yield
            return
        try:
            if not _flock(fd, fcntl.LOCK_SH, max(self.lock_timeout, RECORD_LOCK_TIMEOUT), 0.01):
                raise StoreUnavailable(f"{self.path} has been locked by a writer for too long; "
                                       "try again")
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self, timeout: float | None = None):
        folder = self.path.parent
        if not folder.is_dir():
            raise StoreUnavailable(f"cannot write {self.path}: the folder {folder} does not exist")
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            if not _flock(fd, fcntl.LOCK_EX, self.lock_timeout if timeout is None else timeout, 0.05):
                raise Conflict(f"{self.path} is being written by another import or publish; "
                               "try again when it has finished")
            # Whatever a killed writer left beside the file is garbage now that we hold the lock;
            # its rollback journal is not: it must be played back before the file is copied.
            for stale in folder.glob(f".{self.path.name}.*.tmp.gpkg*"):
                stale.unlink(missing_ok=True)
            self._recover()
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _recover(self) -> None:
        """Roll back what a writer killed inside an incident transaction left half-done.

        Such a writer leaves a hot ``-journal`` beside the file; a read-only connection (ours, and
        GDAL's) cannot play it back and refuses the file, and a boundary write must not copy the
        half-written pages. Any read-write connection rolls it back on its first read, under
        SQLite's own locks (a live writer's journal is not hot and is left alone).
        """
        if not self.path.with_name(self.path.name + "-journal").exists():
            return
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as con:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot recover {self.path} from an interrupted write: "
                                   f"{exc}") from None

    @contextmanager
    def _reading(self):
        if os.access(self.path.parent, os.W_OK):
            self._recover()
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from None
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            raise FileUnreadable(f"{self.path}: not a gridmap GeoPackage ({exc})") from None
        finally:
            con.close()

    def _check(self) -> None:
        with self._reading() as con:
            try:
                row = con.execute("SELECT value FROM gridmap_meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.OperationalError:
                raise FileUnreadable(f"{self.path} is not a gridmap store (no gridmap_meta table); "
                                     "import its layers with gridmap import instead") from None
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise StoreUnavailable(f"{self.path} has store schema {found}, newer than this gridmap "
                                   f"knows ({SCHEMA_VERSION}): upgrade gridmap")


# -- module helpers -----------------------------------------------------------------------------


def _create(target: Path) -> None:
    """A fresh store file: one empty layer per level, the version and meta tables."""
    for level in STORE_LAYERS:
        empty = empty_rows().assign(version=pd.Series([], dtype="int64"))
        frame = gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs="EPSG:4326"))
        pyogrio.write_dataframe(frame, target, layer=level, driver="GPKG",
                                geometry_type="Unknown", append=level != STORE_LAYERS[0])
    with closing(sqlite3.connect(target)) as con, con:
        con.executescript(_TABLES)
        con.execute("INSERT INTO gridmap_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        create_record_tables(con)
        for level in STORE_LAYERS:
            con.execute(f'CREATE INDEX "{level}_version_code" ON "{level}" (version, code)')


def _read_rows(path: Path, level: str, version: int) -> pd.DataFrame:
    """The stored rows of one version of a layer, in code order, geometries in ``geometry``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frame = pyogrio.read_dataframe(path, layer=level, where=f"version = {int(version)}",
                                       columns=list(ROW_COLUMNS), use_arrow=True)
    rows = pd.DataFrame({name: _objects(frame[name]) for name in ROW_COLUMNS})
    rows["households"] = pd.to_numeric(frame["households"], errors="coerce").astype("float64").to_numpy()
    rows["geometry"] = np.asarray(frame.geometry.values, dtype=object)
    if not rows["code"].is_monotonic_increasing:
        rows = rows.sort_values("code", kind="stable", ignore_index=True)
    return rows


def _objects(column: pd.Series) -> np.ndarray:
    if isinstance(column.dtype, pd.StringDtype):
        return column.to_numpy(dtype=object, na_value=None)
    values = column.to_numpy(dtype=object)
    values[pd.isna(values)] = None
    return values


def _version(row) -> Version:
    id_, status, created_at, published_on, note, base = row
    return Version(id=int(id_), status=status, created_at=dt.datetime.fromisoformat(created_at),
                   published_on=dt.date.fromisoformat(published_on) if published_on else None,
                   note=note or "", base=int(base) if base is not None else None)


def _flock(fd: int, mode: int, timeout: float, poll: float) -> bool:
    """Take ``flock`` ``mode`` on ``fd`` within ``timeout`` seconds; False when it stayed taken."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(poll)


def _has_base(con) -> bool:
    return any(row[1] == "base" for row in con.execute("PRAGMA table_info(gridmap_version)"))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
