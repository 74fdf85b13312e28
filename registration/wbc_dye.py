"""WBC detection, the last two rules: a nucleus stands out from the other stain (contrast)
and holds a nucleus's amount of dye (stain precipitate does not): the end of step 8 and
step 9 of :mod:`registration.segment`."""

from __future__ import annotations

import numpy as np

from registration.wbc_morphology import disk
from registration.wbc_params import WbcParams


def nucleus_dye(labels: np.ndarray, balanced: np.ndarray, px: float) -> np.ndarray:
    """``(N,)`` dye content of each labelled nucleus: its optical density against the glass,
    summed over R, G and B and integrated over its area (µm²; ``balanced`` is white-balanced
    so that the glass reads :data:`registration.stain_colour.GLASS_LEVEL`).

    A nucleus holds a cell's DNA, and with it a fairly constant amount of the DNA-binding
    dye; stain precipitate is a scatter of dye specks whose total is several times smaller.
    The ratio to the slide's typical nucleus does not depend on how strongly it is stained.
    """
    n = int(labels.max())
    inside = labels > 0
    od = pixel_dye(balanced[inside])
    return np.bincount(labels[inside], weights=od, minlength=n + 1)[1:] * px * px


def pixel_dye(rgb: np.ndarray) -> np.ndarray:
    """``(n,)`` optical density (log10, summed over R, G, B) of white-balanced ``(n, 3)``
    pixels against the glass."""
    from registration.stain_colour import GLASS_LEVEL

    v = np.maximum(rgb.astype(np.float32), 1.0)
    return np.log10(GLASS_LEVEL**3 / (v[:, 0] * v[:, 1] * v[:, 2]))


def enough_dye(dye: np.ndarray, p: WbcParams) -> np.ndarray:
    """``(N,) bool``: nuclei holding at least ``min_dye_fraction`` of the reference dye
    content (``nucleus_dye_um2``, or the median over the image's cells when it has at least
    three; with neither, all are kept)."""
    ref = p.nucleus_dye_um2 or (float(np.median(dye)) if dye.size >= 3 else 0.0)
    if p.min_dye_fraction <= 0 or ref <= 0:
        return np.ones(dye.size, dtype=bool)
    return dye >= p.min_dye_fraction * ref


def stands_out(
    nuc_sat: np.ndarray,
    cell_labels: np.ndarray,
    balanced: np.ndarray,
    hsv: np.ndarray,
    px: float,
    p: WbcParams,
) -> np.ndarray:
    """``(N,) bool``: cells whose nucleus (median saturation ``nuc_sat``) is clearly more
    saturated than the other stain.

    A nucleus is the most saturated thing on a smear; a red cell that a purplish stain
    pushed into the nucleus box is barely more saturated than the other red cells. The
    median saturation of the nucleus must reach ``min_nucleus_contrast`` times that of the
    stained pixels of the nucleus box's hues away from every detected cell (when enough of
    them are left to tell).
    """
    import cv2

    from registration.stain_colour import stained_mask

    n = len(nuc_sat)
    keep = np.ones(n, dtype=bool)
    if n == 0 or p.min_nucleus_contrast <= 0:
        return keep
    step = max(1, round(np.sqrt(cell_labels.size / 120_000)))
    sub = (slice(None, None, step), slice(None, None, step))
    r = max(1, round(2.0 / px / step))
    near = cv2.dilate((cell_labels[sub] > 0).astype(np.uint8), disk(r)) > 0
    hue = hsv[..., 0][sub]
    # the stain that competes with nuclei: stained pixels of the nucleus box's hues
    other = stained_mask(balanced[sub]) & ~near & (hue >= p.hue_min) & (hue <= p.hue_max)
    if other.sum() < max(200 // step**2, 50):
        return keep
    sat = hsv[..., 1]
    typical = float(np.median(sat[sub][other]))
    keep[:] = nuc_sat >= p.min_nucleus_contrast * max(typical, 1.0)
    return keep
