"""The parameters of WBC detection (:func:`registration.segment.find_wbcs`): one pydantic model.

Every field carries its default, its range and a one-line description; ``scope segment``
and ``scope match`` build their detection options from it (``scope/options.py``), so a range
or a default lives here only. :class:`WbcParams` is a frozen pydantic dataclass: a value out
of range is refused when the parameters are made, and ``dataclasses.replace`` /
``dataclasses.asdict`` keep working for the code that copies or records them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from hardware_profiles.errors import ScopeError


class SegmentationError(ScopeError, ValueError):
    """An image or a segmentation parameter is unusable."""


def _hsv(default: float, desc: str, hi: float = 255.0) -> Any:
    return Field(default, ge=0.0, le=hi, description=desc)


def _um(default: float, desc: str, *, positive: bool = False, hi: float = 1000.0) -> Any:
    if positive:
        return Field(default, gt=0.0, le=hi, description=desc)
    return Field(default, ge=0.0, le=hi, description=desc)


@pydantic_dataclass(frozen=True)
class WbcParams:
    """Parameters of :func:`registration.segment.find_wbcs` (sizes in µm and µm², colours on
    OpenCV's HSV scale: H 0–180, S and V 0–255).

    The boxes are those of a reference Romanowsky stain after white balance: nuclei have hue
    105–155 (blue to purple), saturation ≥ 90 and value ≤ 215 (or hue up to 12 past 155 when
    value ≤ ``dark_value_max``); the cell body (cytoplasm) hue 100–152 and saturation ≥ 28.
    With ``adapt`` the saturation limits scale with the image's (or, with
    ``saturation_scale``, the slide's) stain: see
    :func:`registration.wbc_colour.adapted_boxes`, :mod:`registration.stain_colour` and
    ``docs/registration.md``.
    """

    # -- the nucleus colour box (reference stain)
    hue_min: float = _hsv(105.0, "Nucleus box: lowest hue (OpenCV 0-180).", 180.0)
    hue_max: float = _hsv(155.0, "Nucleus box: highest hue (OpenCV 0-180).", 180.0)
    saturation_min: float = _hsv(90.0, "Nucleus box: lowest saturation, reference stain.")
    value_max: float = _hsv(215.0, "Nucleus box: highest value (brightness).")
    dark_hue_extra: float = _hsv(12.0, "Dark magenta nuclei: hue units past hue_max.", 30.0)
    dark_value_max: float = _hsv(165.0, "Dark magenta nuclei: highest value.")
    # -- the cell-body colour box
    body_hue_min: float = _hsv(100.0, "Cell-body box: lowest hue.", 180.0)
    body_hue_max: float = _hsv(152.0, "Cell-body box: highest hue.", 180.0)
    body_saturation_min: float = _hsv(28.0, "Cell-body box: lowest saturation.")
    body_value_max: float = _hsv(245.0, "Cell-body box: highest value.")
    # -- adaptation to the stain
    white_balance: bool = Field(True, description="White-balance on the image's own glass.")
    adapt: bool = Field(True, description="Scale the boxes' saturation limits to the stain.")
    saturation_scale: float = Field(
        0.0, ge=0.0, le=5.0, description="Fixed saturation scale (0: measure the stain)."
    )
    reference_saturation: float = Field(
        35.0, gt=0.0, le=255.0, description="Pale-stain saturation the boxes were drawn for."
    )
    top_fraction: float = Field(
        0.6, ge=0.0, le=1.0, description="Nucleus saturation limit at most this x the top."
    )
    top_contrast: float = Field(
        2.0, ge=0.0, le=100.0, description="Top saturation over pale stain that counts as nuclei."
    )
    max_saturation_scale: float = Field(
        1.3, ge=0.0, le=5.0, description="Highest measured saturation scale."
    )
    nucleus_hue: float = _hsv(0.0, "Follow nuclei at this hue (0: keep the boxes' hues).", 180.0)
    min_nucleus_contrast: float = Field(
        1.35, ge=0.0, le=100.0, description="Nucleus saturation over the other stain's, at least."
    )
    # -- sizes (µm, µm²)
    smooth_um: float = _um(0.3, "Gaussian smoothing, µm.", hi=10.0)
    closing_um: float = _um(0.8, "Closing disk of the nucleus mask, µm.", hi=10.0)
    join_um: float = _um(1.5, "Join nucleus fragments closer than twice this, µm.", hi=20.0)
    max_nucleus_extent_um: float = _um(
        14.0, "Largest extent of one joined nucleus, µm.", positive=True, hi=100.0
    )
    max_cell_radius_um: float = _um(
        9.0, "Farthest a cell body reaches from its nucleus, µm.", positive=True, hi=100.0
    )
    rim_um: float = _um(2.5, "Body rim kept around a nucleus in a blob, µm.", positive=True)
    split_prominence_um: float = _um(1.0, "Split touching cells: core prominence, µm.", hi=50.0)
    split_core_radius_um: float = _um(
        3.0, "Split touching cells: smallest core radius, µm.", positive=True, hi=50.0
    )
    min_fragment_area_um2: float = _um(0.5, "Nucleus specks smaller than this dropped, µm².")
    min_nucleus_area_um2: float = _um(2.0, "Smallest nucleus of a cell, µm².")
    min_nucleus_alone_um2: float = _um(10.0, "Smallest nucleus of a cell without a body, µm².")
    min_cell_area_um2: float = _um(45.0, "Smallest cell (nucleus and body), µm².", positive=True)
    max_cell_area_um2: float = _um(450.0, "Largest cell, µm².", positive=True, hi=100_000.0)
    coarse_um: float = _um(0.6, "Candidate search grid, µm per pixel (0: none).", hi=10.0)
    # -- the dye rule (stain precipitate)
    min_dye_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="Nucleus dye at least this x the slide's median."
    )
    nucleus_dye_um2: float = _um(0.0, "Reference nucleus dye, µm² (0: the image's median).", hi=1e6)

    @model_validator(mode="after")
    def _ordered(self) -> WbcParams:
        self.validate()
        return self

    def validate(self) -> None:
        """Check the limits that depend on each other (each field's range is checked when
        the parameters are made)."""
        for lo, hi, what in (
            (self.hue_min, self.hue_max, "hue_min < hue_max"),
            (self.body_hue_min, self.body_hue_max, "body_hue_min < body_hue_max"),
        ):
            if not 0 <= lo < hi <= 180:
                raise SegmentationError(
                    f"hue ranges must satisfy 0 ≤ {what} ≤ 180 (OpenCV scale); got [{lo}, {hi}]."
                )
        if not 0 < self.min_cell_area_um2 < self.max_cell_area_um2:
            raise SegmentationError(
                f"the cell area limits must satisfy 0 < min_cell_area_um2 < max_cell_area_um2; "
                f"got {self.min_cell_area_um2} and {self.max_cell_area_um2}."
            )


DEFAULT_PARAMS = WbcParams()
PARAM_NAMES = tuple(f.name for f in dataclasses.fields(WbcParams))
#: each parameter's pydantic field (default, range, description)
PARAM_FIELDS = WbcParams.__pydantic_fields__


def describe_error(err: ValidationError) -> str:
    """One line naming the first bad parameter and what it must be."""
    first = err.errors()[0]
    name = ".".join(str(x) for x in first.get("loc", ()))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
    if name:
        return f"WBC segmentation parameter {name}: {msg} (got {first.get('input')!r})."
    return f"WBC segmentation parameters: {msg}."


def make_params(params: WbcParams | None = None, **overrides: Any) -> WbcParams:
    """``params`` (or the defaults) with keyword overrides, validated.

    Raises :class:`SegmentationError` (one line) for an unknown name or a value out of range.
    """
    base = params or DEFAULT_PARAMS
    unknown = sorted(set(overrides) - set(PARAM_NAMES))
    if unknown:
        raise SegmentationError(
            f"unknown WBC segmentation parameter(s) {unknown}; known: {', '.join(PARAM_NAMES)}."
        )
    if not overrides:
        return base
    try:
        return dataclasses.replace(base, **overrides)
    except ValidationError as err:
        raise SegmentationError(f"WBC segmentation parameter {describe_error(err)}.") from None
