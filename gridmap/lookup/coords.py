"""Point coordinates in: checked, and converted from any CRS (GCJ-02, BD-09 included) to WGS84."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pyproj

from gridmap.crs import WGS84, bd09_to_wgs84, gcj02_to_wgs84, parse_crs
from gridmap.errors import CoordinatesOutOfRange


@lru_cache(maxsize=64)
def _spec(crs):
    return parse_crs(crs)


@lru_cache(maxsize=64)
def transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def to_wgs84_points(lon, lat, crs="wgs84", *, label: Callable[[int], str] | None = None):
    """Check and convert point coordinates to WGS84 arrays; `label(i)` names point i in errors.

    Raises
    ------
    CoordinatesOutOfRange
        For the first point that is NaN/inf or outside lon -180..180 / lat -90..90.
    CRSUnknown, CRSMissing
        For a CRS :func:`gridmap.crs.parse_crs` does not know.
    """
    spec = _spec(crs)
    lon, lat = (a.ravel() for a in np.broadcast_arrays(np.asarray(lon, dtype=float),
                                                       np.asarray(lat, dtype=float)))
    name = label or (lambda i: f"point #{i + 1}")

    def check(x, y, what):
        bad = ~(np.isfinite(x) & np.isfinite(y))
        if not bad.any() and what == "lon/lat":
            bad = (np.abs(x) > 180) | (np.abs(y) > 90)
        if bad.any():
            i = int(np.argmax(bad))
            swapped = what == "lon/lat" and abs(lon[i]) <= 90 < abs(lat[i]) <= 180
            raise CoordinatesOutOfRange(
                f"{name(i)} ({lon[i]:.10g}, {lat[i]:.10g}) is not a valid {what} in "
                f"{spec.label}" + ("; lat/lon swapped?" if swapped else ""))

    check(lon, lat, "lon/lat" if spec.crs.is_geographic else "coordinate")
    if not spec.crs.equals(WGS84):
        with np.errstate(all="ignore"):
            lon, lat = transformer(spec.crs, WGS84).transform(lon, lat)
        check(lon, lat, "coordinate")
    if spec.shift == "gcj02":
        lon, lat = gcj02_to_wgs84(lon, lat)
    elif spec.shift == "bd09":
        lon, lat = bd09_to_wgs84(lon, lat)
    return np.asarray(lon, dtype=float).ravel(), np.asarray(lat, dtype=float).ravel()


@lru_cache(maxsize=64)
def _plain_wgs84(crs) -> bool:
    spec = _spec(crs)
    return spec.shift is None and spec.crs.equals(WGS84)


def to_wgs84_point(lon, lat, crs="wgs84") -> tuple[float, float]:
    """One point as :func:`to_wgs84_points` checks and converts it, as two floats.

    WGS84 numbers in range take a path without arrays; anything else (another CRS, a bad or
    out-of-range number, a string) goes through :func:`to_wgs84_points`, so the errors and the
    converted values are the ones it gives.
    """
    try:
        plain = _plain_wgs84(crs)
    except TypeError:  # an unhashable crs: let to_wgs84_points say what is wrong with it
        plain = False
    if plain and isinstance(lon, (float, int)) and isinstance(lat, (float, int)):
        x, y = float(lon), float(lat)
        if math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90:
            return x, y
    xs, ys = to_wgs84_points(lon, lat, crs)
    return float(xs[0]), float(ys[0])
