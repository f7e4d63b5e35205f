"""A bounded load test of a real ``gridmap serve`` on 127.0.0.1: mixed traffic, zero errors, flat memory.

    python benchmarks/bench_load.py [--duration 60] [--clients 32] [--store gpkg|postgis]
                                    [--max-requests 400000] [--baseline 15] [--seed 7]
                                    [--without KIND,...] [--json OUT.json] [--server-log LOG]

1. Makes a fresh store holding the demo city (``boundaries/demo.gpkg``, as ``gridmap serve``
   makes on first run): a GeoPackage in a temporary folder, or — with ``--store postgis`` — a
   throwaway PostgreSQL + PostGIS cluster (``benchmarks/peers.py``; ``$GRIDMAP_BENCH_POSTGIS``
   names an existing database instead), then starts ``python -m gridmap.cli serve`` over it on a
   free port, as a subprocess.
2. Pre-flight (not timed): reads the incident categories from ``/open311/v2/services.json`` and
   checks a few plan previews (a west-east split through the middle of a grid, as
   ``tests/test_plans.py`` ``split_across`` does); the ones answering 200 are used in the run.
3. Baseline: ``--baseline`` seconds of lookup-only traffic (GET /lookup) at the same concurrency,
   for context (0 skips it).
4. The measured run: ``--duration`` seconds (and at most ``--max-requests`` requests) of mixed
   traffic from ``--clients`` concurrent clients (asyncio + httpx, one keep-alive connection
   each), every request drawn at random with these weights:

   ========================= ====== ==========================================================
   kind                      weight what
   ========================= ====== ==========================================================
   lookup                    45     GET /lookup at a point in or near a grid (¼ sent in GCJ-02)
   lookup_batch              8      POST /lookup, 100 points
   incident_report           8      POST /incidents with an Idempotency-Key (1 in 10 a replay
                                    of a key the client used before: expects 200, not 201)
   incident_read             10     GET /incidents?unit=<grid, community or street>&limit=50
   map_coverage              3      GET /maps/coverage?unit=<street>
   map_incidents             3      GET /maps/incidents?unit=<street or community>
   features                  20     GET /collections/grid/items?bbox=<~1 km box>&limit=100
   plan_preview              3      POST /plans/preview, a split across a grid
   ========================= ====== ==========================================================

   A request counts as an error when it fails to connect or time out, or answers a status its
   kind does not expect: 200 everywhere, except GET /lookup (200, or 404 for a point in no grid)
   and POST /incidents (201 for a new key, 200 for a replay).
5. The server's RSS (VmRSS in /proc/PID/status) is sampled every second throughout; for each
   phase of four minutes or more the trend of its second half (after warming up) is a
   least-squares line, in MB/min.

Prints, per kind: requests, errors, p50/p95/p99/max latency; requests/s overall; RSS at start,
max and end of each phase; a few of the error responses. Exits 1 when any error occurred.

No peer: the issue names none for load, so the lookup-only baseline is printed next to the mixed
run for context instead of a ratio against another service. The load generator, the server (and
PostgreSQL) share the machine's cores, so the numbers are a lower bound and noisy on a small box.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

WEIGHTS = {"lookup": 45, "lookup_batch": 8, "incident_report": 8, "incident_read": 10,
           "map_coverage": 3, "map_incidents": 3, "features": 20, "plan_preview": 3}
EXPECTED = {"lookup": {200, 404}, "incident_report": {200, 201}}
BATCH = 100
TIMEOUT_S = 60.0


# -- the server ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Routes that need an API key (access control is on, as in production); lookups and features
#: are the public map and go without one, on the service's fast path.
PUBLIC = {"lookup", "lookup_batch", "features"}
AUTH: dict[str, str] = {}


def admin_key(url: str) -> None:
    """An admin key for the run, issued straight into the store (as `gridmap keys create`)."""
    from gridmap.access import issue_key
    from gridmap.store import open_store

    store = open_store(url)
    token, _ = issue_key(store, "admin", None, "bench_load")
    with contextlib.suppress(Exception):
        store.close()
    AUTH["Authorization"] = f"Bearer {token}"


def demo_store(directory: Path) -> str:
    """A GeoPackage store in ``directory`` holding the demo city as published version 1."""
    from gridmap.demo import load_into
    from gridmap.store import open_store

    path = Path(directory) / "gridmap.gpkg"
    store = open_store(str(path))
    load_into(store)
    store.close()
    return str(path)


@contextlib.contextmanager
def store_url(kind: str, folder: Path):
    if kind == "gpkg":
        yield demo_store(folder)
        return
    from gridmap.demo import load_into
    from gridmap.store import open_store
    from peers import throwaway_postgis

    with throwaway_postgis() as url:
        if url is None:
            sys.exit("no PostgreSQL + PostGIS binaries here (/usr/lib/postgresql/*/bin); "
                     "set $GRIDMAP_BENCH_POSTGIS to a database URL")
        store = open_store(url)
        load_into(store)
        with contextlib.suppress(Exception):
            store.close()
        yield url


@contextlib.contextmanager
def serving(url: str, log: Path):
    """``gridmap serve`` over ``url`` on a free port; yields (base URL, server process)."""
    import httpx

    port = free_port()
    env = {**os.environ, "GRIDMAP_STORE__URL": str(url)}
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--port", str(port)],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            if proc.poll() is not None:
                sys.exit(f"gridmap serve exited ({proc.returncode}): "
                         f"{log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/conformance", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 60:
                proc.kill()
                sys.exit(f"gridmap serve did not start in 60 s: "
                         f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of ``pid`` once a second, tagged with the current phase."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.phase, self.samples = pid, "idle", []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), self.phase, value))
            self._halt.wait(1.0)

    def mark(self, phase: str):
        self.phase = phase
        value = rss_mb(self.pid)
        if value is not None:
            self.samples.append((time.monotonic(), phase, value))

    def stop(self):
        self._halt.set()
        self.join()

    def summary(self, phase: str) -> dict:
        taken = [(t, v) for t, p, v in self.samples if p == phase]
        if not taken:
            return {}
        times, values = np.array(taken).T
        found = {"start": float(values[0]), "max": float(values.max()), "end": float(values[-1]),
                 "samples": len(values), "every_10s": [float(v) for v in values[::10]]}
        # The trend once warmed up: a straight line through the second half of the samples —
        # over two minutes at least (over less, two pages drawn at once swing it either way).
        half = len(values) // 2
        if len(values) - half >= 10:
            found |= {"second_half_min": float(values[half:].min()),
                      "second_half_max": float(values[half:].max())}
        if len(values) - half >= 120:
            slope = np.polyfit(times[half:] - times[half], values[half:], 1)[0] * 60
            found["trend_mb_per_min"] = float(slope)
        return found


# -- what the clients send ----------------------------------------------------------------------

@dataclass
class Workload:
    points: np.ndarray            # (n, 2) lon/lat, WGS84: in or near grids, some in none
    inside: np.ndarray            # (m, 2) lon/lat inside grids (incidents)
    gcj: np.ndarray               # points converted to GCJ-02
    grid_codes: list[str]
    community_codes: list[str]
    street_codes: list[str]
    categories: list[str] = field(default_factory=list)
    previews: list[dict] = field(default_factory=list)


def make_workload(seed: int, n: int = 50_000) -> tuple[Workload, list[dict]]:
    """Points and codes from the demo data (the same file the store was made from), and the
    candidate plan previews: a split across each of a few grids."""
    import shapely

    from gridmap.crs import wgs84_to_gcj02
    from gridmap.demo import DEMO
    from gridmap.io import read_layer

    rng = np.random.default_rng(seed)
    grids = read_layer(DEMO, layer="grid").to_crs(4326)
    communities = read_layer(DEMO, layer="community")
    streets = read_layer(DEMO, layer="street")
    geoms = np.asarray(grids.geometry.values, dtype=object)
    bounds = shapely.bounds(geoms)
    # 80 %: uniform in the bounding box of a random grid (mostly in it, some in a neighbour);
    # 15 %: a grid's bounding box grown by ~300 m (near the edges, some outside the city);
    # 5 %: anywhere in the city's bounding box grown by ~2 km (many in no grid).
    which = rng.integers(0, len(geoms), n)
    b = bounds[which]
    grow = np.where(rng.random(n) < 0.15 / 0.95, 0.003, 0.0)[:, None] * np.array([-1, -1, 1, 1])
    b = b + grow
    pts = np.column_stack([rng.uniform(b[:, 0], b[:, 2]), rng.uniform(b[:, 1], b[:, 3])])
    far = rng.random(n) < 0.05
    minx, miny, maxx, maxy = grids.total_bounds + np.array([-0.02, -0.02, 0.02, 0.02])
    pts[far] = np.column_stack([rng.uniform(minx, maxx, far.sum()), rng.uniform(miny, maxy, far.sum())])
    inside = shapely.get_coordinates(shapely.point_on_surface(geoms))
    gx, gy = wgs84_to_gcj02(pts[:, 0], pts[:, 1])
    work = Workload(points=pts, inside=inside, gcj=np.column_stack([gx, gy]),
                    grid_codes=grids["code"].astype(str).tolist(),
                    community_codes=communities["code"].astype(str).tolist(),
                    street_codes=streets["code"].astype(str).tolist())
    # Plan previews: a west-east line through the middle of a grid, in several communities.
    candidates = []
    order = rng.permutation(len(grids))[:24]
    for i in order:
        row = grids.iloc[int(i)]
        x0, y0, x1, y1 = row.geometry.bounds
        y = (y0 + y1) / 2
        candidates.append({"unit": str(row["parent_code"]), "operation": {
            "op": "split", "grid": str(row["code"]),
            "line": {"type": "LineString", "coordinates": [[x0 - 1e-3, y], [x1 + 1e-3, y]]}}})
    return work, candidates


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    kinds_of_error: dict[tuple[str, str], list] = field(default_factory=dict)  # → [count, example]
    issued: int = 0
    elapsed: float = 0.0

    def record(self, kind: str, seconds: float, status: int | None, ok: bool, what: str = "",
               example: str = ""):
        """One answer; for an error, ``what`` (status and body, or the exception) groups it and
        ``example`` is the request that got it."""
        self.latencies.setdefault(kind, []).append(seconds)
        by = self.statuses.setdefault(kind, {})
        by[status or 0] = by.get(status or 0, 0) + 1
        if not ok:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            seen = self.kinds_of_error.setdefault((kind, what), [0, example])
            seen[0] += 1


class Client:
    """One simulated client: its own random stream and its own incident keys."""

    def __init__(self, http, work: Workload, seed: int, kinds: list[str], weights: list[int]):
        self.http, self.work = http, work
        self.rng = random.Random(seed)
        self.kinds, self.weights = kinds, weights
        self.keys: list[str] = []

    def _point(self):
        i = self.rng.randrange(len(self.work.points))
        return i, float(self.work.points[i, 0]), float(self.work.points[i, 1])

    def _unit(self):
        r = self.rng.random()
        pool = (self.work.grid_codes if r < 0.5 else self.work.community_codes if r < 0.85
                else self.work.street_codes)
        return self.rng.choice(pool)

    def build(self, kind: str):
        """(method, path, kwargs, expected statuses) of one request of ``kind``."""
        w, rng = self.work, self.rng
        if kind == "lookup":
            i, lon, lat = self._point()
            if rng.random() < 0.25:
                return "GET", "/lookup", {"params": {"lon": float(w.gcj[i, 0]), "lat": float(w.gcj[i, 1]),
                                                     "crs": "gcj02"}}, {200, 404}
            return "GET", "/lookup", {"params": {"lon": lon, "lat": lat}}, {200, 404}
        if kind == "lookup_batch":
            idx = [rng.randrange(len(w.points)) for _ in range(BATCH)]
            pts = [[float(w.points[i, 0]), float(w.points[i, 1])] for i in idx]
            return "POST", "/lookup", {"json": {"points": pts}}, {200}
        if kind == "incident_report":
            if self.keys and rng.random() < 0.1:
                key, expected = rng.choice(self.keys), {200}
            else:
                key, expected = f"load-{uuid.uuid4().hex}", {201}
                self.keys.append(key)
            # A replay must send the same body as the first time: derive it from the key.
            k = random.Random(key)
            j = k.randrange(len(w.inside))
            body = {"lon": float(w.inside[j, 0]) + k.uniform(-2e-5, 2e-5),
                    "lat": float(w.inside[j, 1]) + k.uniform(-2e-5, 2e-5),
                    "crs": "wgs84", "category": k.choice(w.categories),
                    "description": f"load test {key[-8:]}"}
            return "POST", "/incidents", {"json": body, "headers": {"Idempotency-Key": key}}, expected
        if kind == "incident_read":
            return "GET", "/incidents", {"params": {"unit": self._unit(), "limit": 50}}, {200}
        if kind == "map_coverage":
            return "GET", "/maps/coverage", {"params": {"unit": rng.choice(w.street_codes)}}, {200}
        if kind == "map_incidents":
            pool = w.street_codes if rng.random() < 0.5 else w.community_codes
            return "GET", "/maps/incidents", {"params": {"unit": rng.choice(pool)}}, {200}
        if kind == "features":
            _, lon, lat = self._point()
            d = 0.005
            return "GET", "/collections/grid/items", {
                "params": {"bbox": f"{lon - d:.6f},{lat - d:.6f},{lon + d:.6f},{lat + d:.6f}",
                           "limit": 100}}, {200}
        if kind == "plan_preview":
            return "POST", "/plans/preview", {"json": rng.choice(w.previews)}, {200}
        raise ValueError(kind)

    async def run(self, result: Result, deadline: float, cap: int, state: dict):
        import httpx

        while time.monotonic() < deadline and state["issued"] < cap:
            state["issued"] += 1
            kind = self.rng.choices(self.kinds, self.weights)[0]
            method, path, kwargs, expected = self.build(kind)
            if kind not in PUBLIC:
                kwargs["headers"] = {**kwargs.get("headers", {}), **AUTH}
            start = time.perf_counter()
            try:
                r = await self.http.request(method, path, **kwargs)
                body = r.content
                seconds = time.perf_counter() - start
            except httpx.HTTPError as e:
                seconds = time.perf_counter() - start
                result.record(kind, seconds, None, False, f"{type(e).__name__}: {e}"[:200],
                              f"{method} {path} {kwargs.get('params', '')}")
                continue
            ok = r.status_code in expected
            what = "" if ok else (f"{r.status_code} (expected {'/'.join(map(str, sorted(expected)))}): "
                                  f"{body[:300].decode('utf-8', 'replace')}")
            result.record(kind, seconds, r.status_code, ok, what,
                          f"{method} {path} {kwargs.get('params', '')}")


async def drive(base: str, work: Workload, weights: dict[str, int], clients: int, duration: float,
                cap: int, seed: int) -> Result:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    result = Result()
    state = {"issued": 0}
    kinds = [k for k, v in weights.items() if v > 0]
    ws = [weights[k] for k in kinds]
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=TIMEOUT_S) as http:
        start = time.monotonic()
        deadline = start + duration
        await asyncio.gather(*(Client(http, work, seed * 1000 + i, kinds, ws)
                               .run(result, deadline, cap, state) for i in range(clients)))
        result.elapsed = time.monotonic() - start
    result.issued = state["issued"]
    return result


# -- pre-flight and report ----------------------------------------------------------------------

def preflight(base: str, work: Workload, candidates: list[dict], wanted: int = 8) -> list[str]:
    """Categories from Open311, and the plan previews that answer 200; notes on the rest."""
    import httpx

    notes = []
    r = httpx.get(f"{base}/open311/v2/services.json", timeout=30)
    r.raise_for_status()
    work.categories = [s["service_code"] for s in r.json()]
    for body in candidates:
        if len(work.previews) >= wanted:
            break
        r = httpx.post(f"{base}/plans/preview", json=body, timeout=120, headers=AUTH)
        if r.status_code == 200:
            work.previews.append(body)
        else:
            notes.append(f"preview of a split of {body['operation']['grid']} -> {r.status_code}: "
                         f"{r.text[:300]}")
    if not work.previews:
        sys.exit("no plan preview answered 200 in pre-flight:\n  " + "\n  ".join(notes))
    return notes


def server_failures(log: str):
    """The unhandled errors the server logged ("unhandled error on METHOD PATH" + a traceback):
    how many per (request, exception, innermost frame of gridmap's own code)."""
    from collections import Counter

    found, lines, i = Counter(), log.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("unhandled error on "):
            request, where, i = lines[i][len("unhandled error on "):], "?", i + 1
            if i < len(lines) and lines[i].startswith("Traceback"):
                i += 1
                while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                    text = lines[i].strip()
                    if text.startswith("File ") and "site-packages" not in text and str(ROOT) in text:
                        where = text
                    i += 1
                exc = lines[i].strip() if i < len(lines) else "?"
                found[(request, exc[:300], where)] += 1
        i += 1
    return found


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def table(result: Result, title: str) -> tuple[str, dict]:
    rows, out = [], {}
    head = f"{'kind':<16}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}  statuses"
    for kind in list(WEIGHTS) + sorted(set(result.latencies) - set(WEIGHTS)):
        lat = result.latencies.get(kind)
        if not lat:
            continue
        errors = result.errors.get(kind, 0)
        statuses = " ".join(f"{s or 'conn'}:{n}" for s, n in sorted(result.statuses[kind].items()))
        d = {"requests": len(lat), "errors": errors, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
             "p99_ms": pct(lat, 99), "max_ms": max(lat) * 1000, "statuses": result.statuses[kind]}
        out[kind] = d
        rows.append(f"{kind:<16}{len(lat):>9}{errors:>8}{d['p50_ms']:>9.1f}{d['p95_ms']:>9.1f}"
                    f"{d['p99_ms']:>9.1f}{d['max_ms']:>9.1f}  {statuses}")
    everything = [x for v in result.latencies.values() for x in v]
    total_err = sum(result.errors.values())
    rps = len(everything) / result.elapsed if result.elapsed else float("nan")
    rows.append(f"{'all':<16}{len(everything):>9}{total_err:>8}{pct(everything, 50):>9.1f}"
                f"{pct(everything, 95):>9.1f}{pct(everything, 99):>9.1f}"
                f"{(max(everything) * 1000 if everything else 0):>9.1f}")
    text = (f"{title}: {len(everything)} requests in {result.elapsed:.1f} s = {rps:,.0f} req/s\n"
            + head + "\n" + "\n".join(rows))
    out["all"] = {"requests": len(everything), "errors": total_err, "elapsed_s": result.elapsed,
                  "rps": rps, "p50_ms": pct(everything, 50), "p99_ms": pct(everything, 99)}
    return text, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of mixed traffic")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (connections)")
    ap.add_argument("--store", choices=("gpkg", "postgis"), default="gpkg")
    ap.add_argument("--max-requests", type=int, default=400_000,
                    help="hard cap on the requests of each phase")
    ap.add_argument("--baseline", type=float, default=15.0,
                    help="seconds of lookup-only traffic first, for context (0: none)")
    ap.add_argument("--without", default="",
                    help="kinds to leave out of the mix, comma-separated (e.g. incident_report: "
                         "no writes)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--server-log", type=Path, help="keep the server's output here")
    args = ap.parse_args(argv)
    left_out = {k.strip() for k in args.without.split(",") if k.strip()}
    if left_out - set(WEIGHTS):
        ap.error(f"unknown kinds: {', '.join(sorted(left_out - set(WEIGHTS)))}")
    mix = {k: (0 if k in left_out else w) for k, w in WEIGHTS.items()}
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()

    tmp = Path(tempfile.mkdtemp(prefix="gridmap-load-"))
    report: dict = {"store": args.store, "clients": args.clients, "duration_s": args.duration,
                    "cores": os.cpu_count()}
    failed = False
    try:
        t = time.perf_counter()
        work, candidates = make_workload(args.seed)
        with store_url(args.store, tmp) as url:
            admin_key(url)
            print(f"store: {args.store} with the demo city, made in {time.perf_counter() - t:.1f} s",
                  flush=True)
            with serving(url, tmp / "serve.log") as (base, proc):
                sampler = RssSampler(proc.pid)
                sampler.start()
                sampler.mark("preflight")
                notes = preflight(base, work, candidates)
                print(f"server {base} (pid {proc.pid}); categories: {', '.join(work.categories)}; "
                      f"{len(work.previews)} plan previews answering 200", flush=True)
                for n in notes:
                    print(f"  pre-flight (not counted): {n}")
                phases = []
                if args.baseline > 0:
                    phases.append(("lookup-only", {"lookup": 1}, args.baseline))
                phases.append(("mixed", mix, args.duration))
                results = {}
                for name, weights, seconds in phases:
                    sampler.mark(name)
                    print(f"running {name}: {seconds:g} s, {args.clients} clients…", flush=True)
                    results[name] = asyncio.run(drive(base, work, weights, args.clients, seconds,
                                                      args.max_requests, args.seed))
                    sampler.mark(name)
                    time.sleep(1.0)
                sampler.mark("after")
                time.sleep(1.0)
                sampler.mark("after")
                alive = proc.poll() is None
                sampler.stop()
                log_tail = (tmp / "serve.log").read_text(errors="replace")
                if args.server_log:
                    shutil.copyfile(tmp / "serve.log", args.server_log)
        print()
        print(f"machine: {os.cpu_count()} cores shared by the load generator, the server"
              + (" and PostgreSQL" if args.store == "postgis" else "")
              + " (and whatever else runs): numbers are noisy, a lower bound.")
        print(f"store: {args.store}; clients: {args.clients}; cap {args.max_requests:,} requests per phase"
              + (f"; left out of the mix: {', '.join(sorted(left_out))}" if left_out else ""))
        print("peer: none (the issue names no peer for load); the lookup-only run is the context.")
        for name, res in results.items():
            text, data = table(res, name)
            print()
            print(text)
            rss = sampler.summary(name)
            data["rss_mb"] = rss
            if rss:
                print(f"server RSS ({name}): start {rss['start']:.1f} MB, max {rss['max']:.1f} MB, "
                      f"end {rss['end']:.1f} MB ({rss['samples']} samples, 1/s); every 10 s: "
                      + " ".join(f"{v:.0f}" for v in rss["every_10s"]))
                if "second_half_min" in rss:
                    trend = (f"trend {rss['trend_mb_per_min']:+.1f} MB/min (least squares)"
                             if "trend_mb_per_min" in rss else
                             "a trend needs --duration 240 or more")
                    print(f"  second half: {rss['second_half_min']:.0f}–"
                          f"{rss['second_half_max']:.0f} MB; {trend}")
            report[name] = data
            if res.kinds_of_error:
                print(f"errors ({name}), by kind and answer:")
                for (kind, what), (n, example) in sorted(res.kinds_of_error.items(),
                                                         key=lambda kv: -kv[1][0]):
                    print(f"  {n:>5} × {kind}: {what}\n          e.g. {example}")
                data["error_kinds"] = {f"{k} | {w}": n for (k, w), (n, _) in res.kinds_of_error.items()}
            failed |= bool(res.errors)
        allrss = [v for _, _, v in sampler.samples]
        if allrss:
            after = sampler.summary("after")
            print(f"\nserver RSS overall: first {allrss[0]:.1f} MB, max {max(allrss):.1f} MB, "
                  f"after load {after.get('end', allrss[-1]):.1f} MB")
            report["rss_overall_mb"] = {"first": allrss[0], "max": max(allrss),
                                        "after": after.get("end", allrss[-1])}
        if "lookup-only" in results and "mixed" in results:
            base_t, mixed_t = table(results["lookup-only"], "")[1], table(results["mixed"], "")[1]
            lo, mx = base_t["lookup"], mixed_t.get("lookup", {})
            print(f"\nlookup-only vs mixed: {base_t['all']['rps']:,.0f} vs {mixed_t['all']['rps']:,.0f} req/s "
                  f"overall; GET /lookup p50 {lo['p50_ms']:.1f} vs {mx.get('p50_ms', float('nan')):.1f} ms, "
                  f"p99 {lo['p99_ms']:.1f} vs {mx.get('p99_ms', float('nan')):.1f} ms")
        if not alive:
            failed = True
            print("the server process died during the run:\n" + log_tail[-3000:])
        failures = server_failures(log_tail)
        if failures:
            print(f"\nserver log: {sum(failures.values())} unhandled error(s), by request and exception:")
            for (request, exc, where), n in failures.most_common():
                print(f"  {n:>5} × {request}: {exc}\n          at {where}")
        report["server_failures"] = {f"{r} | {e} | {w}": n for (r, e, w), n in failures.items()}
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        print("\nresult:", "FAILED — errors above" if failed else "no errors")
        return 1 if failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
