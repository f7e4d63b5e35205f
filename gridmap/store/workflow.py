"""The incident workflow over a store: report, move, reassign, escalate, and what a publication moves.

:mod:`gridmap.incidents` decides (pure); this module reads an incident from the store, lets the
state machine decide, and saves the result under optimistic concurrency — the one place the HTTP
routes, the Open311 routes, the scheduler and the command line all go through.

>>> import tempfile, os
>>> from gridmap.store import open_store
>>> store = open_store(os.path.join(tempfile.mkdtemp(), "gridmap.gpkg"))
>>> incident, created = report(store, None, lon=111.5, lat=36.1, category="safety",
...                            description="blocked fire exit", idempotency_key="k1")
>>> incident.unrouted, created, report(store, None, lon=111.5, lat=36.1, category="safety",
...                                    description="blocked fire exit", idempotency_key="k1")[1]
(True, True, False)
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np

from gridmap.errors import InputError, RevisionConflict
from gridmap.incidents import (FINAL, Actor, Incident, IncidentSettings, InvalidReport, Status,
                               check_category, check_contact, check_description, check_photo_url,
                               escalate, reassign, report_incident, transition)
from gridmap.store.base import Store
from gridmap.store.records import IncidentQuery, fingerprint

__all__ = ["MovedIncident", "report", "move", "reassign_to", "escalate_due", "incidents_moved",
           "grid_chain"]

log = logging.getLogger("gridmap.incidents")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidReport(f"{what} must be a number, not {str(value)[:20]!r}")
    return float(value)


def report(store: Store, index, *, lon, lat, crs: str = "wgs84", category: str,
           description: str, photo_url: str | None = None, contact: str | None = None,
           idempotency_key: str | None = None, settings: IncidentSettings | None = None,
           now: dt.datetime | None = None) -> tuple[Incident, bool]:
    """A new report checked, routed to the grid at its point by ``index`` (a
    :class:`~gridmap.lookup.LookupIndex`, None when nothing is published) and stored.

    A point in no grid is kept *unrouted* (``grid_code`` None) for a supervisor to assign: a
    resident's report is never refused for where it is. ``(incident, created)``: ``created`` is
    False when ``idempotency_key`` was seen with the same report (the stored one comes back).
    """
    from gridmap.lookup.coords import to_wgs84_point

    settings = settings or IncidentSettings()
    check_category(category, settings)
    check_description(description)
    if photo_url is not None:
        check_photo_url(photo_url)
    if contact is not None:
        check_contact(contact)
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 255):
        raise InputError("Idempotency-Key must be 1 to 255 characters")
    x, y = to_wgs84_point(_number(lon, "lon"), _number(lat, "lat"), crs)
    found = index.find(x, y) if index is not None and len(index) else None
    chain = {level: (found.get(level) or {}).get("code") if found else None
             for level in ("community", "street", "district")}
    incident = report_incident(
        id=0, category=category, description=description, lon=x, lat=y,
        grid_code=found["grid"]["code"] if found else None,
        grid_name=found["grid"].get("name") if found else None,
        worker=found["grid"].get("worker") if found else None,
        community_code=chain["community"], street_code=chain["street"],
        district_code=chain["district"], reported_at=now or _now(),
        version=index.version if found else None,
        near_boundary=bool(found["near_boundary"]) if found else False,
        photo_url=photo_url, contact=contact, settings=settings)
    body = {"lon": lon, "lat": lat, "crs": crs, "category": category, "description": description,
            "photo_url": photo_url, "contact": contact}
    return store.add_incident(incident, idempotency_key=idempotency_key,
                              fingerprint=fingerprint(body))


def _current(store: Store, incident_id: int, revision: int | None) -> Incident:
    current = store.get_incident(incident_id)
    if revision is not None and revision != current.revision:
        raise RevisionConflict(f"incident {incident_id} is at revision {current.revision}, not "
                               f"{revision}: it changed since it was read; read it again")
    return current


def move(store: Store, incident_id: int, to: Status | str, *, actor: Actor, note: str = "",
         revision: int | None = None, now: dt.datetime | None = None) -> Incident:
    """One move of the state machine, saved. ``revision``: the one the client read (409 if stale);
    without it, the move applies to the incident as it is now (still safely: the save is
    conditional on the revision read here)."""
    current = _current(store, incident_id, revision)
    changed = transition(current, to, actor=actor, at=_after(current, now), note=note)
    return store.update_incident(changed, expected_revision=current.revision)


def _after(incident: Incident, now: dt.datetime | None) -> dt.datetime:
    """The time of a new trail entry: now, or — when clocks of several servers disagree by a
    little — just after the last entry, since the trail is kept in time order."""
    if now is not None:
        return now
    last = incident.trail[-1].at if incident.trail else incident.reported_at
    return max(_now(), last)


def grid_chain(store: Store, version: int, code: str) -> dict:
    """A grid's name, worker and community/street/district codes in ``version`` (FeatureNotFound)."""
    grid = store.get_feature("grid", version, code).iloc[0]
    out = {"grid_code": code, "grid_name": _text(grid.get("name")),
           "worker": _text(grid.get("worker")), "version": version}
    parent = _text(grid.get("parent_code")) or code[:12]
    for level in ("community", "street", "district"):
        out[f"{level}_code"] = parent
        if parent is None:
            continue
        try:
            parent = _text(store.get_feature(level, version, parent).iloc[0].get("parent_code"))
        except Exception:  # a level the version does not hold: codes are hierarchical
            parent = parent[:{"community": 9, "street": 6}.get(level, 0)] or None
    return out


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def reassign_to(store: Store, incident_id: int, grid_code: str, *, version: int, actor: Actor,
                note: str = "", revision: int | None = None,
                now: dt.datetime | None = None) -> Incident:
    """Hand an incident to the grid ``grid_code`` of boundary ``version`` (the worker and chain
    come from that version), recorded in its trail."""
    current = _current(store, incident_id, revision)
    chain = grid_chain(store, version, grid_code)
    changed = reassign(current, actor=actor, at=_after(current, now), note=note, **chain)
    return store.update_incident(changed, expected_revision=current.revision)


def escalate_due(store: Store, now: dt.datetime | None = None,
                 settings: IncidentSettings | None = None) -> int:
    """One pass of the scheduler: every open incident past its deadline goes up one level.

    Idempotent: an escalated incident gets a new deadline from ``now``, so a second pass finds
    nothing more. Safe with several services running it: each save is conditional on the
    revision read, and an incident someone changed meanwhile is left for the next pass.
    Returns how many were escalated.
    """
    now = now or _now()
    due, _ = store.query_incidents(IncidentQuery(overdue_at=now), limit=None)
    done = 0
    for incident in due:
        try:
            (changed,) = escalate([incident], now, settings)
        except InvalidReport as exc:  # a clock behind the incident's last entry
            log.warning("incident %s not escalated: %s", incident.id, exc.detail)
            continue
        if changed is incident:
            continue  # at street level already: stays overdue for a person to act on
        try:
            store.update_incident(changed, expected_revision=incident.revision)
            done += 1
        except RevisionConflict:
            continue
    return done


@dataclass(frozen=True)
class MovedIncident:
    """An open incident whose point lies in another grid (or none) under a new boundary version."""

    id: int
    status: str
    from_grid: str | None
    to_grid: str | None


def incidents_moved(store: Store, version: int) -> list[MovedIncident]:
    """The open incidents (not closed or rejected) that ``version``'s grids would route elsewhere.

    They keep their grid (an incident keeps the grid of its day); a supervisor reassigns those
    that should follow the new boundary (``POST /incidents/{id}/reassign``).
    """
    from gridmap.lookup import LookupIndex

    live = tuple(s.value for s in Status if s not in FINAL)
    found, _ = store.query_incidents(IncidentQuery(status=live), limit=None)
    if not found:
        return []
    grids = store.read_layer("grid", version)
    if len(grids):
        index = LookupIndex.build({"grid": grids}, version=version)
        codes = index.grid_codes(index.which([i.lon for i in found], [i.lat for i in found]))
    else:
        codes = [None] * len(found)
    return [MovedIncident(i.id, str(i.status), i.grid_code, code)
            for i, code in zip(found, codes) if code != i.grid_code]
