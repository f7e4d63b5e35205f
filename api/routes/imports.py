"""Uploads (``POST /imports``): a boundary file from a planner's computer becomes a new plan.

What ``gridmap import`` does, over HTTP and for untrusted files: the upload is saved to a temporary
folder, checked against the limits of ``GRIDMAP_UPLOADS__*`` (bytes, zip contents, JSON nesting,
features, vertices — see :mod:`gridmap.uploads`), read with :func:`gridmap.io.read_layer`,
validated against the active map's level above it, and written into a new plan. A refused file
changes nothing.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import AUTH, NEEDS_KEY, PrincipalDep, ServiceDep
from api.heavy import run_heavy
from api.problems import problem, responses
from gridmap import access
from gridmap.access import Principal
from gridmap.errors import Forbidden, InputError
from gridmap.store.base import STORE_LAYERS

router = APIRouter(tags=["Plans"], dependencies=NEEDS_KEY)

Level = Literal[STORE_LAYERS]  # type: ignore[valid-type]


class Imported(BaseModel):
    plan: int
    level: str
    features: int
    crs: str
    summary: dict[str, Any] | None
    warnings: list[str]


class UnsupportedUpload(InputError):
    status = 415


@router.post("/imports", status_code=201, response_model=Imported,
             summary="Upload a layer (zipped shapefile, GeoJSON, GeoPackage) into a new plan",
             description="A planner (not an admin) may import the grid level only, and only a "
             "layer whose changes against the active map all lie in their unit (a layer replaces "
             "the whole level): anything else is refused with 403 and nothing is kept.",
             responses=responses(*AUTH, 400, 404, 413, 415, 422, 503))
async def upload(
    service: ServiceDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="a .zip (shapefile), .geojson/.json or .gpkg")],
    level: Annotated[Level, Form(description="the level the layer replaces in the plan")],
    layer: Annotated[str | None, Form(max_length=200, description="layer name in a GeoPackage")]
        = None,
    crs: Annotated[str | None, Form(max_length=200, description="CRS if the file has none or a "
                                    "wrong one: wgs84, gcj02, bd09, EPSG:n")] = None,
    accept_warnings: Annotated[bool, Form(description="import even with warnings (never with "
                                          "errors)")] = False,
):
    access.check(principal, "plan")
    if not principal.everything and level != "grid":
        raise Forbidden(f"a {principal.role} key may import grids only, not the {level} level")
    suffix = PurePosixPath(file.filename or "").suffix.lower()
    from gridmap.uploads import SUFFIXES

    if suffix not in SUFFIXES:
        raise UnsupportedUpload(f"{(file.filename or 'the file')[:100]}: send a "
                                f"{', '.join(SUFFIXES)} file")
    result = await run_heavy(service, _import, service, file, suffix, level, layer, crs,
                                     accept_warnings, principal)
    if isinstance(result, JSONResponse):
        return result
    return JSONResponse(result.model_dump(), status_code=201)


def _import(service, file: UploadFile, suffix: str, level: str, layer: str | None,
            crs: str | None, accept_warnings: bool, principal: Principal):
    from gridmap import uploads
    from gridmap.io import read_layer
    from gridmap.versions import check_import

    limits = service.settings.uploads
    # The user's file name, made safe for a path of ours: the details name the file they sent.
    name = re.sub(r"[^\w.\-]", "_", PurePosixPath(file.filename or "").name)[-100:].lstrip(".")
    name = name if name.lower().endswith(suffix) else f"upload{suffix}"
    with tempfile.TemporaryDirectory(prefix="gridmap-upload-") as folder:
        (Path(folder) / "sent").mkdir()
        saved = Path(folder) / "sent" / name
        size = uploads.save(file.file, saved)
        if size > limits.max_bytes:
            from gridmap.errors import InputTooLarge

            raise InputTooLarge(f"{name}: {size:,} bytes; the limit is {limits.max_bytes:,}")
        readable = uploads.prepare_upload(saved, Path(folder), limits)
        frame = read_layer(readable, layer=layer, crs=crs, limits=limits)
        frame.attrs["source"] = name
        try:
            report = check_import(service.store, level, frame, service.settings.validation,
                                  against="active")
        except InputError as exc:  # e.g. LayersDisjoint: say which file
            exc.detail = f"{name}: {exc.detail}"
            raise
    warnings = [p.message for p in report.warnings] if report is not None else []
    if report is not None and (not report.clean or (warnings and not accept_warnings)):
        why = ("errors" if not report.clean
               else "warnings (send accept_warnings=true to import anyway)")
        summary = report.summary()
        return problem(422, f"{name}: refused, the {level} layer has {why}: "
                       f"{_counts(summary)}; nothing was written", type_="/problems/layer-refused",
                       report=report.to_dict())
    version = service.store.new_draft({level: frame}, note=f"{level} from {name} (upload)")
    _keep_inside(service, principal, version.id)
    return Imported(plan=version.id, level=level, features=len(frame),
                    crs=str(frame.attrs.get("crs_label", frame.crs)),
                    summary=report.summary() if report is not None else None, warnings=warnings)


def _keep_inside(service, principal: Principal, plan: int) -> None:
    """Discard the new plan (and refuse) when it changes communities outside the caller's unit."""
    if principal.everything:
        return
    outside = [c for c in access.plan_codes(service.store, plan) if not principal.covers(c)]
    if outside:
        service.store.discard_draft(plan)
        raise Forbidden(f"the layer changes {len(outside)} features outside your unit "
                        f"({', '.join(outside[:5])}); nothing was kept")


def _counts(summary: dict) -> str:
    found = summary.get("problems") or {}
    return ", ".join(f"{n} {kind}" for kind, n in found.items()) or "see the report"
