"""Boundary files from strangers (``POST /imports``): refuse what is too large or malformed
before the expensive part it would hurt.

Each check comes before the work it protects: a zip's directory is read before anything is
unpacked, and members are unpacked against a byte budget (a zip bomb stops at the budget, not at
the end of its data); JSON nesting is measured by a scan of its brackets before any parser
recurses into it; features are counted from the file's header before they are read, and vertices
before any GEOS operation (validation) runs on them.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import shapely

from gridmap.errors import FileUnreadable, InputError, InputTooLarge, NestingTooDeep

__all__ = ["SUFFIXES", "json_depth", "check_json_depth", "prepare_upload", "check_feature_count",
           "check_feature_count_of",
           "check_vertices"]

#: What an upload may be: a zipped shapefile (or a zipped single layer), GeoJSON, GeoPackage.
SUFFIXES = (".zip", ".geojson", ".json", ".gpkg")
_LAYER_FILES = (".shp", ".gpkg", ".geojson", ".json")
_CHUNK = 1 << 22
# Members this small may compress any amount (a .cpg, a constant .dbf column) without harm.
_RATIO_FLOOR = 1 << 20
_OPEN, _CLOSE = np.zeros(256, np.int8), np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_CLOSE[[ord("]"), ord("}")]] = 1


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data`` (JSON text), brackets inside strings
    not counted; linear time and bounded memory whatever the input, without parsing it.

    >>> json_depth(b'{"a": [[1, 2], "[[["]}')
    3
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    depth = deepest = 0
    in_string = False
    carried = 0  # backslashes ending the previous chunk
    for start in range(0, len(buf), _CHUNK):
        chunk = buf[start:start + _CHUNK]
        quotes = _real_quotes(chunk, carried)
        brackets = np.flatnonzero(_OPEN[chunk] | _CLOSE[chunk])
        # A bracket is inside a string when an odd number of real quotes (counting an
        # unfinished string from the previous chunk) come before it.
        inside = (np.searchsorted(quotes, brackets) + in_string) % 2 == 1
        kept = brackets[~inside]
        steps = _OPEN[chunk[kept]].astype(np.int64) * 2 - 1
        if len(steps):
            levels = np.cumsum(steps) + depth
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
        in_string = (len(quotes) + in_string) % 2 == 1
        carried = _trailing_backslashes(chunk, carried)
    return deepest


def _real_quotes(chunk: np.ndarray, carried: int) -> np.ndarray:
    """Positions of the quotes not escaped (an odd run of backslashes before a quote escapes it)."""
    quotes = np.flatnonzero(chunk == ord('"'))
    slashes = np.flatnonzero(chunk == ord("\\"))
    if not len(quotes) or (not len(slashes) and not carried):
        return quotes
    # Runs of consecutive backslashes: where each ends and how long it is.
    breaks = np.flatnonzero(np.diff(slashes) != 1)
    ends = np.append(slashes[breaks], slashes[-1:]) if len(slashes) else slashes
    starts = np.insert(slashes[breaks + 1], 0, slashes[:1]) if len(slashes) else slashes
    lengths = ends - starts + 1
    if len(starts) and starts[0] == 0:
        lengths[0] += carried
    elif carried:
        ends, lengths = np.insert(ends, 0, -1), np.insert(lengths, 0, carried)
    at = np.searchsorted(ends, quotes - 1)
    hit = at < len(ends)
    before = np.zeros(len(quotes), dtype=np.int64)
    before[hit] = np.where(ends[at[hit]] == quotes[hit] - 1, lengths[at[hit]], 0)
    return quotes[before % 2 == 0]


def _trailing_backslashes(chunk: np.ndarray, carried: int) -> int:
    others = np.flatnonzero(chunk != ord("\\"))
    if not len(others):
        return carried + len(chunk)
    return len(chunk) - 1 - int(others[-1])


def check_json_depth(data: bytes, limit: int, where: str) -> None:
    """Raise :class:`NestingTooDeep` when ``data`` nests deeper than ``limit``."""
    depth = json_depth(data)
    if depth > limit:
        raise NestingTooDeep(f"{where}: JSON nested {depth:,} levels deep; the limit is {limit}")


def prepare_upload(path: Path, into: Path, limits) -> Path:
    """The file to read for the upload saved at ``path``: a zip is checked and its one layer
    unpacked into ``into``; JSON is checked for nesting. ``limits`` is an
    :class:`~gridmap.config.UploadSettings`."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        path = _unzip(path, into, limits)
        suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        check_json_depth(path.read_bytes(), limits.json_max_depth, path.name)
    return path


def _unsafe(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (name.startswith(("/", "\\")) or "\\" in name or "\x00" in name or ".." in parts
            or (bool(parts) and ":" in parts[0]))


def _unzip(path: Path, into: Path, limits) -> Path:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileUnreadable(f"{path.name}: not a readable zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        _check_directory(infos, path.name, limits)
        usable = [i for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                  and not PurePosixPath(i.filename).name.startswith("._")
                  and PurePosixPath(i.filename).suffix.lower() in _LAYER_FILES]
        if not usable:
            raise FileUnreadable(f"{path.name}: the zip holds no shapefile, GeoPackage or GeoJSON")
        if len(usable) > 1:
            names = ", ".join(i.filename for i in usable[:5])
            raise FileUnreadable(f"{path.name}: the zip holds several layers ({names}); send one")
        layer = PurePosixPath(usable[0].filename)
        # The layer file and its sidecars (.shx, .dbf, .prj, .cpg…): same folder, same stem.
        wanted = [i for i in infos if not i.is_dir()
                  and PurePosixPath(i.filename).parent == layer.parent
                  and PurePosixPath(i.filename).stem.lower() == layer.stem.lower()]
        folder = into / "unzipped"
        folder.mkdir()
        budget = limits.zip_max_bytes
        for info in wanted:
            budget = _extract(archive, info, folder / PurePosixPath(info.filename).name, budget,
                              path.name, limits.zip_max_bytes)
        return folder / layer.name


def _check_directory(infos, name: str, limits) -> None:
    if len(infos) > limits.zip_max_members:
        raise InputTooLarge(f"{name}: the zip holds {len(infos):,} files; "
                            f"the limit is {limits.zip_max_members:,}")
    for info in infos:
        if _unsafe(info.filename):
            raise InputError(f"{name}: zip member {info.filename[:100]!r} has an unsafe path "
                             "(absolute, or with ..); refused")
    total = sum(i.file_size for i in infos)
    if total > limits.zip_max_bytes:
        raise InputTooLarge(f"{name}: the zip unpacks to {total:,} bytes; "
                            f"the limit is {limits.zip_max_bytes:,}")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > limits.zip_max_ratio:
            raise InputTooLarge(
                f"{name}: zip member {info.filename!r} expands {ratio:,.0f} times "
                f"({info.file_size:,} bytes); the limit is {limits.zip_max_ratio:g} (a zip bomb?)")


def _extract(archive, info, target: Path, budget: int, name: str, limit: int) -> int:
    """Unpack one member, counting what really comes out (the directory may lie)."""
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                budget -= len(chunk)
                if budget < 0:
                    raise InputTooLarge(f"{name}: the zip unpacks to more than {limit:,} bytes")
                out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise FileUnreadable(f"{name}: zip member {info.filename!r} cannot be unpacked "
                             f"({exc})") from None
    return budget


def check_feature_count(path: Path, layer: str | None, limits) -> None:
    """Refuse a layer of too many features from its header, before reading any of them. A file
    GDAL cannot describe is left to :func:`gridmap.io.read_layer`, which says why."""
    import pyogrio

    try:
        count = int(pyogrio.read_info(str(path), layer=layer)["features"])
    except Exception:
        return
    if count > limits.max_features:
        raise InputTooLarge(f"{path.name}: {count:,} features; the limit is "
                            f"{limits.max_features:,}")


def check_feature_count_of(frame, limits, where: str) -> None:
    """The feature limit again once read (a header may not know, or lie)."""
    if len(frame) > limits.max_features:
        raise InputTooLarge(f"{where}: {len(frame):,} features; the limit is "
                            f"{limits.max_features:,}")


def check_vertices(geoms, limits, where: str, codes=None) -> None:
    """Refuse a feature of too many vertices, or a layer of too many in all (counting is cheap;
    what would follow — validation, overlays — grows faster than the count)."""
    counts = shapely.get_num_coordinates(np.asarray(geoms, dtype=object))
    if not len(counts):
        return
    i = int(counts.argmax())
    if counts[i] > limits.max_feature_vertices:
        label = codes[i] if codes is not None and codes[i] is not None else f"#{i + 1}"
        raise InputTooLarge(f"{where}: feature {label} has {int(counts[i]):,} vertices; the "
                            f"limit is {limits.max_feature_vertices:,} per feature")
    total = int(counts.sum())
    if total > limits.max_vertices:
        raise InputTooLarge(f"{where}: {total:,} vertices in all; the limit is "
                            f"{limits.max_vertices:,}")


def save(source, target: Path) -> int:
    """Copy an uploaded file object to ``target``; its size in bytes."""
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        return out.tell()
