"""OGC API – Features (Part 1: Core, GeoJSON): every level and the buildings, per version.

Collections are the levels of :data:`gridmap.store.base.STORE_LAYERS`; items are identified by
their code. ``bbox`` is lon/lat (CRS84); ``parent_code`` filters children of a unit.
"""

from __future__ import annotations

import json
from typing import Annotated

import shapely
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from api.deps import ReaderDep, ServiceDep, VersionDep
from api.problems import responses
from gridmap.access import mask_phones
from gridmap.store.base import STORE_LAYERS

router = APIRouter(tags=["OGC API – Features"])

GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
TITLES = {"city": "Cities (市)", "district": "Districts and counties (区/县)",
          "street": "Streets and townships (街道/乡镇)", "community": "Communities and villages (社区/村)",
          "grid": "Grids (网格)", "building": "Buildings"}
MAX_LIMIT = 1000


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/", summary="Landing page")
def landing(request: Request) -> dict:
    base = _base(request)
    return {
        "title": "gridmap",
        "description": "Grid boundaries for community governance (网格化管理): lookup and features.",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": "application/json", "title": "this document"},
            {"href": f"{base}/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "the API definition"},
            {"href": f"{base}/docs", "rel": "service-doc", "type": "text/html", "title": "API docs"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json",
             "title": "conformance classes"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json",
             "title": "the layers"},
        ],
    }


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict:
    return {"conformsTo": CONFORMANCE}


def _collection(base: str, level: str, bbox) -> dict:
    out = {
        "id": level, "title": TITLES[level], "itemType": "feature",
        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
        "links": [
            {"href": f"{base}/collections/{level}", "rel": "self", "type": "application/json"},
            {"href": f"{base}/collections/{level}/items", "rel": "items", "type": GEOJSON},
        ],
    }
    if bbox is not None:
        out["extent"] = {"spatial": {"bbox": [bbox],
                                     "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}}
    return out


def _extent(service, version: int, level: str):
    frame, total = service.store.query_features(level, version, limit=1, offset=0)
    if total == 0:
        return None
    layer = service.store.read_layer(level, version) if total > 1 else frame
    return [round(v, 7) for v in layer.total_bounds]


_READ = (401, 403)  # only when GRIDMAP_ACCESS__PUBLIC_LOOKUP=false


@router.get("/collections", summary="The layers", responses=responses(*_READ, 404, 422))
def collections(request: Request, service: ServiceDep, version: VersionDep,
                reader: ReaderDep) -> dict:
    base = _base(request)
    return {
        "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}],
        "collections": [_collection(base, level, _extent(service, version.id, level))
                        for level in STORE_LAYERS],
    }


def _level(collection_id: str) -> str:
    if collection_id not in STORE_LAYERS:
        raise HTTPException(404, f"no collection {collection_id!r}; collections: "
                                 f"{', '.join(STORE_LAYERS)}")
    return collection_id


@router.get("/collections/{collection_id}", summary="One layer",
            responses=responses(*_READ, 404))
def collection(collection_id: str, request: Request, service: ServiceDep,
               version: VersionDep, reader: ReaderDep) -> dict:
    level = _level(collection_id)
    return _collection(_base(request), level, _extent(service, version.id, level))


def _parse_bbox(text: str | None):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise HTTPException(400, f"bbox must be four numbers minlon,minlat,maxlon,maxlat: {text!r}") \
            from None
    if len(values) != 4 or not all(map(lambda v: v == v and abs(v) != float("inf"), values)):
        raise HTTPException(400, f"bbox must be four numbers minlon,minlat,maxlon,maxlat: {text!r}")
    minx, miny, maxx, maxy = values
    if minx > maxx or miny > maxy or abs(miny) > 90 or abs(maxy) > 90:
        raise HTTPException(400, f"bbox {text!r} is not minlon,minlat,maxlon,maxlat in degrees")
    return values


def _features(frame) -> list[dict]:
    props = [c for c in frame.columns if c != frame.geometry.name and c != "version"]
    geometries = shapely.to_geojson(frame.geometry.values)
    records = json.loads(frame[props].to_json(orient="records", force_ascii=False))
    for rec in records:  # a worker's name is public by design; a phone number in it is not
        if rec.get("worker"):
            rec["worker"] = mask_phones(rec["worker"])
    return [{"type": "Feature", "id": rec.get("code"), "geometry": json.loads(g),
             "properties": rec} for rec, g in zip(records, geometries)]


@router.get("/collections/{collection_id}/items", summary="Features of a layer",
            response_class=JSONResponse, responses=responses(*_READ, 400, 404))
def items(
    collection_id: str, request: Request, service: ServiceDep, version: VersionDep,
    reader: ReaderDep,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
    parent_code: Annotated[str | None, Query(description="only children of this unit")] = None,
):
    level = _level(collection_id)
    frame, total = service.store.query_features(level, version.id, bbox=_parse_bbox(bbox),
                                                parent_code=parent_code, limit=limit, offset=offset)
    base = f"{_base(request)}/collections/{level}/items"
    query = dict(request.query_params)
    links = [{"href": str(request.url), "rel": "self", "type": GEOJSON}]
    if offset + len(frame) < total:
        links.append({"href": _with(base, query, offset=offset + limit, limit=limit),
                      "rel": "next", "type": GEOJSON})
    if offset > 0:
        links.append({"href": _with(base, query, offset=max(0, offset - limit), limit=limit),
                      "rel": "prev", "type": GEOJSON})
    body = {"type": "FeatureCollection", "features": _features(frame),
            "numberMatched": int(total), "numberReturned": len(frame), "links": links,
            "version": version.id}
    return JSONResponse(body, media_type=GEOJSON)


def _with(base: str, query: dict, **changes) -> str:
    from urllib.parse import urlencode

    return f"{base}?{urlencode({**query, **{k: str(v) for k, v in changes.items()}})}"


@router.get("/collections/{collection_id}/items/{code}", summary="One feature by its code",
            response_class=JSONResponse, responses=responses(*_READ, 404))
def item(collection_id: str, code: str, request: Request, service: ServiceDep,
         version: VersionDep, reader: ReaderDep):
    level = _level(collection_id)
    frame = service.store.get_feature(level, version.id, code)
    feature = _features(frame)[0]
    feature["links"] = [
        {"href": str(request.url), "rel": "self", "type": GEOJSON},
        {"href": f"{_base(request)}/collections/{level}", "rel": "collection",
         "type": "application/json"},
    ]
    return JSONResponse(feature, media_type=GEOJSON)
