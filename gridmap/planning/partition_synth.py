"""Synthetic communities for the auto-partition (自动划分网格): a parent, buildings, roads, sites.

For tests and benchmarks: seeded, in WGS84, with every building wholly inside the parent and clear
of the roads, so that every rule of the partition can be met and checked.

>>> com = make_community(200, seed=1)
>>> len(com.buildings), com.parent.geom_type.iat[0], int(com.buildings["households"].min()) >= 1
(200, 'Polygon', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

__all__ = ["SyntheticCommunity", "make_community"]

_SPACING = 30.0  # metres between building slots: a footprint of ~15 m with a lane around it


@dataclass
class SyntheticCommunity:
    """One community: ``parent`` (1 row: code, name, kind), ``buildings`` (code, households),
    ``barriers`` (road lines) and ``dedicated`` (site polygons, possibly none)."""

    parent: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    barriers: gpd.GeoDataFrame
    dedicated: gpd.GeoDataFrame


def make_community(n_buildings: int, *, seed: int = 0, rural: bool = False, roads: int = 4,
                   sites: int = 0, origin: tuple[float, float] = (111.52, 36.08),
                   code: str = "141002004003") -> SyntheticCommunity:
    """A seeded community of exactly ``n_buildings`` buildings around ``origin`` (lon, lat).

    The parent is a jittered 14-gon; ``roads`` straight roads cross it (barriers), buildings are
    small rotated rectangles on a jittered lattice clear of the roads; ``sites`` rectangles are
    dedicated sites (a school, a hospital) that may hold a few buildings. Urban buildings hold
    1–60 households (long-tailed, a few towers), rural ones 1–3.
    """
    if n_buildings < 1:
        raise ValueError("n_buildings must be at least 1")
    rng = np.random.default_rng(seed)
    base = math.sqrt(n_buildings * _SPACING**2 / math.pi) * 1.25 + 60
    for grow in (1.0, 1.3, 1.7, 2.2, 3.0):  # a small community crossed by roads needs room
        radius = base * grow
        angles = np.sort(rng.uniform(0, 2 * math.pi, 14))
        reach = radius * rng.uniform(0.85, 1.1, 14)
        parent = shapely.Polygon(np.c_[reach * np.cos(angles), reach * np.sin(angles)])
        lines = _roads(roads, radius, rng)
        try:
            buildings = _buildings(n_buildings, parent, lines, radius, rng)
            break
        except ValueError:
            if grow == 3.0:
                raise
    if rural:
        households = rng.choice([1, 1, 1, 2, 2, 3], len(buildings))
    else:
        households = np.clip(np.round(rng.lognormal(1.6, 0.8, len(buildings))), 1, 60).astype(int)
    site_geoms = _sites(sites, parent, lines, radius, rng)
    to_lonlat = _to_lonlat(origin)
    serial = [f"{code}B{i + 1:05d}" for i in range(len(buildings))]
    return SyntheticCommunity(
        parent=gpd.GeoDataFrame({"code": [code], "name": ["示范社区"],
                                 "kind": ["rural" if rural else "urban"]},
                                geometry=to_lonlat([parent]), crs=4326),
        buildings=gpd.GeoDataFrame({"code": serial, "households": households},
                                   geometry=to_lonlat(buildings), crs=4326),
        barriers=gpd.GeoDataFrame({"kind": ["road"] * len(lines)}, geometry=to_lonlat(lines),
                                  crs=4326),
        dedicated=gpd.GeoDataFrame({"name": [f"site {i + 1}" for i in range(len(site_geoms))]},
                                   geometry=to_lonlat(site_geoms), crs=4326),
    )


def _roads(n: int, radius: float, rng) -> list:
    """Straight roads across the parent, alternately east–west and north–south-ish."""
    out = []
    for i in range(n):
        theta = (i % 2) * math.pi / 2 + rng.uniform(-0.25, 0.25)
        offset = rng.uniform(-0.6, 0.6) * radius
        d = np.array([math.cos(theta), math.sin(theta)])
        normal = np.array([-d[1], d[0]])
        mid = normal * offset
        out.append(shapely.LineString([mid - 2 * radius * d, mid + 2 * radius * d]))
    return out


def _buildings(n: int, parent, roads, radius: float, rng) -> np.ndarray:
    steps = np.arange(-radius, radius + _SPACING, _SPACING)
    x, y = (a.ravel() for a in np.meshgrid(steps, steps))
    x = x + rng.uniform(-4, 4, len(x))
    y = y + rng.uniform(-4, 4, len(y))
    w, h = rng.uniform(8, 20, len(x)), rng.uniform(7, 14, len(x))
    theta = rng.uniform(-0.3, 0.3, len(x))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float) / 2
    cx = corners[:, 0] * w[:, None]
    cy = corners[:, 1] * h[:, None]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    rings = np.stack([x[:, None] + cx * c - cy * s, y[:, None] + cx * s + cy * c], axis=-1)
    geoms = shapely.polygons(rings)
    # Clear of the parent's edge and of the roads (6 m carriageway each side of the line).
    keep = shapely.contains(shapely.buffer(parent, -3), geoms)
    if roads:
        keep &= ~shapely.intersects(geoms, shapely.buffer(shapely.union_all(roads), 6))
    geoms = geoms[keep]
    if len(geoms) < n:
        raise ValueError(f"only {len(geoms)} building slots for {n} buildings")
    return geoms[np.sort(rng.choice(len(geoms), n, replace=False))]


def _sites(n: int, parent, roads, radius: float, rng) -> list:
    out: list = []
    road_zone = shapely.buffer(shapely.union_all(roads), 6) if roads else shapely.Polygon()
    for _ in range(200):
        if len(out) == n:
            break
        cx, cy = rng.uniform(-0.6, 0.6, 2) * radius
        site = shapely.box(cx - 60, cy - 45, cx + 60, cy + 45)
        if parent.contains(site) and not site.intersects(road_zone) \
                and not any(site.intersects(o) for o in out):
            out.append(site)
    return out


def _to_lonlat(origin):
    laea = pyproj.CRS.from_proj4(f"+proj=laea +lat_0={origin[1]} +lon_0={origin[0]} +ellps=WGS84 "
                                 "+units=m +no_defs")
    transformer = pyproj.Transformer.from_crs(laea, 4326, always_xy=True)

    def convert(geoms):
        return shapely.transform(np.asarray(geoms, dtype=object),
                                 lambda xy: np.c_[transformer.transform(xy[:, 0], xy[:, 1])])

    return convert


_NOT_HOMES = {"commercial", "hotel", "bank", "retail", "attraction", "restaurant", "office",
              "transportation", "industrial", "church", "school", "hospital", "government",
              "public", "train_station", "university", "museum", "theatre", "civic", "kiosk"}


def osm_households(buildings: gpd.GeoDataFrame, *, seed: int = 0) -> gpd.GeoDataFrame:
    """OSM footprints (Tilezen layer ``buildings``) as buildings with estimated ``households``.

    Polygons are dissolved by OSM ``id`` (tiles cut them); households ≈ floor area × 0.5 / 100 m²,
    floors from ``height`` / 3 m (capped at 30) or 3–8 when unknown, ±30% noise, seeded; shops,
    offices, hotels and the like (``kind_detail``) hold none.
    """
    rng = np.random.default_rng(seed)
    poly = buildings[buildings.geom_type.isin(["Polygon", "MultiPolygon"])]
    keep = [c for c in ("id", "kind", "kind_detail", "height") if c in poly.columns]
    merged = poly[keep + ["geometry"]].dissolve(by="id", aggfunc="first").reset_index()
    area = merged.to_crs(merged.estimate_utm_crs()).area.to_numpy()
    height = pd.to_numeric(merged.get("height"), errors="coerce").to_numpy(dtype=float)
    floors = np.where(height > 0, np.clip(np.round(height / 3), 1, 30),
                      rng.integers(3, 9, len(merged)))
    homes = ~merged.get("kind_detail", pd.Series(index=merged.index)).isin(_NOT_HOMES).to_numpy()
    households = np.round(area * floors * 0.5 / 100 * rng.uniform(0.7, 1.3, len(merged)))
    merged["households"] = np.where(homes, np.maximum(households, 1), 0).astype(int)
    merged["code"] = [f"OSM{i}" for i in merged["id"]]
    return merged[["code", "households", "geometry"]]
