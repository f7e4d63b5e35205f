"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Library errors carry a ``detail`` safe to show a user and the HTTP status they mean; anything else
is logged with its traceback and answered with a generic 500 — never a stack trace to the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridmap.errors import GridmapError, PointOutsideGrids, StoreUnavailable

log = logging.getLogger("gridmap.api")

PROBLEM = "application/problem+json"
_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
           415: "Unsupported media type", 422: "Unprocessable input", 500: "Internal error",
           503: "Service unavailable"}


def problem(status: int, detail: str, *, type_: str = "about:blank", **extra) -> JSONResponse:
    body = {"type": type_, "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    headers = {"Retry-After": "30"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _kebab(name: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


async def _gridmap_error(request: Request, exc: GridmapError) -> JSONResponse:
    extra = {}
    if isinstance(exc, PointOutsideGrids):
        extra = {"nearest": exc.nearest, "distance_m": exc.distance_m}
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc.detail)
    return problem(exc.status, exc.detail, type_=f"/problems/{_kebab(type(exc).__name__)}", **extra)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
    detail = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")
    return problem(422, detail, type_="/problems/invalid-parameter",
                   errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()])


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
    return problem(exc.status_code, detail)


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
