"""Boundary versions as planners use them: validate an import against its neighbours in the draft.

A layer is checked against the level above it and, for grids, the buildings, as they stand in the
draft (or, with no draft yet, the active version), before anything is written.
"""

from __future__ import annotations

from gridmap.config import ValidationOptions
from gridmap.errors import VersionNotFound
from gridmap.io import LEVELS
from gridmap.report import Report
from gridmap.store.base import Store

__all__ = ["open_configured", "working_version", "check_import"]

_ABOVE = dict(zip(LEVELS[1:], LEVELS[:-1]))


def open_configured(url: str) -> Store:
    from gridmap.demo import open_or_create

    return open_or_create(url, demo=False)


def working_version(store: Store) -> int | None:
    """The draft if there is one, else the active version, else None (an empty store)."""
    versions = store.versions()
    draft = [v for v in versions if v.status == "draft"]
    if draft:
        return draft[-1].id
    try:
        return store.resolve().id
    except VersionNotFound:
        return None


def check_import(store: Store, level: str, frame, options: ValidationOptions, *,
                 against: str = "working") -> Report | None:
    """The validation report of ``frame`` as the ``level`` of the working version — or, with
    ``against="active"``, of the active one, which a new plan begins from (None for buildings,
    which are checked with their grids)."""
    from gridmap.validate import validate_coverage

    if level == "building":
        return None
    current = working_version(store) if against == "working" else _active(store)
    parents = buildings = None
    if current is not None and level in _ABOVE:
        above = store.read_layer(_ABOVE[level], current)
        parents = above if len(above) else None
    if current is not None and level == "grid":
        found = store.read_layer("building", current)
        buildings = found if len(found) else None
    return validate_coverage(frame, parents=parents, buildings=buildings, options=options,
                             level=level)


def _active(store: Store) -> int | None:
    try:
        return store.resolve().id
    except VersionNotFound:
        return None
