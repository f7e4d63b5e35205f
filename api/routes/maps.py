"""Supervisor maps as complete HTML pages (``gridmap.maps``), per unit, offline.

A page reads whole layers of a version; they are kept per version (a couple at most), so a page
after the first costs only its drawing. Stations and incidents are read from the store on every
page (they change all day; boundaries only with a new version). Pages are drawn a few at a time
(:mod:`api.heavy`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from api.deps import AUTH, NEEDS_KEY, PrincipalDep, ServiceDep, VersionDep
from api.heavy import run_heavy
from api.problems import responses
from gridmap import access
from gridmap.access import OPEN, Principal
from gridmap.maps.units import unit_not_found
from gridmap.store.base import STORE_LAYERS

router = APIRouter(tags=["Maps"], dependencies=NEEDS_KEY)

UnitQuery = Annotated[str, Query(min_length=1, max_length=32,
                                 description="code of a city, district, street or community")]
_KEEP = 2
_cache: OrderedDict[tuple, dict] = OrderedDict()
_lock = threading.Lock()


def _layers(service, version: int) -> dict:
    key = (id(service.store), version)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    layers = {level: service.store.read_layer(level, version) for level in STORE_LAYERS}
    with _lock:
        _cache[key] = layers
        while len(_cache) > _KEEP:
            _cache.popitem(last=False)
    return layers


def _unit(service, version, code: str, principal: Principal = OPEN, action: str = "view"):
    """The unit asked for, when it lies in the caller's (401/403, else 404 as if absent)."""
    from gridmap.maps import select_unit

    access.check(principal, action, code, what=f"unit {code}", missing=unit_not_found(code))
    return select_unit(_layers(service, version.id), code,
                       max_grids=service.settings.maps.max_grids)


def _incidents(service, unit, principal: Principal = OPEN):
    """The incidents drawn on a page: those of the caller's unit (by the grid each was routed
    to, as the incident lists cut them), none for a role that does not read incidents."""
    from gridmap.maps import read_points, within

    found = read_points("incident", service.store, bbox=unit.bounds)
    scope = access.scope(principal)
    if not access.may(principal, "read_incidents"):
        found = found.iloc[:0]
    elif scope is not None:
        codes = found["grid_code"].fillna("").astype(str) if "grid_code" in found else None
        found = found[codes.str.startswith(scope)] if codes is not None else found.iloc[:0]
    return within(found, unit)


_PAGE = {"response_class": HTMLResponse, "responses": responses(*AUTH, 404, 422)}


@router.get("/maps/coverage", summary="Grids coloured by households against the target", **_PAGE)
async def coverage(unit: UnitQuery, service: ServiceDep, version: VersionDep,
                   principal: PrincipalDep):
    def page():
        from gridmap.maps import coverage_map

        chosen = _unit(service, version, unit, principal)
        return coverage_map(chosen, incidents=_incidents(service, chosen, principal),
                            settings=service.settings.maps, options=service.settings.validation)

    return HTMLResponse(await run_heavy(service, page))


@router.get("/maps/problems", summary="The validation report of a unit on a map", **_PAGE)
async def problems(unit: UnitQuery, service: ServiceDep, version: VersionDep,
                   principal: PrincipalDep):
    def page():
        from gridmap.maps import problems_map, unit_report

        chosen = _unit(service, version, unit, principal)
        report = unit_report(chosen, service.settings.validation)
        return problems_map(chosen, report, settings=service.settings.maps)

    return HTMLResponse(await run_heavy(service, page))


@router.get("/maps/incidents", summary="Incidents: clusters, heat and open ones per grid", **_PAGE)
async def incidents(unit: UnitQuery, service: ServiceDep, version: VersionDep,
                    principal: PrincipalDep,
                    days: Annotated[int | None, Query(ge=1, le=3660,
                                                      description="only the last N days")] = None,
                    as_of: Annotated[dt.date | None,
                                     Query(description="count days back from this day")] = None):
    def page():
        from gridmap.maps import incidents_map

        chosen = _unit(service, version, unit, principal, "read_incidents")
        return incidents_map(chosen, _incidents(service, chosen, principal), days=days,
                             as_of=as_of, settings=service.settings.maps)

    return HTMLResponse(await run_heavy(service, page))


@router.get("/maps/stations", summary="Service stations and their 15-minute circles", **_PAGE)
async def stations(unit: UnitQuery, service: ServiceDep, version: VersionDep,
                   principal: PrincipalDep):
    def page():
        from gridmap.maps import read_points, stations_map

        chosen = _unit(service, version, unit, principal)
        return stations_map(chosen, read_points("station", service.store),
                            settings=service.settings.maps)

    return HTMLResponse(await run_heavy(service, page))


@router.get("/dashboard", summary="Per street and community: grids, workers, incidents", **_PAGE)
async def dashboard(unit: UnitQuery, service: ServiceDep, version: VersionDep,
                    principal: PrincipalDep,
                    as_of: Annotated[dt.date | None,
                                     Query(description="overdue as of this day")] = None):
    def page():
        from gridmap.maps import dashboard_page, read_points

        chosen = _unit(service, version, unit, principal)
        return dashboard_page(chosen, _incidents(service, chosen, principal),
                              read_points("station", service.store), as_of=as_of,
                              settings=service.settings.maps, options=service.settings.validation)

    return HTMLResponse(await run_heavy(service, page))
