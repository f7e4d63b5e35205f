"""The store contract: boundary layers kept as dated versions (MapIt's "generations").

Every layer (``city``, ``district``, ``street``, ``community``, ``grid``, ``building``) is kept per
version. An import writes into the one *draft* version (created, when there is none, as a copy of
the active version); ``publish`` makes the draft active, stamps its date, and retires the previous
active version, which stays readable by number or by date. Writes are atomic: a failed or killed
import leaves the store exactly as it was.

Two implementations keep this contract: :mod:`gridmap.store.geopackage` (a GeoPackage file, the
embedded default, which opens in QGIS) and :mod:`gridmap.store.postgis` (PostgreSQL + PostGIS).
The same contract tests run against both.

Besides the versioned layers, a store keeps two kinds of *records* that are not versioned:
incident reports (with their append-only trail, changed under optimistic concurrency: each change
names the revision it was made from, and a stale one is refused with RevisionConflict) and service
stations (see :mod:`gridmap.store.records` for why they are a table and not a layer).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import geopandas as gpd

from gridmap.access import ApiKey
from gridmap.incidents import Incident
from gridmap.store.records import IncidentQuery

__all__ = ["STORE_LAYERS", "Version", "LayerChange", "PublishResult", "Store"]

#: Layers a store keeps, top down; features carry our fields (DESIGN.md §4) and EPSG:4326.
STORE_LAYERS = ("city", "district", "street", "community", "grid", "building")


@dataclass(frozen=True)
class Version:
    """One boundary version: ``draft`` (being edited), ``active`` (answering), or ``retired``."""

    id: int
    status: str
    created_at: dt.datetime
    published_on: dt.date | None = None
    note: str = ""
    base: int | None = None  # a draft (plan): the version that was active when it was begun


@dataclass(frozen=True)
class LayerChange:
    """What publishing a draft changes in one layer, by code."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # same code, other geometry or attributes


@dataclass(frozen=True)
class PublishResult:
    draft: Version
    previous: Version | None
    changes: dict[str, LayerChange]
    committed: bool


@runtime_checkable
class Store(Protocol):
    """What every store does. Levels are names from :data:`STORE_LAYERS`."""

    url: str

    def versions(self) -> list[Version]:
        """All versions, oldest first."""

    def resolve(self, *, version: int | None = None, on: dt.date | None = None) -> Version:
        """The version asked for: by number, in force on a date, or else the active one.

        Raises VersionNotFound (also when nothing has been published yet).
        """

    def read_layer(self, level: str, version: int) -> gpd.GeoDataFrame:
        """A whole layer of a version (possibly empty), our fields, EPSG:4326."""

    def query_features(self, level: str, version: int, *, bbox=None, parent_code: str | None = None,
                       limit: int = 100, offset: int = 0) -> tuple[gpd.GeoDataFrame, int]:
        """A page of features ordered by code, and how many match in all.

        ``bbox`` is (minx, miny, maxx, maxy) in lon/lat: features intersecting it.
        """

    def get_feature(self, level: str, version: int, code: str) -> gpd.GeoDataFrame:
        """The one feature with ``code`` (a one-row frame); raises FeatureNotFound."""

    def write_draft(self, layers: dict[str, gpd.GeoDataFrame], note: str = "", *,
                    draft: int | None = None) -> Version:
        """Replace the given layers of draft ``draft`` (default: the newest open draft, created
        as a copy of the active version if there is none), atomically."""

    def new_draft(self, layers: dict[str, gpd.GeoDataFrame], note: str = "") -> Version:
        """A new draft (a plan) begun from the active version, with ``layers`` replaced."""

    def publish(self, *, commit: bool, on: dt.date | None = None,
                draft: int | None = None) -> PublishResult:
        """What activating draft ``draft`` (default: the only open one) changes; activates it
        only with ``commit``.

        Raises NothingToPublish when there is no draft, Conflict when the draft was begun from
        a version that is no longer active (another plan was published meanwhile).
        """

    def discard_draft(self, draft: int) -> None:
        """Delete an open draft and its layers."""

    # -- records: incidents and stations ---------------------------------------------------

    def add_incident(self, incident: Incident, *, idempotency_key: str | None = None,
                     fingerprint: str | None = None) -> tuple[Incident, bool]:
        """Store a new incident with its trail; the store gives it its id. ``(incident, True)``.

        When ``idempotency_key`` was stored before: ``(that incident, False)`` if ``fingerprint``
        matches the one stored with it, else IdempotencyKeyReused — never a second incident.
        """

    def update_incident(self, incident: Incident, *, expected_revision: int) -> Incident:
        """Save a changed incident if the stored one is still at ``expected_revision``; its trail
        entries after that revision are appended. RevisionConflict when another change came first,
        IncidentNotFound when there is no such incident."""

    def get_incident(self, incident_id: int) -> Incident:
        """The incident with its whole trail; raises IncidentNotFound."""

    def query_incidents(self, query: IncidentQuery | None = None, *, limit: int | None = 100,
                        offset: int = 0) -> tuple[list[Incident], int]:
        """A page of the incidents matching ``query`` (in id order), and how many match in all."""

    def count_incidents(self, query: IncidentQuery | None = None, *, by: str = "grid") -> dict:
        """How many incidents match per grid (or community, street, status, category…)."""

    def add_stations(self, stations: gpd.GeoDataFrame) -> int:
        """Register service stations (points with ``code`` and ``kind``); Conflict on a code
        already registered, and then none is added."""

    def read_stations(self) -> gpd.GeoDataFrame:
        """Every registered station, in code order, EPSG:4326."""

    # -- API keys (gridmap.access): hashes only, never the tokens ------------------------------

    def add_key(self, key: ApiKey) -> ApiKey:
        """Store a new key (its hash, role, unit, name); the store gives it its id."""

    def find_key(self, hash_: str) -> ApiKey | None:
        """The key whose token hashes to ``hash_`` (revoked or not), or None."""

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, in id order."""

    def revoke_key(self, key_id: int) -> ApiKey:
        """Revoke a key from now on (revoking twice keeps the first time); KeyNotFound."""

    def close(self) -> None:
        """Release files and connections."""
