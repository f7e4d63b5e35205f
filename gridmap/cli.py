"""The ``gridmap`` command: thin commands over the library.

Exit codes: 0 clean, 1 problems found, 2 unusable input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from gridmap.errors import GridmapError, PointOutsideGrids

app = typer.Typer(
    help="gridmap: grid boundaries for community governance (网格化管理).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)



@app.callback()
def main() -> None:
    """gridmap: grid boundaries for community governance (网格化管理)."""


Fields = Annotated[Optional[list[str]], typer.Option(
    "--field", help="map a field: ours=theirs, e.g. code=GRID_ID (repeatable)")]


def _one_line_errors(command: Callable) -> Callable:
    """Unusable input ends with one line on stderr and exit code 2, never a traceback."""

    @wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GridmapError as exc:
            _fail(exc.detail)
        except typer.BadParameter as exc:
            hint = getattr(exc, "param_hint", None)
            _fail(f"{hint}: {exc.message}" if isinstance(hint, str) else exc.message)
        except KeyboardInterrupt:
            err.print("gridmap: interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # GEOS or GDAL refusing what it was given
            if os.environ.get("GRIDMAP_DEBUG"):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            _fail(f"cannot process the input: {first}")
        raise typer.Exit(2)

    return run


def _fail(detail: str) -> None:
    # One line, whatever the terminal width: scripts and people grep it.
    sys.stderr.write("gridmap: error: " + " ".join(detail.split()) + "\n")


@app.command()
@_one_line_errors
def validate(
    grids: Annotated[Path, typer.Argument(help="the layer to check (any format gridmap reads)")],
    layer: Annotated[Optional[str], typer.Option(help="layer name inside GRIDS")] = None,
    level: Annotated[str, typer.Option(help="level of GRIDS: grid, community, street, district")] = "grid",
    crs: Annotated[Optional[str], typer.Option(help="CRS of GRIDS if it has none or a wrong one: EPSG:n, wgs84, cgcs2000, gcj02, bd09")] = None,
    field: Fields = None,
    encoding: Annotated[Optional[str], typer.Option(help="text encoding of a .dbf, e.g. cp950, gb18030")] = None,
    parents: Annotated[Optional[Path], typer.Option(help="the layer above GRIDS (e.g. communities)")] = None,
    parents_layer: Annotated[Optional[str], typer.Option(help="layer name inside PARENTS")] = None,
    parents_crs: Annotated[Optional[str], typer.Option(help="CRS of PARENTS if it has none (default: --crs)")] = None,
    parents_field: Annotated[Optional[list[str]], typer.Option(help="field mapping for PARENTS")] = None,
    buildings: Annotated[Optional[Path], typer.Option(help="building footprints (code, households)")] = None,
    buildings_layer: Annotated[Optional[str], typer.Option(help="layer name inside BUILDINGS")] = None,
    buildings_crs: Annotated[Optional[str], typer.Option(help="CRS of BUILDINGS if it has none (default: --crs)")] = None,
    buildings_field: Annotated[Optional[list[str]], typer.Option(help="field mapping for BUILDINGS")] = None,
    tolerance: Annotated[Optional[float], typer.Option(help="gap width in metres: narrower gaps and overlaps are warnings")] = None,
    sliver_area: Annotated[Optional[float], typer.Option(help="gaps and overlaps under this many m² are warnings")] = None,
    building_share: Annotated[Optional[float], typer.Option(help="share of a footprint in a second grid that makes it split")] = None,
    codes: Annotated[bool, typer.Option("--codes/--no-codes", help="check the 15-digit coding scheme")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON report on stdout")] = False,
    geojson: Annotated[Optional[Path], typer.Option(help="write the problem geometries as GeoJSON")] = None,
    strict: Annotated[bool, typer.Option(help="exit 1 on warnings too")] = False,
    limit: Annotated[int, typer.Option(help="problems listed in the readable summary")] = 20,
) -> None:
    """Check that grids tile their parents, split no building, and follow the rules.

    A GeoPackage with layers named city, district, street, community, grid (and building) is
    checked at every level at once when no --layer is given.
    """
    from gridmap.config import Settings
    from gridmap.io import LEVELS, list_layers, parse_fields, read_layer
    from gridmap.validate import validate_coverage, validate_hierarchy

    opts = _options(Settings().validation, codes, {
        "--tolerance": ("gap_width", tolerance), "--sliver-area": ("sliver_area", sliver_area),
        "--building-share": ("building_share", building_share)})
    if level not in LEVELS:
        raise typer.BadParameter(f"one of {', '.join(LEVELS)}", param_hint="--level")
    fields = parse_fields(field)
    with err.status("reading layers…"):
        names = list_layers(grids)
        hierarchy = layer is None and len(names) > 1 and set(names) & set(LEVELS)
        if hierarchy and parents:
            raise typer.BadParameter(
                f"{grids.name} holds the levels ({', '.join(n for n in LEVELS if n in names)}) "
                "and is checked against its own; choose one with --layer to give other parents",
                param_hint="--parents")
        if hierarchy:
            layers = {n: read_layer(grids, layer=n, crs=crs, fields=fields, encoding=encoding)
                      for n in LEVELS if n in names}
        else:
            main = read_layer(grids, layer=layer, crs=crs, fields=fields, encoding=encoding)
        up = read_layer(parents, layer=parents_layer, crs=parents_crs or crs,
                        fields=parse_fields(parents_field)) if parents else None
        if buildings:
            blds = read_layer(buildings, layer=buildings_layer, crs=buildings_crs or crs,
                              fields=parse_fields(buildings_field))
        elif hierarchy and "building" in names:
            blds = read_layer(grids, layer="building", crs=crs)
        else:
            blds = None
    with err.status("validating…"):
        if hierarchy:
            report = validate_hierarchy(layers, buildings=blds, options=opts)
        else:
            report = validate_coverage(main, parents=up, buildings=blds, options=opts, level=level)
    if geojson:
        _write_text(geojson, json.dumps(report.to_geojson(), ensure_ascii=False))
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
    else:
        _print_summary(report, grids, limit)
    failed = not report.clean or (strict and report.warnings)
    raise typer.Exit(1 if failed else 0)


def _options(base, codes: bool, given: dict):
    """The validation options: settings, overridden by what the command line gave (checked)."""
    from pydantic import ValidationError

    values = base.model_dump()
    values["check_codes"] = codes
    for flag, (name, value) in given.items():
        if value is None:
            continue
        try:
            values[name] = value
            base.model_validate(values)
        except ValidationError as exc:
            raise typer.BadParameter(f"{value:g} is out of range ({exc.errors()[0]['msg']})",
                                     param_hint=flag) from None
    return base.model_validate(values)


def _write_text(path: Path, text: str) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _singular(plural: str) -> str:
    from gridmap.validate import PLURAL

    return next((one for one, many in PLURAL.items() if many == plural), plural)


def _print_summary(report, source: Path, limit: int) -> None:
    counts = ", ".join(f"{n:,} {_singular(what) if n == 1 else what}"
                       for what, n in report.counts.items())
    verdict = "[green]clean[/]" if report.clean else "[red]not clean[/]"
    out.print(f"{source.name}: {counts} — {verdict}: "
              f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    if report.problems:
        table = Table("problem", "errors", "warnings", "area m²")
        for kind in sorted(report.by_type()):
            mine = [p for p in report.problems if p.type == kind]
            area = sum(p.area_m2 or 0 for p in mine)
            table.add_row(kind, str(sum(p.severity == "error" for p in mine)),
                          str(sum(p.severity == "warning" for p in mine)),
                          f"{area:,.1f}" if area else "")
        out.print(table)
        shown = sorted(report.problems, key=lambda p: (p.severity != "error", -(p.area_m2 or 0)))
        for p in shown[:limit]:
            colour = "red" if p.severity == "error" else "yellow"
            out.print(f"[{colour}]{p.severity}[/] {p.type}: ", end="")
            out.print(p.message, markup=False)
        if len(shown) > limit:
            out.print(f"… and {len(shown) - limit} more (--json for all, --limit to list more)")
    for note in report.notes:
        out.print(f"note: {note}", markup=False)



# -- the store: import, publish, serve ---------------------------------------------------------

StoreOpt = Annotated[Optional[str], typer.Option(
    "--store", help="GeoPackage path or postgresql:// URL (default: GRIDMAP_STORE__URL or var/gridmap.gpkg)")]


def _settings(store: str | None):
    from gridmap.config import Settings

    settings = Settings()
    if store:
        settings.store.url = store
    return settings


@app.command("import")
@_one_line_errors
def import_(
    source: Annotated[Path, typer.Argument(help="the layer file")],
    level: Annotated[str, typer.Option(help="city, district, street, community, grid or building")],
    layer: Annotated[Optional[str], typer.Option(help="layer name inside SOURCE")] = None,
    crs: Annotated[Optional[str], typer.Option(help="CRS if the file has none or a wrong one")] = None,
    field: Fields = None,
    encoding: Annotated[Optional[str], typer.Option(help="text encoding of a .dbf")] = None,
    accept_warnings: Annotated[bool, typer.Option(help="import even with warnings (never with errors)")] = False,
    store: StoreOpt = None,
) -> None:
    """Validate a layer against the levels around it, then write it into the draft version."""
    from gridmap.io import parse_fields, read_layer
    from gridmap.store.base import STORE_LAYERS
    from gridmap.versions import check_import, open_configured

    if level not in STORE_LAYERS:
        raise typer.BadParameter(f"one of {', '.join(STORE_LAYERS)}", param_hint="--level")
    settings = _settings(store)
    frame = read_layer(source, layer=layer, crs=crs, fields=parse_fields(field), encoding=encoding)
    target = open_configured(settings.store.url)
    try:
        with err.status("validating against the draft…"):
            report = check_import(target, level, frame, settings.validation)
        if report is not None and (not report.clean or (report.warnings and not accept_warnings)):
            _print_summary(report, source, 20)
            why = "errors" if not report.clean else "warnings (--accept-warnings to import anyway)"
            err.print(f"gridmap: refused: {source.name} has {why}; the store is unchanged")
            raise typer.Exit(1)
        version = target.write_draft({level: frame}, note=f"{level} from {source.name}")
    finally:
        target.close()
    out.print(f"imported {len(frame):,} {level} features into draft version {version.id} "
              f"of {settings.store.url}; `gridmap publish` shows what would change")


@app.command()
@_one_line_errors
def publish(
    commit: Annotated[bool, typer.Option(help="activate the draft (otherwise a dry run)")] = False,
    on: Annotated[Optional[str], typer.Option("--date", help="publication date YYYY-MM-DD (default today)")] = None,
    plan: Annotated[Optional[int], typer.Option(help="the plan (draft version) to publish, when "
                                                      "several are open")] = None,
    store: StoreOpt = None,
) -> None:
    """Show what activating the draft version (a plan) would change; activate it with --commit.

    A plan begun from a version that is no longer active is refused (exit 2): another plan was
    published meanwhile; it stays open to be redrawn."""
    import datetime as dt

    from gridmap.versions import open_configured

    try:
        day = dt.date.fromisoformat(on) if on else None
    except ValueError:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {on}", param_hint="--date") from None
    settings = _settings(store)
    target = open_configured(settings.store.url)
    try:
        result = target.publish(commit=commit, on=day, draft=plan)
        from gridmap.store.workflow import incidents_moved

        moved = incidents_moved(target, result.draft.id)
    finally:
        target.close()
    before = f"version {result.previous.id}" if result.previous else "nothing published"
    out.print(f"draft version {result.draft.id} against {before}:")
    for level, change in result.changes.items():
        if change.added or change.removed or change.changed:
            out.print(f"  {level}: {len(change.added)} added, {len(change.removed)} removed, "
                      f"{len(change.changed)} changed")
    if moved:
        out.print(f"  {len(moved)} open incidents lie in another grid under version "
                  f"{result.draft.id} (they keep theirs; reassign with POST /incidents/ID/reassign):")
        for m in moved:
            out.print(f"    incident {m.id} ({m.status}): grid {m.from_grid or '(unrouted)'} → "
                      f"{m.to_grid or '(no grid)'}", markup=False)
    if commit:
        out.print(f"published: version {result.draft.id} is active from "
                  f"{(day or dt.date.today()).isoformat()}")
    else:
        out.print("dry run: nothing changed (--commit to publish)")


@app.command()
@_one_line_errors
def serve(
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    access_log: Annotated[bool, typer.Option(help="log every request (costs ~15% of throughput)")] = False,
) -> None:
    """Start the HTTP service (with no --store: the embedded store, made from the demo data)."""
    import uvicorn

    from api.app import create_app

    settings = _settings(store)
    # With no store named anywhere, the embedded default starts as the demo city.
    demo = store is None and not os.environ.get("GRIDMAP_STORE__URL")
    if demo and "GRIDMAP_ACCESS__ENABLED" not in os.environ:
        # The demo city is synthetic (made-up workers, incidents and phone numbers): it is served
        # open so that `make run` works in a browser. Real stores need keys (gridmap keys).
        settings.access.enabled = False
        err.print("gridmap: warning: access control is OFF for the synthetic demo city; with "
                  "--store (or GRIDMAP_STORE__URL) every route but the lookup needs a key "
                  "(gridmap keys create)", markup=False)
    with err.status(f"opening {settings.store.url}…"):
        application = create_app(settings, demo=demo)
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=access_log)



# -- API keys -----------------------------------------------------------------------------------

keys_app = typer.Typer(help="API keys: create (printed once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@_one_line_errors
def keys_create(
    role: Annotated[str, typer.Option(help="reporter, worker, supervisor, planner or admin")],
    unit: Annotated[Optional[str], typer.Option(help="code of the unit it governs (a worker: "
                                                     "grid code(s), comma-separated)")] = None,
    name: Annotated[str, typer.Option(help="who holds it (recorded in incident trails)")] = "",
    store: StoreOpt = None,
) -> None:
    """Create a key and print it once: only its hash is stored, it cannot be shown again."""
    from gridmap.access import issue_key
    from gridmap.versions import open_configured

    target = open_configured(_settings(store).store.url)
    try:
        token, key = issue_key(target, role, unit, name)
    finally:
        target.close()
    err.print(f"key {key.id}: {key.role}" + (f" of {key.unit}" if key.unit else "")
              + " — keep it now, it is not shown again:", markup=False)
    out.print(token, markup=False)


@keys_app.command("list")
@_one_line_errors
def keys_list(store: StoreOpt = None) -> None:
    """Every key (id, role, unit, name, dates, the first characters): never the key itself."""
    from gridmap.versions import open_configured

    target = open_configured(_settings(store).store.url)
    try:
        found = target.list_keys()
    finally:
        target.close()
    table = Table("id", "role", "unit", "name", "starts", "created", "revoked")
    for k in found:
        table.add_row(str(k.id), k.role, k.unit or "", k.name, k.prefix + "…",
                      k.created_at.isoformat(timespec="seconds"),
                      k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "")
    out.print(table)


@keys_app.command("revoke")
@_one_line_errors
def keys_revoke(
    key_id: Annotated[int, typer.Argument(metavar="ID", help="the key's id (gridmap keys list)")],
    store: StoreOpt = None,
) -> None:
    """Revoke a key: it is refused (401) from the next request on."""
    from gridmap.versions import open_configured

    target = open_configured(_settings(store).store.url)
    try:
        key = target.revoke_key(key_id)
    finally:
        target.close()
    out.print(f"revoked key {key.id} ({key.role}{' of ' + key.unit if key.unit else ''})",
              markup=False)


@app.command()
@_one_line_errors
def lookup(
    grids: Annotated[Path, typer.Argument(help="grids, or a GeoPackage of levels (city … grid)")],
    lon: Annotated[Optional[float], typer.Option(help="longitude of one point")] = None,
    lat: Annotated[Optional[float], typer.Option(help="latitude of one point")] = None,
    points: Annotated[Optional[Path], typer.Option(help="CSV with lon,lat columns (batch)")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="CSV to write (batch)")] = None,
    crs: Annotated[str, typer.Option(help="CRS of the points: wgs84, cgcs2000, gcj02, bd09, EPSG:n")] = "wgs84",
    layer: Annotated[Optional[str], typer.Option(help="layer name inside GRIDS")] = None,
    grids_crs: Annotated[Optional[str], typer.Option(help="CRS of GRIDS if it has none")] = None,
    field: Fields = None,
    near: Annotated[bool, typer.Option("--near/--no-near", help="add the near_boundary column (batch)")] = True,
) -> None:
    """Which grid is a point in: one point (--lon/--lat, JSON out) or a CSV of millions."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from gridmap.io import LEVELS, list_layers, parse_fields, read_layer
    from gridmap.lookup import LookupIndex, lookup_points

    single = lon is not None or lat is not None
    if single == (points is not None) or (single and (lon is None or lat is None)):
        raise typer.BadParameter("give --lon and --lat, or --points FILE -o OUT", param_hint="--points")
    if points is not None and output is None:
        raise typer.BadParameter("the batch needs an output file", param_hint="-o")
    if points is not None and not points.is_file():
        raise typer.BadParameter(f"no such file: {points}", param_hint="--points")
    names = list_layers(grids)
    fields = parse_fields(field)
    if layer is None and "grid" in names and len(names) > 1:
        layers = {n: read_layer(grids, layer=n, crs=grids_crs) for n in LEVELS if n in names}
    else:
        layers = {"grid": read_layer(grids, layer=layer, crs=grids_crs, fields=fields)}
    if "code" not in layers["grid"].columns:
        err.print(f"note: {grids.name} has no code field: grids are named by row number (1, 2, …)")
        layers["grid"]["code"] = [str(i + 1) for i in range(len(layers["grid"]))]
    index = LookupIndex.build(layers)
    if single:
        try:
            answer = index.answer(lon, lat, crs=crs)
        except PointOutsideGrids as miss:
            # Not an input error: the answer is "no grid", with the nearest one (exit 1).
            answer = {"grid": None, "nearest": miss.nearest, "distance_m": miss.distance_m,
                      "detail": miss.detail}
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
        raise typer.Exit(0 if answer["grid"] else 1)
    columns = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"looking up {points.name}…")
        rows = lookup_points(index, points, output, crs=crs, near=near,
                             progress=lambda done: bar.update(task, description=f"{done:,} points"))
    out.print(f"{rows:,} points → {output}")


# -- maps ----------------------------------------------------------------------------------------

MAP_KINDS = ("coverage", "problems", "incidents", "stations", "dashboard")


@app.command("map")
@_one_line_errors
def map_(
    kind: Annotated[str, typer.Argument(help="coverage, problems, incidents, stations or dashboard")],
    unit: Annotated[str, typer.Option(help="code of a city, district, street or community")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the HTML page to write")],
    grids: Annotated[Optional[Path], typer.Argument(help="a GeoPackage of levels (default: the store)")] = None,
    days: Annotated[Optional[int], typer.Option(help="incidents: only the last N days", min=1)] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="incidents, dashboard: count days back from YYYY-MM-DD (default today)")] = None,
    store: StoreOpt = None,
) -> None:
    """Write a supervisor map as one self-contained HTML file (scripts inlined: works offline)."""
    import datetime as dt

    from gridmap import maps
    from gridmap.io import list_layers, read_layer
    from gridmap.store.base import STORE_LAYERS

    if kind not in MAP_KINDS:
        raise typer.BadParameter(f"one of {', '.join(MAP_KINDS)}", param_hint="KIND")
    if grids is not None and store is not None:
        raise typer.BadParameter("give GRIDS or --store, not both", param_hint="--store")
    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {as_of}", param_hint="--as-of") from None
    settings = _settings(store)
    with err.status("reading layers…"):
        if grids is not None:
            names = list_layers(grids)
            layers = {n: read_layer(grids, layer=n) for n in STORE_LAYERS if n in names}
            points = grids if {"incident", "station"} & set(names) else None
        else:
            from gridmap.versions import open_configured

            target = open_configured(settings.store.url)
            try:
                active = target.resolve().id
                layers = {n: target.read_layer(n, active) for n in STORE_LAYERS}
                # Incidents and stations live in the store too: read them now, as frames.
                points = {kind: maps.read_points(kind, target) for kind in ("incident", "station")}
            finally:
                target.close()
    chosen = maps.select_unit(layers, unit, max_grids=settings.maps.max_grids)
    common = {"settings": settings.maps, "inline": True}
    with err.status(f"drawing {kind} of {chosen.label}…"):
        if kind == "coverage":
            page = maps.coverage_map(chosen, incidents=maps.within(maps.read_points("incident", points), chosen),
                                     options=settings.validation, **common)
        elif kind == "problems":
            page = maps.problems_map(chosen, maps.unit_report(chosen, settings.validation), **common)
        elif kind == "incidents":
            page = maps.incidents_map(chosen, maps.within(maps.read_points("incident", points), chosen),
                                      days=days, as_of=day, links=False, **common)
        elif kind == "stations":
            page = maps.stations_map(chosen, maps.read_points("station", points), **common)
        else:
            page = maps.dashboard_page(chosen, maps.within(maps.read_points("incident", points), chosen),
                                       maps.read_points("station", points), as_of=day,
                                       settings=settings.maps, options=settings.validation)
    _write_text(output, page)
    out.print(f"{kind} of {chosen.label}: {len(chosen.grids):,} grids → {output}")


# -- stations ------------------------------------------------------------------------------------


@app.command("stations")
@_one_line_errors
def stations_(
    unit: Annotated[str, typer.Argument(help="code of a city, district, street or community")],
    store: StoreOpt = None,
    roads: Annotated[Optional[Path], typer.Option(help="road lines to walk along (default: GRIDMAP_STATIONS__ROADS); without, straight-line circles")] = None,
    roads_layer: Annotated[Optional[str], typer.Option(help="layer name inside ROADS")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the coverage as JSON (as GET /stations/coverage)")] = False,
    limit: Annotated[int, typer.Option(help="units listed per level in the readable summary")] = 20,
) -> None:
    """15-minute service circles of a unit: the share of households served per street, community
    and grid, the buildings left outside, and the new service post that would serve most of them.

    Uses the store's active version and its stations; walks along the road layer when one is
    given (--roads or GRIDMAP_STATIONS__ROADS), else draws straight-line circles."""
    from gridmap.errors import StoreUnavailable
    from gridmap.maps import select_unit
    from gridmap.stations import load_network, unit_coverage
    from gridmap.store import open_store
    from gridmap.store.base import STORE_LAYERS

    settings = _settings(store)
    url, walk = settings.store.url, settings.stations
    if not url.startswith(("postgresql://", "postgres://")) and not Path(url).is_file():
        raise StoreUnavailable(f"no store at {url}: give --store or GRIDMAP_STORE__URL")
    with err.status("reading the active version…"):
        target = open_store(url)
        try:
            version = target.resolve().id
            layers = {n: target.read_layer(n, version) for n in STORE_LAYERS}
            registered = target.read_stations()
        finally:
            target.close()
    chosen = select_unit(layers, unit, max_grids=settings.maps.max_grids)
    path = roads or (Path(walk.roads) if walk.roads else None)
    net = None
    if path is not None:
        with err.status(f"building the walking network from {path.name}…"):
            net = load_network(path, roads_layer or (None if roads else walk.roads_layer))
    with err.status(f"computing the coverage of {chosen.label}…"):
        answer = unit_coverage(chosen, registered, straight_m=walk.straight_m, roads=net,
                               minutes=walk.minutes, speed_kmh=walk.speed_kmh,
                               offset_m=walk.offset_m)
    if net is not None:
        answer["service_area"]["roads"] = path.name
    answer["version"] = version
    if as_json:
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
    else:
        _print_stations(answer, chosen.label, limit)


def _print_stations(answer: dict, label: str, limit: int) -> None:
    area = answer["service_area"]
    how = (f"walked {area['minutes']:g} min at {area['speed_kmh']:g} km/h ({area['walk_m']:,.0f} m) "
           f"along {area['roads']}, {area['offset_m']:g} m either side"
           if area["method"] == "network" else f"straight-line circles of {area['radius_m']:,.0f} m")
    out.print(f"{label}, version {answer['version']}: {answer['stations']} stations; "
              f"service areas {how}", markup=False)
    share = "—" if answer["share"] is None else f"{answer['share']:.1%}"
    out.print(f"{answer['covered_households']:,} of {answer['households']:,} households inside "
              f"a service area ({share})", markup=False)
    for level, rows in answer["by_level"].items():
        table = Table(level, "households", "served", "share")
        for row in sorted(rows, key=lambda r: (r["share"] is None, r["share"] or 0))[:limit]:
            table.add_row(row["code"], f"{row['households']:,.0f}",
                          f"{row['covered_households']:,.0f}",
                          "—" if row["share"] is None else f"{row['share']:.1%}")
        out.print(table)
        if len(rows) > limit:
            out.print(f"… and {len(rows) - limit} more {level}s (--json for all, --limit to list more)")
    outside = answer["uncovered"]
    out.print(f"outside every service area: {outside['buildings']:,} buildings"
              + (f" ({outside['households']:,} households)" if outside["households"] is not None else ""))
    site = answer["suggestion"]
    if site:
        out.print(f"suggested new post at {site['lon']}, {site['lat']}: would serve "
                  f"{site['households']:,} households in {site['buildings']:,} buildings")
    for note in answer["notes"]:
        out.print(f"note: {note}", markup=False)


# -- incidents -----------------------------------------------------------------------------------


@app.command()
@_one_line_errors
def escalate(
    store: StoreOpt = None,
    now: Annotated[Optional[str], typer.Option("--now", help="the time of the pass, ISO 8601 (default: now)")] = None,
) -> None:
    """Escalate every open incident past its deadline one level (grid → community → street).

    For cron, when the service's own clock is off (GRIDMAP_INCIDENTS__ESCALATE_EVERY_S=0). Running
    it twice escalates nothing more: an escalated incident gets a new deadline.
    """
    import datetime as dt

    from gridmap.errors import StoreUnavailable
    from gridmap.store import open_store
    from gridmap.store.workflow import escalate_due

    try:
        at = dt.datetime.fromisoformat(now) if now else dt.datetime.now(dt.UTC)
    except ValueError:
        raise typer.BadParameter(f"not an ISO time: {now}", param_hint="--now") from None
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    settings = _settings(store)
    url = settings.store.url
    if not url.startswith(("postgresql://", "postgres://")) and not Path(url).is_file():
        raise StoreUnavailable(f"no store at {url}: give --store or GRIDMAP_STORE__URL")
    target = open_store(url)
    try:
        done = escalate_due(target, at, settings.incidents)
    finally:
        target.close()
    out.print(f"escalated {done} incident{'' if done == 1 else 's'} as of {at.isoformat()}")


@app.command()
@_one_line_errors
def repair(
    grids: Annotated[Path, typer.Argument(help="the layer to repair (any format gridmap reads)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the repaired layer")],
    layer: Annotated[Optional[str], typer.Option(help="layer name inside GRIDS")] = None,
    crs: Annotated[Optional[str], typer.Option(help="CRS of GRIDS if it has none or a wrong one")] = None,
    parents: Annotated[Optional[Path], typer.Option(help="the layer above GRIDS: repairs stay inside it")] = None,
    parents_layer: Annotated[Optional[str], typer.Option(help="layer name inside PARENTS")] = None,
    buildings: Annotated[Optional[Path], typer.Option(help="building footprints: kept whole, households bounded")] = None,
    buildings_layer: Annotated[Optional[str], typer.Option(help="layer name inside BUILDINGS")] = None,
    max_change: Annotated[float, typer.Option(help="refuse a repair changing a grid's area or households by more than this share")] = 0.05,
    snap: Annotated[float, typer.Option(help="snap vertices closer than this many metres")] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="print what was repaired and refused as JSON")] = False,
) -> None:
    """Fill gaps, remove overlaps and snap edges — refusing any repair that changes a grid by more
    than --max-change. Exit 0 when everything was repaired, 1 when some repairs were refused."""
    from gridmap.io import read_layer, write_layer
    from gridmap.planning.repair import repair_coverage

    if not 0 <= max_change < 1:
        raise typer.BadParameter("a share between 0 and 1, e.g. 0.05", param_hint="--max-change")
    with err.status("reading layers…"):
        main = read_layer(grids, layer=layer, crs=crs)
        up = read_layer(parents, layer=parents_layer, crs=crs) if parents else None
        blds = read_layer(buildings, layer=buildings_layer, crs=crs) if buildings else None
    with err.status("repairing…"):
        result = repair_coverage(main, up, blds, max_change=max_change, snap=snap)
    write_layer(result.grids, output, layer=layer or output.stem)
    if as_json:
        sys.stdout.write(json.dumps({"fixed": result.fixed, "refused": result.refused,
                                     "notes": result.notes}, ensure_ascii=False, default=str) + "\n")
    else:
        out.print(f"repaired {len(result.fixed)}, refused {len(result.refused)}; wrote {output}")
        for item in result.refused:
            out.print(f"  refused {item['type']} {', '.join(map(str, item['codes']))} "
                      f"({item['area_m2']:.1f} m²): {item['reason']}")
        for note in result.notes:
            out.print(f"  note: {note}")
    raise typer.Exit(1 if result.refused else 0)


# -- planning: auto-partition --------------------------------------------------------------------


@app.command()
@_one_line_errors
def partition(
    parent: Annotated[Path, typer.Argument(help="the community or village polygon (one, or pick with --code)")],
    buildings: Annotated[Path, typer.Option(help="building footprints or address points with households")],
    output: Annotated[Path, typer.Option("-o", "--output", help="GeoPackage to write (layers community, grid, building)")],
    target: Annotated[Optional[float], typer.Option(help="households per grid (default 200 urban, 50 rural)")] = None,
    tolerance: Annotated[Optional[float], typer.Option(help="± households (default 50 urban, 15 rural)")] = None,
    rural: Annotated[Optional[bool], typer.Option("--rural/--urban", help="village defaults (default: the parent's kind)")] = None,
    barriers: Annotated[Optional[Path], typer.Option(help="roads, walls, rivers (lines or polygons) grids should not cross")] = None,
    dedicated: Annotated[Optional[Path], typer.Option(help="sites (hospital, school, mall) that become dedicated grids")] = None,
    code: Annotated[Optional[str], typer.Option(help="code of the community to partition when PARENT holds several")] = None,
    layer: Annotated[Optional[str], typer.Option(help="layer name inside PARENT")] = None,
    buildings_layer: Annotated[Optional[str], typer.Option(help="layer name inside BUILDINGS")] = None,
    field: Fields = None,
    drop_outside: Annotated[bool, typer.Option(help="ignore buildings outside the parent instead of refusing them")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the partition report as JSON")] = False,
) -> None:
    """Draw the grids of one community: exact cover, whole buildings, target ± tolerance households."""
    from gridmap.io import parse_fields, read_layer
    from gridmap.planning import partition_community

    with err.status("reading layers…"):
        parents = read_layer(parent, layer=layer)
        if code is not None:
            if "code" not in parents.columns or not (parents["code"] == code).any():
                raise typer.BadParameter(f"no community {code} in {parent.name}", param_hint="--code")
            parents = parents[parents["code"] == code]
        blds = read_layer(buildings, layer=buildings_layer, fields=parse_fields(field), geometry="any")
        walls = read_layer(barriers, geometry="any") if barriers else None
        sites = read_layer(dedicated) if dedicated else None
    with err.status("partitioning…"):
        grids, report = partition_community(parents, blds, target=target, tolerance=tolerance,
                                            rural=rural, barriers=walls, dedicated=sites,
                                            drop_outside=drop_outside)
    _write_partition(output, parents, grids, blds)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
    else:
        for line in report.lines():
            out.print(line, markup=False)
        out.print(f"→ {output}", markup=False)


def _write_partition(path: Path, parents, grids, blds) -> None:
    """One GeoPackage (community, grid, building), written beside the target then renamed."""
    tmp = path.with_name(f".{path.name}.tmp.gpkg")
    tmp.unlink(missing_ok=True)
    try:
        community = parents.to_crs(4326).assign(level="community")
        community.to_file(tmp, layer="community", driver="GPKG")
        grids.assign(level="grid").to_file(tmp, layer="grid", driver="GPKG")
        blds.to_crs(4326).to_file(tmp, layer="building", driver="GPKG")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


if __name__ == "__main__":
    app()
