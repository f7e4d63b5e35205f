"""Heavy requests take turns: map pages, plan edits, uploads and station coverage.

Each of them reads a whole unit and builds a page or a plan in Python, holding tens of
megabytes while it does. Run in Starlette's shared threadpool (40 threads), 32 clients asking
for maps get 32 of them at once: no faster on a couple of cores (they share the GIL), and the
process keeps the high-water mark of all those pages. So they run ``heavy_at_once``
(:class:`gridmap.config.ServerSettings`) at a time in threads of their own, and the rest wait
in the event loop, where waiting costs nothing — the lookups and incident writes meanwhile
keep the shared pool to themselves.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

T = TypeVar("T")


def limiter(service) -> CapacityLimiter:
    """The service's limiter in the running event loop (a limiter waits in the loop that made
    it, and the tests start a loop per client)."""
    loop = asyncio.get_running_loop()
    found = service.heavy_limiters.get(loop)
    if found is None:
        found = service.heavy_limiters[loop] = CapacityLimiter(service.settings.server.heavy_at_once)
    return found


async def run_heavy(service, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread once one of the service's heavy slots is free;
    what it freed is handed back to the system before the slot is."""
    return await anyio.to_thread.run_sync(functools.partial(_then_trim, fn, *args, **kwargs),
                                          limiter=limiter(service))


def _then_trim(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        if _malloc_trim is not None:
            _malloc_trim(0)


def _find_malloc_trim():
    """glibc's ``malloc_trim``: a page's frames and strings are freed into malloc's arenas, which
    keep them (one arena per thread that drew a page); trimming returns the free pages to the
    system, so the process's size follows what it holds. None off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()
