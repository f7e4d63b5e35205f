"""The closed loop for incidents (巡查、报告、解决、督查、反馈) as a small state machine, DESIGN.md §2.

An incident is reported, assigned to the grid worker, worked on, resolved, checked by a supervisor
and closed; what the grid cannot solve in time escalates to the community, then the street
("小事不出小区、大事不出社区、难事逐级上报"). Everything here is pure: incidents are frozen values,
every function returns new ones, nothing touches a store or HTTP.

- :data:`TRANSITIONS`: the allowed moves and who may make each one, as data;
- :func:`report_incident`: a checked new incident with its deadline;
- :func:`transition`: one move, appended to the incident's ``trail``;
- :func:`escalate`: the scheduler's pass over open incidents past their deadline;
- :func:`check_category`, :func:`check_description`, :func:`check_photo_url`, :func:`check_lonlat`,
  :func:`validate_report`: one-line errors for a new report.

>>> from datetime import datetime, timezone
>>> t0 = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
>>> inc = report_incident(id=42, category="environment", description="垃圾堆放", lon=111.52,
...                       lat=36.08, grid_code="141002004003007", reported_at=t0)
>>> inc.deadline - inc.reported_at
datetime.timedelta(days=2)
>>> inc = transition(inc, "assigned", actor=Actor("li", Role.COMMUNITY), at=t0)
>>> inc.status, len(inc.trail)
(<Status.ASSIGNED: 'assigned'>, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from gridmap.errors import (
    CoordinatesOutOfRange,
    GridmapError,
    InputError,
    TransitionRefused,
)

__all__ = [
    "FINAL",
    "LEVELS",
    "MAX_TEXT",
    "OPEN",
    "REASSIGN",
    "SCHEDULER",
    "TRANSITIONS",
    "Actor",
    "ActorNotPermitted",
    "Incident",
    "IncidentSettings",
    "InvalidReport",
    "Level",
    "Role",
    "Status",
    "Transition",
    "UnknownCategory",
    "allowed_moves",
    "check_category",
    "check_contact",
    "check_description",
    "check_lonlat",
    "check_photo_url",
    "deadline_for",
    "escalate",
    "is_overdue",
    "reassign",
    "report_incident",
    "transition",
    "validate_report",
]


class Status(StrEnum):
    REPORTED = "reported"  # 报告: in from a resident or a grid worker's patrol (巡查)
    ASSIGNED = "assigned"  # 派单: dispatched to whoever handles it at its level
    IN_PROGRESS = "in_progress"  # 解决: being worked on
    RESOLVED = "resolved"  # the handler says it is done; waits for the supervisor
    CHECKED = "checked"  # 督查: a supervisor confirmed it on site
    CLOSED = "closed"  # 反馈: the reporter was told; final
    REJECTED = "rejected"  # not a matter for the grid (duplicate, out of scope, false report); final
    REOPENED = "reopened"  # a supervisor found it not done; goes back to dispatch


class Role(StrEnum):
    GRID_WORKER = "grid_worker"  # 网格员: handles what is assigned to the grid
    COMMUNITY = "community"  # 社区 staff: dispatch, and handle what escalated to the community
    STREET = "street"  # 街道 staff: the same one level up
    SUPERVISOR = "supervisor"  # 督查: checks resolved incidents on site, reopens them
    SCHEDULER = "scheduler"  # the deadline clock: escalates, never moves an incident's status


class Level(StrEnum):
    """Who holds the incident: 小事不出小区、大事不出社区、难事逐级上报."""

    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"


LEVELS: tuple[Level, ...] = tuple(Level)  # in escalation order; street is the top

_DISPATCH = frozenset({Role.COMMUNITY, Role.STREET})
_HANDLE = frozenset({Role.GRID_WORKER, Role.COMMUNITY, Role.STREET})
_CHECK = frozenset({Role.SUPERVISOR})

#: The allowed moves: state → {next state: the roles that may make the move}. A state with no
#: moves is final. Resolved and checked incidents may be reopened by a supervisor (the on-site
#: check failed, or the reporter's feedback says it is not done); a reopened incident goes back to
#: dispatch, never straight to in_progress, so someone decides again who handles it. Rejection
#: is for dispatchers before work starts; once in progress an incident can only be resolved.
TRANSITIONS: Mapping[Status, Mapping[Status, frozenset[Role]]] = MappingProxyType({
    Status.REPORTED: MappingProxyType({Status.ASSIGNED: _DISPATCH, Status.REJECTED: _DISPATCH}),
    Status.ASSIGNED: MappingProxyType({Status.IN_PROGRESS: _HANDLE, Status.REJECTED: _DISPATCH}),
    Status.IN_PROGRESS: MappingProxyType({Status.RESOLVED: _HANDLE}),
    Status.RESOLVED: MappingProxyType({Status.CHECKED: _CHECK, Status.REOPENED: _CHECK}),
    Status.CHECKED: MappingProxyType({Status.CLOSED: _DISPATCH | _CHECK, Status.REOPENED: _CHECK}),
    Status.REOPENED: MappingProxyType({Status.ASSIGNED: _DISPATCH}),
    Status.CLOSED: MappingProxyType({}),
    Status.REJECTED: MappingProxyType({}),
})

FINAL: frozenset[Status] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
#: Who may hand an incident to another grid (after a boundary change, or a wrong routing): the
#: supervisor, and the dispatchers of the community and the street.
REASSIGN: frozenset[Role] = frozenset({Role.SUPERVISOR, Role.COMMUNITY, Role.STREET})
#: Waiting for a handler, so under a deadline. Resolved and checked incidents wait for the
#: supervisor or for feedback, not for the grid: their clock does not run and they never escalate.
OPEN: frozenset[Status] = frozenset({Status.REPORTED, Status.ASSIGNED, Status.IN_PROGRESS,
                                     Status.REOPENED})

MAX_TEXT = 2000  # characters (code points: a Chinese character counts one) in a description or note
_MAX_URL = 2048


class ActorNotPermitted(GridmapError):
    """The move exists, but not for the actor's role (HTTP 403)."""

    status = 403


class UnknownCategory(InputError):
    """A category with no deadline configured; the detail lists the known ones."""


class InvalidReport(InputError):
    """A field of a new report cannot be used (description, photo URL, coordinates, times)."""


_Hours = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class IncidentSettings(BaseModel):
    """Deadlines per category, in hours from the report (and again from each escalation).

    The defaults are examples; a city configures its own list of matters (事项清单), e.g.
    ``GRIDMAP_INCIDENTS__DEADLINES_HOURS='{"environment": 24, "safety": 4}'``. A category not in the
    list is refused, so every incident has a deadline.
    """

    deadlines_hours: dict[str, _Hours] = Field(
        default_factory=lambda: {
            "safety": 24.0,  # 安全隐患: blocked fire exits, gas, loose objects overhead
            "environment": 48.0,  # 环境卫生: litter, dumping, overflowing bins
            "facilities": 72.0,  # 公共设施: street lamps, manhole covers, benches
            "dispute": 72.0,  # 矛盾纠纷: neighbours, property management
            "construction": 168.0,  # 违章搭建: unauthorised building work
            "other": 72.0,
        },
        min_length=1,
        description="hours allowed per category before the incident escalates one level",
    )
    escalate_every_s: float = Field(
        300.0, ge=0, allow_inf_nan=False,
        description="seconds between the service's escalation passes (0: none; use cron and "
                    "`gridmap escalate` instead)",
    )

    def hours(self, category: str) -> float:
        if category not in self.deadlines_hours:
            known = ", ".join(sorted(self.deadlines_hours))
            raise UnknownCategory(f"unknown category {_show(category)}; known: {known}")
        return self.deadlines_hours[category]


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role


SCHEDULER = Actor("scheduler", Role.SCHEDULER)


@dataclass(frozen=True)
class Transition:
    """One entry of an incident's trail. An escalation or a reassignment keeps the state
    (``from_state == to_state``); ``kind`` tells them apart: ``move``, ``escalate``, ``reassign``."""

    at: datetime
    actor: Actor
    from_state: Status
    to_state: Status
    note: str = ""
    kind: str = "move"


@dataclass(frozen=True)
class Incident:
    """An incident report and its history; build one with :func:`report_incident`.

    ``grid_code``, ``version`` and ``near_boundary`` are the lookup's answer when it was reported:
    the incident keeps the grid it was routed to under the boundary version of its day.
    ``trail`` only ever grows: :func:`transition`, :func:`escalate` and :func:`reassign` return a
    new incident whose trail is the old one plus one entry, so :attr:`revision` (the trail's length)
    counts the changes: stores use it for optimistic concurrency.

    ``grid_code`` is None for a point outside every grid: the report is kept, *unrouted*, for a
    supervisor to assign. ``community_code``/``street_code``/``district_code`` are the grid's
    chain and ``worker`` its grid worker at routing time; ``contact`` is the reporter's phone or
    e-mail when given (shown to staff, never in public feeds).
    """

    id: int
    category: str
    description: str
    lon: float
    lat: float
    grid_code: str | None
    reported_at: datetime
    deadline: datetime
    version: int | None = None
    near_boundary: bool = False
    photo_url: str | None = None
    status: Status = Status.REPORTED
    level: Level = Level.GRID
    trail: tuple[Transition, ...] = ()
    community_code: str | None = None
    street_code: str | None = None
    district_code: str | None = None
    worker: str | None = None
    contact: str | None = None
    grid_name: str | None = None

    @property
    def revision(self) -> int:
        return len(self.trail)

    @property
    def unrouted(self) -> bool:
        return self.grid_code is None


# -- validation of a new report ------------------------------------------------------------------


def _show(value: object, limit: int = 40) -> str:
    """A user's value quoted for a one-line message, cut short so a long input stays one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_category(category: str, settings: IncidentSettings) -> str:
    settings.hours(category)
    return category


def check_description(text: str, *, what: str = "description") -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidReport(f"{what} is empty")
    if len(text) > MAX_TEXT:
        raise InvalidReport(f"{what} has {len(text):,} characters; at most {MAX_TEXT:,} are allowed")
    return text


def check_photo_url(url: str) -> str:
    """Only http(s) links with a host: no ``javascript:``, ``data:`` or ``file:`` in a page later."""
    if not isinstance(url, str) or len(url) > _MAX_URL:
        raise InvalidReport(f"photo URL must be a text of at most {_MAX_URL:,} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidReport("photo URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidReport(f"photo URL {_show(url)} cannot be parsed") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidReport(f"photo URL must start with http:// or https://, not {_show(url, 30)}")
    if not host:
        raise InvalidReport(f"photo URL {_show(url)} has no host")
    return url


def check_lonlat(lon: float, lat: float) -> tuple[float, float]:
    """Finite WGS84 degrees; the CRS conversion (GCJ-02, BD-09) happens before this."""
    try:
        if isinstance(lon, bool) or isinstance(lat, bool):
            raise TypeError
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise InvalidReport(f"lon/lat must be numbers, not {_show(lon, 20)}, {_show(lat, 20)}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InvalidReport(f"lon/lat must be finite numbers, not {x}, {y}")
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        raise CoordinatesOutOfRange(f"lon {x}, lat {y} are not degrees (lon −180…180, lat −90…90)")
    return x, y


def validate_report(*, category: str, description: str, lon: float, lat: float,
                    photo_url: str | None = None, settings: IncidentSettings | None = None) -> None:
    """Every check of a new report, the first failure raised as a one-line :class:`InputError`."""
    check_category(category, settings or IncidentSettings())
    check_description(description)
    check_lonlat(lon, lat)
    if photo_url is not None:
        check_photo_url(photo_url)


def _aware(at: datetime, what: str) -> datetime:
    # Naive and aware datetimes cannot be compared; one naive time would break every deadline check.
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise InvalidReport(f"{what} must be a datetime with a timezone, not {_show(at)}")
    return at


# -- the state machine ---------------------------------------------------------------------------


def deadline_for(category: str, reported_at: datetime, settings: IncidentSettings) -> datetime:
    return _aware(reported_at, "reported_at") + timedelta(hours=settings.hours(category))


def report_incident(*, id: int, category: str, description: str, lon: float, lat: float,
                    grid_code: str | None, reported_at: datetime, version: int | None = None,
                    near_boundary: bool = False, photo_url: str | None = None,
                    settings: IncidentSettings | None = None, community_code: str | None = None,
                    street_code: str | None = None, district_code: str | None = None,
                    worker: str | None = None, contact: str | None = None,
                    grid_name: str | None = None) -> Incident:
    """A new incident, checked, at grid level, with its category's deadline and an empty trail."""
    settings = settings or IncidentSettings()
    validate_report(category=category, description=description, lon=lon, lat=lat,
                    photo_url=photo_url, settings=settings)
    if contact is not None:
        check_contact(contact)
    x, y = check_lonlat(lon, lat)
    return Incident(id=id, category=category, description=description, lon=x, lat=y,
                    grid_code=grid_code, reported_at=reported_at,
                    deadline=deadline_for(category, reported_at, settings), version=version,
                    near_boundary=bool(near_boundary), photo_url=photo_url,
                    community_code=community_code, street_code=street_code,
                    district_code=district_code, worker=worker, contact=contact,
                    grid_name=grid_name)


def check_contact(contact: str) -> str:
    """A phone number or e-mail address: one short line."""
    if not isinstance(contact, str) or not contact.strip() or len(contact) > 200 \
            or any(ord(c) < 32 for c in contact):
        raise InvalidReport("contact must be one line of at most 200 characters (phone or e-mail)")
    return contact


def allowed_moves(status: Status | str) -> tuple[Status, ...]:
    """The states an incident in ``status`` may go to, in table order (empty when final)."""
    return tuple(TRANSITIONS[_status(status)])


def _status(value: Status | str) -> Status:
    try:
        return Status(value)
    except ValueError:
        known = ", ".join(Status)
        raise InputError(f"unknown status {_show(value)}; known: {known}") from None


def _last_time(incident: Incident) -> datetime:
    return incident.trail[-1].at if incident.trail else incident.reported_at


def _append(incident: Incident, entry: Transition, **changes) -> Incident:
    _aware(entry.at, "time")
    last = _last_time(incident)
    if entry.at < last:
        raise InvalidReport(f"incident {incident.id}: {entry.at.isoformat()} is before its last "
                            f"entry at {last.isoformat()}; the trail is kept in time order")
    return replace(incident, trail=incident.trail + (entry,), **changes)


def transition(incident: Incident, to: Status | str, *, actor: Actor, at: datetime,
               note: str = "") -> Incident:
    """``incident`` moved to ``to`` by ``actor`` at ``at``: a new incident, one trail entry longer.

    Raises
    ------
    TransitionRefused (409)
        the move is not in :data:`TRANSITIONS` from the current state; names both.
    ActorNotPermitted (403)
        the move exists but the actor's role may not make it; names the roles that may.
    InvalidReport (422)
        ``at`` has no timezone or is earlier than the last trail entry, or the note is too long.
    """
    target = _status(to)
    current = _status(incident.status)
    moves = TRANSITIONS[current]
    if target not in moves:
        if not moves:
            options = f"nothing ({current} is final)"
        else:
            options = ", ".join(moves)
        raise TransitionRefused(f"incident {incident.id} is {current}; it can go to: {options}")
    if actor.role not in moves[target]:
        who = ", ".join(sorted(moves[target]))
        raise ActorNotPermitted(f"incident {incident.id}: a {actor.role} cannot move it from "
                                f"{current} to {target}; who can: {who}")
    if note:
        check_description(note, what="note")
    entry = Transition(at=at, actor=actor, from_state=current, to_state=target, note=note)
    return _append(incident, entry, status=target)


def is_overdue(incident: Incident, now: datetime) -> bool:
    """Open and past its deadline (at street level it stays overdue: there is no level above)."""
    return _status(incident.status) in OPEN and _aware(now, "now") >= incident.deadline


def escalate(incidents: Iterable[Incident], now: datetime,
             settings: IncidentSettings | None = None) -> list[Incident]:
    """The scheduler's pass: every open incident past its deadline goes up one level.

    An escalated incident gets a trail entry by :data:`SCHEDULER` (same state, the levels in the
    note) and a new deadline of its category's full period counted from ``now`` — so a second pass
    at the same ``now`` finds nothing past due (idempotent), and an incident left for three periods
    climbs one level per pass, never two at once. Street is the top: an overdue incident there
    keeps its deadline and stays overdue (:func:`is_overdue`) for a person to act on.

    Returns every incident in the order given; those left alone are the same objects, so
    ``[new for new, old in zip(result, given) if new is not old]`` are the ones to save. Raises
    :class:`UnknownCategory` when an overdue incident's category is no longer configured, and
    :class:`InvalidReport` when ``now`` is earlier than an overdue incident's last trail entry
    (a stale clock): loud, and nothing is half-done since nothing here is saved.
    """
    _aware(now, "now")
    settings = settings or IncidentSettings()
    out = []
    for incident in incidents:
        level = LEVELS.index(Level(incident.level))
        if not is_overdue(incident, now) or level == len(LEVELS) - 1:
            out.append(incident)
            continue
        up = LEVELS[level + 1]
        note = (f"past its deadline {incident.deadline.isoformat()}: "
                f"escalated from {LEVELS[level]} to {up}")
        entry = Transition(at=now, actor=SCHEDULER, from_state=incident.status,
                           to_state=incident.status, note=note, kind="escalate")
        out.append(_append(incident, entry, level=up,
                           deadline=now + timedelta(hours=settings.hours(incident.category))))
    return out


def reassign(incident: Incident, *, grid_code: str | None, actor: Actor, at: datetime,
             note: str = "", worker: str | None = None, community_code: str | None = None,
             street_code: str | None = None, district_code: str | None = None,
             version: int | None = None, grid_name: str | None = None) -> Incident:
    """``incident`` handed to another grid (or an unrouted one routed) by a supervisor or
    dispatcher: the state, level and deadline stay; the trail records from where to where.

    Raises ActorNotPermitted (403) for other roles, TransitionRefused (409) for a final incident
    or the grid it already has.
    """
    if actor.role not in REASSIGN:
        who = ", ".join(sorted(REASSIGN))
        raise ActorNotPermitted(f"incident {incident.id}: a {actor.role} cannot reassign it; who can: {who}")
    current = _status(incident.status)
    if current in FINAL:
        raise TransitionRefused(f"incident {incident.id} is {current}: a final incident keeps its grid")
    if grid_code == incident.grid_code:
        raise TransitionRefused(f"incident {incident.id} is already with grid {grid_code}")
    if note:
        check_description(note, what="note")
    moved = f"reassigned from grid {incident.grid_code or '(unrouted)'} to {grid_code or '(unrouted)'}"
    entry = Transition(at=at, actor=actor, from_state=current, to_state=current,
                       note=f"{moved}: {note}" if note else moved, kind="reassign")
    return _append(incident, entry, grid_code=grid_code, worker=worker,
                   community_code=community_code, street_code=street_code,
                   district_code=district_code, grid_name=grid_name,
                   version=version if version is not None else incident.version)
