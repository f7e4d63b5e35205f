"""Plans (``/plans``): every planner operation makes or changes a plan — a draft version — and
never the active map; a plan is checked, compared with the active map and published.

The operations are those of :mod:`gridmap.planning.plans` (reshape, split, split_k, merge, move,
rebalance, partition, repair, renumber); the drawing page at ``/maps/planner`` sends them here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import AUTH, NEEDS_KEY, PrincipalDep, ServiceDep
from api.heavy import run_heavy
from api.problems import responses
from gridmap import access
from gridmap.access import Principal
from gridmap.maps.units import unit_not_found
from gridmap.planning.plans import OPERATIONS, CommunityNotFound
from gridmap.planning.workflow import PlanNotFound

router = APIRouter(tags=["Plans"], dependencies=NEEDS_KEY)

_CODE = r"^[0-9]{12}$"
#: A plan number as the stores keep it (a 64-bit integer at most).
PlanId = Annotated[int, Path(ge=1, le=2**63 - 1, description="plan (draft version) number")]


class Operation(BaseModel):
    """One operation; which other fields it needs depends on ``op`` (see the page's docs)."""

    model_config = {"extra": "allow"}
    op: Literal[OPERATIONS]  # type: ignore[valid-type]


class PlanEdit(BaseModel):
    unit: str = Field(pattern=_CODE, description="12-digit code of the community edited")
    plan: int | None = Field(None, ge=1, le=2**63 - 1, description="plan to change; none: a new plan")
    crs: Literal["wgs84", "gcj02"] = Field("wgs84", description="CRS of drawn geometry")
    operation: Operation
    note: str = Field("", max_length=500)


class PublishBody(BaseModel):
    on: dt.date | None = Field(None, description="the day the plan takes effect (default today)")


def _settings(service):
    return service.settings.validation


def _own(service, principal: Principal, plan: int) -> None:
    """Refuse a plan that is not the caller's to see or change: 404 when none of the units it
    changes (:func:`gridmap.access.plan_codes`) is in their unit, 403 when some are and some
    are not."""
    access.check(principal, "plan")
    if not principal.everything:
        access.check_all(principal, "plan", access.plan_codes(service.store, plan),
                         what=f"plan {plan}", missing=PlanNotFound(f"no plan {plan}"))


def _edit(service, body: PlanEdit, write: bool, principal: Principal) -> dict:
    from gridmap.maps.page import display, geojson
    from gridmap.planning.workflow import edit_plan

    access.check(principal, "plan", body.unit, what=f"community {body.unit}",
                 missing=CommunityNotFound(f"no community with code {body.unit}"))
    if body.plan is not None:
        _own(service, principal, body.plan)
    outcome = edit_plan(service.store, body.unit, body.operation.model_dump(), plan=body.plan,
                        crs=body.crs, options=_settings(service), write=write, note=body.note)
    answer = outcome.as_dict()
    grids = display(outcome.step.community_grids, service.settings.maps)
    grids = grids.assign(households=grids["households"].fillna(0).astype(int)
                         if "households" in grids.columns else 0)
    for column in ("name", "worker"):
        if column not in grids.columns:
            grids[column] = None
    answer["grids"] = geojson(grids, ["code", "name", "households", "worker"])
    return answer


@router.post("/plans/preview", summary="Apply an operation without saving: new grids, "
             "validation and impact", responses=responses(*AUTH, 404, 409, 422, 503))
async def preview(body: PlanEdit, service: ServiceDep, principal: PrincipalDep) -> dict[str, Any]:
    return await run_heavy(service, _edit, service, body, False, principal)


@router.post("/plans", status_code=201, summary="Apply an operation and save it in a plan",
             responses=responses(*AUTH, 404, 409, 422, 503))
async def create(body: PlanEdit, service: ServiceDep, principal: PrincipalDep):
    answer = await run_heavy(service, _edit, service, body, True, principal)
    return JSONResponse(answer, status_code=201 if body.plan is None else 200)


@router.get("/plans", summary="Open plans (draft versions) the caller may see",
            responses=responses(*AUTH, 503))
async def list_plans(service: ServiceDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    access.check(principal, "plan")

    def visible():
        drafts = [v for v in service.store.versions() if v.status == "draft"]
        if principal.everything:
            return drafts
        return [v for v in drafts
                if all(principal.covers(c) for c in access.plan_codes(service.store, v.id))]

    return [{"id": v.id, "base": v.base, "note": v.note, "created_at": v.created_at.isoformat()}
            for v in await run_in_threadpool(visible)]


@router.get("/plans/{plan:int}", summary="A plan checked and compared with the active map",
            responses=responses(*AUTH, 404, 503))
async def show(plan: PlanId, service: ServiceDep, principal: PrincipalDep) -> dict[str, Any]:
    from gridmap.planning.workflow import plan_impact

    def run():
        _own(service, principal, plan)
        return plan_impact(service.store, plan, _settings(service))

    found = await run_heavy(service, run)
    found.pop("_impact")
    return found


@router.get("/plans/{plan:int}/map", summary="Before and after: the plan over the active map",
            response_class=HTMLResponse, responses=responses(*AUTH, 404, 422, 503))
async def plan_page(plan: PlanId, service: ServiceDep, principal: PrincipalDep,
                    unit: Annotated[str, Query(pattern=r"^[0-9]{6,12}$")]):
    return HTMLResponse(await run_heavy(service, _plan_page, service, plan, unit, principal))


def _plan_page(service, plan: int, unit: str, principal: Principal) -> str:
    from gridmap.maps.planner import plan_map
    from gridmap.maps.units import select_unit
    from gridmap.planning.workflow import plan_impact
    from gridmap.store.base import STORE_LAYERS

    access.check(principal, "plan", unit, what=f"unit {unit}", missing=unit_not_found(unit))
    _own(service, principal, plan)
    found = plan_impact(service.store, plan, _settings(service))
    active = service.store.resolve().id
    layers = {level: service.store.read_layer(level, active) for level in STORE_LAYERS}
    chosen = select_unit(layers, unit, max_grids=service.settings.maps.max_grids)
    after = select_unit({**layers, "grid": service.store.read_layer("grid", plan)}, unit)
    return plan_map(chosen, after.grids, found["_impact"], plan=plan,
                    settings=service.settings.maps)


@router.post("/plans/{plan:int}/publish", summary="Make the plan the active map (409 when the "
             "active map changed since the plan was drawn)",
             responses=responses(*AUTH, 404, 409, 422, 503))
async def publish(plan: PlanId, service: ServiceDep, principal: PrincipalDep,
                  body: PublishBody | None = None):
    from gridmap.planning.workflow import open_plan

    def run():
        open_plan(service.store, plan)
        _own(service, principal, plan)
        result = service.store.publish(commit=True, on=body.on if body else None, draft=plan)
        moved = _moved(service, result.draft.id)
        service.refresh()
        return {"version": result.draft.id, "published_on": result.draft.published_on.isoformat(),
                "previous": result.previous.id if result.previous else None,
                "changes": {level: vars(change) for level, change in result.changes.items()},
                "incidents_moved": moved}

    return await run_heavy(service, run)


def _moved(service, version: int) -> list[dict]:
    from dataclasses import asdict

    from gridmap.store.workflow import incidents_moved

    return [asdict(m) for m in incidents_moved(service.store, version)]


@router.delete("/plans/{plan:int}", status_code=204, summary="Discard a plan",
               responses=responses(*AUTH, 404, 503))
async def discard(plan: PlanId, service: ServiceDep, principal: PrincipalDep):
    from gridmap.planning.workflow import open_plan

    def run():
        open_plan(service.store, plan)
        _own(service, principal, plan)
        service.store.discard_draft(plan)

    await run_in_threadpool(run)
    return Response(status_code=204)


@router.get("/maps/planner", summary="The planner's drawing page for one community",
            response_class=HTMLResponse, responses=responses(*AUTH, 404, 422, 503))
async def planner(service: ServiceDep, principal: PrincipalDep,
                  unit: Annotated[str, Query(pattern=_CODE, description="community code")],
                  plan: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None):
    return HTMLResponse(await run_heavy(service, _planner_page, service, unit, plan, principal))


def _planner_page(service, unit: str, plan: int | None, principal: Principal) -> str:
    from gridmap.maps.planner import planner_page
    from gridmap.maps.units import select_unit
    from gridmap.planning.workflow import open_plan
    from gridmap.store.base import STORE_LAYERS

    access.check(principal, "plan", unit, what=f"community {unit}",
                 missing=unit_not_found(unit))
    if plan is not None:
        _own(service, principal, plan)
    version = open_plan(service.store, plan).id if plan is not None else service.store.resolve().id
    layers = {level: service.store.read_layer(level, version) for level in STORE_LAYERS}
    chosen = select_unit(layers, unit, max_grids=service.settings.maps.max_grids)
    if chosen.level != "community":
        from gridmap.errors import InputError

        raise InputError(f"{unit} is a {chosen.level}; the planner edits one community")
    return planner_page(chosen, plan=plan, settings=service.settings.maps)
