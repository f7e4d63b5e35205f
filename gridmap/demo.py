"""The demo city shipped in ``boundaries/`` and the store created from it on first run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gridmap.store.base import STORE_LAYERS, Store

__all__ = ["DEMO", "DEMO_CATEGORIES", "load_into", "open_or_create"]

DEMO = Path(__file__).resolve().parents[1] / "boundaries" / "demo.gpkg"
#: The demo's categories (事项) as the default incident settings name them.
DEMO_CATEGORIES = {"违章搭建": "construction", "安全隐患": "safety", "矛盾纠纷": "dispute",
                   "设施损坏": "facilities", "环境卫生": "environment", "占道经营": "other"}
#: How the demo's incidents reached their status: (status, role, hours after the report).
_PATH = (("assigned", "community", 1), ("in_progress", "grid_worker", 3),
         ("resolved", "grid_worker", 20), ("checked", "supervisor", 30),
         ("closed", "community", 40))


def load_into(store: Store, source: Path = DEMO, note: str = "demo data") -> int:
    """Import every level of a GeoPackage of levels into ``store`` and publish it; its version.

    Its ``station`` and ``incident`` layers, when it has them, are registered too: stations once
    per code, incidents once per demo id (their idempotency key), routed under the new version and
    walked through the workflow to the status they have in the file.
    """
    from gridmap.io import list_layers, read_layer

    names = set(list_layers(source))
    layers = {level: read_layer(source, layer=level) for level in STORE_LAYERS if level in names}
    store.write_draft(layers, note=note)
    version = store.publish(commit=True).draft.id
    if "station" in names:
        stations = _points(source, "station")
        known = set(store.read_stations()["code"])
        store.add_stations(stations[~stations["code"].astype(str).isin(known)])
    if "incident" in names:
        _load_incidents(store, _points(source, "incident"), layers, version)
    return version


def _points(source: Path, layer: str):
    import geopandas as gpd

    frame = gpd.read_file(source, layer=layer)
    return frame.to_crs(4326) if frame.crs is not None and frame.crs.to_epsg() != 4326 else frame


def _load_incidents(store: Store, incidents, layers, version: int) -> None:
    from gridmap.incidents import Actor, Role
    from gridmap.lookup import LookupIndex
    from gridmap.store.workflow import move, report

    index = LookupIndex.build({k: v for k, v in layers.items() if k != "building"}, version=version)
    for row in incidents.itertuples():
        at = row.reported_at.to_pydatetime()
        incident, created = report(
            store, index, lon=row.geometry.x, lat=row.geometry.y,
            category=DEMO_CATEGORIES.get(row.category, "other"), description=row.description,
            idempotency_key=f"demo-{row.id}", now=at)
        if not created or row.status == "reported":
            continue
        for status, role, hours in _PATH:
            who = incident.worker if role == "grid_worker" and incident.worker else f"demo {role}"
            incident = move(store, incident.id, status, actor=Actor(who, Role(role)),
                            now=at + dt.timedelta(hours=hours))
            if status == row.status:
                break


def open_or_create(url: str, *, demo: bool = False) -> Store:
    """Open the store at ``url``, creating an embedded one that does not exist yet — holding the
    demo city when ``demo`` (what ``gridmap serve`` does on first run with no --store)."""
    from gridmap.store import open_store

    local = not url.startswith(("postgresql://", "postgres://"))
    fresh = local and not Path(url).exists()
    if fresh:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
    store = open_store(url)
    if fresh and demo:
        load_into(store)
    return store
