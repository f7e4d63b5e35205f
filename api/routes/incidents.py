"""Incidents: report, read, move through the closed loop, reassign, list, count, export as CSV.

Handlers parse, call :mod:`gridmap.store.workflow` or the store, and shape the answer; the rules
(checks, routing, the state machine, optimistic concurrency) live in the library.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, BeforeValidator, Field

from api.deps import AUTH, NEEDS_KEY, PrincipalDep, ServiceDep
from api.problems import responses
from api.service import Service
from gridmap import access
from gridmap.access import OPEN, Principal
from gridmap.errors import Forbidden, IncidentNotFound, InputError, VersionNotFound
from gridmap.incidents import Actor, Incident, Role, allowed_moves, is_overdue
from gridmap.store import workflow
from gridmap.store.records import COUNT_BY, IncidentQuery


def _iso_only(value):
    # pydantic reads a bare number as a Unix timestamp; a query saying until=0.5 is a mistake,
    # not 1970: dates here are ISO 8601 as documented.
    if isinstance(value, str):
        try:
            float(value)  # 12, 0.5, 2e-311, nan, inf: all numbers to pydantic
        except ValueError:
            return value
        raise ValueError("expected an ISO 8601 date-time such as 2025-03-01T08:00:00Z, not a number")
    return value


#: A date-time query parameter: ISO 8601 only.
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_only)]

router = APIRouter(tags=["Incidents"], dependencies=NEEDS_KEY)

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_CSV = ("id", "status", "level", "category", "description", "lon", "lat", "reported_at",
        "deadline", "overdue", "grid_code", "grid_name", "worker", "community_code", "street_code",
        "district_code", "version", "near_boundary", "revision", "updated_at", "photo_url")


class IncidentIn(BaseModel):
    lon: Number = Field(description="longitude (or x in the given CRS)")
    lat: Number = Field(description="latitude (or y in the given CRS)")
    crs: str = Field("wgs84", description="wgs84, cgcs2000, gcj02, bd09 or EPSG:n")
    category: str = Field(description="one of the configured categories (事项)")
    description: str
    photo_url: str | None = Field(None, description="http(s) link to a photo")
    contact: str | None = Field(None, description="the reporter's phone or e-mail (staff only)")


class MoveIn(BaseModel):
    to: str = Field(description="the next status, e.g. assigned, in_progress, resolved")
    actor: str = Field(min_length=1, max_length=200)
    role: Role
    note: str = ""
    revision: int | None = Field(None, description="the revision read; a stale one answers 409")


class ReassignIn(BaseModel):
    grid: str = Field(min_length=1, max_length=32, description="code of the grid to hand it to")
    actor: str = Field(min_length=1, max_length=200)
    role: Role = Role.SUPERVISOR
    note: str = ""
    revision: int | None = None


#: Incident ids are 64-bit in both stores: a larger number is a 422, not a database overflow.
IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def incident_json(incident: Incident, now: dt.datetime | None = None,
                  principal: Principal = OPEN) -> dict:
    """The answer for one incident (also what ``GET /incidents`` lists); the reporter's contact
    only for those who need it (:func:`gridmap.access.sees_contact`)."""
    now = now or dt.datetime.now(dt.UTC)
    if not access.sees_contact(principal, incident.grid_code):
        incident = access.without_contact(incident)
    grid = None if incident.grid_code is None else {
        "code": incident.grid_code, "name": incident.grid_name, "worker": incident.worker}

    def unit(code):
        return None if code is None else {"code": code}

    return {
        "id": incident.id, "status": str(incident.status), "level": str(incident.level),
        "category": incident.category, "description": incident.description,
        "photo_url": incident.photo_url, "contact": incident.contact,
        "lon": incident.lon, "lat": incident.lat, "grid": grid,
        "community": unit(incident.community_code), "street": unit(incident.street_code),
        "district": unit(incident.district_code), "unrouted": incident.unrouted,
        "version": incident.version, "near_boundary": incident.near_boundary,
        "reported_at": incident.reported_at.isoformat(), "deadline": incident.deadline.isoformat(),
        "overdue": is_overdue(incident, now), "revision": incident.revision,
        "allowed": [str(s) for s in allowed_moves(incident.status)],
        "trail": [{"at": e.at.isoformat(), "actor": e.actor.name, "role": str(e.actor.role),
                   "from": str(e.from_state), "to": str(e.to_state), "kind": e.kind,
                   "note": e.note} for e in incident.trail],
    }


def _index(service: Service):
    """The active version's lookup index, or None when nothing is published (reports are then
    kept unrouted rather than refused)."""
    try:
        return service.index(service.resolve())
    except VersionNotFound:
        return None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # A time without a zone is taken as UTC, as Open311's W3C times usually are.
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_bbox(bbox: str | None) -> tuple | None:
    if bbox is None:
        return None
    try:
        values = tuple(float(v) for v in bbox.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InputError(f"bbox must be four numbers minx,miny,maxx,maxy, not {bbox[:60]!r}")
    return values


def _list(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(v.strip() for v in text.split(",") if v.strip())


def incident_filters(
    status: Annotated[str | None, Query(description="statuses, comma-separated")] = None,
    unit: Annotated[str | None, Query(description="a grid, community, street or district code: "
                                                  "everything beneath it")] = None,
    worker: Annotated[str | None, Query(description="the grid worker")] = None,
    category: Annotated[str | None, Query(description="categories, comma-separated")] = None,
    since: Annotated[IsoDateTime | None, Query(description="reported at or after (ISO 8601)")] = None,
    until: Annotated[IsoDateTime | None, Query(description="reported before (ISO 8601)")] = None,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat")] = None,
    overdue: Annotated[bool | None, Query(description="only open incidents past deadline")] = None,
    unrouted: Annotated[bool | None, Query(description="only those in no grid (or only routed)")] = None,
) -> IncidentQuery:
    return IncidentQuery(status=_list(status), unit=unit, worker=worker, category=_list(category),
                         since=_utc(since), until=_utc(until), bbox=parse_bbox(bbox),
                         overdue_at=dt.datetime.now(dt.UTC) if overdue else None,
                         unrouted=unrouted)


FiltersDep = Annotated[IncidentQuery, Depends(incident_filters)]
Limit = Annotated[int, Query(ge=0, le=10_000)]
Offset = Annotated[int, Query(ge=0)]


#: Answers of routes that read incidents: 404 also for an incident outside the caller's unit.
_READ = responses(*AUTH, 404, 422, 503)


def _scoped(query: IncidentQuery, principal: Principal) -> IncidentQuery:
    access.check(principal, "read_incidents")
    return replace(query, within=access.scope(principal))


def _mine(service: Service, principal: Principal, action: str, incident_id: int) -> Incident:
    """The incident, when ``principal`` may do ``action`` on it (401/403, 404 outside)."""
    access.check(principal, action)
    incident = service.store.get_incident(incident_id)
    access.check(principal, action, incident.grid_code, what=f"incident {incident_id}",
                 missing=IncidentNotFound(f"there is no incident {incident_id}"))
    return incident


def _actor(principal: Principal, name: str, role: Role) -> Actor:
    """Who the trail records: the key's name (the request's ``actor`` only with access off), in
    a workflow role the key may act as."""
    if principal is OPEN:
        return Actor(name, role)
    if str(role) not in access.workflow_roles(principal):
        raise Forbidden(f"a {principal.role} key may not act as {role}")
    return Actor(principal.name, role)


@router.post("/incidents", status_code=201, summary="Report an incident: routed to its grid",
             responses=responses(*AUTH, 409, 422, 503))
def create(body: IncidentIn, service: ServiceDep, response: Response, principal: PrincipalDep,
           idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> dict:
    access.check(principal, "report")
    incident, created = workflow.report(
        service.store, _index(service), lon=body.lon, lat=body.lat, crs=body.crs,
        category=body.category, description=body.description, photo_url=body.photo_url,
        contact=body.contact, idempotency_key=idempotency_key, settings=service.settings.incidents)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/incidents/{incident.id}"
    return incident_json(incident, principal=principal)


@router.get("/incidents", summary="Incidents matching the filters, a page at a time",
            responses=responses(*AUTH, 422, 503))
def list_(service: ServiceDep, query: FiltersDep, principal: PrincipalDep, limit: Limit = 100,
          offset: Offset = 0) -> dict:
    found, total = service.store.query_incidents(_scoped(query, principal), limit=limit,
                                                 offset=offset)
    now = dt.datetime.now(dt.UTC)
    return {"total": total, "limit": limit, "offset": offset,
            "incidents": [incident_json(i, now, principal) for i in found]}


@router.get("/incidents/counts", summary="How many incidents per grid (or community, street…)",
            responses=responses(*AUTH, 422, 503))
def counts(service: ServiceDep, query: FiltersDep, principal: PrincipalDep,
           by: Annotated[str, Query(description=", ".join(COUNT_BY))] = "grid") -> dict:
    found = service.store.count_incidents(_scoped(query, principal), by=by)
    return {"by": by, "total": sum(found.values()), "none": found.pop(None, 0),
            "counts": dict(sorted(found.items()))}


@router.get("/incidents.csv", summary="The incidents matching the filters as CSV",
            response_class=Response, responses=responses(*AUTH, 422, 503))
def export(service: ServiceDep, query: FiltersDep, principal: PrincipalDep) -> Response:
    found, _ = service.store.query_incidents(_scoped(query, principal), limit=None)
    now = dt.datetime.now(dt.UTC)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV, extrasaction="ignore")
    writer.writeheader()
    for incident in found:
        row = incident_json(incident, now, principal)
        grid = row["grid"] or {}
        writer.writerow(row | {"grid_code": grid.get("code"), "grid_name": grid.get("name"),
                               "worker": grid.get("worker"),
                               "community_code": incident.community_code,
                               "street_code": incident.street_code,
                               "district_code": incident.district_code,
                               "updated_at": (incident.trail[-1].at if incident.trail
                                              else incident.reported_at).isoformat()})
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="incidents.csv"'})


@router.get("/incidents/{incident_id}", summary="One incident with its whole trail",
            responses=_READ)
def read(incident_id: IncidentId, service: ServiceDep, principal: PrincipalDep) -> dict:
    return incident_json(_mine(service, principal, "read_incidents", incident_id),
                         principal=principal)


@router.post("/incidents/{incident_id}/transitions", summary="Move an incident on",
             responses=responses(*AUTH, 404, 409, 422, 503))
def move(incident_id: IncidentId, body: MoveIn, service: ServiceDep,
         principal: PrincipalDep) -> dict:
    _mine(service, principal, "act", incident_id)
    changed = workflow.move(service.store, incident_id, body.to,
                            actor=_actor(principal, body.actor, body.role), note=body.note,
                            revision=body.revision)
    return incident_json(changed, principal=principal)


@router.post("/incidents/{incident_id}/reassign", summary="Hand an incident to another grid",
             responses=responses(*AUTH, 404, 409, 422, 503))
def reassign(incident_id: IncidentId, body: ReassignIn, service: ServiceDep,
             principal: PrincipalDep) -> dict:
    _mine(service, principal, "reassign", incident_id)
    if not principal.covers(body.grid):
        raise Forbidden(f"grid {body.grid} is outside your unit")
    version = service.resolve()
    changed = workflow.reassign_to(service.store, incident_id, body.grid, version=version.id,
                                   actor=_actor(principal, body.actor, body.role), note=body.note,
                                   revision=body.revision)
    return incident_json(changed, principal=principal)
