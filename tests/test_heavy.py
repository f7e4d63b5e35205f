"""Heavy requests take turns (``api.heavy``): no more map pages are drawn at once than
``GRIDMAP_SERVER__HEAVY_AT_ONCE``, the others wait and are all answered, and lookups are
answered while pages queue."""

from __future__ import annotations

import threading
import time

import pytest
import shapely.geometry
from serving import app_client, demo_store

import gridmap.maps

STREETS = ("141002001", "141002002", "141002003")


class Watch:
    """Wraps a page function: counts how many run at once, and holds each a little so that
    requests sent together overlap."""

    def __init__(self, real, hold_s: float = 0.5):
        self.real, self.hold_s = real, hold_s
        self.now = self.peak = self.calls = 0
        self.finished_at: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        try:
            page = self.real(*args, **kwargs)
            time.sleep(self.hold_s)
            return page
        finally:
            with self._lock:
                self.now -= 1
                self.finished_at.append(time.monotonic())


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("store"))


def _together(client, paths: list[str]) -> list:
    answers: list = [None] * len(paths)

    def get(i, path):
        answers[i] = client.get(path)

    threads = [threading.Thread(target=get, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    return threads, answers


@pytest.mark.parametrize("at_once", [1, 2])
def test_pages_take_turns_and_lookups_do_not_wait(store_path, monkeypatch, at_once):
    watch = Watch(gridmap.maps.coverage_map)
    monkeypatch.setattr(gridmap.maps, "coverage_map", watch)
    with app_client(store_path, server={"heavy_at_once": at_once}) as client:
        assert client.get(f"/maps/coverage?unit={STREETS[0]}").status_code == 200  # warm up
        grid = client.get("/collections/grid/items?limit=1").json()["features"][0]
        lon, lat = shapely.geometry.shape(grid["geometry"]).representative_point().coords[0]
        assert client.get("/lookup", params={"lon": lon, "lat": lat}).status_code == 200  # warm
        watch.peak = watch.calls = 0
        watch.finished_at.clear()
        threads, answers = _together(client, [f"/maps/coverage?unit={STREETS[i % 3]}"
                                              for i in range(6)])
        time.sleep(0.1)
        lookup = client.get("/lookup", params={"lon": lon, "lat": lat})
        answered_at = time.monotonic()
        for t in threads:
            t.join(60)
    assert [a.status_code for a in answers] == [200] * 6
    assert all(STREETS[i % 3] in a.text for i, a in enumerate(answers))
    assert watch.calls == 6 and watch.peak == at_once
    assert lookup.json()["grid"]["code"] == grid["properties"]["code"]
    # the lookup did not queue behind the pages: it came back before the last of them was drawn
    # (six pages held 0.5 s each, at most two at once, take 1.5 s at least)
    assert sum(t <= answered_at for t in watch.finished_at) < 6


def test_heavy_at_once_is_a_setting():
    from pydantic import ValidationError

    from gridmap.config import Settings

    assert Settings().server.heavy_at_once == 2
    with pytest.raises(ValidationError):
        Settings(server={"heavy_at_once": 0})
