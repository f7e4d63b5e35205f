"""The demo city shipped in ``boundaries/`` and the store created from it on first run."""

from __future__ import annotations

from pathlib import Path

from gridmap.store.base import STORE_LAYERS, Store

__all__ = ["DEMO", "load_into", "open_or_create"]

DEMO = Path(__file__).resolve().parents[1] / "boundaries" / "demo.gpkg"


def load_into(store: Store, source: Path = DEMO, note: str = "demo data") -> int:
    """Import every level of a GeoPackage of levels into ``store`` and publish it; its version."""
    from gridmap.io import list_layers, read_layer

    names = set(list_layers(source))
    layers = {level: read_layer(source, layer=level) for level in STORE_LAYERS if level in names}
    store.write_draft(layers, note=note)
    return store.publish(commit=True).draft.id


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
