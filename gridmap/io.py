"""Read the boundary layers planners have, whatever they were drawn in.

GeoJSON, GeoPackage (choose a layer), Shapefile (plain or zipped as users zip them, with or without
.prj/.shx, with a legacy-encoded .dbf), GeoParquet and CSV (WKT or lon/lat columns). Every layer comes
back with our column names (``--field ours=theirs``), string codes, and an explicit CRS; GCJ-02 and
BD-09 are converted to WGS84 on the way in, because nothing downstream can work in them.
"""

from __future__ import annotations

import codecs
import warnings
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely

from gridmap.crs import check_lonlat, parse_crs, shift_geometries
from gridmap.errors import (
    CoordinatesOutOfRange,
    CRSMissing,
    EmptyLayer,
    FieldMissing,
    FileUnreadable,
    LayerNotFound,
    NotPolygons,
)

__all__ = ["FIELDS", "LEVELS", "read_layer", "list_layers", "parse_fields", "write_layer"]

#: Our column names (DESIGN.md §4); a layer may map its own onto them.
FIELDS = ("code", "name", "parent_code", "level", "kind", "households", "worker")
#: The five levels, top down ("市县街社网"), and buildings beneath them.
LEVELS = ("city", "district", "street", "community", "grid")

_POLYGONAL = {"Polygon", "MultiPolygon"}
_WKT_COLUMNS = ("wkt", "geometry", "geom", "the_geom")
_LON_COLUMNS = ("lon", "lng", "longitude", "x")
_LAT_COLUMNS = ("lat", "latitude", "y")


def parse_fields(pairs: list[str] | None) -> dict[str, str]:
    """Parse ``["code=GRID_ID", "name=NAME"]`` into ``{"code": "GRID_ID", "name": "NAME"}``."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours or not theirs:
            raise FieldMissing(f"--field takes ours=theirs (e.g. code=GRID_ID), not {pair!r}")
        if ours not in FIELDS:
            raise FieldMissing(f"--field {pair}: {ours!r} is not one of ours ({', '.join(FIELDS)})")
        out[ours] = theirs
    return out


def list_layers(source: str | Path) -> list[str]:
    """The layer names of a file (one name for single-layer formats)."""
    path = _existing(source)
    if path.suffix.lower() in (".csv", ".parquet", ".geoparquet"):
        return [path.stem]
    try:
        with _shx_restored(path):
            return [str(name) for name, _ in pyogrio.list_layers(_gdal_path(path))]
    except Exception as exc:
        raise FileUnreadable(f"{path}: not a readable geodata file ({_first_line(exc)})") from None


def read_layer(
    source: str | Path,
    *,
    layer: str | None = None,
    crs: object = None,
    fields: Mapping[str, str] | None = None,
    encoding: str | None = None,
    geometry: str = "polygon",
    limits=None,
) -> gpd.GeoDataFrame:
    """Read one layer, normalised to our fields and a known CRS.

    Parameters
    ----------
    source : path to the file (a ``.zip`` holding a shapefile is read in place).
    layer : layer name, for files with several (GeoPackage); required when ambiguous.
    crs : the CRS when the file has none, or to override a wrong one (``gcj02`` for AMap data
        saved as GeoJSON, which always claims WGS84). Names as :func:`gridmap.crs.parse_crs`.
    fields : ``{ours: theirs}`` column mapping; our names in any case are found without it.
    encoding : the .dbf encoding when GDAL cannot tell (``cp950``, ``gb18030``…).
    geometry : ``"polygon"`` (boundaries, buildings), ``"point"`` or ``"any"``.
    limits : for untrusted files, a :class:`~gridmap.config.UploadSettings`: features are
        counted before they are read and vertices before any geometry operation.

    Returns
    -------
    GeoDataFrame with string ``code``/``parent_code`` where present, in the file's CRS — or WGS84
    (EPSG:4326) when the data was GCJ-02 or BD-09.

    Raises
    ------
    FileUnreadable, LayerNotFound, FieldMissing, CRSMissing, CoordinatesOutOfRange, EmptyLayer,
    NotPolygons — each with a one-line ``detail``; with ``limits``, InputTooLarge.
    """
    from gridmap import uploads

    path = _existing(source)
    where = f"{path.name}" + (f" layer {layer!r}" if layer else "")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = _read_csv(path, crs)
    elif suffix in (".parquet", ".geoparquet"):
        frame = _read_parquet(path)
    else:
        if limits is not None:
            uploads.check_feature_count(path, layer, limits)
        frame = _read_ogr(path, layer, encoding)
    frame = _apply_fields(frame, fields or {}, where)
    if len(frame) == 0:
        raise EmptyLayer(f"{where}: the layer has no features")
    if limits is not None:
        uploads.check_feature_count_of(frame, limits, where)
        uploads.check_vertices(frame.geometry.values, limits, where, _codes(frame))
    _check_geometry_types(frame, where, geometry)
    return _apply_crs(frame, crs, where)


def write_layer(frame: gpd.GeoDataFrame, target: str | Path, *, layer: str | None = None) -> None:
    """Write a layer atomically: to a temporary file beside the target, then renamed over it."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp{target.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        pyogrio.write_dataframe(frame, tmp, layer=layer)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


# -- reading ------------------------------------------------------------------------------------


def _existing(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise FileUnreadable(f"{path}: no such file")
    if path.is_dir() and not path.suffix.lower() == ".gdb":
        raise FileUnreadable(f"{path}: is a folder; give the file inside it")
    return path


def _gdal_path(path: Path) -> str:
    """GDAL's name for a file; for a zip, the one shapefile (or other layer file) inside it.

    Archives made on macOS carry ``__MACOSX/._name.shp`` resource forks that GDAL takes for a
    second, broken shapefile, so the real one is named explicitly.
    """
    if path.suffix.lower() != ".zip":
        return str(path)
    try:
        names = zipfile.ZipFile(path).namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileUnreadable(f"{path}: not a readable zip archive ({exc})") from None
    usable = [
        n for n in names
        if not n.startswith("__MACOSX/") and not Path(n).name.startswith("._")
        and Path(n).suffix.lower() in (".shp", ".gpkg", ".geojson", ".json", ".fgb")
    ]
    if not usable:
        raise FileUnreadable(f"{path}: the zip holds no shapefile, GeoPackage or GeoJSON")
    if len(usable) > 1:
        raise FileUnreadable(f"{path}: the zip holds several layers ({', '.join(usable)}); unzip it")
    return f"/vsizip/{path}/{usable[0]}"


def _read_ogr(path: Path, layer: str | None, encoding: str | None) -> gpd.GeoDataFrame:
    gdal_path = _gdal_path(path)
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise FileUnreadable(f"{path.name}: unknown encoding {encoding!r}") from None
    try:
        with _shx_restored(path):
            layers = [str(name) for name, _ in pyogrio.list_layers(gdal_path)]
    except Exception as exc:
        raise FileUnreadable(f"{path}: not a readable geodata file ({_first_line(exc)})") from None
    if layer is None and len(layers) > 1:
        raise LayerNotFound(
            f"{path.name} has {len(layers)} layers ({', '.join(layers)}): choose one with --layer"
        )
    if layer is not None and layer not in layers:
        raise LayerNotFound(f"{path.name} has no layer {layer!r}; its layers: {', '.join(layers)}")
    try:
        with _shx_restored(path), warnings.catch_warnings():
            # GDAL warns about characters it could not decode; the data is still usable.
            warnings.simplefilter("ignore", RuntimeWarning)
            return pyogrio.read_dataframe(gdal_path, layer=layer, encoding=encoding)
    except UnicodeDecodeError:
        raise FileUnreadable(
            f"{path.name}: its text is not {encoding or 'UTF-8'}; give the encoding with "
            "--encoding (e.g. gb18030, cp950)") from None
    except Exception as exc:
        raise FileUnreadable(f"{path.name}: cannot be read ({_first_line(exc)})") from None


@contextmanager
def _shx_restored(path: Path):
    """Shapefiles arrive without their .shx often enough; GDAL can rebuild the index in memory.

    Only asked for when the .shx is really missing: with the option on, GDAL tries to rewrite an
    existing index it dislikes, which fails inside a zip.
    """
    restore = path.suffix.lower() == ".shp" and not any(
        path.with_suffix(s).exists() for s in (".shx", ".SHX"))
    if not restore:
        yield
        return
    pyogrio.set_gdal_config_options({"SHAPE_RESTORE_SHX": "YES"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"SHAPE_RESTORE_SHX": None})


def _read_parquet(path: Path) -> gpd.GeoDataFrame:
    try:
        return gpd.read_parquet(path)
    except Exception as exc:
        raise FileUnreadable(f"{path.name}: not a readable GeoParquet file ({_first_line(exc)})") from None


def _read_csv(path: Path, crs: object) -> gpd.GeoDataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise FileUnreadable(f"{path.name}: not a readable CSV file ({_first_line(exc)})") from None
    if crs is None:
        raise CRSMissing(f"{path.name}: a CSV file has no CRS; give one with --crs (e.g. --crs wgs84)")
    lower = {c.lower(): c for c in table.columns}
    wkt = next((lower[c] for c in _WKT_COLUMNS if c in lower), None)
    if wkt is not None:
        geometry = _parse_wkt(table[wkt], path.name, wkt)
        table = table.drop(columns=[wkt])
    else:
        lon = next((lower[c] for c in _LON_COLUMNS if c in lower), None)
        lat = next((lower[c] for c in _LAT_COLUMNS if c in lower), None)
        if lon is None or lat is None:
            raise FieldMissing(
                f"{path.name}: needs a WKT column ({'/'.join(_WKT_COLUMNS)}) or lon and lat "
                f"columns; it has: {', '.join(table.columns)}"
            )
        x = pd.to_numeric(table[lon], errors="coerce").to_numpy()
        y = pd.to_numeric(table[lat], errors="coerce").to_numpy()
        bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
        if len(bad):
            raise FileUnreadable(
                f"{path.name} row {bad[0] + 2}: {lon}/{lat} is not a number "
                f"({table[lon].iat[bad[0]]!r}, {table[lat].iat[bad[0]]!r})"
            )
        geometry = shapely.points(x, y)
        table = table.drop(columns=[lon, lat])
    return gpd.GeoDataFrame(table, geometry=geometry)


def _parse_wkt(column: pd.Series, name: str, label: str) -> np.ndarray:
    geoms = shapely.from_wkt(column.to_numpy(), on_invalid="ignore")
    bad = np.flatnonzero(shapely.is_missing(geoms) & (column.str.strip() != "").to_numpy())
    if len(bad):
        raise FileUnreadable(f"{name} row {bad[0] + 2}: column {label} is not valid WKT")
    return geoms


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# -- normalising --------------------------------------------------------------------------------


def _apply_fields(frame: gpd.GeoDataFrame, fields: Mapping[str, str], where: str) -> gpd.GeoDataFrame:
    columns = [c for c in frame.columns if c != frame.geometry.name]
    rename: dict[str, str] = {}
    for ours, theirs in fields.items():
        if theirs not in columns:
            listing = ", ".join(columns) if columns else "none"
            raise FieldMissing(f"{where}: no field {theirs!r} (for {ours}); its fields are: {listing}")
        rename[theirs] = ours
    lower = {c.lower(): c for c in columns}
    for ours in FIELDS:
        # a shapefile's .dbf keeps 10 characters of a name: parent_code comes back as parent_cod
        theirs = lower.get(ours) or lower.get(ours[:10])
        if ours not in fields and ours not in columns and theirs and theirs not in rename:
            rename[theirs] = ours
    frame = frame.rename(columns=rename)
    for name in ("code", "parent_code"):
        if name in frame.columns:
            frame[name] = _codes_as_text(frame[name])
    if "households" in frame.columns:
        frame["households"] = pd.to_numeric(frame["households"], errors="coerce")
    return frame


def _codes_as_text(column: pd.Series) -> pd.Series:
    """Codes are text: 141002004003007 must not become 1.41002004003007e+14 or lose a leading 0."""
    if pd.api.types.is_float_dtype(column):
        whole = column.dropna()
        if (whole == whole.round()).all():
            column = column.astype("Int64")
    text = column.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), None).astype(object)


def _check_geometry_types(frame: gpd.GeoDataFrame, where: str, geometry: str) -> None:
    if geometry == "any":
        return
    types = shapely.get_type_id(frame.geometry.values)
    wanted = {3, 6} if geometry == "polygon" else {0, 4}
    wrong = np.flatnonzero((types >= 0) & ~np.isin(types, list(wanted)))
    if len(wrong):
        i = wrong[0]
        label = _feature_label(frame, i)
        kind = frame.geometry.iloc[i].geom_type
        raise NotPolygons(
            f"{where}: feature {label} is a {kind}; this layer needs "
            f"{'polygons' if geometry == 'polygon' else 'points'} ({len(wrong)} such features)"
        )


def _check_area_of_use(geoms: np.ndarray, crs, where: str) -> None:
    """Refuse projected coordinates that land nowhere near where their CRS is used.

    Lon/lat degrees labelled with a metric CRS (or the wrong national grid) otherwise validate as a
    clean, microscopic city.
    """
    use = crs.area_of_use
    bounds = shapely.total_bounds(geoms)
    if use is None or not np.all(np.isfinite(bounds)):
        return
    to_lonlat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    with np.errstate(all="ignore"):
        west, south, east, north = to_lonlat.transform_bounds(*bounds)
    margin = 1.0  # degrees: data may spill a little past the official area of use
    inside = (np.isfinite([west, south, east, north]).all()
              and west <= use.east + margin and east >= use.west - margin
              and south <= use.north + margin and north >= use.south - margin)
    if inside:
        return
    hint = ("they look like lon/lat degrees: try --crs wgs84"
            if abs(bounds[0]) <= 180 and abs(bounds[2]) <= 180 and abs(bounds[1]) <= 90
            and abs(bounds[3]) <= 90 else "is the --crs right?")
    raise CoordinatesOutOfRange(
        f"{where}: coordinates {bounds[0]:.6g}, {bounds[1]:.6g} … {bounds[2]:.6g}, {bounds[3]:.6g} "
        f"lie outside the area where {crs.to_string()} is used ({use.name}); {hint}"
    )


def _codes(frame: gpd.GeoDataFrame):
    return frame["code"].to_numpy() if "code" in frame.columns else None


def _check_finite(geoms: np.ndarray, where: str, codes) -> None:
    """NaN and infinite coordinates (GDAL reads ``NaN``/``Infinity`` in GeoJSON): the bounds of a
    geometry skip NaN, so the range checks alone would let them through."""
    xy = shapely.get_coordinates(geoms)
    if np.isfinite(xy).all():
        return
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    k = int(np.flatnonzero(~np.isfinite(xy).all(axis=1))[0])
    i = int(owner[k])
    label = codes[i] if codes is not None and codes[i] is not None else f"#{i + 1}"
    raise CoordinatesOutOfRange(f"{where}: feature {label} has coordinate ({xy[k, 0]:g}, "
                                f"{xy[k, 1]:g}), not a finite number")


def _feature_label(frame: gpd.GeoDataFrame, i: int) -> str:
    if "code" in frame.columns and frame["code"].iat[i] is not None:
        return f"{frame['code'].iat[i]}"
    return f"#{i + 1}"


def _apply_crs(frame: gpd.GeoDataFrame, crs: object, where: str) -> gpd.GeoDataFrame:
    if crs is None and frame.crs is None:
        raise CRSMissing(
            f"{where}: the layer has no CRS (no .prj?); give one with --crs, "
            "e.g. --crs EPSG:2326, --crs wgs84 or --crs gcj02"
        )
    spec = parse_crs(crs if crs is not None else frame.crs)
    geoms = frame.geometry.values
    codes = _codes(frame)
    _check_finite(np.asarray(geoms), where, codes)
    if spec.crs.is_geographic:
        check_lonlat(np.asarray(geoms), where=where, expect_china=spec.shift is not None, codes=codes)
    else:
        _check_area_of_use(np.asarray(geoms), spec.crs, where)
    if spec.shift is not None:
        geoms = shift_geometries(np.asarray(geoms), spec.shift, inverse=True)
    frame = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index), crs=spec.crs)
    frame.attrs["source"] = where
    frame.attrs["crs_label"] = spec.label
    return frame
