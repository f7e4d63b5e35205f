"""Benchmark: full validation (grids + communities + buildings) against its peers, same run.

    python benchmarks/bench_validate.py                       # real data, then 10k and 100k grids
    python benchmarks/bench_validate.py --sizes 10000 100000 1000000 --peers-up-to 100000

For each synthetic city (gridmap.synth, planted problems known) it prints:
- gridmap's full validation time, and its ratio to ``shapely.coverage_invalid_edges`` alone on the
  same grids (target: at most 3x at 100k grids with 150k buildings);
- the straightforward geopandas approach and the same checks as PostGIS SQL (loading not timed),
  with gridmap's speed-up over each (target: at least 4x over geopandas);
- whether every planted problem was found and none invented, and the peak memory of the process
  (each size runs in a process of its own; target: 1M grids within 8 GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import (geopandas_checks, load_postgis, postgis_checks, summarise,  # noqa: E402
                   throwaway_postgis, timed)

from gridmap.config import ValidationOptions  # noqa: E402
from gridmap.crs import to_metric  # noqa: E402
from gridmap.synth import PLANT_TYPES, make_city, problem_key  # noqa: E402
from gridmap.validate import validate_coverage  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHECKED = set(PLANT_TYPES) | {"split_building"}


def one_size(n: int, peers: bool, postgis_url: str | None) -> dict:
    city, t_make = timed(make_city, n, seed=1)
    metric, _ = to_metric(city.grid)
    geoms = np.asarray(metric.geometry.values)
    _, t_edges = timed(shapely.coverage_invalid_edges, geoms)
    report, t_full = timed(validate_coverage, city.grid, parents=city.community,
                           buildings=city.building)
    found = {problem_key(p.type, p.codes) for p in report.problems if p.type in CHECKED}
    expected = city.expected()
    row = {
        "grids": len(city.grid), "buildings": len(city.building), "make_s": t_make,
        "edges_s": t_edges, "gridmap_s": t_full,
        "missed": sorted(map(str, expected - found)), "invented": sorted(map(str, found - expected)),
        "planted": len(expected), "other": report.by_type(),
    }
    ours = summarise(report)
    if peers:
        crs = metric.crs
        theirs, row["geopandas_s"] = timed(geopandas_checks, city.grid, city.community,
                                           city.building, crs)
        row["geopandas_agrees"] = theirs == ours
        if theirs != ours:
            row["geopandas_counts"], row["gridmap_counts"] = theirs, ours
        if postgis_url:
            import psycopg2

            conn = psycopg2.connect(postgis_url)
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.commit()
            load_postgis(conn, city.grid, city.community, city.building, crs)
            theirs, row["postgis_s"] = timed(postgis_checks, conn)
            row["postgis_agrees"] = theirs == ours
            if theirs != ours:
                row["postgis_counts"], row["gridmap_counts"] = theirs, ours
            conn.close()
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return row


def real_data() -> list[dict]:
    """The real coverages: gridmap's full check against coverage_invalid_edges alone."""
    from gridmap.io import read_layer

    rows = []
    sets = [
        ("providence_blocks", "providence_blocks/Providence_blocks.zip", {}),
        ("ri_precincts", "ri_precincts/RI_precincts.zip", {}),
        ("shanghai_streets", "shanghai_streets/shanghai_street.shp", {"crs": "wgs84"}),
        ("hongkong_dcca", "hongkong_dcca_2001/dcca.shp", {"crs": "EPSG:2326"}),
    ]
    for name, rel, kw in sets:
        if not (DATA / rel).exists():
            continue
        layer = read_layer(DATA / rel, **kw)
        metric, _ = to_metric(layer)
        geoms = shapely.make_valid(np.asarray(metric.geometry.values))
        _, t_edges = timed(shapely.coverage_invalid_edges, geoms)
        report, t_full = timed(validate_coverage, layer,
                               options=ValidationOptions(check_codes=False))
        rows.append({"data": name, "features": len(layer), "edges_s": t_edges,
                     "gridmap_s": t_full, "problems": len(report.problems)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--peers-up-to", type=int, default=100_000,
                    help="run the geopandas and PostGIS peers up to this many grids")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--postgis", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.one <= args.peers_up_to, args.postgis)))
        return
    print("real data: gridmap full validation vs coverage_invalid_edges alone")
    for r in real_data():
        print(f"  {r['data']:<18} {r['features']:>6} features  gridmap {r['gridmap_s']:6.2f} s"
              f"  edges {r['edges_s']:6.2f} s  ratio {r['gridmap_s'] / r['edges_s']:5.2f}x")
    with throwaway_postgis() as url:
        if url is None:
            print("PostGIS: not installed here, SQL peer skipped")
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--one", str(n), "--peers-up-to",
                   str(args.peers_up_to)] + (["--postgis", url] if url else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{n:>9,} grids: FAILED\n{done.stderr[-2000:]}")
                continue
            _print(json.loads(done.stdout.strip().splitlines()[-1]))


def _print(r: dict) -> None:
    print(f"\n{r['grids']:,} grids, {r['buildings']:,} buildings (city built in {r['make_s']:.1f} s)")
    print(f"  gridmap full validation   {r['gridmap_s']:8.2f} s   peak RSS {r['peak_rss_gb']:.2f} GB")
    print(f"  coverage_invalid_edges    {r['edges_s']:8.2f} s   gridmap / edges = "
          f"{r['gridmap_s'] / r['edges_s']:.2f}x (target <= 3x)")
    if "geopandas_s" in r:
        print(f"  geopandas approach        {r['geopandas_s']:8.2f} s   gridmap is "
              f"{r['geopandas_s'] / r['gridmap_s']:.1f}x faster (target >= 4x); "
              f"same findings: {r['geopandas_agrees']}")
    if "postgis_s" in r:
        print(f"  PostGIS SQL               {r['postgis_s']:8.2f} s   gridmap is "
              f"{r['postgis_s'] / r['gridmap_s']:.1f}x faster; same findings: {r['postgis_agrees']}")
    for key in ("geopandas_counts", "postgis_counts", "gridmap_counts"):
        if key in r:
            print(f"    {key}: {r[key]}")
    verdict = "all found, none invented" if not r["missed"] and not r["invented"] else "MISMATCH"
    print(f"  planted problems: {r['planted']} — {verdict}")
    for k in ("missed", "invented"):
        if r[k]:
            print(f"    {k}: {r[k][:10]}")
    print(f"  report by type: {r['other']}")


if __name__ == "__main__":
    main()
