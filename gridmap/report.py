"""The validation report: problems found in a layer, as the outside contract (DESIGN.md §4) shows them.

Problem types are part of the contract: more may be added, none may be renamed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

__all__ = ["PROBLEM_TYPES", "Problem", "Report"]

PROBLEM_TYPES = (
    "invalid_geometry",
    "gap",
    "overlap",
    "outside_parent",
    "split_building",
    "size_out_of_range",
    "bad_code",
    "duplicate_code",
    "missing_parent",
    "unshared_edge",
    "no_worker",
)


@dataclass
class Problem:
    """One problem: what, how bad, which features, where (WGS84 lon/lat) and how large (m²)."""

    type: str
    severity: str  # "error" or "warning"
    codes: list[str]
    message: str
    geometry: BaseGeometry | None = None
    area_m2: float | None = None
    level: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, precision: int = 7) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "severity": self.severity, "codes": self.codes}
        if self.level is not None:
            out["level"] = self.level
        if self.area_m2 is not None:
            out["area_m2"] = round(float(self.area_m2), 3)
        out["geometry"] = _geojson(self.geometry, precision)
        out["message"] = self.message
        out.update(self.extra)
        return out


def _geojson(geom: BaseGeometry | None, precision: int) -> dict[str, Any] | None:
    if geom is None or geom.is_empty:
        return None
    # Round the coordinates (7 decimals of a degree: 1 cm) without snapping the geometry, which
    # would collapse the very slivers a report is about.
    rounded = shapely.transform(geom, lambda xy: np.round(xy, precision))
    return json.loads(shapely.to_geojson(rounded))


@dataclass
class Report:
    """All problems of one validation run, with counts of what was checked."""

    problems: list[Problem]
    counts: dict[str, int]  # features checked per level, e.g. {"grids": 812, "buildings": 3000}
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def clean(self) -> bool:
        """Clean means no errors; warnings (slivers, unshared vertices, no worker) are advice."""
        return not self.errors

    def by_type(self, severity: str | None = None) -> dict[str, int]:
        return dict(Counter(p.type for p in self.problems if severity in (None, p.severity)))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        out.update(
            clean=self.clean,
            errors=len(self.errors),
            warnings=len(self.warnings),
            problems=self.by_type(),
        )
        if self.notes:
            out["notes"] = self.notes
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "problems": [p.to_dict() for p in self.problems]}

    def to_geojson(self) -> dict[str, Any]:
        """The problems as a GeoJSON FeatureCollection (those without a location are left out)."""
        features = []
        for p in self.problems:
            d = p.to_dict()
            geometry = d.pop("geometry")
            if geometry is not None:
                d["codes"] = ",".join(d["codes"])
                features.append({"type": "Feature", "geometry": geometry, "properties": d})
        return {"type": "FeatureCollection", "features": features}
