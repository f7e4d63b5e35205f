"""Settings: tolerances and household targets, from defaults, the environment or the command line.

Environment variables carry the ``GRIDMAP_`` prefix and ``__`` between nested names, e.g.
``GRIDMAP_VALIDATION__GAP_WIDTH=1`` or ``GRIDMAP_STORE__URL=postgresql://…``.
"""

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HouseholdBand", "ValidationOptions", "StoreSettings", "LookupSettings", "Settings"]


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDMAP_", env_nested_delimiter="__")

    validation: ValidationOptions = ValidationOptions()
    store: StoreSettings = StoreSettings()
    lookup: LookupSettings = LookupSettings()
