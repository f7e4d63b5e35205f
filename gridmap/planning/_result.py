"""What an edit hands back, and the last step every edit shares: tidy, recount, convert back."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap.crs import WGS84
from gridmap.planning._space import NODE_TOL, Workspace, clean, homes, household_values, polygonal


@dataclass
class EditResult:
    """The grids after an edit (EPSG:4326) and what changed.

    ``moved`` maps each building whose grid changed to ``(old grid code, new grid code)``;
    ``buildings`` is the building layer with ``parent_code`` updated (None without buildings).
    """

    grids: gpd.GeoDataFrame
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)
    buildings: gpd.GeoDataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Changes:
    """An edit's outcome in metres: new geometries of existing rows, and new rows."""

    geoms: dict[int, object] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # attributes + "geometry" (metric)
    households: dict = field(default_factory=dict)  # row index or ("new", k) -> value
    notes: list[str] = field(default_factory=list)


def finish(ws: Workspace, grids: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame | None,
           ch: Changes) -> EditResult:
    """Make shared edges match, recount households from buildings, and build the new layers."""
    metric = np.asarray(ws.grids.geometry.values, dtype=object)
    final = metric.copy()
    for i, g in ch.geoms.items():
        final[i] = polygonal(g)
    new_geoms = [polygonal(r["geometry"]) for r in ch.rows]
    touched = sorted(ch.geoms)
    area = shapely.union_all([final[i] for i in touched] + new_geoms + [metric[i] for i in touched])
    near = shapely.STRtree(metric).query(area.buffer(NODE_TOL * 10), predicate="intersects")
    near = [int(j) for j in near if j not in ch.geoms]
    idx = touched + near
    tidy = clean([final[i] for i in idx] + new_geoms)
    for k, i in enumerate(idx):
        if i in ch.geoms or not shapely.equals_exact(shapely.normalize(tidy[k]),
                                                    shapely.normalize(metric[i]), tolerance=0):
            final[i] = tidy[k]
    new_geoms = tidy[len(idx):]
    removed = [i for i in touched if final[i].is_empty]
    changed = [i for i in range(len(final)) if i in ch.geoms or final[i] is not metric[i]]
    changed = [i for i in changed if i not in removed]

    codes = grids["code"].astype(str).to_numpy()
    all_geoms = np.concatenate([final, np.array(new_geoms, dtype=object)])
    all_codes = np.concatenate([codes, np.array([r["code"] for r in ch.rows], dtype=object)])
    hh = _households(grids, ch, len(final))
    moved, out_buildings = {}, None
    if ws.buildings is not None:
        fps = np.asarray(ws.buildings.geometry.values, dtype=object)
        before = homes(fps, metric)
        live = all_geoms.copy()
        live[removed] = shapely.Polygon()
        after = homes(fps, live)
        values = household_values(ws.buildings)
        counted = np.bincount(after[after >= 0], values[after >= 0], minlength=len(all_geoms))
        for i in changed + list(range(len(final), len(all_geoms))):
            hh[i] = counted[i]
        bcodes = ws.buildings["code"].astype(str).to_numpy() if "code" in ws.buildings.columns \
            else np.array([f"#{k + 1}" for k in range(len(fps))], dtype=object)
        for k in np.flatnonzero(before != after):
            moved[bcodes[k]] = (codes[before[k]] if before[k] >= 0 else None,
                                all_codes[after[k]] if after[k] >= 0 else None)
        out_buildings = buildings.copy()
        if "parent_code" in out_buildings.columns:
            home_codes = np.where(after >= 0, all_codes[np.maximum(after, 0)], None)
            out_buildings["parent_code"] = np.where(after >= 0, home_codes,
                                                    out_buildings["parent_code"].to_numpy(object))

    out = grids.to_crs(WGS84) if not grids.crs.equals(WGS84) else grids.copy()
    geo = np.asarray(out.geometry.values, dtype=object).copy()
    if changed:
        geo[changed] = ws.to_lonlat(final[changed])
    out = out.set_geometry(gpd.GeoSeries(geo, index=out.index, crs=WGS84))
    if "households" in out.columns or ws.buildings is not None:
        out["households"] = _cast(hh[:len(final)], out.get("households"))
    extra = []
    for k, r in enumerate(ch.rows):
        row = {c: None for c in out.columns}
        row.update({c: v for c, v in r.items() if c != "geometry"})
        row["households"] = _cast(hh[len(final) + k:len(final) + k + 1], out.get("households"))[0]
        extra.append(row)
    if extra:
        add = gpd.GeoDataFrame(extra, columns=list(out.columns), geometry=out.geometry.name,
                               crs=WGS84)
        add = add.set_geometry(gpd.GeoSeries(ws.to_lonlat(new_geoms), index=add.index, crs=WGS84))
        out = pd.concat([out, add], ignore_index=True)
        out = gpd.GeoDataFrame(out, geometry=grids.geometry.name, crs=WGS84)
    keep = np.ones(len(out), dtype=bool)
    keep[removed] = False
    out = out[keep].reset_index(drop=True)
    return EditResult(out, [r["code"] for r in ch.rows], [codes[i] for i in removed],
                      [codes[i] for i in changed], moved, out_buildings, list(ch.notes))


def _households(grids: gpd.GeoDataFrame, ch: Changes, n: int) -> np.ndarray:
    base = pd.to_numeric(grids["households"], errors="coerce").to_numpy(float) \
        if "households" in grids.columns else np.full(n, np.nan)
    hh = np.concatenate([base, np.full(len(ch.rows), np.nan)])
    for key, v in ch.households.items():
        hh[n + key[1] if isinstance(key, tuple) else key] = v
    return hh


def _cast(values: np.ndarray, like) -> np.ndarray:
    """Households back as whole numbers when they were whole (they are counts)."""
    values = np.asarray(values, dtype=float)
    if like is None or pd.api.types.is_integer_dtype(like) or np.all(np.isnan(values) | (values % 1 == 0)):
        if not np.isnan(values).any():
            return values.round().astype(np.int64)
    return values
