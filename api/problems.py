"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Library errors carry a ``detail`` safe to show a user and the HTTP status they mean; anything else
is logged with its traceback and answered with a generic 500 — never a stack trace to the client.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridmap.errors import (
    GridmapError,
    PointOutsideGrids,
    StoreUnavailable,
    Unauthorized,
)

log = logging.getLogger("gridmap.api")

PROBLEM = "application/problem+json"
_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
           415: "Unsupported media type", 422: "Unprocessable input", 500: "Internal error",
           503: "Service unavailable"}


#: Seconds a client is told to wait (``Retry-After``) when the store cannot be reached: a
#: database restart or failover takes seconds, and the pool reconnects on the next request.
STORE_RETRY_AFTER = 5
#: The same for any other 503 (e.g. a missing road network): a fix that takes a deployment.
RETRY_AFTER = 30


def problem(status: int, detail: str, *, type_: str = "about:blank",
            retry_after: int | None = None, headers: dict | None = None,
            **extra) -> JSONResponse:
    body = {"type": type_, "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    headers = dict(headers or {})
    if status == 503:
        headers["Retry-After"] = str(retry_after if retry_after is not None else RETRY_AFTER)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


async def _gridmap_error(request: Request, exc: GridmapError) -> JSONResponse:
    extra = {}
    if isinstance(exc, PointOutsideGrids):
        extra = {"nearest": exc.nearest, "distance_m": exc.distance_m}
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc.detail)
        extra = {"retry_after": STORE_RETRY_AFTER}
    headers = {"WWW-Authenticate": 'Bearer realm="gridmap"'} if isinstance(exc, Unauthorized) else None
    if request.url.path.startswith("/open311/") and exc.status in (401, 403, 404):
        # GeoReport v2 clients parse errors as an array of code/description.
        return JSONResponse([{"code": exc.status, "description": exc.detail}],
                            status_code=exc.status, headers=headers)
    return problem(exc.status, exc.detail, type_=f"/problems/{_kebab(type(exc).__name__)}",
                   headers=headers, **extra)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
    detail = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")
    return problem(422, detail, type_="/problems/invalid-parameter",
                   errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()])


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    return problem(exc.status_code, detail, headers=headers)


def _allowed(request: Request) -> list[str]:
    """Every method the path answers to, as the OpenAPI document declares them. Starlette's
    ``Allow`` names only the first route that matched the path, but GET and POST /lookup (for
    instance) are two routes."""
    app = request.app
    paths = getattr(app.state, "allowed_methods", None)
    if paths is None:
        paths = [(re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$"),
                  sorted(m.upper() for m in operations if m != "parameters"))
                 for path, operations in app.openapi().get("paths", {}).items()]
        app.state.allowed_methods = paths
    path = request.url.path
    found = [(pattern, methods) for pattern, methods in paths if pattern.match(path)]
    literal = [methods for pattern, methods in found if "[^/]+" not in pattern.pattern]
    # /plans/preview is a path of its own, not /plans/{plan} with plan = "preview".
    return sorted({m for methods in (literal or [m for _, m in found]) for m in methods})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "the server could not answer this request; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(GridmapError, _gridmap_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


#: OpenAPI description of the problem responses, for ``responses=`` on routes.
def responses(*statuses: int) -> dict:
    return {s: {"description": _TITLES.get(s, "Error"),
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for s in statuses}
