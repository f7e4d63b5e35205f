"""Batch lookup of a CSV of points, streamed chunk by chunk into a file renamed into place at the end."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gridmap.errors import FieldMissing, FileUnreadable
from gridmap.lookup.coords import to_wgs84_points

if TYPE_CHECKING:
    from gridmap.lookup.index import LookupIndex

_LON_NAMES, _LAT_NAMES = ("lon", "lng", "longitude"), ("lat", "latitude")


def _column(columns, names, what: str, source: str) -> str:
    lower = {str(c).strip().lower(): c for c in columns}
    for name in names:
        if name in lower:
            return lower[name]
    raise FieldMissing(f"{source}: no {what} column ({'/'.join(names)}); "
                       f"it has: {', '.join(map(str, columns))}")


def _chunks(source, chunksize: int):
    if isinstance(source, (str, Path)):
        return pd.read_csv(source, chunksize=chunksize, dtype=str, keep_default_na=False)
    return [source] if isinstance(source, pd.DataFrame) else source


def _locate_chunk(index: LookupIndex, chunk: pd.DataFrame, crs, name: str, done: int,
                  near: bool = True) -> pd.DataFrame:
    lon_col = _column(chunk.columns, _LON_NAMES, "longitude", name)
    lat_col = _column(chunk.columns, _LAT_NAMES, "latitude", name)
    lon = pd.to_numeric(chunk[lon_col], errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(chunk[lat_col], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(lon) & np.isfinite(lat)))
    if bad.size:
        i = int(bad[0])
        raise FileUnreadable(
            f"{name} row {done + i + 1}: {lon_col}/{lat_col} is not a number "
            f"({chunk[lon_col].iat[i]!r}, {chunk[lat_col].iat[i]!r})")
    x, y = to_wgs84_points(lon, lat, crs, label=lambda i: f"{name} row {done + i + 1}")
    out = chunk.copy()
    if not near:
        grid = index._which(x, y)
        out["grid_code"] = np.where(grid >= 0, index.codes[np.maximum(grid, 0)], "")
        return out
    loc = index._locate(x, y, distances=False)  # the CSV carries no distances
    out["grid_code"] = np.where(loc.grid >= 0, index.codes[np.maximum(loc.grid, 0)], "")
    out["near_boundary"] = loc.near_boundary
    return out


def lookup_points(index: LookupIndex, source: str | Path | pd.DataFrame | Iterable[pd.DataFrame],
                  output: str | Path, *, crs="wgs84", chunksize: int = 200_000,
                  progress: Callable[[int], None] | None = None, near: bool = True) -> int:
    """Stream a CSV of points through `index`: the same rows out, with ``grid_code`` and
    ``near_boundary`` added (``grid_code`` empty where the point is in no grid; without `near`,
    ``grid_code`` alone — about 3× faster on small grids).

    `source` is a CSV path (read `chunksize` rows at a time, every column kept as text), a
    DataFrame, or an iterable of DataFrames. Longitude comes from ``lon``/``lng``/``longitude``,
    latitude from ``lat``/``latitude`` (any case). The output is written to a temporary file
    beside `output` and renamed over it at the end, so readers never see half a file.
    `progress(rows_done)` is called after each chunk. Returns the number of rows.

    Raises
    ------
    FileUnreadable
        A row whose lon/lat is not a number (named by its row number, the header not counted).
    FieldMissing, CoordinatesOutOfRange, CRSUnknown
    """
    name = Path(source).name if isinstance(source, (str, Path)) else "points"
    output = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent or ".")
    done = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            for chunk in _chunks(source, chunksize):
                rows = _locate_chunk(index, chunk, crs, name, done, near)
                rows.to_csv(fh, header=done == 0, index=False)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return done
