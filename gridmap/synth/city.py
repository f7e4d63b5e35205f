"""The data model of a synthetic city: levels, planted ground truth, and shared helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd

PLANT_TYPES = ("gap", "overlap", "outside_parent", "duplicate_code", "bad_code",
               "invalid_geometry", "no_worker", "size_out_of_range")
WGS84 = "EPSG:4326"


def problem_key(type_: str, codes) -> tuple:
    """Order-insensitive identity of a reported problem: ``(type, codes)``."""
    codes = [str(c) for c in codes]
    if type_ == "split_building":
        return (type_, codes[0], tuple(sorted(set(codes[1:]))))
    return (type_, tuple(sorted(set(codes))))


@dataclass(frozen=True)
class PlantedProblem:
    """One planted problem: its report type and the codes a correct validator names."""

    type: str
    codes: tuple[str, ...]

    def key(self) -> tuple:
        return problem_key(self.type, self.codes)


@dataclass
class City:
    """A synthetic city: one GeoDataFrame per level (EPSG:4326) and the planted ground truth."""

    district: gpd.GeoDataFrame
    street: gpd.GeoDataFrame
    community: gpd.GeoDataFrame
    grid: gpd.GeoDataFrame
    building: gpd.GeoDataFrame
    planted: list[PlantedProblem] = field(default_factory=list)

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """The polygon levels, as ``validate_hierarchy`` takes them."""
        return {"district": self.district, "street": self.street,
                "community": self.community, "grid": self.grid}

    def expected(self) -> set[tuple]:
        """The planted problems as :func:`problem_key` tuples."""
        return {p.key() for p in self.planted}


def default_plant(n_grids: int) -> dict[str, int]:
    """One of each type, two from 1,000 grids, three from 10,000…, at most five; none below 100."""
    if n_grids < 100:
        return {}
    k = max(1, min(5, int(math.log10(max(n_grids, 10))) - 1))
    return {t: k for t in PLANT_TYPES}


def metres_per_degree(lat: float) -> np.ndarray:
    """Metres per degree of (lon, lat) at latitude ``lat`` (spherical; for offsets of metres)."""
    return np.array([111_320.0 * math.cos(math.radians(lat)), 110_574.0])


def _rank_within(groups: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """1-based rank of each item within its group, by ``order_key`` (stable)."""
    order = np.lexsort((order_key, groups))
    sorted_groups = groups[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first + 1
    return rank


def _frame(columns: dict, geoms) -> gpd.GeoDataFrame:
    frame = pd.DataFrame({k: np.asarray(v, dtype=object) if not np.isscalar(v) else v
                          for k, v in columns.items()})
    return gpd.GeoDataFrame(frame, geometry=np.asarray(geoms, dtype=object), crs=WGS84)
