"""``create_app(settings, store)``: the HTTP service, as a factory (no settings read at import)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from api import problems
from api.fastpath import FastLookup
from api.routes import (
    features,
    imports,
    incidents,
    lookup,
    maps,
    open311,
    plans,
    stations,
)
from api.service import Service
from gridmap import __version__
from gridmap.config import Settings
from gridmap.errors import VersionNotFound
from gridmap.store.base import Store


def create_app(settings: Settings | None = None, store: Store | None = None, *,
               warm: bool = True, demo: bool = False) -> FastAPI:
    """The service over ``store`` (opened from ``settings.store.url`` when not given; an embedded
    store that does not exist yet is created, holding the demo city when ``demo``)."""
    settings = settings or Settings()
    if store is None:
        from gridmap.demo import open_or_create

        store = open_or_create(settings.store.url, demo=demo)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm:
            try:
                app.state.service.warm()
            except VersionNotFound as exc:  # an empty store still serves, and says so on lookup
                problems.log.warning("no lookup index at start-up: %s", exc.detail)
            except Exception:
                problems.log.warning("no lookup index at start-up", exc_info=True)
        every = settings.incidents.escalate_every_s
        task = asyncio.create_task(_escalate_forever(app.state.service, every)) if every else None
        yield
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        store.close()

    app = _App(title="gridmap", version=__version__, lifespan=lifespan,
               description="Which grid (and community, street, district) is this point in, "
                           "and who is responsible? Plus the boundaries as OGC API – Features.")
    app.state.service = Service(store, settings)
    problems.install(app)
    app.add_middleware(BodyLimit, limit=settings.lookup.body_limit_bytes,
                       routes={"/imports": settings.uploads.max_bytes})

    app.include_router(features.router)
    app.include_router(lookup.router)
    app.include_router(maps.router)
    app.include_router(incidents.router)
    app.include_router(stations.router)
    app.include_router(open311.router)
    app.include_router(plans.router)
    app.include_router(imports.router)
    _mount_static(app)
    _document_problems(app)
    return app


async def _escalate_forever(service: Service, every: float) -> None:
    """The deadline clock (GRIDMAP_INCIDENTS__ESCALATE_EVERY_S): one escalation pass every
    ``every`` seconds. Several service processes may all run it: a pass is idempotent and each
    save is conditional on the revision read, so an incident escalates once per deadline."""
    from gridmap.store.workflow import escalate_due

    while True:
        await asyncio.sleep(every)
        try:
            done = await asyncio.to_thread(escalate_due, service.store,
                                           settings=service.settings.incidents)
            if done:
                problems.log.info("escalated %d overdue incidents", done)
        except Exception:  # the store may be down for a while: try again next time
            problems.log.warning("escalation pass failed", exc_info=True)


def _mount_static(app: FastAPI) -> None:
    """The vendored map scripts and styles (``gridmap/static``): maps work with no internet."""
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles

    import gridmap

    app.mount("/static", StaticFiles(directory=Path(gridmap.__file__).parent / "static"),
              name="static")


class _App(FastAPI):
    """FastAPI with :class:`~api.fastpath.FastLookup` in front of its whole middleware stack:
    plain ``GET /lookup`` requests are answered there, everything else passes through."""

    def build_middleware_stack(self):
        return FastLookup(super().build_middleware_stack(), self.state)


class BodyLimit:
    """Refuse a request whose declared body is over the limit before reading any of it.

    Plain ASGI rather than ``@app.middleware("http")``: the latter wraps every request in extra
    tasks and streams, which cost as much as a lookup itself. Bodies sent without a length are
    counted as they are read by the routes that read them.
    """

    def __init__(self, app, limit: int, routes: dict[str, int] | None = None):
        self.app = app
        self.limit = limit
        self.routes = routes or {}  # path → its own limit (uploads take more than lookups)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            limit = self.routes.get(scope["path"], self.limit)
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > limit:
                        response = problems.problem(
                            413, f"request body over the limit of {limit:,} bytes")
                        await response(scope, receive, send)
                        return
                    break
                if name == b"transfer-encoding" and scope["path"] in self.routes:
                    receive = _counted(receive, limit)
        await self.app(scope, receive, send)


def _counted(receive, limit: int):
    """``receive`` refusing a chunked body (no length given) once it passes ``limit``: the
    routes with a limit of their own parse the body in FastAPI, before any code of theirs runs."""
    from fastapi import HTTPException

    seen = 0

    async def counting():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise HTTPException(413, f"request body over the limit of {limit:,} bytes")
        return message

    return counting


def _document_problems(app: FastAPI) -> None:
    """Add the Problem schema (RFC 9457) to the OpenAPI document the routes refer to."""
    original = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object", "title": "Problem (RFC 9457)",
            "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                           "status": {"type": "integer"}, "detail": {"type": "string"}},
            "required": ["title", "status", "detail"],
        }
        _problem_responses(schema)
        _security(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _problem_responses(schema: dict) -> None:
    """What every operation can answer besides its own: FastAPI documents its 422 as
    ``application/json`` HTTPValidationError, but api.problems answers every 422 as a problem;
    and a body FastAPI cannot parse (not JSON, not a form) is a 400 problem."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            answers = operation.get("responses", {})
            if "422" in answers:
                answers["422"]["content"] = problem
            if "requestBody" in operation and "400" not in answers:
                answers["400"] = {"description": "Bad request", "content": problem}


def _security(schema: dict) -> None:
    """API keys (gridmap.access) in the OpenAPI document: the bearer scheme, required by every
    operation that can answer 401, optional on the public map (lookup, boundaries) — which
    answers 401 only when GRIDMAP_ACCESS__PUBLIC_LOOKUP=false or a bad key is sent."""
    # (GET /open311/v2/requests.json shares its path with the POST: both are marked optional.)
    schema["components"].setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "an API key from `gridmap keys create`; 401 without a valid one, 403 when "
                       "the key's role may not do this, 404 for objects outside the key's unit"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if "401" not in operation.get("responses", {}):
                continue
            # The public map, and Open311 POST (which may carry its key as the api_key field).
            public = path in ("/lookup", "/open311/v2/requests.json") \
                or path.startswith("/collections")
            operation["security"] = [{}, {"bearer": []}] if public else [{"bearer": []}]
