"""Prove a coverage: every rule of DESIGN.md §2, found, located and measured.

>>> from gridmap.validate import validate_coverage               # doctest: +SKIP
>>> report = validate_coverage(grids, parents=communities, buildings=buildings)
>>> report.clean, report.by_type()
(False, {'gap': 1, 'overlap': 2})

Areas are computed in a metric CRS (the layer's own when it is projected in metres, otherwise a
local equal-area projection); problem geometries are given back in WGS84 lon/lat.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gridmap import coverage as cov
from gridmap.codes import DIGITS, code_problem
from gridmap.config import ValidationOptions
from gridmap.crs import to_metric, to_wgs84
from gridmap.errors import LayersDisjoint
from gridmap.io import LEVELS
from gridmap.report import Problem, Report

__all__ = ["validate_coverage", "validate_hierarchy", "PLURAL"]

PLURAL = {"city": "cities", "district": "districts", "street": "streets",
          "community": "communities", "grid": "grids", "building": "buildings"}
_PARENT_LEVEL = dict(zip(LEVELS[1:], LEVELS[:-1]))
_MAX_NAMED = 8  # neighbours named in a gap's codes


@dataclass
class _Layer:
    """One layer prepared for checking: metric geometries (repaired) and a label per feature."""

    frame: gpd.GeoDataFrame
    raw: np.ndarray
    valid: np.ndarray
    geoms: np.ndarray
    codes: np.ndarray
    level: str

    @classmethod
    def of(cls, frame: gpd.GeoDataFrame, level: str) -> _Layer:
        raw = np.asarray(frame.geometry.values, dtype=object)
        if "code" in frame.columns:
            codes = frame["code"].to_numpy(dtype=object).copy()
        else:
            codes = np.full(len(frame), None, dtype=object)
        unnamed = pd.isna(codes)
        codes[unnamed] = [f"#{i + 1}" for i in np.flatnonzero(unnamed)]
        labels = np.array([str(c) for c in codes], dtype=object)
        valid = shapely.is_valid(raw)
        return cls(frame, raw, valid, cov.make_polygonal(raw, valid), labels, level)

    def column(self, name: str) -> np.ndarray | None:
        return self.frame[name].to_numpy() if name in self.frame.columns else None


def validate_coverage(
    grids: gpd.GeoDataFrame,
    parents: gpd.GeoDataFrame | None = None,
    buildings: gpd.GeoDataFrame | None = None,
    options: ValidationOptions | None = None,
    *,
    level: str = "grid",
) -> Report:
    """Check that ``grids`` tile each of their ``parents`` and follow the grid rules.

    Parameters
    ----------
    grids : the layer to check, with our fields (``code``, ``parent_code``, ``kind``, …).
    parents : the layer above; grids find theirs by ``parent_code``, or by location without it.
        Without parents only the gaps enclosed by the grids themselves can be found.
    buildings : footprints (with ``code``, ``households``): split buildings, households per grid.
    options : tolerances and household targets.
    level : the level of ``grids`` (``grid``, ``community``, …) for codes and the size rule.
    """
    opts = options or ValidationOptions()
    metric, crs = to_metric(grids)
    layer = _Layer.of(metric, level)
    up = _Layer.of(_project(parents, crs, metric, "parents"), _PARENT_LEVEL.get(level, "parent")) \
        if parents is not None else None
    problems: list[Problem] = []
    problems += _geometry_problems(layer, crs)
    owner = _owners(layer, up, problems)
    problems += _code_problems(layer, up, owner, opts)
    flagged, edges = cov.flag_invalid_edges(layer.geoms)
    overlaps = _overlap_problems(layer, flagged, opts)
    problems += overlaps
    problems += _gap_problems(layer, up, owner, flagged, opts)
    problems += _unshared_problems(layer, flagged, edges, overlaps)
    households = layer.column("households")
    counts = {PLURAL[level]: len(layer.codes)}
    if up is not None:
        counts[PLURAL.get(up.level, "parents")] = len(up.codes)
    split: list[Problem] = []
    if buildings is not None:
        # Shares of a footprint are ratios of areas, the same in any CRS at a building's scale:
        # they are computed in the grids' own CRS, so that 150k footprints need no reprojection.
        native = grids.crs
        bl = _Layer.of(_project(buildings, native, grids, "buildings"), "building")
        cells = cov.make_polygonal(np.asarray(grids.geometry.values, dtype=object), layer.valid)
        shares = cov.building_shares(bl.geoms, cells)
        split = _building_problems(layer, bl, shares, opts, native, crs)
        counts["buildings"] = len(bl.codes)
        households = _households(layer, bl, shares, households)
    notes: list[str] = []
    if level == "grid":
        problems += _size_problems(layer, up, owner, households, opts, notes)
        problems += _worker_problems(layer, notes)
    _to_wgs84(problems, crs)
    problems += split
    for p in problems:
        p.level = level
    return Report(problems, counts, notes)


def validate_hierarchy(
    layers: dict[str, gpd.GeoDataFrame],
    buildings: gpd.GeoDataFrame | None = None,
    options: ValidationOptions | None = None,
) -> Report:
    """Check every level at once: each level must tile its parent, from city down to grids."""
    present = [lv for lv in LEVELS if lv in layers]
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    notes: list[str] = []
    parent = None
    for lv in present:
        report = validate_coverage(
            layers[lv], parent, buildings if lv == "grid" else None, options, level=lv
        )
        problems += report.problems
        counts.update(report.counts)
        notes += report.notes
        parent = layers[lv]
    return Report(problems, counts, notes)


# -- preparing ----------------------------------------------------------------------------------


def _project(frame, crs, reference, what: str) -> gpd.GeoDataFrame:
    projected = frame.to_crs(crs)
    a = projected.total_bounds
    b = reference.total_bounds
    if not np.all(np.isfinite(a)) or a[0] > b[2] or b[0] > a[2] or a[1] > b[3] or b[1] > a[3]:
        theirs = frame.attrs.get("crs_label") or frame.crs
        ours = reference.attrs.get("crs_label") or reference.crs
        raise LayersDisjoint(
            f"the {what} do not overlap the layer being checked at all: is one of them in the "
            f"wrong CRS? ({what}: {theirs}; layer: {ours})"
        )
    return projected


def _owners(layer: _Layer, up: _Layer | None, problems: list[Problem]) -> np.ndarray:
    """Index of each feature's parent (-1 for none); missing parents are reported."""
    n = len(layer.codes)
    if up is None:
        return np.full(n, -1, dtype=np.intp)
    parent_codes = layer.column("parent_code")
    noun = up.level
    if parent_codes is not None:
        index = pd.Index(up.codes).get_indexer(pd.Series(parent_codes, dtype=object).fillna(""))
        for i in np.flatnonzero(index < 0):
            said = parent_codes[i]
            why = f"names {noun} {said}, which does not exist" if not pd.isna(said) \
                else f"has no parent_code (every {layer.level} belongs to a {noun})"
            problems.append(Problem("missing_parent", "error", [layer.codes[i]],
                                    f"{layer.level} {layer.codes[i]} {why}", layer.geoms[i]))
        return index.astype(np.intp)
    # No parent_code column: each feature belongs to the parent holding a point inside it.
    points = shapely.point_on_surface(layer.geoms)
    src, dst = shapely.STRtree(up.geoms).query(points, predicate="within")
    index = np.full(n, -1, dtype=np.intp)
    index[src[::-1]] = dst[::-1]
    for i in np.flatnonzero(index < 0):
        problems.append(Problem("missing_parent", "error", [layer.codes[i]],
                                f"{layer.level} {layer.codes[i]} lies in no {noun}", layer.geoms[i]))
    return index


# -- the rules ----------------------------------------------------------------------------------


def _geometry_problems(layer: _Layer, crs) -> list[Problem]:
    out = []
    missing = shapely.is_missing(layer.raw) | shapely.is_empty(layer.raw)
    for i in np.flatnonzero(missing):
        out.append(Problem("invalid_geometry", "error", [layer.codes[i]],
                           f"{layer.level} {layer.codes[i]} has an empty geometry"))
    invalid = np.flatnonzero(~missing & ~layer.valid)
    reasons = shapely.is_valid_reason(layer.raw[invalid])
    for i, reason in zip(invalid, reasons):
        what, at = _split_reason(reason, crs)
        out.append(Problem("invalid_geometry", "error", [layer.codes[i]],
                           f"{layer.level} {layer.codes[i]} is not a valid polygon: {what}{at}",
                           layer.raw[i], float(shapely.area(layer.geoms[i]))))
    return out


def _split_reason(reason: str, crs) -> tuple[str, str]:
    """'Self-intersection[833591.8 845679.3]' -> ('Self-intersection', ' at 114.1234, 22.2812')."""
    what, _, rest = reason.partition("[")
    try:
        x, y = (float(v) for v in rest.rstrip("]").split()[:2])
    except ValueError:
        return reason, ""
    point = to_wgs84(np.array([shapely.Point(x, y)]), crs)[0]
    return what, f" at {point.x:.6f}, {point.y:.6f}"


def _code_problems(layer: _Layer, up: _Layer | None, owner: np.ndarray,
                   opts: ValidationOptions) -> list[Problem]:
    out = []
    codes = layer.column("code")
    if codes is None:
        return out
    series = pd.Series(codes, dtype=object)
    repeated = series[series.notna() & series.duplicated(keep=False)]
    for code, group in repeated.groupby(repeated).groups.items():
        idx = np.asarray(group)
        out.append(Problem("duplicate_code", "error", [str(code)],
                           f"code {code} is used by {len(idx)} {PLURAL[layer.level]}",
                           shapely.union_all(layer.geoms[idx])))
    if not opts.check_codes or layer.level not in DIGITS:
        return out
    parent = np.where(owner >= 0, up.codes[owner] if up is not None else None, None) \
        if up is not None else np.full(len(codes), None, dtype=object)
    text = series.astype("string")
    fine = text.str.fullmatch(rf"[0-9]{{{DIGITS[layer.level]}}}").fillna(False).to_numpy()
    if up is not None and layer.level != "district":
        fine &= np.array([p is None or c.startswith(p) for c, p in zip(layer.codes, parent)])
    for i in np.flatnonzero(~fine | text.isna().to_numpy()):
        why = code_problem(None if pd.isna(codes[i]) else str(codes[i]), layer.level, parent[i])
        if why:
            out.append(Problem("bad_code", "error", [layer.codes[i]],
                               f"{layer.level} {layer.codes[i]} {why}", layer.geoms[i]))
    return out


def _overlap_problems(layer: _Layer, flagged: np.ndarray, opts: ValidationOptions) -> list[Problem]:
    i, j, geoms, area = cov.find_overlaps(layer.geoms, flagged)
    real = area >= opts.noise_area
    i, j, geoms, area = i[real], j[real], geoms[real], area[real]
    noise = cov.slivers(geoms, opts.gap_width, opts.sliver_area)
    plural = PLURAL[layer.level]
    return [
        Problem("overlap", "warning" if small else "error", [layer.codes[a], layer.codes[b]],
                f"{plural} {layer.codes[a]} and {layer.codes[b]} overlap by {m2:.1f} m²"
                + (" (a sliver within tolerance)" if small else ""), g, m2)
        for a, b, g, m2, small in zip(i, j, geoms, area, noise)
    ]


def _gap_problems(layer: _Layer, up: _Layer | None, owner: np.ndarray, flagged: np.ndarray,
                  opts: ValidationOptions) -> list[Problem]:
    if up is not None:
        settled = cov.match_parents(up.geoms, layer.geoms, owner, flagged)
        inside = cov.contained(layer.geoms, up.geoms, owner, settled)
        gaps, where = cov.gaps_in_parents(up.geoms, layer.geoms, owner, inside, flagged, settled)
        out = _outside_problems(layer, up, owner, inside, opts)
    else:
        gaps = cov.holes_of(cov.union_of(layer.geoms, flagged))
        where = np.full(len(gaps), -1, dtype=np.intp)
        out = []
    real = shapely.area(gaps) >= opts.noise_area if len(gaps) else np.zeros(0, dtype=bool)
    gaps, where = gaps[real], where[real]
    if len(gaps) == 0:
        return out
    tree = shapely.STRtree(layer.geoms)
    noise = cov.slivers(gaps, opts.gap_width, opts.sliver_area)
    for p in np.unique(where):
        mine = where == p
        inside_of = [up.codes[p]] if p >= 0 else []
        place = f" in {up.level} {up.codes[p]}" if p >= 0 else ""
        for g in gaps[mine & ~noise]:
            names = inside_of + _neighbours(tree, g, layer.codes)
            area = shapely.area(g)
            out.append(Problem("gap", "error", names, f"gap of {area:.1f} m²{place}"
                               + (f" next to {', '.join(names[len(inside_of):])}"
                                  if len(names) > len(inside_of) else ""), g, area))
        small = gaps[mine & noise]
        if len(small):
            area = float(shapely.area(small).sum())
            out.append(Problem(
                "gap", "warning", inside_of + _neighbours(tree, shapely.union_all(small), layer.codes),
                f"{len(small)} sliver gap(s){place} narrower than {opts.gap_width:g} m or under "
                f"{opts.sliver_area:g} m², {area:.2f} m² in all", shapely.multipolygons(small), area))
    return out


def _neighbours(tree: shapely.STRtree, geom, codes: np.ndarray) -> list[str]:
    hits = tree.query(geom, predicate="intersects")
    return sorted({codes[h] for h in hits})[:_MAX_NAMED]


def _outside_problems(layer: _Layer, up: _Layer, owner: np.ndarray, inside: np.ndarray,
                      opts: ValidationOptions) -> list[Problem]:
    idx, excess, area = cov.outside_parents(layer.geoms, up.geoms, owner, inside)
    real = area >= opts.noise_area
    idx, excess, area = idx[real], excess[real], area[real]
    noise = cov.slivers(excess, opts.gap_width, opts.sliver_area)
    return [
        Problem("outside_parent", "warning" if small else "error",
                [layer.codes[i], up.codes[owner[i]]],
                f"{layer.level} {layer.codes[i]} reaches {m2:.1f} m² outside its {up.level} "
                f"{up.codes[owner[i]]}" + (" (a sliver within tolerance)" if small else ""), g, m2)
        for i, g, m2, small in zip(idx, excess, area, noise)
    ]


def _unshared_problems(layer: _Layer, flagged: np.ndarray, edges: np.ndarray,
                       overlaps: list[Problem]) -> list[Problem]:
    """Edges that neighbours do not share vertex for vertex, where no real overlap explains them."""
    explained = {c for p in overlaps if p.severity == "error" for c in p.codes}
    out = []
    for i in np.flatnonzero(flagged):
        if layer.codes[i] in explained:
            continue
        length = shapely.length(edges[i])
        out.append(Problem("unshared_edge", "warning", [layer.codes[i]],
                           f"{layer.level} {layer.codes[i]}: {length:.1f} m of its boundary is not "
                           "matched vertex for vertex by its neighbours", edges[i],
                           extra={"length_m": round(float(length), 2)}))
    return out


def _building_problems(layer: _Layer, bl: _Layer, shares, opts: ValidationOptions,
                       native, metric) -> list[Problem]:
    """一楼严禁分两格: a building must not be split between grids.

    ``bl`` is in the ``native`` CRS of the grids; problems come back with WGS84 geometries.
    """
    b, g, share = shares
    counted = share > opts.building_share
    b, g, share = b[counted], g[counted], share[counted]
    split = np.bincount(b, minlength=len(bl.codes)) > 1
    rows = np.flatnonzero(split[b])
    rows = rows[np.lexsort((-share[rows], b[rows]))]  # by building, largest share first
    starts = np.flatnonzero(np.r_[True, b[rows][1:] != b[rows][:-1]])
    if len(rows) == 0:
        return []
    firsts = b[rows[starts]]
    footprints = gpd.GeoSeries(bl.geoms[firsts], crs=native)
    outside_main = footprints.to_crs(metric).area.to_numpy() * (1 - share[rows[starts]])
    located = to_wgs84(bl.geoms[firsts], native)
    names, percent = layer.codes[g[rows]], np.round(share[rows] * 100).astype(int)
    out = []
    ends = np.r_[starts[1:], len(rows)]
    for k, geom, area, lo, hi in zip(firsts, located, outside_main, starts, ends):
        parts = ", ".join(f"{n} ({p}%)" for n, p in zip(names[lo:hi], percent[lo:hi]))
        out.append(Problem("split_building", "error", [bl.codes[k], *names[lo:hi]],
                           f"building {bl.codes[k]} is split between {layer.level}s {parts}",
                           geom, float(area)))
    return out


def _households(layer: _Layer, bl: _Layer, shares, given: np.ndarray | None) -> np.ndarray | None:
    """Households per grid: the grid's own figure, else the sum over the buildings it holds most of."""
    hh = bl.column("households")
    if hh is None:
        return given
    b, g, share = shares
    order = np.lexsort((-share, b))
    first = np.ones(len(order), dtype=bool)
    first[1:] = b[order][1:] != b[order][:-1]
    home_b, home_g = b[order][first], g[order][first]
    values = pd.to_numeric(pd.Series(hh), errors="coerce").fillna(0).to_numpy()
    summed = np.bincount(home_g, weights=values[home_b], minlength=len(layer.codes))
    if given is None:
        return summed
    given = pd.to_numeric(pd.Series(given), errors="coerce").to_numpy()
    return np.where(np.isnan(given), summed, given)


def _size_problems(layer: _Layer, up: _Layer | None, owner: np.ndarray, households,
                   opts: ValidationOptions, notes: list[str]) -> list[Problem]:
    """规模适度: about 200 households per urban grid, 50 per rural grid; dedicated grids exempt."""
    if households is None:
        notes.append("no households (field or buildings): grid sizes were not checked")
        return []
    hh = pd.to_numeric(pd.Series(households), errors="coerce").to_numpy()
    kind = layer.column("kind")
    dedicated = (kind == "dedicated") if kind is not None else np.zeros(len(hh), dtype=bool)
    rural = np.zeros(len(hh), dtype=bool)
    parent_kind = up.column("kind") if up is not None else None
    if parent_kind is not None:
        rural = (owner >= 0) & (np.where(owner >= 0, parent_kind[owner], "") == "rural")
    out = []
    for i in np.flatnonzero(~dedicated & ~np.isnan(hh)):
        band = opts.rural if rural[i] else opts.urban
        if band.low <= hh[i] <= band.high:
            continue
        setting = "a rural" if rural[i] else "an urban"
        out.append(Problem(
            "size_out_of_range", "warning", [layer.codes[i]],
            f"grid {layer.codes[i]} holds {hh[i]:g} households; {setting} grid holds "
            f"{band.target:g} ± {band.tolerance:g}", layer.geoms[i],
            extra={"households": float(hh[i]), "target": band.target}))
    return out


def _worker_problems(layer: _Layer, notes: list[str]) -> list[Problem]:
    """一格一员: every grid has its grid worker."""
    worker = layer.column("worker")
    if worker is None:
        notes.append("no worker field: the one-grid-one-worker rule was not checked")
        return []
    empty = pd.Series(worker, dtype=object).fillna("").astype(str).str.strip() == ""
    return [Problem("no_worker", "warning", [layer.codes[i]],
                    f"grid {layer.codes[i]} has no grid worker", layer.geoms[i])
            for i in np.flatnonzero(empty.to_numpy())]


def _to_wgs84(problems: list[Problem], crs) -> None:
    located = [p for p in problems if p.geometry is not None]
    if located:
        converted = to_wgs84(np.array([p.geometry for p in located], dtype=object), crs)
        for p, g in zip(located, converted):
            p.geometry = g
