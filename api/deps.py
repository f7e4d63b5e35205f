"""Dependencies shared by the routes (``Annotated`` aliases, as FastAPI's full-stack template does)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.service import Service
from gridmap.store.base import Version

# Both dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the threadpool,
# a hop that costs more than the lookup itself. Whatever may block (a store query) still goes
# to the threadpool, explicitly.


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


VersionQuery = Annotated[int | None, Query(ge=1, description="boundary version number")]
DateQuery = Annotated[dt.date | None, Query(description="answer as of this day (YYYY-MM-DD)")]


async def version_for(service: Service, version: int | None = None,
                      date: dt.date | None = None) -> Version:
    """The boundary version a request asks for: by number, as of a date, or the active one."""
    if version is None and date is None:
        active = service.active_nowait()  # re-read from the store every second, in the background
        if active is not None:
            return active
    return await run_in_threadpool(service.resolve, version=version, on=date)


async def get_version(service: ServiceDep, version: VersionQuery = None,
                      date: DateQuery = None) -> Version:
    """:func:`version_for` as a dependency (``GET /lookup`` calls it directly: each dependency
    FastAPI solves costs about as much as the lookup itself)."""
    return await version_for(service, version, date)


VersionDep = Annotated[Version, Depends(get_version)]
