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
