"""Coordinate reference systems: parsing, GCJ-02/BD-09 ⇄ WGS84, local metric projections.

Official survey data is CGCS2000 (EPSG:4490) and GPS reports are WGS84 (EPSG:4326). Data digitised
on AMap or Tencent maps is in GCJ-02 ("Mars coordinates", 火星坐标) and Baidu's is in BD-09: both
are WGS84 pushed by an obfuscating offset of several hundred metres, and neither is in PROJ, so
this module carries the published forward formulas and inverts them by fixed-point iteration.
Areas and distances are always computed in metres, in a local equal-area projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyproj
import shapely

from gridmap.errors import CoordinatesOutOfRange, CRSMissing, CRSUnknown, EmptyLayer

__all__ = [
    "CRSSpec", "parse_crs",
    "out_of_china", "wgs84_to_gcj02", "gcj02_to_wgs84", "gcj02_to_bd09", "bd09_to_gcj02",
    "wgs84_to_bd09", "bd09_to_wgs84", "shift_geometries",
    "check_lonlat", "local_metric_crs", "to_metric", "to_wgs84",
]

WGS84 = pyproj.CRS.from_epsg(4326)

# GCJ-02 is defined on the Krasovsky 1940 ellipsoid.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0
# The conventional box outside which GCJ-02/BD-09 leave coordinates as they are.
_BOX = (72.004, 0.8293, 137.8347, 55.8271)
# Fixed-point inversion: 1e-9° is ~0.1 mm, far under the 1 cm we promise. The offset's Jacobian
# is at most ~6e-3 in China, so each round gains two digits or more: from the one-step guess
# (~5e-5° off) it takes four rounds; 20 is a guard, not an expectation.
_TOL = 1e-9
_MAX_ITER = 20
# China's mainland and islands, for the "is this data even in China?" check.
_CHINA = (73.0, 3.0, 136.0, 54.0)

# Keys are compared lower-cased with "-", "_" and spaces removed: "GCJ-02" is "gcj02".
_GCJ, _BD = (4326, "gcj02", "GCJ-02 (AMap/Tencent)"), (4326, "bd09", "BD-09 (Baidu)")
_ALIASES = {
    "wgs84": (4326, None, "WGS84 (EPSG:4326)"), "cgcs2000": (4490, None, "CGCS2000 (EPSG:4490)"),
    "gcj02": _GCJ, "amap": _GCJ, "tencent": _GCJ, "bd09": _BD, "baidu": _BD,
}
_ACCEPTED = ("wgs84, cgcs2000, gcj02/amap/tencent, bd09/baidu, EPSG:<code>, an EPSG number "
             "or a PROJ/WKT string")


@dataclass(frozen=True)
class CRSSpec:
    """A parsed CRS: the PROJ CRS, plus the non-PROJ offset (``"gcj02"``/``"bd09"``) if any.

    A GCJ-02 or BD-09 layer has ``crs`` EPSG:4326, the CRS its coordinates are in once unshifted.
    """

    crs: pyproj.CRS
    shift: str | None
    label: str


def parse_crs(text: str | int | pyproj.CRS | CRSSpec | None) -> CRSSpec:
    """Parse a user's CRS: a name such as ``gcj02`` or ``baidu``, ``EPSG:n``, a number, PROJ or WKT.

    Raises
    ------
    CRSMissing
        If `text` is None or blank.
    CRSUnknown
        If neither the alias table nor PROJ understands `text`.

    Examples
    --------
    >>> parse_crs("AMap").shift, parse_crs("AMap").crs.to_epsg()
    ('gcj02', 4326)
    >>> parse_crs(4490).label
    'CGCS2000 (EPSG:4490)'
    """
    if isinstance(text, CRSSpec):
        return text
    if text is None or (isinstance(text, str) and not text.strip()):
        raise CRSMissing(f"no CRS given; give one of: {_ACCEPTED}")
    if isinstance(text, str):
        key = text.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
        if key in _ALIASES:
            epsg, shift, label = _ALIASES[key]
            return CRSSpec(pyproj.CRS.from_epsg(epsg), shift, label)
        if key.isdigit():
            text = int(key)
    if isinstance(text, bool) or not isinstance(text, (str, int, pyproj.CRS)):
        raise CRSUnknown(f"a CRS must be text or an EPSG number, not {type(text).__name__}")
    try:
        crs = pyproj.CRS.from_user_input(text)
    except (pyproj.exceptions.CRSError, ValueError, TypeError):
        shown = " ".join(str(text).split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise CRSUnknown(f"unknown CRS {shown!r}; give one of: {_ACCEPTED}") from None
    epsg = crs.to_epsg()
    for code, shift, label in _ALIASES.values():
        if shift is None and epsg == code:
            return CRSSpec(crs, None, label)
    name = crs.name if crs.name != "unknown" else ""
    label = f"EPSG:{epsg} ({name})" if epsg and name else f"EPSG:{epsg}" if epsg else name
    return CRSSpec(crs, None, label or " ".join(crs.srs.split())[:60])


def out_of_china(lon, lat):
    """True where GCJ-02/BD-09 leave a point unshifted (outside the conventional box, or NaN)."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    inside = (lon >= _BOX[0]) & (lon <= _BOX[2]) & (lat >= _BOX[1]) & (lat <= _BOX[3])
    return ~inside


def _gcj_raw(lon, lat):
    """The published GCJ-02 forward formula everywhere, without the out-of-China rule.

    transform_lat/transform_lon are inlined so that their shared 6x/2x sine term is computed once:
    the sines are nearly all of the cost, and the inverse calls this four or five times.
    """
    x, y = lon - 105.0, lat - 35.0
    px, py = x * np.pi, y * np.pi
    common = 20.0 * np.sin(6.0 * px) + 20.0 * np.sin(2.0 * px)
    xy, sq = 0.1 * x * y, np.sqrt(np.abs(x))
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + xy + 0.2 * sq
            + (common + 20.0 * np.sin(py) + 40.0 * np.sin(py / 3.0)
               + 160.0 * np.sin(py / 12.0) + 320.0 * np.sin(py / 30.0)) * (2.0 / 3.0))
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + xy + 0.1 * sq
            + (common + 20.0 * np.sin(px) + 40.0 * np.sin(px / 3.0)
               + 150.0 * np.sin(px / 12.0) + 300.0 * np.sin(px / 30.0)) * (2.0 / 3.0))
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return lon + dlon, lat + dlat


def _bd_raw(lon, lat):
    """The published GCJ-02 → BD-09 formula, without the out-of-China rule."""
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd_inverse_step(lon, lat):
    """The published one-step BD-09 → GCJ-02 inverse, ~1e-6° off: the iteration's start."""
    x, y = lon - 0.0065, lat - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _gcj_inverse_step(lon, lat):
    """The common one-step GCJ-02 → WGS84 inverse, 1–2 m off: the iteration's start."""
    slon, slat = _gcj_raw(lon, lat)
    return 2.0 * lon - slon, 2.0 * lat - slat


def _apply(lon, lat, func):
    """Broadcast, run `func` on the points inside China only, give scalars back for scalars."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    shape, lon, lat = lon.shape, lon.ravel(), lat.ravel()
    inside = np.flatnonzero(~out_of_china(lon, lat))
    if inside.size == lon.size:
        out_lon, out_lat = func(lon, lat)
    else:
        out_lon, out_lat = lon.copy(), lat.copy()
        if inside.size:
            out_lon[inside], out_lat[inside] = func(lon[inside], lat[inside])
    return out_lon.reshape(shape)[()], out_lat.reshape(shape)[()]


def _invert(forward, step):
    """Invert `forward` by fixed-point iteration ``w -= forward(w) - g`` from the one-step guess.

    Points leave the iteration once their round trip closes within _TOL; by the last round
    only a fraction of a percent of them are left, which saves most of one evaluation.
    """

    def solve(g_lon, g_lat):
        w_lon, w_lat = step(g_lon, g_lat)
        todo = np.arange(g_lon.size)
        for _ in range(_MAX_ITER):
            f_lon, f_lat = forward(w_lon[todo], w_lat[todo])
            d_lon, d_lat = f_lon - g_lon[todo], f_lat - g_lat[todo]
            w_lon[todo] -= d_lon
            w_lat[todo] -= d_lat
            todo = todo[np.maximum(np.abs(d_lon), np.abs(d_lat)) >= _TOL]
            if not todo.size:
                break
        return w_lon, w_lat

    return solve


_gcj_solve = _invert(_gcj_raw, _gcj_inverse_step)
_bd_solve = _invert(_bd_raw, _bd_inverse_step)


def wgs84_to_gcj02(lon, lat):
    """WGS84 → GCJ-02 (AMap/Tencent), the published forward formula; vectorized.

    Examples
    --------
    >>> lon, lat = wgs84_to_gcj02(121.4950, 31.2417)
    >>> round(float(lon), 4), round(float(lat), 4)
    (121.4995, 31.2397)
    """
    return _apply(lon, lat, _gcj_raw)


def gcj02_to_wgs84(lon, lat):
    """GCJ-02 → WGS84, iterated until going forward again lands within 1e-9° (~0.1 mm).

    The common one-step inverse (subtract the offset computed at the GCJ-02 point) is 1–2 m off.
    """
    return _apply(lon, lat, _gcj_solve)


def gcj02_to_bd09(lon, lat):
    """GCJ-02 → BD-09 (Baidu)."""
    return _apply(lon, lat, _bd_raw)


def bd09_to_gcj02(lon, lat):
    """BD-09 → GCJ-02, iterated against :func:`gcj02_to_bd09` to within 1e-9°."""
    return _apply(lon, lat, _bd_solve)


def wgs84_to_bd09(lon, lat):
    """WGS84 → BD-09, through GCJ-02."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon, lat):
    """BD-09 → WGS84, through GCJ-02."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


_SHIFTS = {("gcj02", True): gcj02_to_wgs84, ("gcj02", False): wgs84_to_gcj02,
           ("bd09", True): bd09_to_wgs84, ("bd09", False): wgs84_to_bd09}


def shift_geometries(geoms, shift: str, inverse: bool = True) -> np.ndarray:
    """Convert a geometry array GCJ-02/BD-09 → WGS84 (`inverse`) or WGS84 → GCJ-02/BD-09.

    One vectorized call over every vertex; types, vertex counts and Z values are kept.
    """
    try:
        func = _SHIFTS[(shift, bool(inverse))]
    except KeyError:
        raise CRSUnknown(f"unknown coordinate shift {shift!r}; use 'gcj02' or 'bd09'") from None

    return _transform_xy(geoms, func)


def _transform_xy(geoms, func) -> np.ndarray:
    """Apply ``func(x, y) -> (x, y)`` to every vertex at once; Z, where present, is kept."""

    def on_coords(coords):
        out = coords.copy()
        out[:, 0], out[:, 1] = func(coords[:, 0], coords[:, 1])
        return out

    return shapely.transform(np.asarray(geoms, dtype=object), on_coords, include_z=None)


def _feature_name(i: int, codes) -> str:
    return f"feature {np.asarray(codes)[i]}" if codes is not None else f"feature #{i}"


def check_lonlat(geoms, *, where: str, expect_china: bool = False, codes=None) -> None:
    """Raise :class:`CoordinatesOutOfRange` if `geoms` cannot be lon/lat degrees.

    `where` names the layer in the message; `codes` (one per geometry) names the feature, else
    its position. With `expect_china`, also raise when no feature touches China's bounding box.
    """
    geoms = np.asarray(geoms, dtype=object)
    b = shapely.bounds(geoms)  # NaN rows for None and empty geometries, which compare False
    bad = (np.abs(b[:, [0, 2]]) > 180).any(axis=1) | (np.abs(b[:, [1, 3]]) > 90).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        xy = shapely.get_coordinates(geoms[i])
        x, y = xy[((np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90)).argmax()]
        hint = ("lat/lon swapped?" if abs(x) <= 90 and abs(y) <= 180 else
                "a projected CRS (metres) labelled as degrees? give the right --crs")
        raise CoordinatesOutOfRange(
            f"{where}: {_feature_name(i, codes)} has coordinate ({x:.6g}, {y:.6g}), "
            f"outside lon -180..180 / lat -90..90: {hint}")
    present = ~np.isnan(b[:, 0])
    if not expect_china or not present.any():
        return
    w, s, e, n = _CHINA
    touches = (b[:, 2] >= w) & (b[:, 0] <= e) & (b[:, 3] >= s) & (b[:, 1] <= n)
    if not touches.any():
        i = int(np.flatnonzero(present)[0])
        x, y = shapely.get_coordinates(geoms[i])[0]
        swapped = w <= y <= e and s <= x <= n
        hint = "lat/lon swapped?" if swapped else "is the --crs right?"
        raise CoordinatesOutOfRange(
            f"{where}: no feature lies in China (lon {w:g}–{e:g}, lat {s:g}–{n:g}); "
            f"{_feature_name(i, codes)} is at ({x:.6g}, {y:.6g}): {hint}")


def local_metric_crs(geoms_wgs84) -> pyproj.CRS:
    """A Lambert azimuthal equal-area CRS centred on the geometries' bounds, in metres.

    Areas are exact (equal-area on the WGS84 ellipsoid). Distances are good at city scale: the
    scale error grows as (r/R)²/8, 0.003% at 100 km from the centre.

    Examples
    --------
    >>> local_metric_crs(shapely.points([121.0, 122.0], [31.0, 32.0])).srs
    '+proj=laea +lat_0=31.5 +lon_0=121.5 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs +type=crs'
    """
    minx, miny, maxx, maxy = shapely.total_bounds(np.asarray(geoms_wgs84, dtype=object))
    if np.isnan(minx):
        raise EmptyLayer("cannot centre a metric projection on a layer with no coordinates")
    lon0, lat0 = round((minx + maxx) / 2, 6), round((miny + maxy) / 2, 6)  # 0.1 m is plenty
    return pyproj.CRS.from_proj4(
        f"+proj=laea +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


def _is_metric(crs: pyproj.CRS) -> bool:
    return crs.is_projected and all(a.unit_name in ("metre", "meter") for a in crs.axis_info[:2])


def to_metric(gdf):
    """Return (`gdf` in metres, its CRS): kept if already projected in metres, else local LAEA."""
    if gdf.crs is None:
        raise CRSMissing("the layer has no CRS; give one with --crs")
    if _is_metric(gdf.crs):
        return gdf, gdf.crs
    # Centre on the bounds' box rather than on every vertex: only the box needs converting.
    box = shapely.box(*gdf.total_bounds)
    crs = local_metric_crs(to_wgs84(np.array([box], dtype=object), gdf.crs))
    return gdf.to_crs(crs), crs


def to_wgs84(geoms, crs) -> np.ndarray:
    """Convert a geometry array from `crs` (anything :func:`parse_crs` takes) to EPSG:4326."""
    spec = parse_crs(crs)
    geoms = np.asarray(geoms, dtype=object)
    if not spec.crs.equals(WGS84):
        transformer = pyproj.Transformer.from_crs(spec.crs, WGS84, always_xy=True)
        geoms = _transform_xy(geoms, transformer.transform)
    if spec.shift is not None:
        geoms = shift_geometries(geoms, spec.shift, inverse=True)
    return geoms
