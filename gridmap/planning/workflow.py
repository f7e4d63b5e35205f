"""Plans against a store: every planner operation lands in a plan (a draft version), never in
the active map; a plan is checked, compared with the active version and published atomically.

A plan is a draft version that remembers the active version it was drawn on (``Version.base``).
Publishing it checks, under the store's write lock, that this version is still the active one:
of two planners publishing at once one wins and the other gets Conflict — their plan is kept, to
be redrawn on the new map. The CLI and the ``/plans`` routes both call these functions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import geopandas as gpd
import numpy as np

from gridmap.errors import InputError, NotFound
from gridmap.planning.impact import Impact, impact_report
from gridmap.planning.plans import PlanStep, apply_operation, community_part

__all__ = ["PlanNotFound", "PlanOutcome", "edit_plan", "plan_impact", "plan_layers",
           "plan_units", "retired_codes", "validate_plan"]

_LEVELS = ("community", "grid", "building")


class PlanNotFound(NotFound):
    """No open plan (draft version) with the number asked for."""


@dataclass
class PlanOutcome:
    """An operation applied: where it was written (``plan``, None for a preview), the step, the
    validation of the community afterwards and the impact against the active version."""

    plan: object | None  # gridmap.store.base.Version
    created: bool
    step: PlanStep
    report: object  # gridmap.report.Report
    impact: Impact

    def as_dict(self) -> dict:
        return {"id": self.plan.id if self.plan is not None else None,
                "base": getattr(self.plan, "base", None), "unit": self.step.unit,
                "operation": self.step.op, "valid": self.report.clean,
                "validation": self.report.to_dict(), "impact": self.impact.as_dict(),
                "notes": self.step.notes, "details": _plain(self.step.details)}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_plan(store, plan: int):
    """The draft version ``plan``; PlanNotFound when it is not an open plan."""
    for v in store.versions():
        if v.id == plan:
            if v.status != "draft":
                raise PlanNotFound(f"version {plan} is {v.status}, not an open plan")
            return v
    raise PlanNotFound(f"no plan {plan}")


def plan_layers(store, version: int, levels=_LEVELS) -> dict[str, gpd.GeoDataFrame]:
    return {level: store.read_layer(level, version) for level in levels}


def retired_codes(store, unit: str) -> frozenset[str]:
    """Every grid code of community ``unit`` in any version: a code once used is never reissued."""
    codes: set[str] = set()
    for v in store.versions():
        grids = store.read_layer("grid", v.id)
        codes.update(c for c in grids["code"].astype(str) if c.startswith(unit))
    return frozenset(codes)


def validate_plan(step_grids: gpd.GeoDataFrame, layers: dict, unit: str, options=None):
    """The validation of community ``unit`` as the plan draws it."""
    from gridmap.validate import validate_coverage

    community, _, held = community_part(layers, unit)
    buildings = layers["building"].iloc[held] if len(held) else None
    return validate_coverage(step_grids, community, buildings, options)


def _open_incidents(store):
    from gridmap.incidents import OPEN
    from gridmap.store.records import IncidentQuery

    found, _ = store.query_incidents(IncidentQuery(status=tuple(s.value for s in OPEN)),
                                     limit=None)
    return gpd.GeoDataFrame({"id": [i.id for i in found],
                             "status": [str(getattr(i.status, "value", i.status)) for i in found]},
                            geometry=gpd.points_from_xy([i.lon for i in found],
                                                        [i.lat for i in found]), crs=4326)


def edit_plan(store, unit: str, operation: dict, *, plan: int | None = None, crs: str = "wgs84",
              options=None, write: bool = True, note: str = "") -> PlanOutcome:
    """Apply ``operation`` to community ``unit`` of ``plan`` (or of the active version, making a
    new plan); with ``write`` the result is saved into the plan, else it is only a preview."""
    active = store.resolve()
    draft = open_plan(store, plan) if plan is not None else None
    base = plan_layers(store, draft.id if draft else active.id)
    step = apply_operation(base, unit, operation, crs=crs, options=options,
                           retired=retired_codes(store, unit))
    report = validate_plan(step.community_grids, {**base, "building": step.buildings}, unit,
                           options)
    impact = impact_report(store.read_layer("grid", active.id), step.grids,
                           store.read_layer("building", active.id), _open_incidents(store))
    created = False
    if write:
        layers = {"grid": step.grids, "building": step.buildings}
        if draft is None:
            draft = store.new_draft(layers, note=note or f"{step.op} in {unit}")
            created = True
        else:
            draft = store.write_draft(layers, note=note or draft.note, draft=draft.id)
    return PlanOutcome(plan=draft if write else None, created=created, step=step, report=report,
                       impact=impact)


def plan_units(store, plan: int) -> list[str]:
    """The communities whose grids the plan changes (against the version it was drawn on)."""
    from gridmap.planning.impact import changed_grids

    draft = open_plan(store, plan)
    base = draft.base if draft.base is not None else store.resolve().id
    old, new = store.read_layer("grid", base), store.read_layer("grid", draft.id)
    added, removed, changed = changed_grids(old, new)
    parents = dict(zip(old["code"].astype(str), old.get("parent_code", old["code"]).astype(str)))
    parents.update(zip(new["code"].astype(str), new.get("parent_code", new["code"]).astype(str)))
    return sorted({parents[c] for c in added + removed + changed})


def plan_impact(store, plan: int, options=None) -> dict:
    """The plan checked and compared: per changed community its validation, and the impact of
    the whole plan against the active version."""
    draft = open_plan(store, plan)
    active = store.resolve()
    layers = plan_layers(store, draft.id)
    checks = {}
    for unit in plan_units(store, plan):
        community, mine, _ = community_part(layers, unit)
        checks[unit] = validate_plan(layers["grid"].iloc[mine], layers, unit, options)
    impact = impact_report(store.read_layer("grid", active.id), layers["grid"],
                           store.read_layer("building", active.id), _open_incidents(store))
    return {"id": draft.id, "base": draft.base, "active": active.id, "note": draft.note,
            "created_at": draft.created_at.isoformat(),
            "stale": draft.base is not None and draft.base != active.id,
            "valid": all(r.clean for r in checks.values()),
            "units": {u: r.to_dict() for u, r in checks.items()},
            "impact": impact.as_dict(), "_impact": impact}


def check_date(on: dt.date | None) -> dt.date | None:
    if on is not None and not isinstance(on, dt.date):
        raise InputError("publish date must be YYYY-MM-DD")
    return on
