"""Dependencies shared by the routes (``Annotated`` aliases, as FastAPI's full-stack template does)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.service import Service
from gridmap.access import ANONYMOUS, OPEN, Principal, check, find_principal
from gridmap.errors import Unauthorized
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


# -- access (gridmap.access) -------------------------------------------------------------------


async def principal_for(request: Request, service: Service) -> Principal:
    """Who sends ``request``: :data:`~gridmap.access.OPEN` when access control is off, nobody
    without an ``Authorization`` header, else the key's principal — 401 for a key that is not
    ``Bearer KEY``, unknown or revoked (never a silent downgrade to nobody)."""
    if not service.settings.access.enabled:
        return OPEN
    header = request.headers.get("authorization")
    if header is None:
        return ANONYMOUS
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the key as Authorization: Bearer KEY")
    found = await run_in_threadpool(find_principal, service.store, token.strip())
    if found is None:
        raise Unauthorized("the API key is unknown or revoked")
    return found


async def get_principal(request: Request, service: ServiceDep) -> Principal:
    """The caller of a route that needs a key: 401 without one. Routers that hold only such
    routes also list it in ``dependencies=``, so it is solved before any other dependency or
    parameter check (a request without a key is a 401, whatever else is wrong with it)."""
    principal = await principal_for(request, service)
    if principal.role is None:
        raise Unauthorized("this needs an API key: send Authorization: Bearer KEY")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
#: For routers whose every route needs a key.
NEEDS_KEY = [Depends(get_principal)]


async def get_optional_principal(request: Request, service: ServiceDep) -> Principal:
    """The caller, or nobody (a route that takes its key another way too: Open311's api_key)."""
    return await principal_for(request, service)


OptionalPrincipalDep = Annotated[Principal, Depends(get_optional_principal)]


async def get_reader(request: Request, service: ServiceDep) -> Principal:
    """The principal of a route of the public map (lookup, boundaries): anybody when public
    lookup is configured, else any valid key."""
    principal = await principal_for(request, service)
    if not service.settings.access.public_lookup:
        check(principal, "lookup")
    return principal


ReaderDep = Annotated[Principal, Depends(get_reader)]

#: What routes that check access may answer besides their own (for ``responses=``).
AUTH = (401, 403)
