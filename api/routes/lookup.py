"""Point → grid: ``GET /lookup`` for one point, ``POST /lookup`` for many at once.

POST takes a JSON body — ``{"crs": "gcj02", "points": [[lon, lat], …]}`` or points as objects
``{"id", "lon", "lat"}``, or a bare array of either — a GeoJSON FeatureCollection of points, or a
CSV upload (``text/csv``, columns ``lon``/``lat`` and optionally ``id``; ``crs`` as a query
parameter). At most ``GRIDMAP_LOOKUP__BATCH_LIMIT`` points (10,000 by default) per request; more
belong to ``gridmap lookup --points`` or several requests.
"""

from __future__ import annotations

import io
import json
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import (
    DateQuery,
    ReaderDep,
    ServiceDep,
    VersionDep,
    VersionQuery,
    principal_for,
    version_for,
)
from api.problems import responses
from api.service import Service
from gridmap.access import check

router = APIRouter(tags=["lookup"])

CrsQuery = Annotated[str, Query(description="wgs84, cgcs2000, gcj02, bd09 or EPSG:n")]


@router.get("/lookup", summary="The grid at a point, with its chain and worker",
            description="Open to anybody unless GRIDMAP_ACCESS__PUBLIC_LOOKUP=false (then any key).",
            responses=responses(401, 404, 422, 503))
async def lookup_one(
    request: Request,
    lon: Annotated[float, Query(description="longitude (or x in the given CRS)")],
    lat: Annotated[float, Query(description="latitude (or y in the given CRS)")],
    crs: CrsQuery = "wgs84",
    version: VersionQuery = None,
    date: DateQuery = None,
) -> dict:
    # Plain requests (lon/lat/crs, the active version, a point in a grid) are answered before
    # they get here, by api.fastpath; this route answers the rest and documents the endpoint.
    # Still kept cheap: ``async def`` (no threadpool hop) since a lookup in a built index is pure
    # CPU; building an index (seconds) goes to the threadpool. No dependencies (FastAPI spends
    # ~50 µs solving each), and the answer is serialised here rather than by FastAPI's
    # response-model machinery.
    service: Service = request.app.state.service
    access = service.settings.access
    if access.enabled and (not access.public_lookup or "authorization" in request.headers):
        principal = await principal_for(request, service)  # a key sent is checked: 401 if bad
        if not access.public_lookup:
            check(principal, "lookup")
    version = await version_for(service, version, date)
    index = service.cached_index(version)
    if index is None:
        index = await run_in_threadpool(service.index, version)
    return _json(index.answer(lon, lat, crs=crs))


def _json(body: dict) -> Response:
    return Response(render(body), media_type="application/json")


def render(body: dict) -> bytes:
    """An answer as JSONResponse renders it (UTF-8, compact), without re-encoding through
    jsonable_encoder; :mod:`api.fastpath` renders with it too, so both give the same bytes."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_plain).encode("utf-8")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@router.post("/lookup", summary="The grids of many points at once",
             description="Open to anybody unless GRIDMAP_ACCESS__PUBLIC_LOOKUP=false (then any "
             "key).", responses=responses(400, 401, 404, 413, 415, 422, 503),
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": {"type": "object"}},
                 "application/geo+json": {"schema": {"type": "object"}},
                 "text/csv": {"schema": {"type": "string"}}}}})
async def lookup_many(request: Request, service: ServiceDep, reader: ReaderDep,
                      version: VersionDep, crs: CrsQuery | None = None) -> dict:
    limit = service.settings.lookup.batch_limit
    body = await _read_body(request, service.settings.lookup.body_limit_bytes)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    ids, lon, lat, given_crs = _parse(body, kind)
    if len(lon) > limit:
        raise HTTPException(413, f"{len(lon):,} points in one request; the limit is {limit:,}")
    index = service.index(version)
    loc = index.locate(lon, lat, crs=crs or given_crs or "wgs84")
    results = index.records(loc)
    for rid, rec in zip(ids, results):
        if rid is not None:
            rec["id"] = rid
    return {"version": version.id, "count": len(results),
            "found": int(np.count_nonzero(loc.grid >= 0)), "results": results}


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, kind: str):
    if kind in ("text/csv", "application/csv"):
        return _parse_csv(body)
    if kind not in ("application/json", "application/geo+json", ""):
        raise HTTPException(415, f"send JSON, GeoJSON or CSV, not {kind}")
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # the parser gives up ~1,000 levels down, quickly: points need 5
        raise HTTPException(422, "the body nests JSON about 1,000 levels deep or more; points "
                                 "need at most 5") from None
    crs = None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return (*_from_features(data.get("features")), None)
    if isinstance(data, dict):
        crs = data.get("crs")
        data = data.get("points")
    if not isinstance(data, list):
        raise HTTPException(400, 'send {"points": [[lon, lat], …]}, an array of points, a '
                                 "GeoJSON FeatureCollection or CSV")
    return (*_from_list(data), crs)


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HTTPException(422, f"{where} is not a number: {value!r}")
    return float(value)


def _from_list(points: list):
    ids, lon, lat = [], [], []
    for i, p in enumerate(points):
        if isinstance(p, dict):
            ids.append(p.get("id"))
            lon.append(_number(p.get("lon"), f"points[{i}].lon"))
            lat.append(_number(p.get("lat"), f"points[{i}].lat"))
        elif isinstance(p, list) and len(p) == 2:
            ids.append(None)
            lon.append(_number(p[0], f"points[{i}][0]"))
            lat.append(_number(p[1], f"points[{i}][1]"))
        else:
            raise HTTPException(422, f"points[{i}] is neither [lon, lat] nor {{lon, lat}}")
    return ids, np.array(lon, dtype=float), np.array(lat, dtype=float)


def _from_features(features):
    if not isinstance(features, list):
        raise HTTPException(400, "a FeatureCollection needs a features array")
    ids, lon, lat = [], [], []
    for i, f in enumerate(features):
        geom = (f or {}).get("geometry") or {}
        if geom.get("type") != "Point" or not isinstance(geom.get("coordinates"), list) \
                or len(geom["coordinates"]) < 2:
            raise HTTPException(422, f"features[{i}] is not a Point")
        ids.append(f.get("id", (f.get("properties") or {}).get("id")))
        lon.append(_number(geom["coordinates"][0], f"features[{i}] x"))
        lat.append(_number(geom["coordinates"][1], f"features[{i}] y"))
    return ids, np.array(lon, dtype=float), np.array(lat, dtype=float)


def _parse_csv(body: bytes):
    try:
        table = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
    except Exception as exc:
        raise HTTPException(400, f"the body is not readable CSV: {exc}") from None
    cols = {c.lower(): c for c in table.columns}
    lon_col = next((cols[c] for c in ("lon", "lng", "longitude") if c in cols), None)
    lat_col = next((cols[c] for c in ("lat", "latitude") if c in cols), None)
    if lon_col is None or lat_col is None:
        raise HTTPException(422, f"the CSV needs lon and lat columns; it has {', '.join(table.columns)}")
    lon = pd.to_numeric(table[lon_col], errors="coerce").to_numpy()
    lat = pd.to_numeric(table[lat_col], errors="coerce").to_numpy()
    bad = np.flatnonzero(np.isnan(lon) | np.isnan(lat))
    if len(bad):
        raise HTTPException(422, f"CSV row {bad[0] + 2}: lon/lat is not a number")
    ids = table[cols["id"]].tolist() if "id" in cols else [None] * len(table)
    return ids, lon, lat, None
