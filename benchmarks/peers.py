"""The peers gridmap's validation is measured against, doing the same checks their own way.

- ``geopandas_checks``: the straightforward geopandas approach — sjoin + intersection for overlaps,
  dissolve + difference for gaps, difference against the parent for overhangs, overlay for split
  buildings.
- ``postgis_checks``: the same checks as PostGIS SQL (GiST-indexed joins, ST_Union per parent).

Both return the same keys as :func:`summarise` does for a gridmap report, so the benchmark can check
that every peer finds what gridmap finds.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

BUILDING_SHARE = 0.02
MIN_AREA = 1.0  # m²: what counts as a real overlap, gap or overhang in the comparison


def summarise(report) -> dict[str, int]:
    """Counts per type of the problems every approach looks for (gridmap's errors)."""
    keys = ("overlap", "gap", "outside_parent", "split_building")
    return {k: sum(1 for p in report.problems if p.type == k and p.severity == "error"
                   and (p.area_m2 or 0) >= MIN_AREA) for k in keys}


def geopandas_checks(grids: gpd.GeoDataFrame, parents: gpd.GeoDataFrame,
                     buildings: gpd.GeoDataFrame, crs) -> dict[str, int]:
    g = grids[["code", "parent_code", "geometry"]].to_crs(crs).reset_index(drop=True)
    p = parents[["code", "geometry"]].to_crs(crs).reset_index(drop=True)
    b = buildings[["code", "geometry"]].to_crs(crs).reset_index(drop=True)
    g["geometry"] = g.make_valid(method="structure", keep_collapsed=False)
    # Overlaps: every intersecting pair, then the area of each intersection.
    pairs = gpd.sjoin(g, g, predicate="intersects")
    pairs = pairs[pairs.index < pairs["index_right"]]
    inter = g.geometry.loc[pairs.index].reset_index(drop=True).intersection(
        g.geometry.loc[pairs["index_right"]].reset_index(drop=True))
    overlaps = int((inter.area >= MIN_AREA).sum())
    # Gaps: each parent minus the dissolved union of its children, exploded into parts.
    union = g.dissolve("parent_code")
    joined = p.merge(union[["geometry"]], left_on="code", right_index=True, how="left",
                     suffixes=("", "_children"))
    covered = gpd.GeoSeries(joined["geometry_children"], crs=crs)
    holes = gpd.GeoSeries(joined.geometry, crs=crs).difference(covered).explode()
    gaps = int((holes.area >= MIN_AREA).sum())
    # Overhangs: each child minus its parent.
    own = g.merge(p, left_on="parent_code", right_on="code", suffixes=("", "_parent"))
    over = gpd.GeoSeries(own["geometry"], crs=crs).difference(
        gpd.GeoSeries(own["geometry_parent"], crs=crs))
    outside = int((over.area >= MIN_AREA).sum())
    # Split buildings: overlay, then buildings with more than one substantial piece.
    b["area"] = b.area
    pieces = gpd.overlay(b, g, how="intersection", keep_geom_type=True)
    share = pieces.area / pieces["area"]
    counted = pieces[share > BUILDING_SHARE].groupby("code_1").size()
    return {"overlap": overlaps, "gap": gaps, "outside_parent": outside,
            "split_building": int((counted > 1).sum())}


# -- PostGIS ------------------------------------------------------------------------------------

_CHECKS = {
    "overlap": """
        SELECT count(*) FROM grid a JOIN grid b ON a.id < b.id AND a.geom && b.geom
         AND ST_Relate(a.geom, b.geom, '2********')
         AND ST_Area(ST_Intersection(a.geom, b.geom)) >= %(min)s""",
    "gap": """
        SELECT count(*) FROM (
          SELECT (ST_Dump(ST_Difference(p.geom, ST_Union(g.geom)))).geom AS part
            FROM community p JOIN grid g ON g.parent_code = p.code GROUP BY p.code, p.geom) d
         WHERE ST_Area(part) >= %(min)s""",
    "outside_parent": """
        SELECT count(*) FROM grid g JOIN community p ON g.parent_code = p.code
         WHERE NOT ST_CoveredBy(g.geom, p.geom)
           AND ST_Area(ST_Difference(g.geom, p.geom)) >= %(min)s""",
    "split_building": """
        SELECT count(*) FROM (
          SELECT b.id FROM building b JOIN grid g ON b.geom && g.geom AND ST_Intersects(b.geom, g.geom)
           WHERE ST_Area(ST_Intersection(b.geom, g.geom)) > %(share)s * ST_Area(b.geom)
           GROUP BY b.id HAVING count(*) > 1) s""",
}


def load_postgis(conn, grids, parents, buildings, crs) -> None:
    """Load the layers (in the metric CRS, SRID 0) with GiST indexes; not part of the timing."""
    with conn.cursor() as cur:
        for name, frame, cols in (("grid", grids, ("code", "parent_code")),
                                  ("community", parents, ("code",)),
                                  ("building", buildings, ("code",))):
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, "
                        + "".join(f"{c} text, " for c in cols) + "geom geometry)")
            metric = frame.to_crs(crs)
            table = pd.DataFrame({c: metric[c].astype(str) for c in cols})
            table["geom"] = shapely.to_wkb(metric.geometry.values, hex=True)
            buf = io.StringIO()
            table.to_csv(buf, sep="\t", header=False, index=False)
            buf.seek(0)
            cur.copy_expert(f"COPY {name} ({', '.join(cols)}, geom) FROM STDIN", buf)
            cur.execute(f"CREATE INDEX ON {name} USING gist (geom)")
            if "parent_code" in cols:
                cur.execute(f"CREATE INDEX ON {name} (parent_code)")
            cur.execute(f"CREATE INDEX ON {name} (code)")
            cur.execute(f"UPDATE {name} SET geom = ST_MakeValid(geom, 'method=structure') WHERE NOT ST_IsValid(geom)")
            cur.execute(f"ANALYZE {name}")
    conn.commit()


def postgis_checks(conn) -> dict[str, int]:
    out = {}
    with conn.cursor() as cur:
        for kind, sql in _CHECKS.items():
            cur.execute(sql, {"min": MIN_AREA, "share": BUILDING_SHARE})
            out[kind] = int(cur.fetchone()[0])
    return out


@contextmanager
def throwaway_postgis():
    """A PostgreSQL + PostGIS cluster of our own on 127.0.0.1, removed afterwards.

    Yields a connection URL, or None when no PostgreSQL binaries with PostGIS are installed.
    Uses $GRIDMAP_BENCH_POSTGIS when set instead of starting one.
    """
    if os.environ.get("GRIDMAP_BENCH_POSTGIS"):
        yield os.environ["GRIDMAP_BENCH_POSTGIS"]
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins or not list(Path("/usr/share/postgresql").glob("*/extension/postgis.control")):
        yield None
        return
    bindir = bins[-1].parent
    root = Path(tempfile.mkdtemp(prefix="gridmap-pg-"))
    as_postgres = os.geteuid() == 0  # initdb refuses to run as root
    if as_postgres:
        shutil.chown(root, "postgres")
    port = str(54000 + os.getpid() % 1000)

    def run(*args):
        cmd = [str(bindir / args[0]), *args[1:]]
        if as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    try:
        run("initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres")
        run("pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
            f"-h 127.0.0.1 -p {port} -k {root}", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run((["runuser", "-u", "postgres", "--"] if as_postgres else [])
                       + [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
                          "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


__all__ = ["summarise", "geopandas_checks", "load_postgis", "postgis_checks",
           "throwaway_postgis", "timed"]
