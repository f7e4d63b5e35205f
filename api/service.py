"""What a running service holds: the store, and a lookup index per boundary version.

The service keeps no state of its own beyond caches, so any number of processes can serve behind a
load balancer. Indexes are built on first use of a version and kept (a few at most); when the store
cannot be reached, lookups of the active version keep answering from the last index built.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict

from gridmap.config import Settings
from gridmap.errors import StoreUnavailable
from gridmap.lookup import LookupIndex
from gridmap.store.base import STORE_LAYERS, Store, Version

_LEVELS = tuple(level for level in STORE_LAYERS if level != "building")
_KEEP = 4  # versions whose index stays in memory


class Service:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self._indexes: OrderedDict[int, LookupIndex] = OrderedDict()
        self._active: Version | None = None
        self._lock = threading.Lock()

    def resolve(self, version: int | None = None, on: dt.date | None = None) -> Version:
        try:
            found = self.store.resolve(version=version, on=on)
        except StoreUnavailable:
            if version is None and on is None and self._active is not None:
                return self._active  # keep answering from what was loaded
            raise
        if version is None and on is None:
            self._active = found
        return found

    def index(self, v: Version) -> LookupIndex:
        with self._lock:
            if v.id in self._indexes:
                self._indexes.move_to_end(v.id)
                return self._indexes[v.id]
        layers = {level: self.store.read_layer(level, v.id) for level in _LEVELS}
        built = LookupIndex.build(layers, version=v.id, near_m=self.settings.lookup.near_m)
        with self._lock:
            self._indexes[v.id] = built
            while len(self._indexes) > _KEEP:
                self._indexes.popitem(last=False)
        return built

    def warm(self) -> None:
        """Build the active version's index now, so the first request does not wait."""
        self.index(self.resolve())
