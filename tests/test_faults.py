"""Nothing lost: writers killed mid-write, the database going away, clients racing each other.

Against both stores (a GeoPackage file, and PostGIS — skipped without a server locally, failing in
CI), with real processes:

- a writer is SIGKILLed at seeded random moments inside an import (``gridmap import``), a publish
  and a stream of incident writes; afterwards the store, opened fresh, holds every version whole
  (each written layer carries a tag in its ``worker`` column: a layer is one write, never two),
  the active version is the previous one or the new one, every acknowledged incident is there
  with a trail as long as its revision, and the next import and publish succeed;
- PostGIS is stopped under a running ``gridmap serve``: lookups keep answering from the loaded
  version, whatever needs the database answers 503 with ``Retry-After`` and a problem body, and
  once the database is back everything works again without restarting the service;
- processes race each other over HTTP: one wins each incident revision and one of two plans.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import geopandas as gpd
import pytest
from conftest import IN_CI
from serving import demo_store_url, serving

from gridmap.io import read_layer
from gridmap.store import open_store
from gridmap.store.base import STORE_LAYERS

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "boundaries" / "demo.gpkg"
KILLS = 4  # seeded kill moments per kind of write and store
PYTHON = sys.executable


@pytest.fixture(scope="module")
def demo() -> dict[str, gpd.GeoDataFrame]:
    return {level: read_layer(DEMO, layer=level) for level in STORE_LAYERS}


@pytest.fixture(params=["geopackage", "postgis"])
def store_url(request, tmp_path):
    """The demo city published as version 1 in a fresh store of each kind."""
    with demo_store_url(request.param, request, tmp_path) as url:
        yield url


def tagged(grids: gpd.GeoDataFrame, tag: str) -> gpd.GeoDataFrame:
    """The grids with every worker set to ``tag``: a layer read back with one tag is one write."""
    return grids.assign(worker=tag)


# -- after a kill -------------------------------------------------------------------------------


def check_consistent(url: str, demo) -> list:
    """Open the store fresh and check everything a reader can see; returns the versions."""
    store = open_store(url)
    try:
        versions = store.versions()
        assert [v.status for v in versions].count("active") == 1, versions
        codes = sorted(demo["grid"]["code"])
        for v in versions:
            assert v.status != "retired" or v.published_on is not None
            grid = store.read_layer("grid", v.id)
            assert sorted(grid["code"]) == codes, f"version {v.id}: grid layer not whole"
            assert grid["worker"].nunique(dropna=False) == 1 or v.id == 1, (
                f"version {v.id}: grid layer mixes two writes")
            if v.note.startswith("tag "):
                assert set(grid["worker"]) == {v.note[4:]}
            for level in ("community", "street", "district"):
                assert len(store.read_layer(level, v.id)) == len(demo[level]), (v.id, level)
        incidents, total = store.query_incidents(limit=None)
        assert len(incidents) == total
        for incident in incidents:
            assert incident.revision == len(incident.trail), incident.id
    finally:
        store.close()
    if not url.startswith("postgres"):
        check_geopackage(Path(url), total)
    return versions


def check_geopackage(path: Path, incidents: int) -> None:
    import pyogrio

    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    # A journal may be left behind only if it is not hot (a kill between a commit and the
    # journal's deletion): read-only readers (QGIS, GDAL, ours) ignore it then.
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as con:
        assert con.execute("SELECT count(*) FROM incident").fetchone()[0] == incidents
    con.close()
    names = {name for name, _ in pyogrio.list_layers(path)}
    assert set(STORE_LAYERS) <= names
    assert len(pyogrio.read_dataframe(path, layer="incident")) == incidents
    assert len(pyogrio.read_dataframe(path, layer="grid", where="version = 1")) > 0


def check_next_write(url: str, demo) -> None:
    """A killed writer's leftovers (lock, copy, journal, open transaction) never block the next."""
    store = open_store(url)
    try:
        for v in store.versions():
            if v.status == "draft":
                store.discard_draft(v.id)
        draft = store.write_draft({"grid": tagged(demo["grid"], "after")}, note="tag after")
        store.publish(commit=True, draft=draft.id)
        assert store.resolve().id == draft.id
        assert set(store.read_layer("grid", draft.id)["worker"]) == {"after"}
    finally:
        store.close()
    if not url.startswith("postgres"):
        folder = Path(url).parent
        assert [p.name for p in folder.iterdir() if ".tmp" in p.name] == []


def kill_after(args: list[str], delay: float, *, ready: str | None = "ready") -> list[str]:
    """Run ``args``, SIGKILL it ``delay`` seconds after it prints ``ready`` (or after it starts
    when ``ready`` is None); the whole lines it printed (the kill may cut the last one short)."""
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             cwd=ROOT)
    try:
        if ready is not None:
            assert child.stdout.readline().strip() == ready
        time.sleep(delay)
    finally:
        child.kill()
        child.wait()
    printed = child.stdout.read()
    return printed.splitlines()[:printed.count("\n")]


# -- 1. SIGKILL mid-write -------------------------------------------------------------------------


def test_a_killed_import_leaves_the_store_whole(store_url, demo, tmp_path):
    """``gridmap import`` of the whole grid layer, killed at seeded moments (start-up, validation,
    the write, the copy and rename)."""
    files = {}
    for tag in ("a", "b"):
        files[tag] = tmp_path / f"grids-{tag}.gpkg"
        tagged(demo["grid"], tag).to_file(files[tag], layer="grid", driver="GPKG")
    rng = random.Random(7)
    for k in range(KILLS):
        tag = "ab"[k % 2]
        delay = rng.uniform(0.3, 2.0)
        kill_after([PYTHON, "-m", "gridmap.cli", "import", str(files[tag]), "--level", "grid",
                    "--store", store_url], delay, ready=None)
        versions = check_consistent(store_url, demo)
        assert versions[0].id == 1 and versions[0].status == "active"  # imports never publish
        drafts = [v for v in versions if v.status == "draft"]
        assert len(drafts) <= 1
        if drafts:
            workers = set(open_store(store_url).read_layer("grid", drafts[0].id)["worker"])
            assert workers <= {"a", "b"} and len(workers) == 1
    check_next_write(store_url, demo)
    check_consistent(store_url, demo)


_PUBLISHER = """
import sys
from gridmap.io import read_layer
from gridmap.store import open_store
store = open_store(sys.argv[1])
grids = read_layer(sys.argv[2], layer="grid")
print("ready", flush=True)
for i in range(1000):
    draft = store.new_draft({"grid": grids.assign(worker=f"p{i}")}, note=f"tag p{i}")
    print("drafted", draft.id, flush=True)
    store.publish(commit=True, draft=draft.id)
    print("published", draft.id, flush=True)
"""


def test_a_killed_publish_leaves_one_version_active(store_url, demo):
    """New plan, publish, again, killed at seeded moments: the active version is the last one
    published, or the one being published when its publish had completed — never neither."""
    rng = random.Random(11)
    for k in range(KILLS):
        printed = kill_after([PYTHON, "-c", _PUBLISHER, store_url, str(DEMO)], rng.uniform(0.1, 3.0))
        versions = check_consistent(store_url, demo)
        active = next(v for v in versions if v.status == "active")
        published = [int(line.split()[1]) for line in printed if line.startswith("published")]
        drafted = [int(line.split()[1]) for line in printed if line.startswith("drafted")]
        if published:
            last = published[-1]
            assert active.id in (last, *[d for d in drafted if d > last]), (active, printed)
        # a draft whose publish was under way is either still a draft or active, never retired
        # without having been published
        for v in versions:
            assert v.status != "retired" or v.published_on is not None
    check_next_write(store_url, demo)


_REPORTER = """
import datetime as dt, sys
from gridmap.incidents import Actor, Role, report_incident, transition
from gridmap.store import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
for i in range(100000):
    now = dt.datetime.now(dt.UTC)
    added, _ = store.add_incident(report_incident(
        id=0, category="environment", description=f"report {i}", lon=111.5, lat=36.08,
        grid_code=None, reported_at=now), idempotency_key=f"k{sys.argv[2]}-{i}")
    print("added", added.id, flush=True)
    moved = store.update_incident(transition(added, "assigned", actor=Actor("li", Role.COMMUNITY),
                                             at=now), expected_revision=0)
    print("moved", moved.id, moved.revision, flush=True)
"""


def test_killed_incident_writes_lose_nothing_acknowledged(store_url, demo):
    """Incidents reported and assigned in a loop, killed at seeded moments: every acknowledged
    write is there, no trail is half-written, and boundary writes afterwards keep them all."""
    rng = random.Random(13)
    acknowledged: dict[int, int] = {}
    for k in range(KILLS + 2):
        printed = kill_after([PYTHON, "-c", _REPORTER, store_url, str(k)], rng.uniform(0.2, 2.0))
        for line in printed:
            what, *numbers = line.split()
            if what == "added":
                acknowledged.setdefault(int(numbers[0]), 0)
            elif what == "moved":
                acknowledged[int(numbers[0])] = int(numbers[1])
        check_consistent(store_url, demo)
        store = open_store(store_url)
        try:
            for incident_id, revision in acknowledged.items():
                assert store.get_incident(incident_id).revision >= revision
        finally:
            store.close()
    assert acknowledged, "the reporter never got an incident written"
    check_next_write(store_url, demo)  # a boundary rewrite of the file must keep every incident
    store = open_store(store_url)
    try:
        assert store.query_incidents(limit=None)[1] >= len(acknowledged)
        for incident_id, revision in acknowledged.items():
            assert store.get_incident(incident_id).revision >= revision
    finally:
        store.close()
    check_consistent(store_url, demo)


# -- 2. PostGIS down under a running service ---------------------------------------------------


@pytest.fixture
def own_cluster():
    """A PostGIS cluster this test may stop and start (never the shared one)."""
    from pg import missing_postgis, throwaway_cluster

    reason = missing_postgis()
    if reason:
        if IN_CI:
            pytest.fail(f"PostGIS fault tests cannot run in CI: {reason}")
        pytest.skip(f"PostGIS fault tests need the binaries: {reason}")
    with throwaway_cluster() as url:
        yield Cluster(url)


class Cluster:
    def __init__(self, url: str):
        import psycopg2
        from pg import _bindir

        self.url = url
        self.port = url.rsplit(":", 1)[1].split("/")[0]
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SHOW data_directory")
            self.data = Path(cur.fetchone()[0])
        conn.close()
        self.pg_ctl = str(_bindir() / "pg_ctl")
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.prefix, self.pg_ctl, "-D", str(self.data), *args],
                              capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr

    def stop(self, mode: str) -> None:
        self._run("-m", mode, "-w", "stop")

    def start(self) -> None:
        root = self.data.parent
        self._run("-l", str(root / "log"), "-w", "-t", "60", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {root} -c fsync=off -c full_page_writes=off",
                  "start")


def _inside_point(demo) -> tuple[float, float]:
    point = demo["grid"].geometry.iloc[0].representative_point()
    return point.x, point.y


def _report(client, lon, lat, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/incidents", json={"lon": lon, "lat": lat, "category": "environment",
                                           "description": "垃圾堆放"}, headers=headers)


def _assert_unavailable(answer) -> None:
    assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.json()
    assert body["status"] == 503 and body["detail"]
    assert "Traceback" not in answer.text and "psycopg2" not in answer.text


def test_postgis_down_lookups_answer_writes_say_503_and_all_recovers(own_cluster, demo):
    import httpx

    from gridmap.demo import load_into

    db = own_cluster.url  # the cluster is ours and goes away with the test: no database to drop
    seed = open_store(db)
    load_into(seed)
    seed.close()
    with serving(db) as base, httpx.Client(base_url=base, timeout=30) as client:
        _outage_and_recovery(own_cluster, db, client, demo)


def _outage_and_recovery(own_cluster, db: str, client, demo) -> None:
    lon, lat = _inside_point(demo)
    code = demo["grid"]["code"].iloc[0]
    deadline = time.monotonic() + 30
    while client.get("/lookup", params={"lon": lon, "lat": lat}).status_code != 200:
        assert time.monotonic() < deadline, "the service never answered a lookup"
        time.sleep(0.5)
    first = _report(client, lon, lat)
    assert first.status_code == 201, first.text
    incident = first.json()
    for cycle, mode in enumerate(("fast", "immediate")):
        own_cluster.stop(mode)
        for _ in range(3):  # past the service's 1 s refresh: it must keep the loaded version
            found = client.get("/lookup", params={"lon": lon, "lat": lat})
            assert found.status_code == 200 and found.json()["grid"]["code"] == code
            many = client.post("/lookup", json={"points": [[lon, lat], [lon, lat]]})
            assert many.status_code == 200, many.text
            time.sleep(0.6)
        _assert_unavailable(_report(client, lon, lat))
        _assert_unavailable(client.post(f"/incidents/{incident['id']}/transitions", json={
            "to": "assigned", "actor": "li", "role": "community",
            "revision": incident["revision"]}))
        _assert_unavailable(client.get("/incidents"))
        _assert_unavailable(client.get(f"/incidents/{incident['id']}"))
        _assert_unavailable(client.post("/plans", json={
            "unit": demo["community"]["code"].iloc[0], "operation": {"op": "renumber"}}))
        _assert_unavailable(client.post("/plans/1/publish"))
        own_cluster.start()
        # The very first write after the restart succeeds: dead pooled connections are dropped.
        again = _report(client, lon, lat, key=f"after-{mode}")
        assert again.status_code == 201, again.text
        move = ("assigned", "community") if cycle == 0 else ("in_progress", "grid_worker")
        moved = client.post(f"/incidents/{incident['id']}/transitions", json={
            "to": move[0], "actor": "li", "role": move[1], "revision": incident["revision"]})
        assert moved.status_code == 200, moved.text
        incident = moved.json()
        listed = client.get("/incidents", params={"limit": 1000})
        assert listed.status_code == 200
        assert again.json()["id"] in {i["id"] for i in listed.json()["incidents"]}
    # A restart between two requests (no request saw the outage): the pooled connections are
    # dead, and the first request after it must not be the one to find out.
    own_cluster.stop("fast")
    own_cluster.start()
    read = client.get(f"/incidents/{incident['id']}")
    assert read.status_code == 200, read.text
    after_restart = _report(client, lon, lat, key="after-restart")
    assert after_restart.status_code == 201, after_restart.text
    # A version published elsewhere after the outage is picked up by the running service.
    store = open_store(db)
    try:
        draft = store.new_draft({"grid": tagged(demo["grid"], "new")}, note="tag new")
        store.publish(commit=True, draft=draft.id)
    finally:
        store.close()
    deadline = time.monotonic() + 60
    while True:
        found = client.get("/lookup", params={"lon": lon, "lat": lat}).json()
        if found.get("version") == draft.id:
            assert found["grid"]["worker"] == "new"
            break
        assert time.monotonic() < deadline, f"still answering version {found.get('version')}"
        time.sleep(0.5)
    final = client.get(f"/incidents/{incident['id']}").json()
    assert final["revision"] == 2 == len(final["trail"])


# -- 3. processes racing over HTTP -------------------------------------------------------------


def _post_at(url: str, path: str, body: dict | None, start_at: float) -> int:
    """POST once at ``start_at`` (wall clock); the status (run in another process)."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        client.get("/conformance")  # connect before the start line
        time.sleep(max(0.0, start_at - time.time()))
        return client.post(path, json=body).status_code


@contextmanager
def racers(n: int):
    with concurrent.futures.ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(n)))  # start every process before the first race
        yield pool


_ROUNDS = [("assigned", "community"), ("in_progress", "grid_worker"), ("resolved", "grid_worker"),
           ("reopened", "supervisor"), ("assigned", "community")]


def test_processes_moving_one_incident_one_wins_each_revision(store_url, demo):
    import httpx

    n = 4
    lon, lat = _inside_point(demo)
    with serving(store_url) as base, racers(n) as pool:
        created = _report(httpx.Client(base_url=base, timeout=30), lon, lat)
        assert created.status_code == 201, created.text
        path = f"/incidents/{created.json()['id']}/transitions"
        winners = []
        for revision, (to, role) in enumerate(_ROUNDS):
            start_at = time.time() + 1.0
            bodies = [{"to": to, "actor": f"p{k}-r{revision}", "role": role, "revision": revision}
                      for k in range(n)]
            statuses = list(pool.map(_post_at, [base] * n, [path] * n, bodies, [start_at] * n))
            assert sorted(statuses) == [200] + [409] * (n - 1), statuses
            winners.append(bodies[statuses.index(200)]["actor"])
        final = httpx.get(f"{base}/incidents/{created.json()['id']}").json()
    assert final["revision"] == len(_ROUNDS) == len(final["trail"])
    assert [e["actor"] for e in final["trail"]] == winners  # nothing lost, nothing doubled
    assert [e["to"] for e in final["trail"]] == [to for to, _ in _ROUNDS]


def test_processes_publishing_two_plans_one_wins(store_url, demo):
    store = open_store(store_url)
    try:
        plans = [store.new_draft({"grid": tagged(demo["grid"], tag)}, note=f"tag {tag}").id
                 for tag in ("x", "y")]
    finally:
        store.close()
    with serving(store_url) as base, racers(2) as pool:
        start_at = time.time() + 1.0
        statuses = list(pool.map(_post_at, [base] * 2, [f"/plans/{p}/publish" for p in plans],
                                 [None, None], [start_at] * 2))
    assert sorted(statuses) == [200, 409], statuses
    winner, loser = (plans if statuses[0] == 200 else plans[::-1])
    store = open_store(store_url)
    try:
        assert store.resolve().id == winner
        assert store.resolve(version=loser).status == "draft"  # still an open plan
        for plan, tag in zip(plans, ("x", "y")):
            grid = store.read_layer("grid", plan)
            assert set(grid["worker"]) == {tag} and len(grid) == len(demo["grid"])
    finally:
        store.close()
    check_consistent(store_url, demo)
