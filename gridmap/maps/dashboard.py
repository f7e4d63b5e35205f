"""The dashboard: per street and community, a table and plots (inline SVG: no script at all).

Columns: grids; households per grid (mean, and how many grids fall outside the target band);
grids with no worker; open and overdue incidents; the share of households in buildings inside a
service circle.
"""

from __future__ import annotations

import datetime as dt
import html

import geopandas as gpd
import numpy as np
import pandas as pd

from gridmap.config import MapSettings, ValidationOptions
from gridmap.maps import page
from gridmap.maps.coverage import BANDS, household_class
from gridmap.maps.points import near, served
from gridmap.maps.units import OPEN, Unit

__all__ = ["dashboard_page", "unit_table"]

COLUMNS = {"grids": "grids", "households": "households", "per_grid": "households per grid",
           "off_target": "grids off target", "no_worker": "grids with no worker",
           "open": "open incidents", "overdue": "overdue incidents",
           "served_share": "households in a service circle"}


def unit_table(unit: Unit, incidents: gpd.GeoDataFrame, stations: gpd.GeoDataFrame, *,
               as_of: dt.date | None = None, settings: MapSettings | None = None,
               options: ValidationOptions | None = None) -> pd.DataFrame:
    """One row per street and per community of ``unit`` (and one for the unit itself)."""
    settings = settings or MapSettings()
    options = options or ValidationOptions()
    grids = unit.grids.copy()
    grids["band"] = household_class(grids, unit.communities, options)
    worker = grids["worker"] if "worker" in grids else pd.Series(None, index=grids.index)
    grids["no_worker"] = worker.isna() | worker.astype(str).str.strip().eq("")
    grids["households"] = pd.to_numeric(grids.get("households", np.nan), errors="coerce")
    community_of = grids.set_index("code")["parent_code"].astype(str) \
        if "parent_code" in grids else pd.Series(dtype=str)
    street_of = _street_of(unit)

    inc = incidents.copy()
    end = pd.Timestamp(as_of or dt.datetime.now(dt.timezone.utc).date(), tz="UTC")
    if len(inc):
        inc["open"] = inc["status"].isin(OPEN)
        when = pd.to_datetime(inc["reported_at"], utc=True)
        inc["overdue"] = inc["open"] & (when < end - pd.Timedelta(days=settings.overdue_days))
        inc["community"] = inc["grid_code"].map(community_of)

    buildings = unit.layers.get("building")
    if buildings is not None and len(buildings):
        b = buildings.assign(served=served(buildings, near(stations, unit, settings.service_radius_m),
                                           settings.service_radius_m))
        b["households"] = pd.to_numeric(b.get("households", 0), errors="coerce").fillna(0)
        b["community"] = b["parent_code"].astype(str).map(community_of)
    else:
        b = None

    rows = []
    groups = [(unit.level, unit.code, unit.name, None)]
    communities = unit.layers.get("community")
    if unit.level in ("city", "district") and "street" in unit.layers:
        groups += [("street", r.code, r.name, None) for r in unit.layers["street"].itertuples()]
    if communities is not None:
        groups += [("community", r.code, r.name, r.parent_code) for r in communities.itertuples()]
    for level, code, name, parent in groups:
        def pick(frame, column):
            if frame is None or len(frame) == 0:
                return frame
            if level == "community":
                return frame[frame[column] == code]
            if level == "street":
                return frame[frame[column].map(street_of) == code]
            return frame
        g = pick(grids, "parent_code")
        i = pick(inc, "community") if len(inc) else inc
        bb = pick(b, "community") if b is not None else None
        total = bb["households"].sum() if bb is not None and len(bb) else 0
        rows.append({
            "level": level, "code": code, "name": name, "grids": len(g),
            "households": int(g["households"].sum()) if len(g) else 0,
            "per_grid": round(float(g["households"].mean()), 1) if len(g) else None,
            "off_target": int(g["band"].isin(["under", "over"]).sum()),
            "no_worker": int(g["no_worker"].sum()),
            "open": int(i["open"].sum()) if len(i) else 0,
            "overdue": int(i["overdue"].sum()) if len(i) else 0,
            "served_share": round(float(bb.loc[bb["served"], "households"].sum() / total), 3)
            if total else None,
        })
    return pd.DataFrame(rows)


def _street_of(unit: Unit) -> dict:
    communities = unit.layers.get("community")
    if communities is None or "parent_code" not in communities:
        return {}
    return dict(zip(communities["code"].astype(str), communities["parent_code"].astype(str)))


def dashboard_page(unit: Unit, incidents: gpd.GeoDataFrame, stations: gpd.GeoDataFrame, *,
                   as_of: dt.date | None = None, settings: MapSettings | None = None,
                   options: ValidationOptions | None = None) -> str:
    """The dashboard of ``unit`` as one HTML page (table, histogram and bars; no scripts)."""
    settings = settings or MapSettings()
    options = options or ValidationOptions()
    if len(unit.grids) == 0:
        return page.message_page(f"Dashboard of {unit.label}", f"{unit.label} has no grids.")
    table = unit_table(unit, incidents, stations, as_of=as_of, settings=settings, options=options)
    title = f"Dashboard: {unit.label}"
    return (f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{len(unit.grids):,} grids; incidents overdue when open more than "
            f"{settings.overdue_days} days; service circles {settings.service_radius_m:,.0f} m "
            f"straight-line.</p><div class=plots>"
            f"{_histogram(unit, options)}{_bars(table)}</div>"
            f"{_html_table(table)}</body></html>")


_CSS = ("body{font:14px/1.45 'Noto Sans CJK SC','Noto Sans',sans-serif;margin:1.5em}"
        "table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;"
        "text-align:right}td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}"
        "tr.street td{font-weight:600;background:#f4f4f4}.plots{display:flex;gap:2em;"
        "flex-wrap:wrap}.bad{color:#b30000;font-weight:600}")


def _html_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{h}</th>" for h in ["level", "code", "name", *COLUMNS.values()])
    body = []
    for r in table.itertuples():
        cells = [r.level, r.code, html.escape(str(r.name))]
        for key in COLUMNS:
            v = getattr(r, key)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                text = "—"
            elif key == "served_share":
                text = f"{v:.0%}"
            else:
                text = f"{v:,}"
            bad = key in ("off_target", "no_worker", "overdue") and v
            cells.append(f'<span class="bad">{text}</span>' if bad else text)
        body.append(f'<tr class="{r.level}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table id="gridmap-dashboard"><tr>{head}</tr>{"".join(body)}</table>'


def _histogram(unit: Unit, options: ValidationOptions) -> str:
    """Households per basic grid, urban and rural, against their target bands."""
    grids = unit.grids
    households = pd.to_numeric(grids.get("households", np.nan), errors="coerce")
    basic = households[grids["kind"].ne("dedicated")] if "kind" in grids else households
    basic = basic.dropna()
    if basic.empty:
        return "<p>No households recorded.</p>"
    top = max(float(basic.max()), options.urban.high) * 1.05
    bins = np.linspace(0, top, 41)
    counts, _ = np.histogram(basic, bins)
    w, h, pad = 520, 220, 30
    sx = (w - 2 * pad) / top
    sy = (h - 2 * pad) / max(counts.max(), 1)
    bands = "".join(
        f'<rect x="{pad + b.low * sx:.1f}" y="{pad}" width="{(b.high - b.low) * sx:.1f}" '
        f'height="{h - 2 * pad}" fill="{BANDS["within"][0]}" opacity="0.15"/>'
        for b in (options.rural, options.urban))
    bars = "".join(
        f'<rect x="{pad + lo * sx:.1f}" y="{h - pad - n * sy:.1f}" width="{(hi - lo) * sx - 1:.1f}" '
        f'height="{n * sy:.1f}" fill="#4a6fa5"><title>{lo:.0f}–{hi:.0f}: {n}</title></rect>'
        for lo, hi, n in zip(bins[:-1], bins[1:], counts) if n)
    ticks = "".join(f'<text x="{pad + v * sx:.1f}" y="{h - 10}" font-size="10" '
                    f'text-anchor="middle">{v:g}</text>'
                    for v in (0, options.rural.target, options.urban.target, round(top, -1)))
    return (f'<figure><svg id="gridmap-histogram" width="{w}" height="{h}">{bands}{bars}{ticks}'
            f'</svg><figcaption>Households per grid ({len(basic):,} basic grids); shaded: the '
            f"target bands {options.rural.target:g} ± {options.rural.tolerance:g} and "
            f"{options.urban.target:g} ± {options.urban.tolerance:g}</figcaption></figure>")


def _bars(table: pd.DataFrame) -> str:
    """Open incidents and the served share per street (or per community in a street)."""
    below = table.iloc[1:]  # the first row is the unit itself
    level = "street" if (below["level"] == "street").any() else "community"
    rows = below[below["level"] == level].head(40)
    if rows.empty:
        return ""
    w, line = 520, 16
    most = max(int(rows["open"].max()), 1)
    parts = []
    for k, r in enumerate(rows.itertuples()):
        y = 14 + k * line
        share = r.served_share if r.served_share == r.served_share and r.served_share else 0
        parts.append(
            f'<text x="0" y="{y + 10}" font-size="11">{html.escape(str(r.name))[:12]}</text>'
            f'<rect x="110" y="{y}" width="{180 * share:.1f}" height="11" fill="#6baed6"/>'
            f'<text x="{114 + 180 * share:.1f}" y="{y + 10}" font-size="10">{share:.0%}</text>'
            f'<rect x="330" y="{y}" width="{150 * r.open / most:.1f}" height="11" fill="#e6550d"/>'
            f'<text x="{334 + 150 * r.open / most:.1f}" y="{y + 10}" font-size="10">{r.open}</text>')
    height = 20 + len(rows) * line
    return (f'<figure><svg id="gridmap-bars" width="{w}" height="{height}">'
            f'<text x="110" y="10" font-size="11">households served</text>'
            f'<text x="330" y="10" font-size="11">open incidents</text>{"".join(parts)}</svg>'
            f"<figcaption>Per {level}</figcaption></figure>")
