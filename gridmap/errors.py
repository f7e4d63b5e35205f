"""The errors gridmap raises.

Every error carries a ``detail``: one line, safe to show a user, that says what is wrong and where.
The command line prints it and exits with code 2; the HTTP service turns it into a problem response.
"""

__all__ = [
    "GridmapError",
    "InputError",
    "FileUnreadable",
    "LayerNotFound",
    "FieldMissing",
    "CRSMissing",
    "CRSUnknown",
    "CoordinatesOutOfRange",
    "EmptyLayer",
    "NotPolygons",
    "LayersDisjoint",
    "NotFound",
    "VersionNotFound",
    "FeatureNotFound",
    "PointOutsideGrids",
    "Conflict",
    "NothingToPublish",
    "StoreUnavailable",
    "LayerRefused",
    "TransitionRefused",
    "IncidentNotFound",
    "RevisionConflict",
    "IdempotencyKeyReused",
    "StationNotFound",
    "EditRefused",
    "GridNotFound",
    "InputTooLarge",
    "NestingTooDeep",
    "Unauthorized",
    "Forbidden",
    "OutsideUnit",
    "KeyNotFound",
]


class GridmapError(Exception):
    """Base of gridmap's errors; ``detail`` is the one-line message for users."""

    status = 500

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InputError(GridmapError):
    """The input cannot be used as given (exit code 2, HTTP 4xx)."""

    status = 422


class FileUnreadable(InputError):
    status = 400


class LayerNotFound(InputError):
    status = 404


class FieldMissing(InputError):
    pass


class CRSMissing(InputError):
    pass


class CRSUnknown(InputError):
    pass


class CoordinatesOutOfRange(InputError):
    """Coordinates that cannot be lon/lat: swapped axes or a projected CRS."""


class EmptyLayer(InputError):
    pass


class NotPolygons(InputError):
    pass


class LayersDisjoint(InputError):
    """Two layers that should nest do not even touch: usually a wrong CRS on one of them."""


class NotFound(GridmapError):
    status = 404


class VersionNotFound(NotFound):
    """No boundary version matches the number or date asked for."""


class FeatureNotFound(NotFound):
    """No feature with that code in that layer and version."""


class PointOutsideGrids(NotFound):
    """A point lies in no grid; carries the nearest grid and its distance in metres."""

    def __init__(self, detail: str, *, nearest: str | None = None, distance_m: float | None = None):
        super().__init__(detail)
        self.nearest = nearest
        self.distance_m = distance_m


class Conflict(GridmapError):
    status = 409


class NothingToPublish(Conflict):
    """There is no draft version to publish."""


class StoreUnavailable(GridmapError):
    """The store cannot be reached (database down, file locked)."""

    status = 503


class LayerRefused(InputError):
    """An import refused because validation found errors; carries the report."""

    def __init__(self, detail: str, report=None):
        super().__init__(detail)
        self.report = report


class TransitionRefused(Conflict):
    """An incident cannot make that move from its current state (names the state and the allowed ones)."""



class IncidentNotFound(NotFound):
    """No incident with that id."""


class RevisionConflict(Conflict):
    """An incident changed since the revision the client read (optimistic concurrency): re-read it."""


class IdempotencyKeyReused(InputError):
    """An ``Idempotency-Key`` sent again with a different request body (IETF draft: 422)."""


class StationNotFound(NotFound):
    """No service station with that code."""


class EditRefused(InputError):
    """A planner's edit that would break a rule of the coverage (not adjacent, line misses the grid…)."""


class GridNotFound(InputError):
    """An edit names a grid (or building) code that is not in the layer."""

    status = 404


class InputTooLarge(InputError):
    """An input over one of the limits of uploads (bytes, features, vertices, zip contents)."""

    status = 413


class NestingTooDeep(InputError):
    """JSON nested deeper than any boundary file needs (refused before a parser recurses into it)."""


class Unauthorized(GridmapError):
    """No API key, or one that is unknown or revoked (HTTP 401 with ``WWW-Authenticate: Bearer``)."""

    status = 401


class Forbidden(GridmapError):
    """The key's role may not do this at all (HTTP 403)."""

    status = 403


class OutsideUnit(NotFound):
    """The object exists but lies outside the key's unit: answered as not found (HTTP 404), so
    that its existence does not leak."""


class KeyNotFound(NotFound):
    """No API key with that id."""
