"""100x targets: match each cell's 100x image to its 20x stained crop (thesis §3.1.3, step 5).

The 100x image lacks the dark red-cell rims of the 20x objective, so plain correlation and
SSIM mislead (thesis Fig. 3.4). As in the thesis, the 100x image is converted to grey,
brightness-adjusted, blurred with a 9x9 Gaussian and filtered with a 7x7 Laplacian; that
Laplacian-of-Gaussian is subtracted from the grey image, which restores dark rims at edges.
The 20x stained image is then matched against it:

1. **at 20x scale** — the enhanced 100x image is resampled onto the 20x grid at the nominal
   magnification ratio (5.0) and slid over the stained field around the cell's expected place
   (normalised correlation). The **measured ratio** (the thesis assumed exactly 5) is the
   parabola peak of the correlation over trial ratios, measured on what both objectives show
   alike (:func:`chroma_channel`: the stain's and haemoglobin's colour, not the colourless
   phase rims, which differ between a dry 20x and an oiled 100x objective) and without the
   imaged cell itself (``exclude_um`` around the frame's centre): the frame is centred on the
   cell, so any difference in how large the cell looks would read as a scale;
2. **at 100x** — the stained field is linearly upsampled by that ratio around the match and
   slid over the enhanced 100x image within a few 100x pixels, for sub-pixel precision;
3. **resampling** — the 100x RGB image is averaged over the footprint of every 20x target
   pixel (supersampled box filter = area averaging), giving a target on exactly the grid of
   the 20x crop.

:func:`registration.highres_dataset.add_highres` runs this for every cell of a dataset that
the highres scan imaged and writes a new dataset (temporary file renamed into place) with
``targets_highres``, ``has_highres``, ``highres_score`` and ``highres_scale``. A cell whose
100x image is missing, leaves the 20x frame, or matches poorly keeps ``has_highres`` false
and a NaN ``highres_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hardware_profiles.errors import ScopeError
from registration.correlate import (
    centred_window,
    correlation,
    match_peak,
    parabola_height,
    parabola_vertex,
)
from registration.highres_images import (
    antialias,
    chroma_channel,
    enhance_highres,
    grey_channel,
    resample_target,
    to_grid,
)
from registration.highres_options import HighresOptions

__all__ = [
    "HighresError",
    "HighresMatch",
    "HighresOptions",
    "chroma_channel",
    "enhance_highres",
    "grey_channel",
    "match_highres",
    "resample_target",
]


class HighresError(ScopeError):
    """The highres scan cannot be matched to the dataset."""


def _match_window(
    stained: np.ndarray, template: np.ndarray, cx: float, cy: float, radius: int
) -> tuple[float, float, float, bool]:
    """Match ``template`` (centred near stained px ``(cx, cy)``) within ``±radius``.

    Returns ``(score, centre_x, centre_y, on_border)``; ``nan`` score outside the frame.
    """
    at = centred_window(stained.shape, template.shape[::-1], (cx, cy), radius)
    if at is None:
        return float("nan"), cx, cy, True
    x0, y0 = at
    th, tw = template.shape
    window = stained[y0 : y0 + th + 2 * radius, x0 : x0 + tw + 2 * radius]
    p = match_peak(window, template)
    return p.score, x0 + p.x + (tw - 1) / 2, y0 + p.y + (th - 1) / 2, p.on_border


#: Least fraction of the matched region left once the imaged cell is excluded for a ratio.
MIN_RATIO_AREA = 0.25


def _ratio_curve(
    stained: np.ndarray,
    highres: np.ndarray,
    centre: tuple[float, float],
    size_wh: tuple[int, int],
    off: tuple[float, float],
    r0: float,
    *,
    pixel_size_um: float,
    opt: HighresOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """``(trial ratios, correlation peaks)`` of the region of ``size_wh`` matched at ``centre``.

    Matched on :func:`chroma_channel` images (grey ones for a grey ``stained``), without the
    disk of ``opt.exclude_um`` around the 100x frame's centre. Empty when too little is left
    (:data:`MIN_RATIO_AREA`).
    """
    n = round(opt.scale_range / opt.scale_step)
    trials = r0 * (1 + opt.scale_step * np.arange(-n, n + 1))
    tw, th = size_wh
    yy, xx = np.mgrid[:th, :tw].astype(np.float32)
    dist = np.hypot(xx - ((tw - 1) / 2 - off[0]), yy - ((th - 1) / 2 - off[1])) * pixel_size_um
    keep = (dist >= opt.exclude_um).astype(np.float32)
    if keep.mean() < MIN_RATIO_AREA:
        return trials[:0], np.zeros(0)
    # only the part of the stained field the search can reach
    x0 = max(round(centre[0] - (tw - 1) / 2) - 4, 0)
    y0 = max(round(centre[1] - (th - 1) / 2) - 4, 0)
    part = stained[y0 : y0 + th + 8, x0 : x0 + tw + 8]
    centre = (centre[0] - x0, centre[1] - y0)
    if stained.ndim == 3 and highres.ndim == 3:
        s_feat, h_feat = chroma_channel(part), chroma_channel(highres)
    else:
        s_feat, h_feat = grey_channel(part), grey_channel(highres)
    h_feat = antialias(h_feat, r0)
    scores = [
        _masked_peak(s_feat, to_grid(h_feat, r, size_wh, off), keep, centre, 3) for r in trials
    ]
    return trials, np.asarray(scores, dtype=np.float64)


def _masked_peak(
    image: np.ndarray,
    template: np.ndarray,
    mask: np.ndarray,
    centre: tuple[float, float],
    radius: int,
) -> float:
    """Peak height (parabola-interpolated) of ``template``'s masked correlation near ``centre``.

    NaN when the search window leaves ``image`` or the peak lies on its border.
    """
    at = centred_window(image.shape, template.shape[::-1], centre, radius)
    if at is None:
        return float("nan")
    x0, y0 = at
    th, tw = template.shape
    window = np.ascontiguousarray(image[y0 : y0 + th + 2 * radius, x0 : x0 + tw + 2 * radius])
    c = correlation(window, template.astype(np.float32), mask=mask)
    c = np.nan_to_num(c, nan=-1.0)
    iy, ix = np.unravel_index(int(np.argmax(c)), c.shape)
    if iy in (0, c.shape[0] - 1) or ix in (0, c.shape[1] - 1):
        return float("nan")
    return parabola_height(c, int(iy), int(ix))


@dataclass(frozen=True)
class HighresMatch:
    """Where a 100x frame sits on its 20x stained field.

    ``x, y``: stained-frame pixel of the 100x frame's centre; ``ratio``: 20x pixel size /
    100x pixel size as used; ``measured_ratio``: the ratio this cell alone measured;
    ``score``: normalised correlation at 100x; ``ok``: usable; ``reason`` when not.
    """

    x: float
    y: float
    ratio: float
    measured_ratio: float
    score: float
    ok: bool
    reason: str = ""


def _refine_at_100x(
    stained_grey: np.ndarray,
    enhanced: np.ndarray,
    centre: tuple[float, float],
    r0: float,
    size_wh: tuple[int, int],
    off: tuple[float, float],
    pad: int,
) -> tuple[float, float, float, bool]:
    """``(x, y, score, on_border)``: the 20x match at ``centre`` refined at 100x.

    The stained field is linearly upsampled by the ratio ``r0`` around the match and slid
    over the enhanced 100x image within ``±pad`` 100x pixels; ``(x, y)`` is the 100x frame's
    centre in stained pixels.
    """
    import cv2

    cx, cy = centre
    tw, th = size_wh
    hh, wh = enhanced.shape
    cw = min(wh, int(tw * r0 * 0.8))
    ch = min(hh, int(th * r0 * 0.8))
    x0h = min(max(round((wh - 1) / 2 + off[0] * r0 - cw / 2), 0), wh - cw)
    y0h = min(max(round((hh - 1) / 2 + off[1] * r0 - ch / 2), 0), hh - ch)
    crop = np.ascontiguousarray(enhanced[y0h : y0h + ch, x0h : x0h + cw])
    # stained px of HR px (xh, yh): cx + (xh - (wh-1)/2) / r0
    m = np.array(
        [
            [1 / r0, 0, cx + (x0h - pad - (wh - 1) / 2) / r0],
            [0, 1 / r0, cy + (y0h - pad - (hh - 1) / 2) / r0],
        ]
    )
    up = cv2.warpAffine(
        stained_grey,
        m,
        (cw + 2 * pad, ch + 2 * pad),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    p = match_peak(up, crop)
    # the crop matched at up-offset (pad + d): the 100x content sits d 100x-px further on
    dx_h, dy_h = p.x - pad, p.y - pad
    return cx + dx_h / r0, cy + dy_h / r0, p.score, p.on_border


def match_highres(
    stained: np.ndarray,
    highres: np.ndarray,
    expected_xy: tuple[float, float],
    *,
    pixel_size_um: float,
    nominal_ratio: float,
    ratio: float | None = None,
    options: HighresOptions | None = None,
) -> HighresMatch:
    """Locate a 100x frame on its 20x stained field and measure the magnification ratio.

    Parameters
    ----------
    stained
        ``(H, W, 3) uint8`` RGB 20x stained field. A grey ``(H, W)`` field
        (:func:`grey_channel`) works too, but then the ratio is measured on grey images,
        where the objectives' different phase rims bias it.
    highres
        ``(Hh, Wh, 3) uint8`` RGB 100x frame.
    expected_xy
        Stained-frame pixel where the stage put the 100x frame's centre.
    pixel_size_um
        20x pixel size (µm).
    nominal_ratio
        Nominal 20x / 100x pixel-size ratio (5 for the thesis instrument).
    ratio
        Use this ratio instead of measuring one (positions are still refined).
    """

    opt = options or HighresOptions()
    stained = np.asarray(stained)
    stained_grey = grey_channel(stained)
    enhanced = enhance_highres(
        highres, gaussian_ksize=opt.gaussian_ksize, laplacian_ksize=opt.laplacian_ksize
    )
    hh, wh = enhanced.shape
    h, w = stained_grey.shape
    r0 = float(ratio or nominal_ratio)
    radius = max(2, math.ceil(opt.search_um / pixel_size_um))
    ex, ey = expected_xy
    # template: the part of the 100x footprint (capped by the context) that stays inside
    # the stained frame with room for the search; off-centre near the frame's edge
    half_w = min(wh / (r0 * (1 + opt.scale_range)), opt.context_um / pixel_size_um) / 2
    half_h = min(hh / (r0 * (1 + opt.scale_range)), opt.context_um / pixel_size_um) / 2
    margin = radius + 4
    x_lo, x_hi = max(ex - half_w, margin), min(ex + half_w, w - 1 - margin)
    y_lo, y_hi = max(ey - half_h, margin), min(ey + half_h, h - 1 - margin)
    tw, th = int(x_hi - x_lo), int(y_hi - y_lo)
    if tw < 32 or th < 32:
        return HighresMatch(
            ex, ey, r0, float("nan"), float("nan"), False, "too close to the edge of the 20x frame"
        )
    tw -= tw % 2 == 0
    th -= th % 2 == 0
    off = ((x_lo + x_hi) / 2 - ex, (y_lo + y_hi) / 2 - ey)

    smooth = antialias(enhanced, r0)  # one blur serves every trial ratio (±2.5 %)

    def grid(r: float) -> np.ndarray:
        return to_grid(smooth, r, (tw, th), off)

    # 1. at 20x scale, nominal ratio, full search
    score, tx, ty, border = _match_window(stained_grey, grid(r0), ex + off[0], ey + off[1], radius)
    if not np.isfinite(score) or border:
        return HighresMatch(
            ex, ey, r0, float("nan"), score, False, "no match within the relocation search"
        )
    measured = float("nan")
    if ratio is None:
        trials, scores = _ratio_curve(
            stained, highres, (tx, ty), (tw, th), off, r0, pixel_size_um=pixel_size_um, opt=opt
        )
        if np.isfinite(scores).any():  # else no ratio from this cell; position at r0
            k = int(np.nanargmax(scores))
            if not 0 < k < len(trials) - 1:
                return HighresMatch(
                    tx - off[0],
                    ty - off[1],
                    float(trials[k]),
                    float(trials[k]),
                    float(scores[k]),
                    False,
                    "magnification ratio outside the search range",
                )
            step = parabola_vertex(*scores[k - 1 : k + 2])
            measured = float(trials[k] * (1 + opt.scale_step * step))
            r0 = measured
            score, tx, ty, border = _match_window(stained_grey, grid(r0), tx, ty, 3)
    cx, cy = tx - off[0], ty - off[1]
    # 2. at 100x: the stained field linearly upsampled by the ratio around the match
    x, y, fine_score, on_border = _refine_at_100x(
        stained_grey, enhanced, (cx, cy), r0, (tw, th), off, opt.refine_px
    )
    ok = fine_score >= opt.min_score and not on_border
    reason = (
        ""
        if ok
        else (
            "weak correlation"
            if fine_score < opt.min_score
            else "100x refinement hit its search limit"
        )
    )
    return HighresMatch(float(x), float(y), float(r0), measured, fine_score, bool(ok), reason)
