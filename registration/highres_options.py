"""The options of ``scope match --highres`` (:class:`HighresOptions`), light to import for the
CLI (:mod:`registration.highres` explains each step they tune)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class HighresOptions(BaseModel):
    """Knobs of the 100x matching.

    Attributes
    ----------
    search_um
        How far (µm) a cell may sit from where the highres stage put it (relocation error).
    scale_range
        Relative range of trial magnification ratios around the nominal one (±).
    scale_step
        Relative step between trial ratios; a parabola refines the best one.
    context_um
        Largest side of the region matched (µm at the sample): more context, finer scale.
    min_score
        Correlation (at 100x) below which a cell gets no 100x target.
    gaussian_ksize, laplacian_ksize
        The LoG kernels (thesis: 9 and 7; odd).
    refine_px
        Half-width of the 100x refinement search (100x pixels).
    exclude_um
        Radius (µm at the sample) around the 100x frame's centre — the imaged cell — left
        out of the ratio measurement.

    A pydantic model: a value out of range is refused when the options are made, with a
    ``ValidationError`` naming the field; ``scope match --highres`` takes its
    ``--highres-*`` options (ranges, defaults, help) from here.
    """

    model_config = ConfigDict(frozen=True)

    search_um: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="How far (µm) a cell may sit from where the highres stage put it.",
    )
    scale_range: float = Field(
        0.025, ge=0, lt=0.5, description="Relative range (±) of trial magnification ratios."
    )
    scale_step: float = Field(0.005, gt=0, description="Relative step between trial ratios.")
    context_um: float = Field(
        70.0, gt=0, allow_inf_nan=False, description="Largest side of the region matched, µm."
    )
    min_score: float = Field(
        0.4, ge=-1, le=1, description="Correlation at 100x below which a cell gets no target."
    )
    gaussian_ksize: int = Field(9, ge=1, description="Gaussian kernel of the LoG (thesis: 9).")
    laplacian_ksize: int = Field(
        7, ge=1, le=31, description="Laplacian kernel of the LoG (thesis: 7)."
    )
    refine_px: int = Field(8, ge=1, description="Half-width of the 100x refinement, 100x px.")
    exclude_um: float = Field(
        8.0,
        ge=0,
        allow_inf_nan=False,
        description="Radius (µm) around the imaged cell left out of the ratio measurement.",
    )

    @field_validator("gaussian_ksize", "laplacian_ksize")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("a kernel size must be odd (OpenCV's)")
        return value


__all__ = ["HighresOptions"]
