"""Service stations (服务站点): register one, list them, and the 15-minute coverage of a unit."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import geopandas as gpd
import shapely
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import AUTH, NEEDS_KEY, PrincipalDep, ServiceDep, VersionDep
from api.heavy import run_heavy
from api.problems import responses
from gridmap import access
from gridmap.errors import Forbidden
from gridmap.store.records import STATION_KINDS

log = logging.getLogger("gridmap.api")
router = APIRouter(tags=["Stations"], dependencies=NEEDS_KEY)

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class StationIn(BaseModel):
    code: str = Field(min_length=1, max_length=32)
    name: str | None = Field(None, max_length=200)
    kind: str = Field(description=", ".join(STATION_KINDS))
    level: str | None = Field(None, description="the level it serves: city … community, grid")
    unit_code: str | None = Field(None, max_length=32, description="the unit it serves")
    floor_area_m2: float | None = Field(None, ge=0, allow_inf_nan=False)
    opening_hours: str | None = Field(None, max_length=200, description="e.g. Mo-Fr 08:30-17:30")
    lon: Number
    lat: Number
    crs: str = "wgs84"


def _features(frame: gpd.GeoDataFrame) -> dict:
    return json.loads(frame.to_json(na="null", drop_id=True))


@router.post("/stations", status_code=201, summary="Register a service station",
             responses=responses(*AUTH, 409, 422, 503))
def register(body: StationIn, service: ServiceDep, principal: PrincipalDep) -> dict:
    access.check(principal, "plan")
    if not principal.covers(body.unit_code):
        raise Forbidden("a station you register must serve a unit inside yours (unit_code)")
    from gridmap.lookup.coords import to_wgs84_point
    from gridmap.stations import check_stations

    x, y = to_wgs84_point(body.lon, body.lat, body.crs)
    fields = body.model_dump(exclude={"lon", "lat", "crs"})
    frame = gpd.GeoDataFrame([fields], geometry=[shapely.Point(x, y)], crs=4326)
    service.store.add_stations(frame)
    stored = service.store.read_stations()
    return {"station": _features(stored[stored["code"] == body.code])["features"][0],
            "warnings": check_stations(frame)}


@router.get("/stations", summary="Registered stations as GeoJSON, with size warnings",
            responses=responses(*AUTH, 422, 503))
def list_(service: ServiceDep, principal: PrincipalDep,
          unit: Annotated[str | None, Query(max_length=32, description="stations serving this "
                                            "unit or one beneath it")] = None,
          kind: Annotated[str | None, Query(description=", ".join(STATION_KINDS))] = None) -> dict:
    from gridmap.stations import check_stations

    access.check(principal, "view")
    frame = service.store.read_stations()
    scope = access.scope(principal)
    if scope is not None:  # the stations serving the caller's unit or one beneath it
        frame = frame[frame["unit_code"].fillna("").astype(str).str.startswith(scope)]
    if unit is not None:
        frame = frame[frame["unit_code"].fillna("").str.startswith(unit)]
    if kind is not None:
        frame = frame[frame["kind"] == kind]
    return _features(frame) | {"warnings": check_stations(frame)}


@router.get("/stations/coverage", summary="Households inside a 15-minute circle, per unit",
            description="Walked along the configured road layer (GRIDMAP_STATIONS__ROADS) when "
            "there is one, else straight-line circles; `service_area` says which (`network` with "
            "minutes and speed, or `straight_line` with the radius). A road layer the service "
            "cannot read answers 503 naming the file.",
            responses=responses(*AUTH, 404, 422, 503))
async def coverage(service: ServiceDep, version: VersionDep, principal: PrincipalDep,
                   unit: Annotated[str, Query(min_length=1, max_length=32)]) -> dict:
    return await run_heavy(service, _coverage, service, version, principal, unit)


def _coverage(service, version, principal, unit: str) -> dict:
    from api.routes.maps import _unit
    from gridmap.stations import RoadsUnavailable, cached_network, unit_coverage

    chosen = _unit(service, version, unit, principal)
    walk = service.settings.stations
    try:
        roads = cached_network(walk.roads, walk.roads_layer) if walk.roads else None
    except RoadsUnavailable as exc:
        log.warning("%s", exc.detail)  # the whole path, for whoever runs the service
        raise exc.for_callers() from None
    answer = unit_coverage(chosen, service.store.read_stations(), straight_m=walk.straight_m,
                           roads=roads, minutes=walk.minutes, speed_kmh=walk.speed_kmh,
                           offset_m=walk.offset_m)
    if roads is not None:
        answer["service_area"]["roads"] = Path(walk.roads).name
    return answer | {"version": version.id}
