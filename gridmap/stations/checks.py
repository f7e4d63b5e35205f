"""Size rules for party-and-public service centres (党群服务中心), DESIGN.md §2."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

__all__ = ["MIN_FLOOR_AREA_M2", "check_stations"]

#: Minimum floor area by kind of centre: street centres ≥ 1000 m², community centres ≥ 500 m².
#: Service posts (驿站) in compounds and district/city centres have no minimum here.
MIN_FLOOR_AREA_M2 = {"street_centre": 1000.0, "community_centre": 500.0}
_LEVEL_KIND = {"street": "street_centre", "community": "community_centre"}
_LABEL = {"street_centre": "street centre", "community_centre": "community centre"}


def _kinds(stations: pd.DataFrame) -> pd.Series:
    """A centre's kind from ``kind``, else from ``level`` (a post at community level is no centre)."""
    kind = stations["kind"] if "kind" in stations else pd.Series(None, index=stations.index)
    if "level" in stations:
        kind = kind.fillna(stations["level"].map(_LEVEL_KIND))
    return kind


def check_stations(stations: gpd.GeoDataFrame | pd.DataFrame,
                   minimums: dict[str, float] | None = None) -> list[str]:
    """One message per centre under its minimum floor area or with none recorded.

    Examples
    --------
    >>> df = pd.DataFrame({"code": ["S1", "S2"], "kind": ["street_centre", "post"],
    ...                    "floor_area_m2": [800.0, 40.0]})
    >>> check_stations(df)
    ['S1: street centre of 800 m², under the 1000 m² minimum']
    """
    minimums = MIN_FLOOR_AREA_M2 if minimums is None else minimums
    kinds = _kinds(stations)
    area = (stations["floor_area_m2"] if "floor_area_m2" in stations
            else pd.Series(float("nan"), index=stations.index))
    codes = stations["code"] if "code" in stations else stations.index.to_series()
    messages = []
    for code, kind, value in zip(codes, kinds, pd.to_numeric(area, errors="coerce")):
        if kind not in minimums:
            continue
        label = _LABEL.get(kind, str(kind))
        if pd.isna(value):
            messages.append(f"{code}: {label} has no floor area recorded")
        elif value < minimums[kind]:
            messages.append(f"{code}: {label} of {value:.0f} m², "
                            f"under the {minimums[kind]:.0f} m² minimum")
    return messages
