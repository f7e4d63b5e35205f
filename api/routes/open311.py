"""Open311 GeoReport v2 under ``/open311/v2/`` (JSON): our categories as services, incidents as
service requests, so existing 311 apps and clients can report and follow incidents.

Our states map onto Open311's two: ``closed`` for closed and rejected incidents, ``open`` for
everything else, with our status (and level, and the last note) in ``status_notes``. The
reporter's contact is never in these public answers. Errors follow Open311's own format — an
array of ``{"code", "description"}`` — since that is what 311 clients parse.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import OptionalPrincipalDep, PrincipalDep, ServiceDep
from api.routes.incidents import IsoDateTime, _index, _utc, parse_bbox
from gridmap import access
from gridmap.errors import GridmapError, IncidentNotFound, InputError, NotFound, Unauthorized
from gridmap.incidents import Incident, Status
from gridmap.store import workflow
from gridmap.store.records import IncidentQuery

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"])

#: Names for the default categories (a city's own categories are listed by their code).
NAMES = {"safety": "Safety hazard (安全隐患)", "environment": "Sanitation (环境卫生)",
         "facilities": "Public facilities (公共设施)", "dispute": "Dispute (矛盾纠纷)",
         "construction": "Unauthorised building (违章搭建)", "other": "Other (其他)"}
_CLOSED = {Status.CLOSED, Status.REJECTED}
_LIMIT = 1000
_DEFAULT_DAYS = 90  # GeoReport v2: without dates, the most recent 90 days


def _errors(*statuses: int) -> dict:
    """OpenAPI description of GeoReport v2 errors (a JSON array of code/description)."""
    schema = {"type": "array", "items": {"type": "object", "required": ["code", "description"],
                                         "properties": {"code": {"type": "integer"},
                                                        "description": {"type": "string"}}}}
    return {s: {"description": "GeoReport v2 error", "content": {"application/json":
                                                                  {"schema": schema}}}
            for s in statuses}


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse([{"code": status, "description": description}], status_code=status)


def request_json(incident: Incident) -> dict:
    """One incident as an Open311 service request."""
    last = incident.trail[-1] if incident.trail else None
    notes = str(incident.status).replace("_", " ")
    if incident.grid_code:
        notes += f", at {incident.level} level (grid {incident.grid_code})"
    else:
        notes += ", not yet routed to a grid"
    if last is not None and last.note:
        notes += f": {last.note}"
    return {
        "service_request_id": str(incident.id),
        "status": "closed" if incident.status in _CLOSED else "open",
        "status_notes": notes,
        "service_name": NAMES.get(incident.category, incident.category),
        "service_code": incident.category,
        "description": incident.description,
        "agency_responsible": incident.worker or incident.grid_code or "",
        "service_notice": "",
        "requested_datetime": incident.reported_at.isoformat(),
        "updated_datetime": (last.at if last else incident.reported_at).isoformat(),
        "expected_datetime": incident.deadline.isoformat(),
        "address": "", "address_id": "", "zipcode": "",
        "lat": incident.lat, "long": incident.lon,
        "media_url": incident.photo_url or "",
    }


@router.get("/services.json", summary="Our incident categories as Open311 services")
def services(service: ServiceDep) -> list[dict]:
    hours = service.settings.incidents.deadlines_hours
    return [{"service_code": code, "service_name": NAMES.get(code, code),
             "description": f"answered within {hours[code]:g} hours before it escalates",
             "metadata": False, "type": "realtime", "keywords": "", "group": "gridmap"}
            for code in sorted(hours)]


@router.get("/requests.json", summary="Service requests matching the filters (in the key's unit)",
            responses=_errors(400, 401, 403))
def requests_(
    service: ServiceDep,
    principal: PrincipalDep,
    service_request_id: Annotated[str | None, Query(description="ids, comma-separated")] = None,
    service_code: Annotated[str | None, Query(description="codes, comma-separated")] = None,
    start_date: Annotated[IsoDateTime | None, Query()] = None,
    end_date: Annotated[IsoDateTime | None, Query()] = None,
    status: Annotated[str | None, Query(description="open, closed or both, comma-separated")] = None,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (an extension)")] = None,
):
    access.check(principal, "read_incidents")
    try:
        query = _query(service_request_id, service_code, _utc(start_date), _utc(end_date),
                       status, bbox)
    except GridmapError as exc:
        return _error(400, exc.detail)
    query = replace(query, within=access.scope(principal))
    found, _ = service.store.query_incidents(query, limit=_LIMIT)
    return [request_json(i) for i in found]


def _query(ids, codes, start, end, status, bbox) -> IncidentQuery:
    if ids is not None:  # the ids override every other filter (GeoReport v2)
        try:
            return IncidentQuery(ids=tuple(int(i) for i in ids.split(",") if i.strip()))
        except ValueError:
            raise InputError(f"service_request_id must be numbers, not {ids[:40]!r}") from None
    states = None
    if status is not None:
        wanted = {s.strip() for s in status.split(",") if s.strip()}
        if not wanted <= {"open", "closed"}:
            raise InputError("status must be open, closed or both")
        states = tuple(s.value for s in Status if ("closed" if s in _CLOSED else "open") in wanted)
    if start is None and end is None:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=_DEFAULT_DAYS)
    return IncidentQuery(status=states, category=tuple(c.strip() for c in codes.split(","))
                         if codes else None, since=start, until=end, bbox=parse_bbox(bbox))


@router.get("/requests/{request_id}.json", summary="One service request (in the key's unit)",
            responses=_errors(401, 403, 404))
def request_one(request_id: str, service: ServiceDep, principal: PrincipalDep):
    access.check(principal, "read_incidents")
    if not request_id.isdigit():
        return _error(404, f"no service request {request_id[:40]}")
    try:
        incident = service.store.get_incident(int(request_id))
        access.check(principal, "read_incidents", incident.grid_code,
                     what=f"service request {request_id}",
                     missing=IncidentNotFound(f"there is no incident {int(request_id)}"))
    except NotFound as exc:
        return _error(404, exc.detail)
    return [request_json(incident)]


@router.post("/requests.json", summary="Report: form-encoded, as Open311 clients send it",
             status_code=201, responses=_errors(400, 401, 403, 404, 409, 503),
             openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {
                 "schema": {"type": "object", "required": ["service_code", "lat", "long"],
                            "properties": {k: {"type": "string"} for k in (
                                "service_code", "lat", "long", "description", "media_url",
                                "email", "phone", "first_name", "last_name", "api_key")}}}}}})
async def create(request: Request, service: ServiceDep, principal: OptionalPrincipalDep):
    form = await _form(request)
    if form is None:
        return _error(400, "send the request form-encoded (application/x-www-form-urlencoded)")
    if principal.role is None and form.get("api_key"):  # GeoReport v2 sends its key in the form
        from starlette.concurrency import run_in_threadpool

        principal = await run_in_threadpool(access.find_principal, service.store,
                                            form["api_key"])
        if principal is None:
            raise Unauthorized("the API key is unknown or revoked")
    access.check(principal, "report")
    missing = [k for k in ("service_code", "lat", "long") if not form.get(k)]
    if missing:
        return _error(400, f"missing {', '.join(missing)}")
    try:
        lon, lat = float(form["long"]), float(form["lat"])
    except ValueError:
        return _error(400, "lat and long must be numbers")
    contact = form.get("email") or form.get("phone") or None
    try:
        incident, _ = await _report(service, request, form, lon, lat, contact)
    except GridmapError as exc:
        return _error(400 if exc.status in (400, 422) else exc.status, exc.detail)
    return JSONResponse([{"service_request_id": str(incident.id), "service_notice": "",
                          "account_id": None}], status_code=201)


async def _form(request: Request) -> dict | None:
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    body = await request.body()
    if kind == "application/json":
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else None
    if kind not in ("application/x-www-form-urlencoded", ""):
        return None
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


async def _report(service, request, form, lon, lat, contact):
    from starlette.concurrency import run_in_threadpool

    def report():
        return workflow.report(
            service.store, _index(service), lon=lon, lat=lat, category=form["service_code"],
            description=form.get("description") or "(no description)",
            photo_url=form.get("media_url") or None, contact=contact,
            idempotency_key=request.headers.get("idempotency-key"),
            settings=service.settings.incidents)

    return await run_in_threadpool(report)
