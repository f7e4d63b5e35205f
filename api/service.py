"""What a running service holds: the store, and a lookup index per boundary version.

The service keeps no state of its own beyond caches, so any number of processes can serve behind a
load balancer. Indexes are built on first use of a version and kept (a few at most); when the store
cannot be reached, lookups of the active version keep answering from the last index built.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
import weakref
from collections import OrderedDict

from gridmap.access import mask_phones
from gridmap.config import Settings
from gridmap.errors import StoreUnavailable, VersionNotFound
from gridmap.lookup import LookupIndex
from gridmap.store.base import STORE_LAYERS, Store, Version

log = logging.getLogger("gridmap.api")
_LEVELS = tuple(level for level in STORE_LAYERS if level != "building")
_KEEP = 4  # versions whose index stays in memory
#: Seconds the active version is remembered before the store is asked again (in the background):
#: the store is not queried per request, and a newly published version answers within about this
#: long (plus the time its index takes to build).
ACTIVE_TTL = 1.0


class Service:
    def __init__(self, store: Store, settings: Settings, *, active_ttl: float = ACTIVE_TTL):
        self.store = store
        self.settings = settings
        self.active_ttl = active_ttl
        self._indexes: OrderedDict[int, LookupIndex] = OrderedDict()
        self._active: Version | None = None
        self._active_until = 0.0  # time.monotonic() until which _active is answered unasked
        self._lock = threading.Lock()
        self._building: dict[int, threading.Lock] = {}
        self._refreshing = False
        #: event loop → the limiter of its heavy requests (``api.heavy``)
        self.heavy_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def cached_active(self) -> Version | None:
        """The active version when it was resolved less than ``active_ttl`` seconds ago, else
        None (then :meth:`resolve` asks the store). Never blocks: safe on the event loop."""
        if self._active is not None and time.monotonic() < self._active_until:
            return self._active
        return None

    def active_nowait(self) -> Version | None:
        """The active version without waiting, for the request path: the one remembered (None
        when none is). Once it is older than ``active_ttl``, one background thread asks the store
        again and, when another version is active, builds its index before switching to it — so
        no request waits on the store or a build, and a publication answers within about
        ``active_ttl`` plus the time its index takes to build."""
        active = self._active
        if active is not None and time.monotonic() >= self._active_until:
            with self._lock:
                start, self._refreshing = not self._refreshing, True
            if start:
                threading.Thread(target=self._refresh, name="gridmap-refresh", daemon=True).start()
        return active

    def refresh(self) -> None:
        """Ask the store for the active version now (after a publish through this service)."""
        self._refresh()

    def _refresh(self) -> None:
        try:
            found = self.store.resolve()
            self.index(found)
            self._active = found
        except VersionNotFound:
            self._active = None  # nothing is active any more: requests ask the store and get 404
        except Exception as exc:  # keep answering from what was loaded; try again later
            log.warning("could not refresh the active version: %s", exc)
        finally:
            self._active_until = time.monotonic() + self.active_ttl
            self._refreshing = False

    def resolve(self, version: int | None = None, on: dt.date | None = None) -> Version:
        """The version asked for by number, as of a date, or the active one. Only the active one
        is cached (for ``active_ttl`` s); numbers and dates are always asked of the store."""
        latest = version is None and on is None
        if latest:
            cached = self.cached_active()
            if cached is not None:
                return cached
        try:
            found = self.store.resolve(version=version, on=on)
        except StoreUnavailable:
            if latest and self._active is not None:
                return self._active  # keep answering from what was loaded
            raise
        if latest:
            self._active = found
            self._active_until = time.monotonic() + self.active_ttl
        return found

    def cached_index(self, v: Version) -> LookupIndex | None:
        """The index of ``v`` when it is built already, else None. Never blocks on a build."""
        with self._lock:
            built = self._indexes.get(v.id)
            if built is not None:
                self._indexes.move_to_end(v.id)
            return built

    def index(self, v: Version) -> LookupIndex:
        built = self.cached_index(v)
        if built is not None:
            return built
        # One build per version at a time: concurrent requests for a version not yet indexed
        # (e.g. just after a publish) wait for the first one's build instead of each building.
        with self._lock:
            building = self._building.setdefault(v.id, threading.Lock())
        with building:
            built = self.cached_index(v)
            if built is None:
                built = self._build(v)
                # An index is a few hundred thousand long-lived objects; left in the collected
                # generations, every full collection rescans them (a ~30 ms pause at 100k grids,
                # felt by every request in flight). Freezing moves what exists now out of the
                # collector's sight; refcounting still frees an index dropped from the cache.
                gc.freeze()
        with self._lock:
            self._building.pop(v.id, None)
        return built

    def _build(self, v: Version) -> LookupIndex:
        layers = {level: self.store.read_layer(level, v.id) for level in _LEVELS}
        # A level the version does not hold (e.g. no city layer) ends the chain below it rather
        # than being indexed as an empty parent level; the grid layer stays, empty or not.
        layers = {level: frame for level, frame in layers.items()
                  if level == "grid" or len(frame)}
        # Lookups name the grid's worker (public by design, DESIGN.md §4), never a phone number
        # written into that field.
        for frame in layers.values():
            if "worker" in frame.columns:
                frame["worker"] = frame["worker"].map(mask_phones)
        built = LookupIndex.build(layers, version=v.id, near_m=self.settings.lookup.near_m)
        with self._lock:
            self._indexes[v.id] = built
            while len(self._indexes) > _KEEP:
                self._indexes.popitem(last=False)
        return built

    def warm(self) -> None:
        """Build the active version's index now, so the first request does not wait."""
        self.index(self.resolve())
