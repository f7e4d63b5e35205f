"""The incident workflow (gridmap.incidents): transition table, trail, deadlines, escalation, checks."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmap.errors import (
    Conflict,
    CoordinatesOutOfRange,
    InputError,
    TransitionRefused,
)
from gridmap.incidents import (
    FINAL,
    LEVELS,
    MAX_TEXT,
    OPEN,
    SCHEDULER,
    TRANSITIONS,
    Actor,
    ActorNotPermitted,
    Incident,
    IncidentSettings,
    InvalidReport,
    Level,
    Role,
    Status,
    UnknownCategory,
    allowed_moves,
    check_description,
    check_lonlat,
    check_photo_url,
    deadline_for,
    escalate,
    is_overdue,
    report_incident,
    transition,
    validate_report,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))
CONFIG = IncidentSettings()
ACTORS = {role: Actor(f"a-{role}", role) for role in Role}


def new(id=42, category="environment", at=T0, config=CONFIG, **kw) -> Incident:
    return report_incident(id=id, category=category, description="楼道堆放杂物", lon=111.52,
                           lat=36.08, grid_code="141002004003007", reported_at=at, version=3,
                           settings=config, **kw)


def walk(incident: Incident, *path: Status, at=T0) -> Incident:
    """Move along ``path``, each step by the first role the table allows."""
    for to in path:
        role = min(TRANSITIONS[incident.status][to])
        incident = transition(incident, to, actor=ACTORS[role], at=at)
    return incident


# -- the table -----------------------------------------------------------------------------------


def test_table_covers_every_state_and_names_only_states_and_roles():
    assert set(TRANSITIONS) == set(Status)
    for moves in TRANSITIONS.values():
        for to, roles in moves.items():
            assert isinstance(to, Status) and roles and roles <= set(Role)
            assert Role.SCHEDULER not in roles  # the clock escalates, it never moves a status
    assert FINAL == {Status.CLOSED, Status.REJECTED}
    assert OPEN == {Status.REPORTED, Status.ASSIGNED, Status.IN_PROGRESS, Status.REOPENED}
    assert not OPEN & FINAL


def test_every_state_is_reachable_and_every_path_can_end():
    seen, todo = {Status.REPORTED}, [Status.REPORTED]
    while todo:
        for to in TRANSITIONS[todo.pop()]:
            if to not in seen:
                seen.add(to)
                todo.append(to)
    assert seen == set(Status)
    # from every state some final state is reachable: nothing is stuck forever
    for start in Status:
        seen, todo = {start}, [start]
        while todo:
            for to in TRANSITIONS[todo.pop()]:
                if to not in seen:
                    seen.add(to)
                    todo.append(to)
        assert seen & FINAL


def test_the_table_cannot_be_changed_at_runtime():
    with pytest.raises(TypeError):
        TRANSITIONS[Status.CLOSED] = {Status.REOPENED: frozenset({Role.SUPERVISOR})}
    with pytest.raises(TypeError):
        TRANSITIONS[Status.REPORTED][Status.CLOSED] = frozenset({Role.STREET})


def test_the_whole_loop_and_a_reopen():
    done = walk(new(), Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED, Status.CHECKED,
                Status.REOPENED, Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED,
                Status.CHECKED, Status.CLOSED)
    assert done.status == Status.CLOSED and len(done.trail) == 10
    assert [(t.from_state, t.to_state) for t in done.trail[3:6]] == [
        (Status.RESOLVED, Status.CHECKED), (Status.CHECKED, Status.REOPENED),
        (Status.REOPENED, Status.ASSIGNED)]


# -- transition ----------------------------------------------------------------------------------


def test_refusal_names_the_state_and_the_allowed_ones():
    closed = walk(new(), Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED, Status.CHECKED,
                  Status.CLOSED)
    with pytest.raises(TransitionRefused) as err:
        transition(closed, "reopened", actor=ACTORS[Role.SUPERVISOR], at=T0)
    assert err.value.detail == "incident 42 is closed; it can go to: nothing (closed is final)"
    assert err.value.status == 409 and isinstance(err.value, Conflict)
    with pytest.raises(TransitionRefused) as err:
        transition(new(), Status.RESOLVED, actor=ACTORS[Role.GRID_WORKER], at=T0)
    assert err.value.detail == "incident 42 is reported; it can go to: assigned, rejected"


def test_a_role_not_in_the_table_is_refused_with_403():
    with pytest.raises(ActorNotPermitted) as err:
        transition(new(), Status.ASSIGNED, actor=ACTORS[Role.GRID_WORKER], at=T0)
    assert err.value.status == 403
    assert err.value.detail == ("incident 42: a grid_worker cannot move it from reported to "
                                "assigned; who can: community, street")
    resolved = walk(new(), Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED)
    with pytest.raises(ActorNotPermitted):  # handlers do not check their own work
        transition(resolved, Status.CHECKED, actor=ACTORS[Role.GRID_WORKER], at=T0)


def test_transition_records_who_when_and_why_and_leaves_the_original_alone():
    before = new()
    later = T0 + timedelta(hours=2)
    after = transition(before, "assigned", actor=Actor("王芳", Role.COMMUNITY), at=later,
                       note="派给网格员李强")
    assert before.status == Status.REPORTED and before.trail == ()
    (entry,) = after.trail
    assert (entry.at, entry.actor.name, entry.from_state, entry.to_state, entry.note) == (
        later, "王芳", Status.REPORTED, Status.ASSIGNED, "派给网格员李强")
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.status = Status.CLOSED
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.note = "rewritten"
    assert isinstance(after.trail, tuple)


def test_unknown_status_naive_times_going_back_in_time_and_long_notes_are_input_errors():
    inc = new()
    with pytest.raises(InputError, match="unknown status 'done'; known: reported, assigned"):
        transition(inc, "done", actor=ACTORS[Role.COMMUNITY], at=T0)
    with pytest.raises(InvalidReport, match="timezone"):
        transition(inc, "assigned", actor=ACTORS[Role.COMMUNITY], at=datetime(2024, 5, 2))
    with pytest.raises(InvalidReport, match="is before its last entry"):
        transition(inc, "assigned", actor=ACTORS[Role.COMMUNITY], at=T0 - timedelta(seconds=1))
    with pytest.raises(InvalidReport, match="note has 2,001 characters"):
        transition(inc, "assigned", actor=ACTORS[Role.COMMUNITY], at=T0, note="字" * 2001)


@st.composite
def attempts(draw):
    """A random sequence of (target state, role, minutes later) tries, most of them refused."""
    return draw(st.lists(st.tuples(st.sampled_from(list(Status)), st.sampled_from(list(Role)),
                                   st.integers(0, 600)), max_size=40))


@settings(max_examples=300, deadline=None)
@given(attempts())
def test_random_walks_stay_in_the_table_and_never_rewrite_the_trail(tries):
    incident, at, accepted = new(), T0, 0
    for to, role, minutes in tries:
        at += timedelta(minutes=minutes)
        before = incident
        try:
            incident = transition(incident, to, actor=ACTORS[role], at=at)
        except (TransitionRefused, ActorNotPermitted) as err:
            assert err.detail.startswith(f"incident {incident.id}")
            assert "\n" not in err.detail
            legal = to in TRANSITIONS[before.status] and role in TRANSITIONS[before.status][to]
            assert not legal
            continue
        accepted += 1
        assert role in TRANSITIONS[before.status][to]
        assert incident.status == to and incident.status in TRANSITIONS
        assert incident.trail[:-1] == before.trail  # appended, never rewritten
        assert incident.trail[-1].from_state == before.status
    assert len(incident.trail) == accepted
    for step in incident.trail:
        assert step.to_state in TRANSITIONS[step.from_state]
    times = [step.at for step in incident.trail]
    assert times == sorted(times)
    # the chain of entries is continuous: each starts where the last one ended
    states = [Status.REPORTED] + [step.to_state for step in incident.trail]
    assert [step.from_state for step in incident.trail] == states[:-1]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FINAL)), st.sampled_from(list(Status)), st.sampled_from(list(Role)))
def test_final_states_refuse_everything(final, to, role):
    path = {Status.CLOSED: (Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED, Status.CHECKED,
                            Status.CLOSED),
            Status.REJECTED: (Status.REJECTED,)}[final]
    done = walk(new(), *path)
    assert allowed_moves(done.status) == ()
    with pytest.raises(TransitionRefused, match=f"is {final}; it can go to: nothing"):
        transition(done, to, actor=ACTORS[role], at=T0)


# -- deadlines and escalation --------------------------------------------------------------------


_categories = st.dictionaries(st.text(min_size=1, max_size=12),
                              st.floats(0.01, 24 * 365, allow_nan=False), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(_categories, st.data(), st.datetimes(min_value=datetime(2000, 1, 1),
                                            max_value=datetime(2100, 1, 1),
                                            timezones=st.just(UTC)))
def test_deadline_is_report_time_plus_the_categorys_hours(hours, data, at):
    config = IncidentSettings(deadlines_hours=hours)
    category = data.draw(st.sampled_from(sorted(hours)))
    incident = new(category=category, at=at, config=config)
    assert incident.deadline == at + timedelta(hours=hours[category])
    assert deadline_for(category, at, config) == incident.deadline


def test_settings_refuse_non_positive_hours_and_an_empty_list():
    for bad in ({"x": 0}, {"x": -1}, {"x": math.inf}, {"x": math.nan}, {}):
        with pytest.raises(ValueError):
            IncidentSettings(deadlines_hours=bad)


def test_settings_nest_under_gridmap_settings_from_the_environment(monkeypatch):
    # Settings will carry ``incidents: IncidentSettings``; until then a subclass shows the shape
    from gridmap.config import Settings

    class WithIncidents(Settings):
        incidents: IncidentSettings = IncidentSettings()

    monkeypatch.setenv("GRIDMAP_INCIDENTS__DEADLINES_HOURS", '{"safety": 4, "环境卫生": 48}')
    config = WithIncidents().incidents
    assert config.hours("safety") == 4.0 and config.hours("环境卫生") == 48.0


def test_unknown_category_lists_the_known_ones():
    with pytest.raises(UnknownCategory) as err:
        new(category="ufo")
    assert err.value.status == 422
    assert err.value.detail == ("unknown category 'ufo'; known: construction, dispute, "
                                "environment, facilities, other, safety")


def test_escalation_climbs_one_level_per_pass_and_stops_at_street():
    inc = new(category="safety")  # 24 h
    late = inc.deadline + timedelta(minutes=1)
    (once,) = escalate([inc], late, CONFIG)
    assert once.level == Level.COMMUNITY and once.status == inc.status
    assert once.deadline == late + timedelta(hours=24)
    entry = once.trail[-1]
    assert entry.actor == SCHEDULER and entry.from_state == entry.to_state == Status.REPORTED
    assert "escalated from grid to community" in entry.note
    (twice,) = escalate([once], once.deadline, CONFIG)
    assert twice.level == Level.STREET
    far = twice.deadline + timedelta(days=30)
    (still,) = escalate([twice], far, CONFIG)
    assert still is twice and is_overdue(still, far)


def test_only_open_incidents_escalate():
    late = T0 + timedelta(days=30)
    waiting = walk(new(), Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED)
    rejected = walk(new(), Status.REJECTED)
    reopened = walk(new(), Status.ASSIGNED, Status.IN_PROGRESS, Status.RESOLVED, Status.REOPENED)
    out = escalate([waiting, rejected, reopened], late, CONFIG)
    assert out[0] is waiting and out[1] is rejected
    assert out[2].level == Level.COMMUNITY


def test_escalation_refuses_a_naive_or_stale_clock():
    with pytest.raises(InvalidReport, match="timezone"):
        escalate([new()], datetime(2030, 1, 1), CONFIG)
    assigned = transition(new(), "assigned", actor=ACTORS[Role.COMMUNITY], at=T0 + timedelta(days=5))
    with pytest.raises(InvalidReport, match="before its last entry"):
        escalate([assigned], T0 + timedelta(days=3), CONFIG)


@st.composite
def incidents(draw):
    status = draw(st.sampled_from(list(Status)))
    level = draw(st.sampled_from(LEVELS))
    category = draw(st.sampled_from(sorted(CONFIG.deadlines_hours)))
    base = new(id=draw(st.integers(1, 10**6)), category=category)
    return dataclasses.replace(base, status=status, level=level)


@settings(max_examples=200, deadline=None)
@given(st.lists(incidents(), max_size=8),
       st.lists(st.integers(0, 24 * 60 * 40), min_size=1, max_size=6))
def test_escalation_never_passes_street_and_is_idempotent(given_, minutes):
    current = given_
    for m in sorted(minutes):
        now = T0 + timedelta(minutes=m)
        after = escalate(current, now, CONFIG)
        assert escalate(after, now, CONFIG) == after  # same now, nothing more happens
        for old, new_ in zip(current, after, strict=True):
            step = LEVELS.index(new_.level) - LEVELS.index(old.level)
            assert step in (0, 1)  # one level per pass at most, never down
            assert new_.status == old.status and new_.trail[: len(old.trail)] == old.trail
            if step:
                assert old.status in OPEN and now >= old.deadline and new_.deadline > now
                assert len(new_.trail) == len(old.trail) + 1
            else:
                assert new_ is old
        current = after
    assert all(inc.level in LEVELS for inc in current)
    for inc in current:  # entries by the scheduler match the levels climbed
        assert sum(t.actor == SCHEDULER for t in inc.trail) <= len(LEVELS) - 1


# -- checks on a new report ----------------------------------------------------------------------


def test_description_length():
    assert check_description("字" * MAX_TEXT) == "字" * MAX_TEXT
    with pytest.raises(InvalidReport) as err:
        check_description("字" * (MAX_TEXT + 1))
    assert err.value.detail == "description has 2,001 characters; at most 2,000 are allowed"
    with pytest.raises(InvalidReport, match="description is empty"):
        check_description("   ")


@pytest.mark.parametrize("url", ["http://img.example.cn/a.jpg", "HTTPS://oss.example.com/x?y=1"])
def test_photo_urls_accepted(url):
    assert check_photo_url(url) == url


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:image/png;base64,AAAA",
                                 "file:///etc/passwd", "ftp://x/y.jpg", "https:///nohost",
                                 "http://[::1", "http://a b/c.jpg", "//img.example.cn/a.jpg",
                                 "https://x/" + "a" * 3000])
def test_photo_urls_refused(url):
    with pytest.raises(InvalidReport) as err:
        check_photo_url(url)
    assert "\n" not in err.value.detail and len(err.value.detail) < 120


@pytest.mark.parametrize("lon, lat", [(math.nan, 30), (120, math.inf), (-math.inf, 0),
                                      ("abc", 1), (None, 1), (True, 1)])
def test_lonlat_must_be_finite_numbers(lon, lat):
    with pytest.raises(InvalidReport):
        check_lonlat(lon, lat)


def test_lonlat_out_of_range_is_the_coordinates_error():
    with pytest.raises(CoordinatesOutOfRange, match="lon 4000000.0"):
        check_lonlat(4_000_000, 36)
    assert check_lonlat("111.5", 36) == (111.5, 36.0)


@settings(max_examples=100, deadline=None)
@given(st.floats(), st.floats())
def test_lonlat_accepts_exactly_finite_degrees(lon, lat):
    ok = math.isfinite(lon) and math.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90
    if ok:
        assert check_lonlat(lon, lat) == (lon, lat)
    else:
        with pytest.raises(InputError):
            check_lonlat(lon, lat)


def test_validate_report_and_report_incident_check_everything():
    validate_report(category="other", description="x", lon=1, lat=2,
                    photo_url="https://img.example.cn/1.jpg")
    with pytest.raises(InvalidReport, match="photo URL"):
        new(photo_url="javascript:alert(1)")
    with pytest.raises(InvalidReport, match="timezone"):
        new(at=datetime(2024, 5, 1))
    inc = new(near_boundary=True)
    assert (inc.status, inc.level, inc.trail, inc.version, inc.near_boundary) == (
        Status.REPORTED, Level.GRID, (), 3, True)
