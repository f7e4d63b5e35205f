"""Settings: tolerances and household targets, from defaults, the environment or the command line.

Environment variables carry the ``GRIDMAP_`` prefix and ``__`` between nested names, e.g.
``GRIDMAP_VALIDATION__GAP_WIDTH=1`` or ``GRIDMAP_STORE__URL=postgresql://…``.
"""

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridmap.incidents import IncidentSettings

__all__ = ["HouseholdBand", "ValidationOptions", "StoreSettings", "LookupSettings", "MapSettings",
           "StationSettings", "UploadSettings", "AccessSettings", "Settings"]


class HouseholdBand(BaseModel):
    """A target number of households per grid with a two-sided tolerance."""

    target: float
    tolerance: float

    @property
    def low(self) -> float:
        return self.target - self.tolerance

    @property
    def high(self) -> float:
        return self.target + self.tolerance


class ValidationOptions(BaseModel):
    """Tolerances of the coverage rules. Lengths in metres, areas in square metres.

    A gap or overlap narrower than ``gap_width`` or smaller than ``sliver_area`` is reported as a
    warning (digitising noise), anything larger as an error.
    """

    gap_width: float = Field(0.5, ge=0, description="gaps/overlaps narrower than this are slivers")
    sliver_area: float = Field(1.0, ge=0, description="gaps/overlaps smaller than this are slivers")
    noise_area: float = Field(
        0.01, ge=0,
        description="gaps, overlaps and overhangs under this many m² are floating-point noise "
        "(vertices of one layer lying a hair off the other's edges) and not reported",
    )
    building_share: float = Field(
        0.02, ge=0, lt=0.5,
        description="a building is split when a second grid holds more than this share of it",
    )
    # 规模适度: about 200 households per urban grid, 50 per rural one (DESIGN.md section 2).
    urban: HouseholdBand = HouseholdBand(target=200, tolerance=50)
    rural: HouseholdBand = HouseholdBand(target=50, tolerance=15)
    # 统一赋码编号: switch off for data with codes of its own (census blocks, wards…).
    check_codes: bool = True


class StoreSettings(BaseModel):
    """Where boundaries are kept: a GeoPackage path (the embedded default) or a PostGIS URL."""

    url: str = "var/gridmap.gpkg"


class LookupSettings(BaseModel):
    near_m: float = Field(30.0, ge=0, description="a point this close to its grid's edge is flagged")
    batch_limit: int = Field(10_000, ge=1, description="points per POST /lookup request")
    body_limit_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest request body")


class MapSettings(BaseModel):
    """The supervisor maps (``gridmap.maps``): tiles, assets and the service-circle rule.

    Pages work with no internet access: their scripts and styles come from ``assets`` (served by
    gridmap at ``/static/vendor``). The tile layer is an intranet tile server's URL template, or
    ``none`` for polygons on a plain background. AMap's tiles are GCJ-02 (``gcj02=true``): the
    overlays are then shifted into GCJ-02 for display so they sit on the tiles' streets.
    """

    tiles: str = Field("none", description="tile URL template ({z}/{x}/{y}) or 'none'")
    attribution: str = Field("", description="credit shown for the tiles (required with tiles)")
    subdomains: str = Field("abc", description="values of {s} in the template, e.g. 1234 for AMap")
    gcj02: bool = Field(False, description="the tiles are GCJ-02 (AMap, Tencent): shift overlays")
    max_zoom: int = Field(19, ge=1, le=22)
    assets: str = Field("/static/vendor", description="base URL of the vendored scripts/styles")
    # 15-minute service circle (15分钟生活圈): 15 min at 4.5 km/h is 1,125 m walked; streets
    # are not straight, so the straight-line radius is 1,000 m (a detour factor of about 1.1).
    service_radius_m: float = Field(1000.0, gt=0, description="straight-line service radius")
    overdue_days: int = Field(7, ge=1, description="an open incident older than this is overdue")
    simplify_above: int = Field(3000, ge=1, description="serve simplified grids above this many")
    simplify_m: float = Field(5.0, ge=0, description="simplification tolerance in metres")
    # Above this many grids every map page draws its grids compact: one canvas instead of one SVG
    # path per grid, and popups built on click from a compact table instead of per-feature
    # properties (benchmarks/bench_maps.py: 12,000 grids open in ~1 s instead of ~3 s).
    compact_above: int = Field(3000, ge=1, description="draw grids on a canvas above this many")
    max_grids: int = Field(50_000, ge=1, description="refuse a map of more grids than this")


class StationSettings(BaseModel):
    """The 15-minute service circle (15分钟生活圈) that station coverage is checked against.

    Along streets a station serves what is within ``minutes`` of walking at ``speed_kmh``
    (15 min at 4.5 km/h: 1,125 m), plus ``offset_m`` either side of a reached street; as the crow
    flies it serves a circle of ``straight_m`` (1,000 m: the walk with a detour factor of ~1.1).
    E.g. ``GRIDMAP_STATIONS__STRAIGHT_M=800``.

    The streets come from ``roads``, a file of road lines (GeoPackage, GeoJSON, Shapefile… e.g.
    OSM roads with their ``highway``/``kind`` tags; ``roads_layer`` picks a layer in a file of
    several): ``GRIDMAP_STATIONS__ROADS=/srv/gridmap/roads.gpkg``. The service builds the walking
    network on the first coverage request and keeps it while the file is unchanged; a file it
    cannot use answers 503 naming the file (other routes keep working). Without ``roads``,
    coverage uses the straight-line circle, and every answer says which method it used.
    """

    minutes: float = Field(15.0, gt=0, description="walking minutes of the service circle")
    speed_kmh: float = Field(4.5, gt=0, description="walking speed")
    straight_m: float = Field(1000.0, gt=0, description="straight-line radius without a network")
    offset_m: float = Field(50.0, ge=0, description="depth served either side of a street")
    roads: str | None = Field(None, description="road lines to walk along (file path); "
                              "without, straight-line circles")
    roads_layer: str | None = Field(None, description="layer of the roads file, if it has several")


class UploadSettings(BaseModel):
    """Limits of boundary files uploaded to ``POST /imports`` (untrusted input).

    Each limit is checked before the work it protects: bytes before the body is read, zip contents
    before they are unpacked, JSON nesting before it is parsed, features and vertices before any
    geometry operation. E.g. ``GRIDMAP_UPLOADS__MAX_BYTES=104857600``.
    """

    max_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="largest upload (request body)")
    max_features: int = Field(200_000, ge=1, description="features in the uploaded layer")
    max_feature_vertices: int = Field(100_000, ge=4, description="vertices of one feature")
    max_vertices: int = Field(10_000_000, ge=4, description="vertices of the whole layer")
    zip_max_members: int = Field(100, ge=1, description="files in a zip")
    zip_max_bytes: int = Field(1024 * 1024 * 1024, ge=1024, description="a zip's unpacked size")
    # Shapefiles compress 3-10x, sparse .dbf tables up to ~50x; a zip bomb expands by 1000x+.
    zip_max_ratio: float = Field(200.0, ge=1, description="largest unpacked/packed size of a member")
    json_max_depth: int = Field(64, ge=8, description="nesting of JSON (GeoJSON needs about 6)")


class AccessSettings(BaseModel):
    """Access control (:mod:`gridmap.access`): API keys with a role and a unit.

    On by default (secure by default): every route but the landing page, ``/conformance``, the
    Open311 service list and — with ``public_lookup`` — the lookup and the boundaries needs
    ``Authorization: Bearer KEY``. ``GRIDMAP_ACCESS__ENABLED=false`` switches it off (everything
    open, as for the synthetic demo city); ``GRIDMAP_ACCESS__PUBLIC_LOOKUP=false`` makes the
    lookup and the boundaries key-only too.
    """

    enabled: bool = Field(True, description="require API keys (false: everything is open)")
    public_lookup: bool = Field(True, description="lookup and boundaries open without a key")


class ServerSettings(BaseModel):
    """How much of the machine one ``gridmap serve`` gives to heavy requests.

    Map pages, plan edits and previews, uploads and station coverage each hold a whole unit's
    layers and build a page or a plan: dozens at once only fight over the cores and each keeps
    its own tens of megabytes. ``heavy_at_once`` of them run together; the others wait their
    turn (in the event loop, not in a thread), so lookups and incidents keep their threads and
    the memory stays level under load.
    """

    heavy_at_once: int = Field(2, ge=1, le=64, description="heavy requests worked on at once")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDMAP_", env_nested_delimiter="__")

    validation: ValidationOptions = ValidationOptions()
    store: StoreSettings = StoreSettings()
    lookup: LookupSettings = LookupSettings()
    maps: MapSettings = MapSettings()
    incidents: IncidentSettings = IncidentSettings()
    stations: StationSettings = StationSettings()
    uploads: UploadSettings = UploadSettings()
    access: AccessSettings = AccessSettings()
    server: ServerSettings = ServerSettings()
