"""Access control (gridmap.access): every route × every kind of caller, inside and outside the unit.

The routes come from the OpenAPI document, so a new route without an expectation here fails
``test_every_route_has_an_expectation``. Callers: nobody, a malformed key, a revoked key, and each
role from inside the unit of the object asked for and from outside it. The matrix runs on the
GeoPackage store (the key storage itself is tested on both stores, and the access rules are the
same code over either store).

Leaks are checked on every answer to a caller who must not see incident A (outsiders, reporters,
planners, and everyone on Open311): neither its description nor its reporter's contact may appear
anywhere in the body — JSON, CSV, HTML pages, Open311.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import shapely
from fastapi.testclient import TestClient
from serving import demo_store_url

from api.app import create_app
from gridmap import access
from gridmap.access import Principal, Role, hash_token, issue_key
from gridmap.config import Settings
from gridmap.errors import Forbidden, InputError, KeyNotFound, OutsideUnit, Unauthorized
from gridmap.store import open_store

ROOT = Path(__file__).resolve().parents[1]
CANARY = "LEAK-CANARY-A 楼道堆放杂物"
PHONE = "13900001234"
CALLERS = ("none", "bad", "revoked", "reporter", "worker_in", "worker_out", "supervisor_in",
           "supervisor_out", "planner_in", "planner_out", "admin")
#: Callers who must never see incident A's description or contact.
BLIND = {"none", "bad", "revoked", "reporter", "worker_out", "supervisor_out", "planner_in",
         "planner_out"}


# -- the rules, without HTTP ---------------------------------------------------------------------


def test_inside_and_may():
    sup = Principal(Role.SUPERVISOR, ("141002004",))
    assert access.inside("141002004", "141002004003007")
    assert not access.inside("141002004", "141002041003007")
    assert not access.inside("141002004", None)
    assert access.may(sup, "read_incidents", "141002004003007")
    assert not access.may(sup, "read_incidents", "141002005003007")
    assert not access.may(sup, "plan")
    worker = Principal(Role.WORKER, ("141002004003007", "141002004003008"))
    assert access.may(worker, "act", "141002004003008")
    assert not access.may(worker, "act", "141002004003009")
    assert not access.may(access.ANONYMOUS, "lookup")
    assert access.may(access.OPEN, "plan", "999")


def test_check_answers_401_403_404():
    sup = Principal(Role.SUPERVISOR, ("141002004",))
    with pytest.raises(Unauthorized):
        access.check(access.ANONYMOUS, "read_incidents")
    with pytest.raises(Forbidden):
        access.check(Principal(Role.REPORTER), "read_incidents")
    with pytest.raises(OutsideUnit) as caught:
        access.check(sup, "read_incidents", "141002005001001", what="incident 7")
    assert caught.value.status == 404 and "141002005" not in caught.value.detail
    planner = Principal(Role.PLANNER, ("141002004003",))
    access.check_all(planner, "plan", ["141002004003"])
    with pytest.raises(Forbidden):
        access.check_all(planner, "plan", ["141002004003", "141002004004"])
    with pytest.raises(OutsideUnit):
        access.check_all(planner, "plan", ["141002004004"])


def test_masking():
    assert access.mask_phones("李伟 13812345678") == "李伟 138****5678"
    assert access.mask_phones("0357-2123456") == "0357-****3456"
    assert access.mask_phones("grid 141002004003007") == "grid 141002004003007"
    assert access.mask_phones(None) is None
    sup = Principal(Role.SUPERVISOR, ("141002004",))
    assert access.sees_contact(sup, "141002004003007")
    assert not access.sees_contact(sup, "141002005003007")
    assert not access.sees_contact(Principal(Role.PLANNER, ("141002004",)), "141002004003007")
    assert not access.sees_contact(Principal(Role.REPORTER), "141002004003007")
    assert not access.sees_contact(sup, None)


@pytest.mark.parametrize("role, unit", [("boss", "141002004"), ("supervisor", None),
                                        ("worker", "141002004"), ("supervisor", "14100200x"),
                                        ("planner", "141002004003007")])
def test_bad_role_or_unit_is_refused(tmp_path, role, unit):
    store = open_store(str(tmp_path / "s.gpkg"))
    with pytest.raises(InputError):
        issue_key(store, role, unit)
    assert store.list_keys() == []


# -- key storage: both stores ---------------------------------------------------------------------


def test_keys_in_the_store(store):
    assert store.list_keys() == [] and store.find_key("0" * 64) is None
    token, key = issue_key(store, "supervisor", "141002004", "Wang")
    assert token.startswith("gm_") and len(token) >= 40 and key.id is not None
    assert key.hash == hash_token(token) and token not in repr(key) and key.prefix == token[:10]
    other, key2 = issue_key(store, "worker", "141002004003007,141002004003008")
    assert key2.id != key.id and other != token
    found = store.find_key(hash_token(token))
    assert (found.id, found.role, found.unit, found.name) == (key.id, "supervisor", "141002004", "Wang")
    assert found.revoked_at is None
    assert access.find_principal(store, token) == Principal(
        Role.SUPERVISOR, ("141002004",), name="Wang", key_id=key.id)
    listed = store.list_keys()
    assert [k.id for k in listed] == [key.id, key2.id]
    assert all(token not in repr(k) and other not in repr(k) for k in listed)
    revoked = store.revoke_key(key.id)
    assert revoked.revoked_at is not None
    assert store.revoke_key(key.id).revoked_at == revoked.revoked_at  # the first time is kept
    assert access.find_principal(store, token) is None
    assert access.find_principal(store, other).units == ("141002004003007", "141002004003008")
    with pytest.raises(KeyNotFound):
        store.revoke_key(9999)


# -- the HTTP matrix ---------------------------------------------------------------------------


class World:
    """The demo city with incident A (the canary) in grid A, and a key per caller."""


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def world(request, tmp_path_factory):
    """Access is cut in each store's own SQL: the whole matrix runs on both."""
    with demo_store_url(request.param, request, tmp_path_factory.mktemp("access")) as url:
        yield from _world(url)


def _world(url):
    store = open_store(url)
    w = World()
    w.store = store
    active = store.resolve().id
    grids = store.read_layer("grid", active)
    communities = store.read_layer("community", active)
    street_of = dict(zip(communities["code"], communities["parent_code"]))
    grids = grids.assign(street=grids["parent_code"].map(street_of)).sort_values("code")
    streets = sorted(grids["street"].dropna().unique())
    a, b = grids[grids["street"] == streets[0]], grids[grids["street"] == streets[-1]]
    w.grid_a, w.grid_b = a.iloc[0], b.iloc[0]
    w.community_a, w.street_a = w.grid_a["parent_code"], w.grid_a["street"]
    w.community_b, w.street_b = w.grid_b["parent_code"], w.grid_b["street"]
    w.other_grid_a = a[a["parent_code"] == w.community_a].iloc[1]["code"]
    units = {"reporter": None, "worker_in": w.grid_a["code"], "worker_out": w.grid_b["code"],
             "supervisor_in": w.street_a, "supervisor_out": w.street_b,
             "planner_in": w.community_a, "planner_out": w.community_b, "admin": None,
             "revoked": w.street_a}
    w.tokens = {"bad": "gm_" + "x" * 43}
    for caller, unit in units.items():
        role = caller.split("_")[0].replace("revoked", "supervisor")
        w.tokens[caller], key = issue_key(store, role, unit, caller)
        if caller == "revoked":
            store.revoke_key(key.id)
    settings = Settings()
    settings.store.url = url
    settings.incidents.escalate_every_s = 0
    settings.access.enabled = True
    with TestClient(create_app(settings)) as client:
        w.client = client
        point = shapely.point_on_surface(w.grid_a.geometry)
        r = client.post("/incidents", json={"lon": point.x, "lat": point.y, "category": "safety",
                                            "description": CANARY, "contact": PHONE},
                        headers={"Authorization": f"Bearer {w.tokens['admin']}"})
        assert r.status_code == 201, r.text
        w.incident = r.json()
        assert w.incident["grid"]["code"] == w.grid_a["code"]
        # A plan changing community A only, and one that has gone stale (another was published).
        w.plan = _plan(store, w.community_a, w.grid_a)
        yield w
    store.close()


def _plan(store, community, grid) -> int:
    from gridmap.planning.workflow import edit_plan

    minx, miny, maxx, maxy = grid.geometry.bounds
    y = (miny + maxy) / 2
    line = {"type": "LineString", "coordinates": [[minx - 1e-3, y], [maxx + 1e-3, y]]}
    outcome = edit_plan(store, community, {"op": "split", "grid": grid["code"], "line": line})
    return outcome.plan.id


def _headers(w, caller) -> dict:
    if caller == "none":
        return {}
    return {"Authorization": f"Bearer {w.tokens[caller]}"}


def _grid_upload(w, changed: str) -> bytes:
    grids = w.store.read_layer("grid", w.store.resolve().id)
    grids.loc[grids["code"] == changed, "name"] = "renamed by the access test"
    return grids.to_json(drop_id=True).encode()


_serial = itertools.count(1)
STALE = 10**6  # a revision no incident has: an allowed move answers 409 and changes nothing

# What each caller gets, per route: a request (method, path, keyword arguments for the client,
# given the world) and the statuses. "in"/"out": the caller's unit holds A, or not.
_ALL = dict.fromkeys(CALLERS, 200) | {"bad": 401, "revoked": 401}
_PUBLIC = dict.fromkeys(CALLERS, 200)  # not even a key is read
_INCIDENT_READ = {"none": 401, "bad": 401, "revoked": 401, "reporter": 403, "worker_in": 200,
                  "worker_out": 404, "supervisor_in": 200, "supervisor_out": 404,
                  "planner_in": 403, "planner_out": 403, "admin": 200}
_INCIDENT_LIST = _INCIDENT_READ | {"worker_out": 200, "supervisor_out": 200}  # cut, not refused
_VIEW_A = {"none": 401, "bad": 401, "revoked": 401, "reporter": 403, "worker_in": 404,
           "worker_out": 404, "supervisor_in": 200, "supervisor_out": 404, "planner_in": 200,
           "planner_out": 404, "admin": 200}
_PLAN = {"none": 401, "bad": 401, "revoked": 401, "reporter": 403, "worker_in": 403,
         "worker_out": 403, "supervisor_in": 403, "supervisor_out": 403, "planner_in": 200,
         "planner_out": 404, "admin": 200}


def _expect():
    def incident_id(w):
        return w.incident["id"]

    def move(w, caller):  # a stale revision: allowed callers get 409, and nothing changes
        role = "grid_worker" if caller.startswith("worker") else "community"
        return {"json": {"to": "assigned", "actor": caller, "role": role, "revision": STALE}}

    def station(w, caller):
        return {"json": {"code": f"T{next(_serial)}", "kind": "post", "lon": 111.52,
                         "lat": 36.08, "unit_code": w.community_a}}

    def upload(w, caller):
        return {"files": {"file": ("grids.geojson", _grid_upload(w, w.grid_a["code"]),
                                   "application/geo+json")},
                "data": {"level": "grid", "accept_warnings": "true"}}

    def split(w, caller):
        minx, miny, maxx, maxy = w.grid_a.geometry.bounds
        y = (miny + maxy) / 2
        line = {"type": "LineString", "coordinates": [[minx - 1e-3, y], [maxx + 1e-3, y]]}
        return {"json": {"unit": w.community_a,
                         "operation": {"op": "split", "grid": w.grid_a["code"], "line": line}}}

    def fresh_plan(w):
        return _plan(w.store, w.community_a, w.grid_a)

    return {
        ("GET", "/"): (lambda w: "/", None, _PUBLIC),
        ("GET", "/conformance"): (lambda w: "/conformance", None, _PUBLIC),
        ("GET", "/collections"): (lambda w: "/collections", None, _ALL),
        ("GET", "/collections/{collection_id}"): (lambda w: "/collections/grid", None, _ALL),
        ("GET", "/collections/{collection_id}/items"):
            (lambda w: "/collections/grid/items?limit=3", None, _ALL),
        ("GET", "/collections/{collection_id}/items/{code}"):
            (lambda w: f"/collections/grid/items/{w.grid_a['code']}", None, _ALL),
        ("GET", "/lookup"): (lambda w: "/lookup?lon={}&lat={}".format(
            *shapely.point_on_surface(w.grid_a.geometry).coords[0]), None, _ALL),
        ("POST", "/lookup"): (lambda w: "/lookup", lambda w, c: {"json": {"points": [
            list(shapely.point_on_surface(w.grid_a.geometry).coords[0])]}}, _ALL),
        ("GET", "/maps/coverage"): (lambda w: f"/maps/coverage?unit={w.community_a}", None, _VIEW_A),
        ("GET", "/maps/problems"): (lambda w: f"/maps/problems?unit={w.community_a}", None, _VIEW_A),
        ("GET", "/maps/incidents"): (lambda w: f"/maps/incidents?unit={w.community_a}", None,
                                     _VIEW_A | {"planner_in": 403, "planner_out": 403}),
        ("GET", "/maps/stations"): (lambda w: f"/maps/stations?unit={w.community_a}", None, _VIEW_A),
        ("GET", "/dashboard"): (lambda w: f"/dashboard?unit={w.community_a}", None, _VIEW_A),
        ("POST", "/incidents"): (lambda w: "/incidents", lambda w, c: {"json": {
            "lon": 111.52, "lat": 36.08, "category": "other", "description": f"matrix {c}"}},
            dict.fromkeys(CALLERS, 201) | {"none": 401, "bad": 401, "revoked": 401}),
        ("GET", "/incidents"): (lambda w: "/incidents?limit=10000", None, _INCIDENT_LIST),
        ("GET", "/incidents/counts"): (lambda w: "/incidents/counts", None, _INCIDENT_LIST),
        ("GET", "/incidents.csv"): (lambda w: "/incidents.csv", None, _INCIDENT_LIST),
        ("GET", "/incidents/{incident_id}"): (lambda w: f"/incidents/{incident_id(w)}", None,
                                              _INCIDENT_READ),
        ("POST", "/incidents/{incident_id}/transitions"):
            (lambda w: f"/incidents/{incident_id(w)}/transitions", move,
             _INCIDENT_READ | {"worker_in": 409, "supervisor_in": 409, "admin": 409}),
        ("POST", "/incidents/{incident_id}/reassign"):
            (lambda w: f"/incidents/{incident_id(w)}/reassign",
             lambda w, c: {"json": {"grid": w.other_grid_a, "actor": c, "revision": STALE}},
             _INCIDENT_READ | {"worker_in": 403, "worker_out": 403, "supervisor_in": 409,
                               "admin": 409}),
        ("POST", "/stations"): (lambda w: "/stations", station,
                                _PLAN | {"planner_in": 201, "planner_out": 403, "admin": 201}),
        ("GET", "/stations"): (lambda w: "/stations", None,
                               _VIEW_A | {"worker_in": 200, "worker_out": 200,
                                          "supervisor_out": 200, "planner_out": 200}),
        ("GET", "/stations/coverage"): (lambda w: f"/stations/coverage?unit={w.community_a}", None,
                                        _VIEW_A),
        ("GET", "/open311/v2/services.json"): (lambda w: "/open311/v2/services.json", None, _PUBLIC),
        ("GET", "/open311/v2/requests.json"):
            (lambda w: "/open311/v2/requests.json?start_date=2000-01-01T00:00:00Z", None,
             _INCIDENT_LIST),
        ("POST", "/open311/v2/requests.json"): (lambda w: "/open311/v2/requests.json",
                                                lambda w, c: {"data": {"service_code": "other",
                                                                       "lat": "36.08",
                                                                       "long": "111.52"}},
                                                dict.fromkeys(CALLERS, 201) | {
                                                    "none": 401, "bad": 401, "revoked": 401}),
        ("GET", "/open311/v2/requests/{request_id}.json"):
            (lambda w: f"/open311/v2/requests/{incident_id(w)}.json", None, _INCIDENT_READ),
        ("POST", "/plans/preview"): (lambda w: "/plans/preview", split, _PLAN),
        ("GET", "/plans"): (lambda w: "/plans", None, _PLAN | {"planner_out": 200}),
        ("POST", "/plans"): (lambda w: "/plans", split, _PLAN | {"planner_in": 201, "admin": 201}),
        ("GET", "/plans/{plan}"): (lambda w: f"/plans/{w.plan}", None, _PLAN),
        ("DELETE", "/plans/{plan}"): (lambda w: f"/plans/{fresh_plan(w)}", None,
                                      _PLAN | {"planner_in": 204, "admin": 204}),
        ("GET", "/plans/{plan}/map"): (lambda w: f"/plans/{w.plan}/map?unit={w.community_a}",
                                       None, _PLAN),
        # Another plan was published since this one was drawn: allowed callers get 409.
        ("POST", "/plans/{plan}/publish"): (lambda w: f"/plans/{w.stale_plan}/publish", None,
                                            _PLAN | {"planner_in": 409, "admin": 409}),
        ("GET", "/maps/planner"): (lambda w: f"/maps/planner?unit={w.community_a}", None, _PLAN),
        ("POST", "/imports"): (lambda w: "/imports", upload,
                               _PLAN | {"planner_in": 201, "planner_out": 403, "admin": 201}),
    }


EXPECT = _expect()


def _operations():
    from gridmap.store.geopackage import GeoPackageStore

    app = create_app(store=GeoPackageStore("/nonexistent/none.gpkg"), warm=False)
    return [(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops]


def test_every_route_has_an_expectation():
    missing = [op for op in _operations() if op not in EXPECT]
    assert not missing, f"routes with no access expectation in tests/test_access.py: {missing}"
    assert not set(EXPECT) - set(_operations())


def test_routes_document_their_access_answers():
    from gridmap.store.geopackage import GeoPackageStore

    schema = create_app(store=GeoPackageStore("/nonexistent/none.gpkg"), warm=False).openapi()
    for (method, path), (_, _, statuses) in EXPECT.items():
        documented = set(schema["paths"][path][method.lower()]["responses"])
        for status in {401, 403} & set(statuses.values()):
            if path in ("/collections", "/lookup") or path.startswith("/collections/"):
                continue  # only with public lookup off: documented as 401/403 there too
            assert str(status) in documented, (method, path, status)


def _stale(w) -> int:
    """A plan of community A begun before another plan was published."""
    stale = _plan(w.store, w.community_a, w.grid_a)
    other = _plan(w.store, w.community_b, w.grid_b)
    w.store.publish(commit=True, draft=other)
    w.client.app.state.service.refresh()
    return stale


@pytest.fixture(scope="module")
def matrix(world):
    """Every route with every caller: {(method, path, caller): response}."""
    answers = {}
    ordered = sorted(EXPECT, key=lambda op: op == ("POST", "/plans/{plan}/publish"))
    for method, path in ordered:
        target, body, _ = EXPECT[(method, path)]
        if path == "/plans/{plan}/publish":
            world.stale_plan = _stale(world)
        for caller in CALLERS:
            kwargs = body(world, caller) if body else {}
            answers[(method, path, caller)] = world.client.request(
                method, target(world), headers=_headers(world, caller), **kwargs)
    return answers


@pytest.mark.parametrize("method, path", sorted(EXPECT))
def test_matrix(matrix, world, method, path):
    wrong = []
    for caller in CALLERS:
        r = matrix[(method, path, caller)]
        want = EXPECT[(method, path)][2][caller]
        if r.status_code != want:
            wrong.append(f"{caller}: {r.status_code} (want {want}) {r.text[:200]}")
        if r.status_code == 401:
            assert r.headers.get("www-authenticate", "").startswith("Bearer"), caller
        if caller in BLIND or path.startswith("/open311/"):
            assert PHONE not in r.text, (caller, "contact leaked")
        if caller in BLIND:
            assert CANARY not in r.text, (caller, "incident A leaked")
            _no_id(r, world.incident["id"], caller)
    assert not wrong, "\n".join(wrong)


def _no_id(r, incident_id: int, caller: str) -> None:
    """Incident A's id in no incident list, count or export an outsider gets."""
    kind = r.headers.get("content-type", "")
    if "text/csv" in kind:
        import csv

        assert str(incident_id) not in [row["id"] for row in csv.DictReader(io.StringIO(r.text))]
    elif "json" in kind and r.status_code == 200:
        body = r.json()
        rows = body.get("incidents", []) if isinstance(body, dict) else body
        assert all(isinstance(x, dict) and x.get("id") != incident_id
                   and x.get("service_request_id") != str(incident_id) for x in rows
                   if isinstance(x, dict)), caller


def test_insiders_see_what_they_need(matrix, world):
    ok = ("GET", "/incidents/{incident_id}")
    assert matrix[(*ok, "supervisor_in")].json()["contact"] == PHONE
    assert matrix[(*ok, "worker_in")].json()["contact"] == PHONE
    assert matrix[(*ok, "admin")].json()["contact"] == PHONE
    listed = matrix[("GET", "/incidents", "supervisor_in")].json()["incidents"]
    assert world.incident["id"] in [i["id"] for i in listed]
    assert all(i["grid"] and i["grid"]["code"].startswith(world.street_a) for i in listed)
    assert CANARY in matrix[("GET", "/maps/incidents", "supervisor_in")].text
    assert CANARY in matrix[("GET", "/incidents.csv", "worker_in")].text
    counts = matrix[("GET", "/incidents/counts", "supervisor_out")].json()["counts"]
    assert not any(code.startswith(world.street_a) for code in counts)
    # A reporter's own report comes back without any contact.
    assert matrix[("POST", "/incidents", "reporter")].json()["contact"] is None


def test_open311_errors_keep_their_format(matrix):
    r = matrix[("GET", "/open311/v2/requests.json", "none")]
    assert r.status_code == 401 and r.json()[0]["code"] == 401
    assert matrix[("GET", "/open311/v2/requests/{request_id}.json", "worker_out")].json()[0][
        "code"] == 404


def test_moves_are_recorded_under_the_key(world):
    c, iid = world.client, world.incident["id"]
    sup = _headers(world, "supervisor_in")
    now = c.get(f"/incidents/{iid}", headers=sup).json()
    r = c.post(f"/incidents/{iid}/transitions", headers=_headers(world, "worker_in"),
               json={"to": "assigned", "actor": "someone else", "role": "supervisor",
                     "revision": now["revision"]})
    assert r.status_code == 403  # a worker key cannot act as a supervisor
    r = c.post(f"/incidents/{iid}/transitions", headers=sup,
               json={"to": "assigned", "actor": "someone else", "role": "community",
                     "revision": now["revision"]})
    assert r.status_code == 200, r.text
    assert r.json()["trail"][-1]["actor"] == "supervisor_in"
    r = c.post(f"/incidents/{iid}/reassign", headers=sup,
               json={"grid": world.grid_b["code"], "actor": "x", "revision": r.json()["revision"]})
    assert r.status_code == 403  # not to a grid outside the supervisor's street


def test_revocation_is_immediate(world):
    token, key = issue_key(world.store, "admin", None, "short-lived")
    headers = {"Authorization": f"Bearer {token}"}
    assert world.client.get("/incidents/counts", headers=headers).status_code == 200
    world.store.revoke_key(key.id)
    r = world.client.get("/incidents/counts", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert world.client.get("/incidents", headers={"Authorization": "Basic abc"}).status_code == 401


def test_public_lookup_can_be_switched_off(world):
    settings = Settings()
    settings.store.url = world.store.url
    settings.incidents.escalate_every_s = 0
    settings.access.enabled = True
    settings.access.public_lookup = False
    point = shapely.point_on_surface(world.grid_a.geometry)
    with TestClient(create_app(settings)) as c:
        url = f"/lookup?lon={point.x}&lat={point.y}"
        assert c.get(url).status_code == 401
        assert c.get("/collections/grid/items").status_code == 401
        assert c.post("/lookup", json={"points": [[point.x, point.y]]}).status_code == 401
        assert c.get(url, headers=_headers(world, "reporter")).status_code == 200
        assert c.get("/conformance").status_code == 200


def test_access_is_on_by_default(monkeypatch):
    monkeypatch.delenv("GRIDMAP_ACCESS__ENABLED", raising=False)
    assert Settings().access.enabled and Settings().access.public_lookup


# -- the command line --------------------------------------------------------------------------


def _cli(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "gridmap.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def test_cli_keys(tmp_path):
    target = str(tmp_path / "keys.gpkg")
    made = _cli("keys", "create", "--role", "supervisor", "--unit", "141002004", "--name", "Li",
                "--store", target)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("gm_") and "key 1" in made.stderr
    listed = _cli("keys", "list", "--store", target)
    assert listed.returncode == 0 and "supervisor" in listed.stdout and "141002004" in listed.stdout
    assert token not in listed.stdout and token[10:] not in listed.stdout
    store = open_store(target)
    assert store.find_key(hash_token(token)).name == "Li"
    assert token.encode() not in Path(target).read_bytes()  # only the hash is stored
    store.close()
    revoked = _cli("keys", "revoke", "1", "--store", target)
    assert revoked.returncode == 0 and "revoked key 1" in revoked.stdout
    for bad in (["keys", "create", "--role", "boss", "--store", target],
                ["keys", "create", "--role", "worker", "--unit", "141002004", "--store", target],
                ["keys", "revoke", "99", "--store", target]):
        failed = _cli(*bad)
        assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert "Traceback" not in failed.stderr


def test_maps_and_lists_cut_by_the_grid_an_incident_is_routed_to(world):
    """An incident reported in street A and handed to a grid of street B belongs to B: its point
    still lies in A's outline, but A's maps, lists and counts no longer show it."""
    c = world.client
    admin = _headers(world, "admin")
    point = shapely.point_on_surface(world.grid_a.geometry)
    canary = "HANDED-OVER-CANARY 井盖缺失"
    r = c.post("/incidents", headers=admin, json={"lon": point.x, "lat": point.y,
                                                  "category": "facilities", "description": canary,
                                                  "contact": "13700007777"})
    grids = world.store.read_layer("grid", world.store.resolve().id)  # plans may have been published
    target = sorted(c for c in grids["code"] if c.startswith(world.street_b))[0]
    moved = c.post(f"/incidents/{r.json()['id']}/reassign", headers=admin,
                   json={"grid": target, "actor": "admin"})
    assert moved.status_code == 200, moved.text
    inside_a = _headers(world, "supervisor_in")
    for page in ("/maps/incidents", "/maps/coverage", "/dashboard"):
        html = c.get(f"{page}?unit={world.community_a}", headers=inside_a)
        assert html.status_code == 200 and canary not in html.text, page
    assert canary not in c.get("/incidents.csv", headers=inside_a).text
    assert canary not in c.get("/open311/v2/requests.json?start_date=2000-01-01T00:00:00Z",
                               headers=inside_a).text
    assert c.get(f"/incidents/{r.json()['id']}", headers=inside_a).status_code == 404
    mine = c.get(f"/incidents/{r.json()['id']}", headers=_headers(world, "supervisor_out"))
    assert mine.status_code == 200 and mine.json()["contact"] == "13700007777"


def test_worker_names_keep_no_phone_numbers(world):
    """The boundaries name each grid's worker (public by design, as the lookup does); a phone
    number written into that field is masked. (The lookup index masks the same field when it is
    built, in api.service.Service._build.)"""
    from api.routes.features import _features

    frame = world.store.read_layer("grid", world.store.resolve().id).head(2)
    frame["worker"] = "张伟 13812345678"
    features = _features(frame)
    assert [f["properties"]["worker"] for f in features] == ["张伟 138****5678"] * 2


def test_openapi_declares_the_bearer_scheme():
    from gridmap.store.geopackage import GeoPackageStore

    schema = create_app(store=GeoPackageStore("/nonexistent/none.gpkg"), warm=False).openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/incidents"]["get"]["security"] == [{"bearer": []}]
    assert {} in schema["paths"]["/lookup"]["get"]["security"]
    assert "security" not in schema["paths"]["/conformance"]["get"]


def _anonymised(body, number) -> str:
    return str(body).replace(str(number), "N")


@pytest.mark.parametrize("caller", ["supervisor_out", "worker_out", "planner_out"])
def test_outside_reads_exactly_like_missing(world, caller):
    """An outsider cannot tell "in another unit" from "nowhere": same status, type and words."""
    headers = _headers(world, caller)
    missing = 2**62
    here, nowhere = world.incident["id"], missing
    pairs = [(f"/incidents/{here}", f"/incidents/{nowhere}"),
             (f"/open311/v2/requests/{here}.json", f"/open311/v2/requests/{nowhere}.json")]
    if caller == "planner_out":
        pairs = [(f"/plans/{world.plan}", f"/plans/{missing}"),
                 (f"/maps/planner?unit={world.community_a}", "/maps/planner?unit=999999999999"),
                 (f"/maps/coverage?unit={world.street_a}", "/maps/coverage?unit=999999999")]
    for inside, absent in pairs:
        a, b = world.client.get(inside, headers=headers), world.client.get(absent, headers=headers)
        assert a.status_code == b.status_code == (403 if a.status_code == 403 else 404), (inside, a.text)
        if a.status_code == 404:
            number_a = inside.split("/")[-1].split(".")[0].split("=")[-1]
            number_b = absent.split("/")[-1].split(".")[0].split("=")[-1]
            assert _anonymised(a.json(), number_a) == _anonymised(b.json(), number_b), (a.text, b.text)
