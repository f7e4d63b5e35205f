"""GET /lookup over HTTP: gridmap's service against a FastAPI endpoint that asks PostGIS per request.

    python benchmarks/bench_http.py [--grids 100000] [--duration 20] [--connections 32]
                                    [--threads 2] [--points 10000] [--loadgen auto|wrk|python]
                                    [--no-postgis]

1. Builds a GeoPackage store (temp dir) holding ``make_city(grids, seed=1, plant={})`` (clean:
   the default plants repeated codes, which a store refuses) as one published
   version, launches ``python -m gridmap.cli serve --store PATH --port P`` and measures start-up:
   the time until the first ``/lookup`` answers 200, and the server's RSS then (VmRSS).
2. Starts a throwaway PostgreSQL + PostGIS cluster, loads the same grids (code, name, worker,
   geometry in EPSG:4326) with a GiST index, and runs the peer — a minimal FastAPI app defined in
   this file, served by uvicorn with the same settings as ``gridmap serve`` (one process,
   ``log_level="info"``, uvicorn's default loop/http choice) — whose ``/lookup`` runs one
   ``ST_Intersects`` query per request through a psycopg2 pool (404 when no grid).
3. Loads both, one after the other, with the same parameters: ``wrk -t2 -c32 -d20s --latency`` and
   a Lua script walking a fixed list of ~10k random points in the city's bounding box (so every
   request differs; points outside every grid are 404 on both sides). A short warm-up run precedes
   each measured run. Falls back to a bounded asyncio load generator when wrk is missing.

Prints requests/s, p50 and p99 for both, the ratio, and the targets: gridmap ≥ 2× the peer's
throughput, p99 < 10 ms at 32 connections, ready within 5 s. The load generator and the server
share the machine's cores (and PostgreSQL too, for the peer), which the output says.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

PEER_SQL = ("SELECT code, name, worker FROM grid "
            "WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s,%s),4326)) ORDER BY code LIMIT 1")
TARGET_RATIO, TARGET_P99_MS, TARGET_READY_S = 2.0, 10.0, 5.0


# -- the peer: FastAPI + psycopg2 pool + PostGIS, run as its own process ------------------------

def peer_app(dsn: str, pool_size: int):
    from fastapi import FastAPI, Query
    from fastapi.responses import JSONResponse
    from psycopg2.pool import ThreadedConnectionPool

    # minconn = maxconn: psycopg2's pool closes a returned connection when minconn are idle
    # already, so a smaller minconn reconnects (a new backend) per request under concurrency.
    pool = ThreadedConnectionPool(pool_size, pool_size, dsn)
    for conn in pool._pool:
        conn.autocommit = True
    app = FastAPI(title="postgis-peer")

    @app.get("/lookup")
    def lookup(lon: float = Query(...), lat: float = Query(...)) -> dict:
        conn = pool.getconn()
        try:
            with conn.cursor() as cur:
                cur.execute(PEER_SQL, (lon, lat))
                row = cur.fetchone()
        finally:
            pool.putconn(conn)
        if row is None:
            return JSONResponse({"detail": f"no grid at {lon:.4f}, {lat:.4f}"}, status_code=404)
        return {"grid": {"code": row[0], "name": row[1], "worker": row[2]}}

    return app


def run_peer(dsn: str, host: str, port: int, pool_size: int) -> None:
    import uvicorn

    # The same call as ``gridmap serve`` makes (gridmap/cli.py).
    uvicorn.run(peer_app(dsn, pool_size), host=host, port=port, log_level="info")


# -- helpers ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, path: str, started: float,
               limit: float = 120.0) -> float:
    """Seconds from ``started`` until ``path`` answers 200 (polling every 10 ms)."""
    while time.perf_counter() - started < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            status, body = get(port, path, timeout=2.0)
            if status == 200:
                return time.perf_counter() - started
            if status >= 500:
                raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no 200 from {path} within {limit:.0f} s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sample_points(grids, n: int, seed: int = 7):
    import numpy as np

    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = grids.total_bounds
    return rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)


def paths_for(lon, lat) -> list[str]:
    return [f"/lookup?lon={x:.7f}&lat={y:.7f}" for x, y in zip(lon, lat)]


# -- load generators ----------------------------------------------------------------------------

_LUA = """
local paths = {%(paths)s}
local n = #paths
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  idx = ((id or 0) * 4999) %% n
end
function request()
  idx = idx + 1
  if idx > n then idx = 1 end
  return wrk.format("GET", paths[idx])
end
function done(summary, latency, requests)
  io.write(string.format(
    "BENCHJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"status_errors\\": %%d, " ..
    "\\"socket_errors\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"max_us\\": %%d, \\"mean_us\\": %%f}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def write_lua(tmp: Path, paths: list[str]) -> Path:
    script = tmp / "points.lua"
    script.write_text(_LUA % {"paths": ",".join(f'"{p}"' for p in paths)})
    return script


def _ms(text: str) -> float:
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def parse_wrk(out: str) -> dict:
    """requests/s, p50/p99 (ms), errors from wrk's text output and the Lua ``done`` line."""
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("BENCHJSON "):
            j = json.loads(line[len("BENCHJSON "):])
            res.update(requests=j["requests"], p50_ms=j["p50_us"] / 1e3, p90_ms=j["p90_us"] / 1e3,
                       p99_ms=j["p99_us"] / 1e3, max_ms=j["max_us"] / 1e3,
                       non_2xx=j["status_errors"], socket_errors=j["socket_errors"],
                       rps=j["requests"] / (j["duration_us"] / 1e6))
        elif line.startswith("Requests/sec:"):
            res.setdefault("rps", float(line.split()[1]))
        elif line.startswith("50%"):
            res.setdefault("p50_ms", _ms(line.split()[1]))
        elif line.startswith("99%"):
            res.setdefault("p99_ms", _ms(line.split()[1]))
        elif line.startswith("Non-2xx or 3xx responses:"):
            res.setdefault("non_2xx", int(line.split(":")[1]))
    if "rps" not in res or "p99_ms" not in res:
        raise RuntimeError(f"could not parse wrk's output:\n{out}")
    return res


def run_wrk(port: int, script: Path, threads: int, connections: int, duration: int) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    return parse_wrk(done.stdout)


async def _client(port: int, paths: list[str], start: int, stop_at: float, budget: list[int],
                  lat: list[float], status: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            code = int(lines[0].split()[1])
            length = next(int(h.split(":", 1)[1]) for h in lines[1:]
                          if h.lower().startswith("content-length:"))
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            status[code] = status.get(code, 0) + 1
    finally:
        writer.close()


def run_python_load(port: int, paths: list[str], connections: int, duration: int,
                    max_requests: int = 2_000_000) -> dict:
    """Bounded asyncio load: ``connections`` keep-alive clients, until ``duration`` seconds pass
    or ``max_requests`` are sent. Much slower than wrk: it mostly measures itself."""
    import numpy as np

    lat, status, budget = [], {}, [max_requests]

    async def main():
        stop_at = time.perf_counter() + duration
        await asyncio.gather(*(_client(port, paths, k * 4999, stop_at, budget, lat, status)
                               for k in range(connections)))

    t0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - t0
    ms = np.asarray(lat) * 1e3
    return {"rps": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "requests": len(lat),
            "non_2xx": sum(v for k, v in status.items() if not 200 <= k < 400), "socket_errors": 0}


# -- the two sides ------------------------------------------------------------------------------

def build_store(path: Path, grids_n: int):
    from gridmap.store import open_store
    from gridmap.synth import make_city

    # plant={}: a clean city. The default plants problems for the validator to find, among them
    # repeated grid codes, which a store refuses (and which a published version never holds).
    city = make_city(grids_n, seed=1, plant={})
    store = open_store(str(path))
    store.write_draft({"district": city.district, "street": city.street,
                       "community": city.community, "grid": city.grid})
    store.publish(commit=True)
    store.close()
    return city


def load_peer_table(url: str, grids) -> None:
    import pandas as pd
    import psycopg2
    import shapely

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        cur.execute("DROP TABLE IF EXISTS grid")
        cur.execute("CREATE TABLE grid (id serial PRIMARY KEY, code text, name text, worker text, "
                    "geom geometry(Geometry, 4326))")
        table = pd.DataFrame({c: grids[c].astype(object).where(grids[c].notna(), None)
                              for c in ("code", "name", "worker")})
        table["geom"] = shapely.to_wkb(grids.geometry.values, hex=True, include_srid=True)
        buf = io.StringIO()
        table.to_csv(buf, sep="\t", header=False, index=False, na_rep="\\N")
        buf.seek(0)
        cur.copy_expert("COPY grid (code, name, worker, geom) FROM STDIN", buf)
        cur.execute("CREATE INDEX grid_geom ON grid USING gist (geom)")
        cur.execute("ANALYZE grid")
    conn.commit()
    conn.close()


def agreement(gport: int, pport: int, paths: list[str]) -> tuple[int, int]:
    """How many of ``paths`` get the same grid (or the same 404) from both sides."""
    same = 0
    for p in paths:
        gs, gb = get(gport, p)
        ps, pb = get(pport, p)
        gcode = json.loads(gb)["grid"]["code"] if gs == 200 else None
        pcode = json.loads(pb)["grid"]["code"] if ps == 200 else None
        same += (gs, gcode) == (ps, pcode)
    return same, len(paths)


def load(name: str, port: int, args, script: Path, paths: list[str]) -> dict:
    if args.loadgen == "wrk":
        run_wrk(port, script, args.threads, args.connections, args.warmup)
        res = run_wrk(port, script, args.threads, args.connections, args.duration)
    else:
        run_python_load(port, paths, args.connections, args.warmup)
        res = run_python_load(port, paths, args.connections, args.duration)
    print(f"  {name:8s} {res['rps']:9,.0f} req/s   p50 {res['p50_ms']:6.2f} ms   "
          f"p99 {res['p99_ms']:6.2f} ms   ({res.get('requests', 0):,} requests, "
          f"{res.get('non_2xx', 0):,} non-2xx, {res.get('socket_errors', 0)} socket errors)",
          flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grids", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--no-postgis", action="store_true")
    ap.add_argument("--keep-log", action="store_true", help="print the servers' log tails")
    # internal: run the PostGIS peer (the benchmark starts it as its own process)
    ap.add_argument("--peer-app", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dsn", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=int, default=32, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer_app:
        run_peer(args.dsn, "127.0.0.1", args.port, args.pool)
        return 0

    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    cores = os.cpu_count()
    import uvicorn

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        proto = "httptools"
    except ImportError:
        proto = "h11"
    print(f"machine: {cores} cores, shared by the load generator and the server under test "
          f"(and PostgreSQL, for the peer) — absolute figures are lower than on separate hosts")
    print(f"load generator: {args.loadgen}"
          + (f" (-t{args.threads} -c{args.connections} -d{args.duration}s --latency, "
             f"{args.warmup}s warm-up first)" if args.loadgen == "wrk" else
             f" (asyncio, {args.connections} keep-alive clients, {args.duration}s, "
             f"{args.warmup}s warm-up first; a Python client is itself the bottleneck)"))
    print(f"servers: uvicorn {uvicorn.__version__}, one process, loop={loop}, http={proto}, "
          f"log_level=info (as `gridmap serve` runs it)", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="gridmap-http-"))
    gproc = pproc = None
    logs = []
    try:
        t0 = time.perf_counter()
        store_path = tmp / "gridmap.gpkg"
        city = build_store(store_path, args.grids)
        grids = city.grid
        print(f"store: {len(grids):,} grids as one published version in {store_path.name} "
              f"({store_path.stat().st_size / 2**20:.0f} MiB, built in "
              f"{time.perf_counter() - t0:.1f} s)", flush=True)
        import shapely

        probe_pt = shapely.point_on_surface(grids.geometry.iloc[0])
        probe = f"/lookup?lon={probe_pt.x:.7f}&lat={probe_pt.y:.7f}"
        lon, lat = sample_points(grids, args.points)
        paths = paths_for(lon, lat)
        script = write_lua(tmp, paths)

        # 1. gridmap: start-up, then load
        gport = free_port()
        glog = open(tmp / "gridmap.log", "wb")
        logs.append(("gridmap", tmp / "gridmap.log"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDMAP_")}
        started = time.perf_counter()
        gproc = subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--store",
                                  str(store_path), "--port", str(gport)],
                                 cwd=ROOT, env=env, stdout=glog, stderr=subprocess.STDOUT)
        ready = wait_ready(gproc, gport, probe, started)
        g_rss, _ = rss_mb(gproc.pid)
        print(f"start-up: first 200 from /lookup after {ready:.2f} s; RSS {g_rss:.0f} MiB",
              flush=True)
        status, body = get(gport, paths[0])
        outside = sum(get(gport, p)[0] == 404 for p in paths[:500])
        print(f"points: {len(paths):,} random points in the bbox; {outside / 5:.1f} % of a "
              f"sample are in no grid (404 on both sides)", flush=True)

        print("load:", flush=True)
        gres = load("gridmap", gport, args, script, paths)
        g_rss_after, g_hwm = rss_mb(gproc.pid)

        # 2. the PostGIS peer
        pres = None
        same = None
        if not args.no_postgis:
            from peers import throwaway_postgis

            with throwaway_postgis() as url:
                if url is None:
                    print("  postgis  skipped: no PostgreSQL + PostGIS installed")
                else:
                    load_peer_table(url, grids)
                    pport = free_port()
                    plog = open(tmp / "peer.log", "wb")
                    logs.append(("peer", tmp / "peer.log"))
                    pproc = subprocess.Popen(
                        [sys.executable, str(Path(__file__).resolve()), "--peer-app", "--dsn", url,
                         "--port", str(pport), "--pool", str(args.connections)],
                        cwd=ROOT, env=env, stdout=plog, stderr=subprocess.STDOUT)
                    wait_ready(pproc, pport, probe, time.perf_counter())
                    same = agreement(gport, pport, paths[:300])
                    stop(gproc)  # only one server at a time under load
                    pres = load("postgis", pport, args, script, paths)
                    stop(pproc)

        # 3. summary
        ok = lambda b: "PASS" if b else "MISS"  # noqa: E731
        print()
        print("=" * 78)
        print(f"HTTP GET /lookup — {len(grids):,} grids, {len(paths):,} distinct points, "
              f"{args.connections} connections, {args.duration} s each, load by {args.loadgen}")
        print(f"{cores} cores shared by load generator + server (+ PostgreSQL for the peer)")
        print("-" * 78)
        print(f"{'':10s}{'req/s':>10s}{'p50 ms':>10s}{'p99 ms':>10s}{'non-2xx':>10s}")
        for name, res in (("gridmap", gres), ("postgis", pres)):
            if res:
                print(f"{name:10s}{res['rps']:10,.0f}{res['p50_ms']:10.2f}{res['p99_ms']:10.2f}"
                      f"{res.get('non_2xx', 0) / max(res.get('requests', 1), 1):10.1%}")
        print("-" * 78)
        print(f"start-up  {ready:.2f} s to first 200 (target < {TARGET_READY_S:.0f} s: "
              f"{ok(ready < TARGET_READY_S)}); RSS {g_rss:.0f} MiB at ready, "
              f"{g_rss_after:.0f} MiB after load (peak {g_hwm:.0f} MiB)")
        print(f"p99       {gres['p99_ms']:.2f} ms at {args.connections} connections "
              f"(target < {TARGET_P99_MS:.0f} ms: {ok(gres['p99_ms'] < TARGET_P99_MS)}); with "
              f"{args.connections} connections always busy the mean latency is connections / "
              f"throughput (Little's law), so p99 < {TARGET_P99_MS:.0f} ms needs more than "
              f"{args.connections / TARGET_P99_MS * 1e3:,.0f} req/s")
        if pres:
            ratio = gres["rps"] / pres["rps"]
            print(f"ratio     gridmap / PostGIS peer = {ratio:.2f}× throughput "
                  f"(target ≥ {TARGET_RATIO:.0f}×: {ok(ratio >= TARGET_RATIO)}); "
                  f"p99 {pres['p99_ms'] / gres['p99_ms']:.2f}× lower")
            print(f"agreement {same[0]}/{same[1]} sample points get the same grid (or 404) "
                  f"from both")
        print("=" * 78)
        if args.keep_log:
            for name, log in logs:
                print(f"--- {name} log (tail) ---")
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    finally:
        stop(gproc)
        stop(pproc)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
