"""The tolerance level of Eq. 7 of the VirFluoNet paper (virtual fluorescence staining of
MDA-MB-231 and U2OS cells with a conditional GAN):
small intensity differences between a virtual and a chemical stain are tolerable, spurious or
missing structures are not.

For a threshold ``t_i = i %`` of the intensity range, ``i = 0 … 99``, and the absolute error
``e`` of every pixel (8-bit images, so ``e`` is an integer 0 … 255):

- ``IE(i)`` — intensity error: mean of ``e / 255`` over the pixels with ``e ≤ t_i``
  (0 when there are none);
- ``SE(i)`` — spatial error: fraction of pixels with ``e > t_i``;
- ``TL = min_i (IE(i) + SE(i)) / 2`` (equal weights, as in the paper), reported with the
  threshold ``t_i`` (in % of the range) where the minimum lies.

A low TL at a low threshold: the images differ by small intensity changes only. A TL driven
by SE at high thresholds: a part of the image is badly wrong (a structure added or lost).
"""

from __future__ import annotations

import numpy as np

THRESHOLDS_PCT = np.arange(100)
#: Grey weights (ITU-R BT.709, as scikit-image's rgb2gray).
GREY = np.array([0.2125, 0.7154, 0.0721])


def _grey_u8(rgb: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(rgb, np.float64) @ GREY).clip(0, 255).astype(np.int16)


def tolerance_from_errors(err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TL and its threshold (% of range) per row of ``err`` — ``(n, pixels)`` integers 0…255."""
    err = np.asarray(err, np.int64)
    n, npx = err.shape
    counts = np.zeros((n, 256), np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), npx), err.ravel()), 1)
    levels = np.arange(256)
    cum_n = np.cumsum(counts, axis=1)  # pixels with e ≤ k
    cum_e = np.cumsum(counts * levels, axis=1)  # sum of e over those
    t = np.floor(THRESHOLDS_PCT * 255 / 100).astype(np.int64)  # e ≤ t_i ⇔ e ≤ floor(t_i)
    below_n = cum_n[:, t]
    below_e = cum_e[:, t]
    ie = np.where(below_n > 0, below_e / np.maximum(below_n, 1) / 255.0, 0.0)
    se = 1.0 - below_n / npx
    score = 0.5 * (ie + se)
    best = score.argmin(axis=1)
    return score[np.arange(n), best], THRESHOLDS_PCT[best].astype(np.float64)


def tolerance_levels(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Tolerance levels of ``(n, h, w, 3) uint8`` predictions against their targets.

    Returns ``tolerance_level`` and ``tolerance_threshold`` (grey image) and
    ``tolerance_level_r|g|b`` (per channel), each ``(n,)``.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"need two (n, h, w, 3) arrays, got {pred.shape} and {target.shape}")
    n = len(pred)
    grey_err = np.abs(_grey_u8(pred) - _grey_u8(target)).reshape(n, -1)
    tl, thr = tolerance_from_errors(grey_err)
    out = {"tolerance_level": tl, "tolerance_threshold": thr}
    diff = np.abs(pred.astype(np.int16) - target.astype(np.int16))
    for c, name in enumerate("rgb"):
        out[f"tolerance_level_{name}"] = tolerance_from_errors(diff[..., c].reshape(n, -1))[0]
    return out
