"""Stain absorbance per structure, measured the same way on real and simulated smears.

The absorbance of a pixel is ``-ln(I / I_glass)`` per RGB channel, with ``I_glass`` the clear
glass level of that image. A structure's absorbance is the median over its pixels. Real crops
(``wbc-stains``: one white cell per image, masks 255 nucleus / 128 cytoplasm / 0 the rest) carry
no red-cell mask, so red cells are found the same way on both: background pixels whose green
absorbance exceeds :data:`RBC_GREEN_ABSORBANCE` (red cells absorb green far more than glass).
The glass level is the median of the background pixels below a tenth of that.
"""

from __future__ import annotations

import numpy as np

#: Background pixels with a green absorbance above this are red cells.
RBC_GREEN_ABSORBANCE = 0.12
#: Background pixels with a green absorbance below this (relative to the brightest) are glass.
_GLASS_GREEN_ABSORBANCE = 0.04

STRUCTURES = ("rbc", "nucleus", "cytoplasm")


def glass_level(image: np.ndarray, background: np.ndarray) -> np.ndarray | None:
    """Per-channel clear-glass level ``(3,)`` of an RGB image, from its background pixels."""
    px = image[background].astype(np.float64)
    if len(px) < 50:
        return None
    bright = np.percentile(px, 95, axis=0)
    a_green = -np.log(np.maximum(px[:, 1], 1.0) / max(bright[1], 1.0))
    glass = px[a_green < _GLASS_GREEN_ABSORBANCE]
    if len(glass) < 20:
        return None
    return np.median(glass, axis=0)


def structure_absorbance(
    image: np.ndarray, nucleus: np.ndarray, cytoplasm: np.ndarray, background: np.ndarray
) -> dict[str, np.ndarray]:
    """Median absorbance ``(3,)`` (R, G, B) of red cells, nucleus and cytoplasm in one image.

    ``background`` is every pixel outside the white cell (glass and red cells). Structures with
    too few pixels are left out of the result.
    """
    glass = glass_level(image, background)
    if glass is None:
        return {}
    a = -np.log(np.maximum(image.astype(np.float64), 1.0) / np.maximum(glass, 1.0))
    rbc = background & (a[..., 1] > RBC_GREEN_ABSORBANCE)
    out = {}
    for name, mask in (("rbc", rbc), ("nucleus", nucleus), ("cytoplasm", cytoplasm)):
        if mask.sum() >= 20:
            out[name] = np.median(a[mask], axis=0)
    return out


def nucleus_density(image: np.ndarray, nucleus: np.ndarray, background: np.ndarray) -> float:
    """Mean optical density of a nucleus: ``log10(I_glass / I)`` summed over R, G and B,
    averaged over the ``nucleus`` mask (its integrated density, or dye, is this times the
    mask's area). NaN when the glass level cannot be read from ``background`` (every pixel
    outside the white cell) or the mask is empty.

    The same measure on real crops (expert masks) and simulated frames (truth masks), so the
    nucleus densities of cell types can be compared, each over its slide's median nucleus.
    """
    glass = glass_level(image, background)
    if glass is None or not nucleus.any():
        return float("nan")
    px = np.maximum(image[nucleus].astype(np.float64), 0.5)
    return float(np.log10(np.maximum(glass, 1.0) / px).sum(axis=1).mean())
