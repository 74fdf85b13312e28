"""How strongly and in which hue a smear is stained, measured on its own images.

WBC detection (:mod:`registration.segment`) keeps nucleus and cell-body pixels inside colour
boxes on the white-balanced HSV image. A fixed box fits one lab's stain; another lab's may be
lighter, bluer or less saturated, or its camera may render colours paler (white balance,
JPEG). Stain saturation falls in proportion to the amount of dye for all but the darkest
structures (``S = 1 − 10^-(ΔOD)`` ≈ ``2.3 ΔOD``), so the boxes' saturation limits scale with a
measured **saturation scale**: a low percentile (:data:`SATURATION_PERCENTILE`) of the
saturation of the image's blue-purple stained pixels (pale red cells on a smear, cytoplasm
around a lone cell) over :data:`REFERENCE_SATURATION`, the value on the stains the defaults
were drawn for. The **top saturation** (:data:`TOP_PERCENTILE`) stands for the nuclei where
there are any. The **nucleus hue** (the hue of the pixels the scaled nucleus box keeps) is
reported, and followed only when given as a parameter (on a field without a white cell it
is the red cells' hue).

Stained pixels are found by optical density against the glass, which does not depend on
saturation or white balance. ``registration.segment.measure_stain`` measures one image;
:func:`slide_stain` combines the fields of a slide (a field without a white cell still gives
the red cells' saturation, so the slide's median is the better estimate for every field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the measured saturation (OpenCV scale, after white balance; see SATURATION_PERCENTILE) of
#: the smears the default colour boxes were drawn for
REFERENCE_SATURATION = 35.0
#: which percentile of the stained pixels' saturation is measured: a low one, so that the
#: pale stained objects (red cells, cytoplasm) set it even where a nucleus fills most of
#: the image
SATURATION_PERCENTILE = 15.0
#: the percentile of the blue-purple stained pixels' saturation that stands for the nuclei
TOP_PERCENTILE = 97.0
#: the nucleus hue the default boxes are centred on (OpenCV scale, 0–180)
REFERENCE_NUCLEUS_HUE = 132.0
#: stained pixels absorb at least this optical density (log10) summed over R, G, B
STAINED_OD = 0.1
#: white-balanced glass is mapped to this grey level
GLASS_LEVEL = 235.0


@dataclass(frozen=True)
class StainStats:
    """A smear's stain as seen by the camera (see the module docstring).

    Attributes
    ----------
    saturation
        The :data:`SATURATION_PERCENTILE` percentile of the stained pixels' saturation
        (OpenCV 0–255) after white balance; NaN when
        the image holds too few stained pixels to tell.
    nucleus_hue
        Median hue (OpenCV 0–180) of the darkest, most saturated blue-purple pixels; NaN when
        too few stand out (no white cell in the image).
    stained_fraction
        Fraction of the image's pixels that are stained.
    top_saturation
        The :data:`TOP_PERCENTILE` percentile of the blue-purple stained pixels' saturation:
        the nuclei where the image holds any, the most saturated red cells where not.
    nucleus_dye
        The median dye content (µm², ``registration.segment.nucleus_dye``) of the white
        cells found on a slide's sampled fields; NaN when not measured or fewer than three.
    """

    saturation: float
    nucleus_hue: float
    stained_fraction: float
    top_saturation: float = float("nan")
    nucleus_dye: float = float("nan")

    def saturation_scale(
        self, reference: float = REFERENCE_SATURATION, lo: float = 0.3, hi: float = 1.0
    ) -> float:
        """``saturation / reference`` clipped to ``[lo, hi]`` (1 when unknown).

        Never above 1 by default: a strong stain keeps the reference boxes.
        """
        if not np.isfinite(self.saturation):
            return 1.0
        return float(np.clip(self.saturation / reference, lo, hi))

    def hue_shift(self, limit: float = 12.0) -> float:
        """How far the nucleus hue sits from the default boxes' centre, clipped to ±limit."""
        if not np.isfinite(self.nucleus_hue):
            return 0.0
        return float(np.clip(self.nucleus_hue - REFERENCE_NUCLEUS_HUE, -limit, limit))


def white_balance_lut(background: np.ndarray) -> np.ndarray:
    """``(256, 1, 3) uint8`` look-up table mapping the glass colour to :data:`GLASS_LEVEL`."""
    gain = GLASS_LEVEL / np.maximum(np.asarray(background, dtype=np.float64), 1.0)
    lut = np.clip(np.arange(256)[:, None] * gain[None, :], 0, 255)
    return lut.astype(np.uint8).reshape(256, 1, 3)


def stained_mask(balanced: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: white-balanced pixels absorbing at least :data:`STAINED_OD`."""
    # sum over channels of log10(235 / v) >= STAINED_OD  <=>  product of v <= 235³ 10^-OD
    v = np.maximum(balanced.astype(np.float32), 1.0)
    return v[..., 0] * v[..., 1] * v[..., 2] <= GLASS_LEVEL**3 * 10.0 ** (-STAINED_OD)


def measure_stain_hsv(
    hsv: np.ndarray,
    stained: np.ndarray,
    *,
    nucleus_saturation: float = 90.0,
    nucleus_value: float = 215.0,
    reference: float = REFERENCE_SATURATION,
    min_pixels: int = 50,
) -> StainStats:
    """:class:`StainStats` of a white-balanced ``(H, W, 3) uint8`` HSV image (OpenCV scale).

    ``nucleus_saturation`` and ``nucleus_value`` are the nucleus box's limits for the
    reference stain; the nucleus hue is measured on the pixels that pass them once scaled.
    """
    n = int(stained.sum())
    frac = n / max(stained.size, 1)
    if n < min_pixels:
        return StainStats(float("nan"), float("nan"), frac)
    h = hsv[..., 0][stained]
    s = hsv[..., 1][stained].astype(np.float32)
    purple = (h >= 95) & (h <= 165)
    v = hsv[..., 2][stained].astype(np.float32)
    # the blue-purple stain only: eosinophil granules and a yellow cast say nothing about it
    pool = s[purple] if purple.sum() >= min_pixels else s
    sat = float(np.percentile(pool, SATURATION_PERCENTILE))
    scale = StainStats(sat, float("nan"), frac).saturation_scale(reference)
    # nucleus hue: the pixels a wide blue-purple box with the scaled limits keeps
    strong = (h >= 95) & (h <= 165) & (s >= nucleus_saturation * scale) & (v <= nucleus_value)
    hue = float(np.median(h[strong])) if strong.sum() >= min_pixels else float("nan")
    return StainStats(sat, hue, frac, float(np.percentile(pool, TOP_PERCENTILE)))


def slide_stain(stats: list[StainStats]) -> StainStats:
    """One slide's stain from its fields' :class:`StainStats` (medians over the fields)."""

    def med(values: list[float]) -> float:
        a = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
        return float(np.median(a)) if a.size else float("nan")

    return StainStats(
        med([s.saturation for s in stats]),
        med([s.nucleus_hue for s in stats]),
        med([s.stained_fraction for s in stats]),
        med([s.top_saturation for s in stats]),
        med([s.nucleus_dye for s in stats]),
    )
