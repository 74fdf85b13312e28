"""The options of ``scope match`` (:class:`MatchOptions`), light to import for the CLI."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registration.coarse import DEFAULT_MARGIN_UM
from registration.qc_options import QcOptions
from registration.segment import WbcParams
from registration.splits import DEFAULT_BLOCK_UM, DEFAULT_FRACTIONS


class MatchOptions(BaseModel):
    """Every knob of :func:`match_scans` (defaults reproduce the thesis where it has one).

    Attributes
    ----------
    crop_size
        Side of the square crops, px (thesis: 64).
    search_px
        Half-width of the fine SSIM search, px (thesis: ±5).
    margin_um
        Coarse search margin, µm (thesis: 264 px at 0.293 µm/px); capped at 40 % of the frame.
    min_coarse_score, min_distinctness
        A field's own coarse match counts for the fit only above these.
    outlier_px
        A field whose own match sits farther than this from the slide transform is an outlier.
    dedup_um
        Detections closer than this on the slide (stained pass) are one cell.
    fractions, block_um, seed
        The default split: train/val/test fractions, spatial block size (µm), seed.
    workers
        Processes reading and matching fields in parallel.
    skip_blank
        Match around blank fields instead of stopping with an error.
    compression
        Lossless filter of the dataset's image arrays.
    wbc, qc
        Segmentation parameters and QC thresholds.

    A pydantic model: a value out of range is refused when the options are made, with a
    ``ValidationError`` naming the field (the CLI prints it as one line); :meth:`validate`
    checks the nested parameter sets.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    crop_size: int = Field(64, ge=16, multiple_of=2, description="Crop side, px.")
    search_px: int = Field(5, ge=1, le=32, description="Fine search half-width, px.")
    margin_um: float = Field(
        DEFAULT_MARGIN_UM,
        ge=1.0,
        allow_inf_nan=False,
        description="Coarse search margin, µm (capped at 40 % of the frame).",
    )
    min_coarse_score: float = 0.05
    min_distinctness: float = 0.15
    outlier_px: float = Field(5.0, gt=0)
    dedup_um: float = Field(5.0, gt=0)
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    block_um: float = Field(
        DEFAULT_BLOCK_UM, ge=1.0, description="Spatial block of the default split, µm."
    )
    seed: int = Field(0, description="Seed of the default split.")
    workers: int = Field(1, ge=1, description="Processes working on fields in parallel.")
    skip_blank: bool = Field(False, description="Match around blank fields instead of stopping.")
    compression: str = "blosc2-lz4"
    wbc: WbcParams = Field(default_factory=WbcParams)
    qc: QcOptions = Field(default_factory=QcOptions)

    def validate(self) -> None:  # type: ignore[override]  # pydantic's classmethod is deprecated
        """Check the segmentation parameters (a dataclass; the pydantic fields, ``qc``
        included, are checked when made)."""
        self.wbc.validate()

    def as_dict(self) -> dict[str, Any]:
        """Every option as plain values (the dataset's provenance records it)."""
        return {
            **self.model_dump(exclude={"wbc", "qc"}),
            "wbc": asdict(self.wbc),
            "qc": self.qc.model_dump(),
        }
