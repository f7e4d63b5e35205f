"""Point → grid lookup against its peers, in the same run: geopandas.sjoin and a PostGIS join.

    python benchmarks/bench_lookup.py [--grids 100000] [--points 1000000] [--no-postgis]

For the synthetic city (``make_city``) and the demo: seeded random points in the city's bounding
box, ~3 % of them in no grid. Times LookupIndex.build; the batch path ``index.locate(...,
distances=False)`` (grid, near-boundary flag, neighbour, nearest grid for the points outside; edge
distances only where a shared edge may be near), the same with every distance
(``distances=True``), the lookup without anything but the grid (``_which``),
geopandas.sjoin(predicate="within") and PostGIS ``ST_Contains`` with a GiST index (loading not
timed). Checks that every peer gives the same grid and that both gridmap paths flag the same
points, and prints µs per point, the batch path's ratios against the targets (≥ 1.5× sjoin, ≥ 8×
PostGIS), and peak memory.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from peers import throwaway_postgis  # noqa: E402

from gridmap.io import read_layer  # noqa: E402
from gridmap.lookup import LookupIndex  # noqa: E402
from gridmap.synth import make_city  # noqa: E402

OUTSIDE_SHARE = 0.03


def sample_points(grids: gpd.GeoDataFrame, outline: gpd.GeoDataFrame, n: int, seed: int = 0):
    """`n` points in the bounding box, ~3 % in no grid, the rest in grids (rejection sampling)."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = grids.total_bounds
    union = shapely.union_all(outline.geometry.values)
    x, y = rng.uniform(minx, maxx, 4 * n), rng.uniform(miny, maxy, 4 * n)
    shapely.prepare(union)
    inside = shapely.contains_xy(union, x, y)
    k_out = int(OUTSIDE_SHARE * n)
    pick = np.r_[np.flatnonzero(~inside)[:k_out], np.flatnonzero(inside)[:n - k_out]]
    pick = rng.permutation(pick)
    return x[pick], y[pick]


def timed(fn, *args, repeat=1, **kwargs):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return out, best


def postgis_join(url, grids, x, y):
    """Load grids and points with COPY (not timed), then time the ST_Contains join."""
    import psycopg2

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        cur.execute("DROP TABLE IF EXISTS grid; DROP TABLE IF EXISTS pts")
        cur.execute("CREATE TABLE grid (id int, code text, geom geometry(Geometry, 4326))")
        cur.execute("CREATE TABLE pts (id int PRIMARY KEY, geom geometry(Point, 4326))")
        for table, frame in (
                ("grid", pd.DataFrame({"id": np.arange(len(grids)), "code": grids["code"],
                                       "geom": shapely.to_wkb(grids.geometry.values, hex=True,
                                                              include_srid=True)})),
                ("pts", pd.DataFrame({"id": np.arange(len(x)), "geom": shapely.to_wkb(
                    shapely.set_srid(shapely.points(x, y), 4326), hex=True, include_srid=True)}))):
            buf = io.StringIO()
            frame.to_csv(buf, sep="\t", header=False, index=False)
            buf.seek(0)
            cur.copy_expert(f"COPY {table} FROM STDIN", buf)
        cur.execute("CREATE INDEX ON grid USING gist (geom); CREATE INDEX ON pts USING gist (geom)")
        cur.execute("ANALYZE grid; ANALYZE pts")
    conn.commit()
    with conn.cursor() as cur:
        start = time.perf_counter()
        cur.execute("SELECT p.id, g.code FROM pts p JOIN grid g ON ST_Contains(g.geom, p.geom)")
        rows = cur.fetchall()
        elapsed = time.perf_counter() - start
    conn.close()
    return rows, elapsed


def lowest_code(n, point_idx, codes):
    """Per point, the lowest code among its matches (gridmap's rule for shared edges/overlaps)."""
    out = np.full(n, None, dtype=object)
    order = np.lexsort((codes.astype(str), point_idx))
    point_idx, codes = point_idx[order], codes[order]
    first = np.r_[True, point_idx[1:] != point_idx[:-1]]
    out[point_idx[first]] = codes[first]
    return out


def run(name, layers, n_points, url):
    grids = layers["grid"]
    x, y = sample_points(grids, layers["district"], n_points)
    print(f"\n== {name}: {len(grids):,} grids, {len(x):,} points ==")
    index, t_build = timed(LookupIndex.build, layers, version=1)
    loc, t_locate = timed(index.locate, x, y, distances=False, repeat=3)
    full, t_full = timed(index.locate, x, y, repeat=3)
    tracemalloc.start()  # memory measured apart: tracing slows every allocation
    LookupIndex.build(layers, version=1)
    _, build_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    index.locate(x, y, distances=False)
    _, locate_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    which, t_which = timed(index.which, x, y, repeat=3)
    ours = index.grid_codes(loc.grid)
    skipped = np.mean(np.isnan(loc.distance_to_edge_m) & (loc.grid >= 0))
    print(f"build            {t_build:8.2f} s   (peak {build_peak / 2**20:,.0f} MiB traced)")
    print(f"gridmap batch    {t_locate * 1e6 / len(x):8.3f} µs/point  (locate distances=False; peak "
          f"{locate_peak / 2**20:,.0f} MiB traced); {np.mean(loc.grid < 0):.1%} in no grid, "
          f"{np.mean(loc.near_boundary):.1%} near a boundary, {skipped:.1%} skip the distances")
    print(f"gridmap distances{t_full * 1e6 / len(x):8.3f} µs/point  (locate distances=True)")
    print(f"gridmap grid only{t_which * 1e6 / len(x):8.3f} µs/point  (index.which: the grid codes, "
          "what sjoin answers; gridmap lookup --no-near)")
    assert (which == loc.grid).all() and (full.grid == loc.grid).all()
    assert (full.near_boundary == loc.near_boundary).all() and (full.neighbour == loc.neighbour).all()

    pts = gpd.GeoDataFrame(geometry=shapely.points(x, y), crs=grids.crs)
    joined, t_sjoin = timed(gpd.sjoin, pts, grids[["code", "geometry"]], predicate="within")
    theirs = lowest_code(len(x), joined.index.to_numpy(), joined["code"].to_numpy(dtype=object))
    same = np.mean(ours == theirs)
    print(f"geopandas.sjoin  {t_sjoin * 1e6 / len(x):8.3f} µs/point  (same grid: {same:.6%})")
    print(f"  like for like (grid codes only): gridmap is {t_sjoin / t_which:.2f}× faster than sjoin "
          f"(target ≥ 1.5×); with near-boundary flags {t_sjoin / t_locate:.2f}×, "
          f"with distances {t_sjoin / t_full:.2f}×")
    if url:
        rows, t_pg = postgis_join(url, grids, x, y)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        pg = lowest_code(len(x), ids, np.array([r[1] for r in rows], dtype=object))
        print(f"PostGIS join     {t_pg * 1e6 / len(x):8.3f} µs/point  (same grid: "
              f"{np.mean(ours == pg):.6%})")
        print(f"  gridmap batch is {t_pg / t_locate:.2f}× faster than PostGIS (target ≥ 8×); "
              f"with distances {t_pg / t_full:.2f}×; grid only {t_pg / t_which:.2f}×")
    return {"build_s": t_build, "locate_us": t_locate * 1e6 / len(x),
            "locate_full_us": t_full * 1e6 / len(x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--no-postgis", action="store_true")
    args = parser.parse_args()
    city = make_city(args.grids, seed=0)
    demo = Path(__file__).resolve().parents[1] / "boundaries" / "demo.gpkg"
    demo_layers = {lv: read_layer(demo, layer=lv)
                   for lv in ("city", "district", "street", "community", "grid")}
    with (throwaway_postgis() if not args.no_postgis else _none()) as url:
        if url is None and not args.no_postgis:
            print("PostGIS: no PostgreSQL/PostGIS here, skipped")
        run(f"make_city({args.grids:,})", {"grid": city.grid, "community": city.community,
                                           "street": city.street, "district": city.district},
            args.points, url)
        run("demo (boundaries/demo.gpkg)", demo_layers, args.points, url)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of the whole run (incl. peers and the city): {peak:,.0f} MiB")


class _none:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
