"""The road layer service circles are walked along: read from a file, built into a network once.

A deployment names one road file (``GRIDMAP_STATIONS__ROADS``); the service builds its
:class:`~gridmap.stations.WalkNetwork` on the first coverage request and keeps it for as long as
the file is unchanged. A file that is missing, unreadable or holds no walkable lines is a fault of
the deployment, not of the request: :class:`RoadsUnavailable` (HTTP 503, exit code 2), naming
the file, while everything that does not walk along roads keeps answering.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from gridmap.errors import GridmapError

from .network import WalkNetwork, build_network

__all__ = ["RoadsUnavailable", "cached_network", "load_network"]

_KEEP = 2  # networks kept: the configured one, and its successor while a file is replaced
_cache: OrderedDict[tuple, WalkNetwork] = OrderedDict()
_lock = threading.Lock()


class RoadsUnavailable(GridmapError):
    """The configured road layer cannot be used (missing, unreadable, no walkable lines).

    503 rather than 4xx: the request was fine, the service's configuration is not; the detail
    names the file so that whoever runs the service can fix it (:meth:`for_callers` keeps its
    name only, for answers over HTTP: where the server keeps it is not a caller's business).
    """

    status = 503

    def __init__(self, detail: str, path: Path | None = None):
        super().__init__(detail)
        self.path = path

    def for_callers(self) -> "RoadsUnavailable":
        if self.path is None:
            return self
        detail = self.detail
        for folder in {str(self.path.resolve().parent), str(self.path.parent)} - {"", "."}:
            detail = detail.replace(folder.rstrip("/") + "/", "")
        return RoadsUnavailable(detail)


def _where(path: Path, layer: str | None) -> str:
    return f"{path}" + (f" (layer {layer!r})" if layer else "")


def _unavailable(path: Path, layer: str | None, why: str) -> RoadsUnavailable:
    if path.name not in why:
        why = f"{_where(path, layer)}: {why}"
    return RoadsUnavailable(f"cannot walk along the road layer: {why}", path)


def load_network(path: str | Path, layer: str | None = None) -> WalkNetwork:
    """Read road lines from `path` (any file :func:`gridmap.io.read_layer` reads; `layer` in a
    GeoPackage of several) and build their walking network.

    Raises :class:`RoadsUnavailable`, naming the file, when that cannot be done.
    """
    from gridmap.io import read_layer

    path = Path(path)
    try:
        roads = read_layer(path, layer=layer, geometry="any")
        return build_network(roads)
    except GridmapError as exc:
        # read_layer's hint names the command line's --layer; here the layer has its own name.
        why = exc.detail.replace("with --layer", "with --roads-layer (GRIDMAP_STATIONS__ROADS_LAYER)")
    except Exception as exc:  # noqa: BLE001 - GEOS or PROJ refusing the lines: still a bad file
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    raise _unavailable(path, layer, why)


def cached_network(path: str | Path, layer: str | None = None) -> WalkNetwork:
    """:func:`load_network`, built once per file and kept while the file is unchanged (same
    size and modification time); concurrent first callers wait for one build. Failures are not
    kept: the next call tries the file again."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise _unavailable(path, layer, "no such file") from None
    key = (str(path.resolve()), layer, stat.st_mtime_ns, stat.st_size)
    with _lock:
        net = _cache.get(key)
        if net is None:
            net = load_network(path, layer)
            _cache[key] = net
            while len(_cache) > _KEEP:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
    return net
