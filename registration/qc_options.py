"""The thresholds of the quality checks (:class:`QcOptions`; :mod:`registration.qc` explains
each flag), light to import for the CLI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_PX = {"ge": 0, "allow_inf_nan": False}


class QcOptions(BaseModel):
    """Thresholds of the quality checks (see :mod:`registration.qc`).

    A pydantic model: a value out of range is refused when the options are made, with a
    ``ValidationError`` naming the field.
    """

    model_config = ConfigDict(frozen=True)

    min_ssim: float = Field(
        0.2, ge=-1, le=1, description="Flag fine matches below this SSIM (low_ssim)."
    )
    max_fine_residual_px: float = Field(
        1.5, gt=0, description="Flag fine matches this far (px) from the refitted slide motion."
    )
    pls_tolerance_px: float = Field(2.0, **_PX)
    darkfield_tolerance_px: float = Field(2.5, **_PX)
    pair_tolerance_px: float = Field(1.5, **_PX)
    pair_max_tolerance_px: float = Field(3.0, **_PX)
    pair_min_score: float = Field(0.3, ge=-1, le=1)
    pair_region_px: int = Field(512, ge=16)
    pls_tolerance_single_px: float = Field(4.5, **_PX)
    pls_min_score: float = Field(0.05, ge=-1, le=1)
    pls_search_px: int = Field(16, ge=1)
    pls_region_px: int = Field(768, ge=16)
    input_structure_min: float = Field(3.0, ge=0)
    one_pass_min_area_um2: float = Field(0.5, ge=0)
    speck_contrast_dn: float = Field(25.0, ge=0)
    cell_speck_contrast_dn: float = Field(30.0, ge=0)
    speck_gap_floor: float = Field(18.0, ge=0)
    speck_gap_spread: float = Field(5.0, ge=0)
    speck_min_area_um2: float = Field(0.15, ge=0)
    speck_explained_od: float = Field(0.3, ge=0)
    ghost_fraction: float = Field(0.0, ge=0, le=1)  # off: see ghost_cells
    ghost_floor: float = Field(1.1, ge=0)
    dirt_od_min: float = Field(0.15, ge=0)
    max_saturated_fraction: float = Field(0.02, ge=0, le=1)
