"""Benchmark: auto-partition (gridmap.planning.partition_community) against spopt's max-p, same run.

    python benchmarks/bench_partition.py                    # Bund OSM buildings, 1k and 3k synthetic
    python benchmarks/bench_partition.py --sizes 1000 --maxp-construction 3

For each community it prints gridmap's time (everything: projection, blocks, Voronoi faces,
balancing, grid polygons, codes) and spopt's ``MaxPHeuristic`` time (the solve alone, given the
same contiguity weights: gridmap's own unit graph, buildings adjacent when their cells touch) with
the households of each building as the threshold variable (threshold = the band's low end, 150)
and the building's position as the attribute. Quality for both: share of grids inside 200 ± 50
and the mean |households − 200|. Targets: 3,000 buildings under 5 s; ≥ 95% in the band where the
buildings allow it; ≥ 10× faster than max-p with a smaller deviation.

Needs the ``bench`` extra (``pip install -e .[bench]``: spopt, libpysal).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np

from gridmap.planning import make_community, partition_community
from gridmap.planning import partition_faces as pf
from gridmap.planning.partition_build import face_graph, merge_overlapping
from gridmap.planning.partition_synth import osm_households
from gridmap.validate import validate_coverage

BUND = Path(__file__).resolve().parents[2] / "shared/data/shanghai_bund_osm/shanghai_bund_tilezen_osm.gpkg"
TARGET, TOL = 200.0, 50.0


def bund():
    blds = osm_households(gpd.read_file(BUND, layer="buildings"), seed=0)
    roads = gpd.read_file(BUND, layer="roads")
    roads = roads[roads["kind"].isin(["major_road", "minor_road"])
                  & (roads["kind_detail"] != "service") & roads["is_tunnel"].isna()]
    hull = blds.to_crs(32651).union_all().convex_hull.buffer(30)
    parent = gpd.GeoDataFrame({"code": ["310101002003"]}, geometry=[hull], crs=32651).to_crs(4326)
    return parent, blds, roads


def unit_graph(parent, blds, roads):
    """gridmap's unit graph (same steps as the partition) for max-p's weights."""
    from gridmap.crs import local_metric_crs

    crs = local_metric_crs(parent.geometry.values)
    p = parent.to_crs(crs).geometry.iat[0]
    geoms = np.asarray(blds.to_crs(crs).geometry.values, dtype=object)
    units, _, hh = merge_overlapping(geoms, blds["households"].to_numpy(float), [])
    blocks = pf.split_blocks(p, np.asarray(roads.to_crs(crs).geometry.values, dtype=object))
    unit_block, _ = pf.assign_to(units, blocks)
    sites = np.empty(0, dtype=object)
    faces = pf.build_faces(p, units, unit_block, blocks, sites)
    graph, _, _ = face_graph(faces, units, hh, unit_block, np.full(len(units), -1), 1e12, 0)
    return graph


def run_maxp(graph, construction: int, sa: int):
    from libpysal.weights import W
    from spopt.region import MaxPHeuristic

    n = len(graph.weight)
    neighbours = {i: sorted(graph.neighbours[i]) for i in range(n)}
    w = W(neighbours, silence_warnings=True)
    frame = gpd.GeoDataFrame({"households": graph.weight, "x": graph.xy[:, 0],
                              "y": graph.xy[:, 1]})
    start = time.perf_counter()
    model = MaxPHeuristic(frame, w, ["x", "y"], "households", TARGET - TOL, top_n=2,
                          max_iterations_construction=construction, max_iterations_sa=sa)
    model.solve()
    elapsed = time.perf_counter() - start
    labels = np.asarray(model.labels_)
    hh = np.array([graph.weight[labels == r].sum() for r in np.unique(labels)])
    return elapsed, hh


def quality(hh: np.ndarray) -> tuple[float, float]:
    inside = (hh >= TARGET - TOL) & (hh <= TARGET + TOL)
    return float(inside.mean()), float(np.abs(hh - TARGET).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 3000])
    parser.add_argument("--maxp-construction", type=int, default=99,
                        help="spopt max_iterations_construction (its default: 99)")
    parser.add_argument("--maxp-sa", type=int, default=10, help="spopt max_iterations_sa (default 10)")
    parser.add_argument("--maxp-up-to", type=int, default=3000, help="skip max-p above this many units")
    args = parser.parse_args()
    cases = []
    if BUND.exists():
        cases.append(("Bund OSM (real)",) + bund())
    else:
        print(f"skipping the Bund: {BUND} is not here")
    for n in args.sizes:
        com = make_community(n, seed=n)
        cases.append((f"synthetic {n:,}", com.parent, com.buildings, com.barriers))
    rows = []
    for name, parent, blds, roads in cases:
        start = time.perf_counter()
        grids, report = partition_community(parent, blds, barriers=roads)
        ours_t = time.perf_counter() - start
        problems = validate_coverage(grids, parents=parent, buildings=blds).by_type()
        exact = not {"gap", "overlap", "outside_parent", "split_building", "invalid_geometry"} \
            & set(problems)
        hh = grids["households"].to_numpy(float)
        towers = sum("households is larger than the band" in o["reason"] for o in report.outside)
        allowed = report.in_band / max(report.basic - towers, 1)
        share, dev = quality(hh)
        graph = unit_graph(parent, blds, roads)
        if len(graph.weight) <= args.maxp_up_to:
            maxp_t, maxp_hh = run_maxp(graph, args.maxp_construction, args.maxp_sa)
            m_share, m_dev = quality(maxp_hh)
            maxp = (f"{maxp_t:8.2f} {len(maxp_hh):6d} {m_share:7.1%} {m_dev:7.1f} "
                    f"{maxp_t / ours_t:7.1f}x")
        else:
            maxp = "   (skipped: --maxp-up-to)"
        rows.append(f"{name:18s} {len(blds):6d} {len(graph.weight):6d} | {ours_t:6.2f} {len(grids):6d} "
                    f"{share:7.1%} {allowed:8.1%} {dev:7.1f} {'yes' if exact else 'NO':>5s} | {maxp}")
        print(rows[-1], flush=True)
    print()
    print(f"max-p: spopt MaxPHeuristic, threshold households >= {TARGET - TOL:g}, attrs x,y, "
          f"max_iterations_construction={args.maxp_construction}, max_iterations_sa={args.maxp_sa}")
    header = (f"{'community':18s} {'bldgs':>6s} {'units':>6s} | {'ours s':>6s} {'grids':>6s} "
              f"{'in band':>7s} {'allowed':>8s} {'|dev|':>7s} {'exact':>5s} | "
              f"{'maxp s':>8s} {'grids':>6s} {'in band':>7s} {'|dev|':>7s} {'ratio':>8s}")
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print("in band: share of all grids in 200 ± 50; allowed: share of the grids holding no building "
          "larger than the band; |dev|: mean |households − 200|; exact: validate_coverage finds no "
          "gap/overlap/outside/split; ratio: max-p time / ours")


if __name__ == "__main__":
    sys.exit(main())
