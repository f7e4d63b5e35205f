"""Who may do what, and where: API keys, roles, units (辖区) and the masking of personal data.

A governance map carries personal data (reporters' phone numbers, what they reported) and its
boundaries decide who is responsible, so every answer is cut to the caller's **unit**: a code
(district 6 digits, street 9, community 12, grid 15) whose subtree is every code starting with it
(:mod:`gridmap.codes`). A key holds one role and one unit, or several units separated by commas
(a rural worker with two grids: ``141002004003007,141002004003008``).

=============  ==================================================  =========================
role           may                                                 unit
=============  ==================================================  =========================
reporter       report incidents (and read back nothing)            optional, not used
worker         read and move the incidents of their own grids      their grid code(s), 15 digits
supervisor     read everything in their subtree, move, reassign    a district, street or community
planner        maps of their unit, plans and publication there     a district, street or community
admin          everything                                          none (all of it)
=============  ==================================================  =========================

Every role (and nobody, when ``GRIDMAP_ACCESS__PUBLIC_LOOKUP`` is true, the default) may look up
a point and read the boundaries (OGC API – Features): that is the public part of the map, and the
lookup answer names the responsible grid worker by design (DESIGN.md §4).

Answers: no key, an unknown or revoked one → :class:`~gridmap.errors.Unauthorized` (401); a role
that may not do this anywhere → :class:`~gridmap.errors.Forbidden` (403); an object that exists
outside the caller's unit → :class:`~gridmap.errors.OutsideUnit` (404, worded as "not found", so
that existence does not leak).

Keys are ``gm_`` plus 43 URL-safe characters (256 bits from :mod:`secrets`); stores keep only
their SHA-256, so a stolen store gives no usable key, and a 256-bit secret needs no slow hash.

>>> p = Principal(Role.SUPERVISOR, ("141002004",))
>>> may(p, "read_incidents", "141002004003007"), may(p, "read_incidents", "141002005001001")
(True, False)
>>> may(p, "plan", "141002004003")
False
>>> mask_phones("王芳 13812345678")
'王芳 138****5678'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum

from gridmap.errors import Forbidden, InputError, OutsideUnit, Unauthorized

__all__ = ["Role", "Principal", "ApiKey", "OPEN", "ANONYMOUS", "ACTIONS", "inside", "may",
           "check", "check_all", "scope", "sees_contact", "workflow_roles", "mask_phones",
           "plan_codes", "without_contact", "new_token", "hash_token", "parse_unit", "issue_key",
           "find_principal"]

TOKEN_PREFIX = "gm_"


class Role(StrEnum):
    REPORTER = "reporter"
    WORKER = "worker"
    SUPERVISOR = "supervisor"
    PLANNER = "planner"
    ADMIN = "admin"


#: Action → the roles that may do it (inside their unit). ``lookup`` is also open to nobody at
#: all when public lookup is configured; the route decides that (it is configuration).
ACTIONS: dict[str, frozenset[Role]] = {
    "lookup": frozenset(Role),                      # point → grid, the boundaries as features
    "report": frozenset(Role),                      # POST /incidents, Open311 POST
    "view": frozenset({Role.WORKER, Role.SUPERVISOR, Role.PLANNER, Role.ADMIN}),  # unit maps
    "read_incidents": frozenset({Role.WORKER, Role.SUPERVISOR, Role.ADMIN}),
    "act": frozenset({Role.WORKER, Role.SUPERVISOR, Role.ADMIN}),  # transitions
    "reassign": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    "plan": frozenset({Role.PLANNER, Role.ADMIN}),  # plans, imports, publication, stations
}

#: The digits a key's unit may have, per role (a worker's are grids; others govern areas).
_UNIT_DIGITS = {Role.WORKER: {15}, Role.SUPERVISOR: {6, 9, 12}, Role.PLANNER: {6, 9, 12},
                Role.REPORTER: {6, 9, 12, 15}, Role.ADMIN: {6, 9, 12, 15}}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a role and the unit codes it governs. ``everything``: no unit limit
    (admins, and everyone when access control is off)."""

    role: Role | None  # None: nobody (no key given)
    units: tuple[str, ...] = ()
    name: str = ""
    key_id: int | None = None
    everything: bool = False

    def covers(self, code: str | None) -> bool:
        """Whether ``code`` lies in this principal's subtree."""
        if self.everything:
            return True
        return code is not None and any(inside(u, code) for u in self.units)

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        role = Role(key.role)
        return cls(role, parse_unit(key.unit), name=key.name or f"key {key.id}", key_id=key.id,
                   everything=role is Role.ADMIN)


#: Access control switched off (GRIDMAP_ACCESS__ENABLED=false): everything, as before keys.
OPEN = Principal(Role.ADMIN, everything=True, name="")
#: A request with no key.
ANONYMOUS = Principal(None)


@dataclass(frozen=True)
class ApiKey:
    """A stored key: never the token, only its SHA-256 (``hash``) and its first characters
    (``prefix``, to recognise it in ``gridmap keys list``)."""

    role: str
    hash: str
    prefix: str
    unit: str | None = None
    name: str = ""
    id: int | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    revoked_at: dt.datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def inside(unit: str, code: str | None) -> bool:
    """Whether ``code`` is ``unit`` or beneath it (codes are hierarchical: prefixes)."""
    return code is not None and code.startswith(unit)


def may(principal: Principal, action: str, code: str | None = None) -> bool:
    """Whether ``principal`` may do ``action`` (on the unit or object coded ``code``)."""
    if principal.role is None or principal.role not in ACTIONS[action]:
        return False
    return code is None or principal.covers(code)


def check(principal: Principal, action: str, code: str | None = None, *,
          what: str = "it", missing: Exception | None = None) -> None:
    """Raise unless ``may``: 401 for nobody, 403 for a role that may not do this, 404 for an
    object outside the unit — ``missing``, the very error a missing object gets (same type, same
    words), so that an outsider cannot tell "elsewhere" from "nowhere"."""
    if principal.role is None:
        raise Unauthorized("this needs an API key: send Authorization: Bearer KEY")
    if principal.role not in ACTIONS[action]:
        raise Forbidden(f"a {principal.role} key may not do this")
    if code is not None and not principal.covers(code):
        raise missing if missing is not None else OutsideUnit(f"there is no {what}")


def check_all(principal: Principal, action: str, codes, *, what: str = "it",
              missing: Exception | None = None) -> None:
    """:func:`check` for an object touching several units (a plan): 404 when none of them is the
    caller's, 403 when some are and others are not."""
    codes = list(codes)
    check(principal, action)
    if principal.everything or not codes:
        return
    mine = [c for c in codes if principal.covers(c)]
    if not mine:
        raise missing if missing is not None else OutsideUnit(f"there is no {what}")
    if len(mine) < len(codes):
        others = sorted(set(codes) - set(mine))
        raise Forbidden(f"{what} also changes {', '.join(others[:5])}, outside your unit")


def scope(principal: Principal) -> tuple[str, ...] | None:
    """The unit prefixes an incident query is cut to, or None for no cut."""
    return None if principal.everything else principal.units


def sees_contact(principal: Principal, grid_code: str | None) -> bool:
    """The reporter's contact: for supervisors and admins of the unit and the grid's worker."""
    return principal.role in (Role.SUPERVISOR, Role.ADMIN, Role.WORKER) \
        and principal.covers(grid_code)


def workflow_roles(principal: Principal) -> frozenset[str]:
    """The roles of :class:`gridmap.incidents.Role` a key may act as in an incident's trail."""
    if principal.everything:
        return frozenset({"grid_worker", "community", "street", "supervisor"})
    return {Role.WORKER: frozenset({"grid_worker"}),
            Role.SUPERVISOR: frozenset({"community", "street", "supervisor"})}.get(
        principal.role, frozenset())


# Mainland mobile numbers (11 digits, 1[3-9]…) and landlines (0xx-xxxxxxxx) written into a text
# field such as a grid's worker: the middle digits are hidden, as 12345 hotlines print them.
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)|(?<!\d)(0\d{2,3}-?)(\d{3,4})(\d{4})(?!\d)")


def mask_phones(text):
    """``text`` with the middle of every phone number in it replaced by ``*``."""
    if not isinstance(text, str):
        return text
    return _PHONE.sub(lambda m: (m[1] + "****" + m[3]) if m[1] else (m[4] + "****" + m[6]), text)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_unit(unit: str | None) -> tuple[str, ...]:
    return tuple(u.strip() for u in (unit or "").split(",") if u.strip())


def _checked(role: str, unit: str | None) -> tuple[Role, str | None]:
    try:
        chosen = Role(role)
    except ValueError:
        raise InputError(f"role must be one of {', '.join(Role)}, not {role[:30]!r}") from None
    codes = parse_unit(unit)
    if not codes and chosen in (Role.WORKER, Role.SUPERVISOR, Role.PLANNER):
        raise InputError(f"a {chosen} key needs --unit (the code of the unit it governs)")
    for code in codes:
        if not code.isdigit() or len(code) not in _UNIT_DIGITS[chosen]:
            digits = " or ".join(str(n) for n in sorted(_UNIT_DIGITS[chosen]))
            raise InputError(f"unit {code[:20]!r}: a {chosen}'s unit is a code of {digits} digits")
    return chosen, ",".join(codes) or None


def issue_key(store, role: str, unit: str | None = None, name: str = "") -> tuple[str, ApiKey]:
    """A new key for ``role`` in ``unit``, stored hashed: ``(token, stored key)``. The token is
    shown once and kept nowhere."""
    chosen, unit = _checked(role, unit)
    token = new_token()
    key = ApiKey(role=str(chosen), hash=hash_token(token), prefix=token[:10], unit=unit,
                 name=name.strip()[:200])
    return token, store.add_key(key)


def find_principal(store, token: str) -> Principal | None:
    """The principal of a presented token, or None when it is unknown or revoked."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    key = store.find_key(hash_token(token))
    if key is None or key.revoked:
        return None
    return Principal.of(key)


def plan_codes(store, plan: int) -> list[str]:
    """The code of every feature (district to grid) that plan ``plan`` adds, removes or changes
    in any way — outline or attributes, a worker's name too — against the version it was drawn
    on: what a planner must govern to see, change or publish it. Buildings are left out (their
    codes are not hierarchical; a planner moves them only between grids of their community)."""
    import pandas as pd
    import shapely

    from gridmap.planning.workflow import open_plan

    draft = open_plan(store, plan)
    base = draft.base if draft.base is not None else store.resolve().id
    codes: set[str] = set()
    for level in ("district", "street", "community", "grid"):
        old, new = store.read_layer(level, base), store.read_layer(level, draft.id)
        rows = {}
        for side, frame in (("old", old), ("new", new)):
            wkb = shapely.to_wkb(frame.geometry.values) if len(frame) else []
            fields = [c for c in ("name", "parent_code", "kind", "households", "worker")
                      if c in frame.columns]
            for code, values, geometry in zip(frame["code"].astype(str),
                                              frame[fields].astype(object).itertuples(index=False),
                                              wkb):
                rows.setdefault(code, {})[side] = (
                    tuple(None if pd.isna(v) else v for v in values), geometry)
        codes |= {code for code, sides in rows.items() if sides.get("old") != sides.get("new")}
    return sorted(codes)


def without_contact(incident):
    """The incident with the reporter's contact removed."""
    return replace(incident, contact=None) if getattr(incident, "contact", None) else incident
