"""Fine registration of one cell: SSIM over ±5 px (thesis §3.1.3, step 3), to sub-pixel.

The ``crop_size`` stained crop around a WBC is slid over the unstained brightfield image
within ``±search_px`` of the seed the slide transform predicts; the offset with the highest
structural similarity wins, and a parabola through the SSIM peak (in x and in y) refines it to
a fraction of a pixel.

:func:`ssim_surface` computes, in one vectorised pass, exactly what
``skimage.metrics.structural_similarity(a, b, win_size=7, data_range=255)`` returns for every
offset (uniform 7x7 window, sample covariance, K1 = 0.01, K2 = 0.03, mean over the map without
its 3-pixel border; the tests check the equality). Calling scikit-image 121 times costs ~50 ms
per cell; the shared local statistics bring it to a few ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware_profiles.errors import ScopeError
from registration.correlate import surface_peak

WIN_SIZE = 7
K1, K2 = 0.01, 0.03


class FineMatchError(ScopeError, ValueError):
    """A fine match was asked for something impossible (crop outside the frame, bad sizes)."""


def _box_valid(stack: np.ndarray, size: int) -> np.ndarray:
    """Means over every ``size x size`` window lying inside each ``(h, w)`` image of a stack.

    ``stack`` is ``(..., h, w)`` float32; returns ``(..., h - size + 1, w - size + 1)``. The
    images are filtered as one tall image (one OpenCV call) and the windows that straddle two
    images are dropped.
    """
    import cv2

    *lead, h, w = stack.shape
    tall = np.ascontiguousarray(stack.reshape(-1, w))
    f = cv2.blur(tall, (size, size), borderType=cv2.BORDER_REFLECT)
    half = size // 2
    f = f.reshape(*lead, h, w)
    return f[..., half : h - half, half : w - half]


def ssim_surface(
    reference: np.ndarray, template: np.ndarray, *, data_range: float = 255.0
) -> np.ndarray:
    """SSIM of ``template`` against every placement inside ``reference``.

    Parameters
    ----------
    reference
        ``(h + 2r, w + 2r)`` grey image (the search region).
    template
        ``(h, w)`` grey image, ``h, w ≥ 7``.
    data_range
        Dynamic range of the images (255 for 8-bit).

    Returns
    -------
    numpy.ndarray
        ``(2r + 1, 2r + 1)`` float64: element ``[dy, dx]`` is scikit-image's mean SSIM of
        ``template`` and ``reference[dy:dy + h, dx:dx + w]`` (7x7 uniform window).
    """
    ref = np.asarray(reference, dtype=np.float64)
    tpl = np.asarray(template, dtype=np.float64)
    h, w = tpl.shape
    if h < WIN_SIZE or w < WIN_SIZE:
        raise FineMatchError(f"the template must be at least {WIN_SIZE}x{WIN_SIZE}; got {w}x{h}.")
    ny, nx = ref.shape[0] - h + 1, ref.shape[1] - w + 1
    if ny < 1 or nx < 1:
        raise FineMatchError(
            f"the search region {ref.shape[1]}x{ref.shape[0]} is smaller than the template {w}x{h}."
        )
    n = WIN_SIZE * WIN_SIZE
    cov_norm = n / (n - 1)  # sample covariance, as scikit-image's default
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    # window statistics of the reference are shared by all offsets; only the cross term
    # depends on the offset
    ref32 = ref.astype(np.float32)
    tpl32 = tpl.astype(np.float32)
    ux_r = _box_valid(ref32, WIN_SIZE)
    uxx_r = _box_valid(ref32 * ref32, WIN_SIZE)
    uy = _box_valid(tpl32, WIN_SIZE)
    uyy = _box_valid(tpl32 * tpl32, WIN_SIZE)
    vy = cov_norm * (uyy - uy * uy)
    hh, ww = uy.shape  # valid windows of the template = map without the 3-px border
    views = np.lib.stride_tricks.sliding_window_view(ref32, (h, w))[:ny, :nx]
    uxy = _box_valid(views * tpl32, WIN_SIZE)  # (ny, nx, hh, ww)
    ux = np.lib.stride_tricks.sliding_window_view(ux_r, (hh, ww))[:ny, :nx]
    uxx = np.lib.stride_tricks.sliding_window_view(uxx_r, (hh, ww))[:ny, :nx]
    vx = cov_norm * (uxx - ux * ux)
    vxy = cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(axis=(-2, -1))


@dataclass(frozen=True)
class FineMatch:
    """One cell's fine match.

    Attributes
    ----------
    x_px, y_px
        Unstained-frame position of the stained point asked for (sub-pixel).
    ssim
        SSIM at the best integer offset.
    on_border
        The best offset lies on the edge of the search window (the true match may lie
        outside it).
    crop_x, crop_y
        Top-left of the integer unstained crop that best matches the stained crop.
    """

    x_px: float
    y_px: float
    ssim: float
    on_border: bool
    crop_x: int
    crop_y: int


def crop_origin(x: float, y: float, crop_size: int) -> tuple[int, int]:
    """Integer top-left of the ``crop_size`` crop centred (as closely as possible) on ``(x, y)``.

    The crop centre is ``origin + (crop_size - 1) / 2``.
    """
    half = (crop_size - 1) / 2
    return int(np.floor(x - half + 0.5)), int(np.floor(y - half + 0.5))


def fine_match(
    unstained_grey: np.ndarray,
    stained_grey: np.ndarray,
    stained_xy: tuple[float, float],
    seed_xy: tuple[float, float],
    *,
    crop_size: int = 64,
    search_px: int = 5,
) -> FineMatch:
    """Find where the stained point ``stained_xy`` lies in the unstained frame.

    Parameters
    ----------
    unstained_grey, stained_grey
        ``(H, W)`` grey images of the same field (any dtype; 8-bit range).
    stained_xy
        Point in the stained frame (the WBC centroid), pixels.
    seed_xy
        Its predicted position in the unstained frame (from the slide transform), pixels.
    crop_size
        Side of the stained crop compared (pixels).
    search_px
        Half-width of the search window around the seed (pixels).

    Raises
    ------
    FineMatchError
        When the stained crop or the search window leaves its frame.
    """
    sx0, sy0 = crop_origin(stained_xy[0], stained_xy[1], crop_size)
    hs, ws = stained_grey.shape
    if sx0 < 0 or sy0 < 0 or sx0 + crop_size > ws or sy0 + crop_size > hs:
        raise FineMatchError(
            f"the {crop_size}x{crop_size} crop at ({stained_xy[0]:.1f}, {stained_xy[1]:.1f}) "
            "leaves the stained frame."
        )
    # where the stained crop's top-left should fall in the unstained frame
    ex = sx0 + (seed_xy[0] - stained_xy[0])
    ey = sy0 + (seed_xy[1] - stained_xy[1])
    bx, by = round(ex), round(ey)
    hu, wu = unstained_grey.shape
    x0, y0 = bx - search_px, by - search_px
    x1, y1 = bx + search_px + crop_size, by + search_px + crop_size
    if x0 < 0 or y0 < 0 or x1 > wu or y1 > hu:
        raise FineMatchError(
            f"the search window around ({seed_xy[0]:.1f}, {seed_xy[1]:.1f}) leaves the "
            "unstained frame."
        )
    template = stained_grey[sy0 : sy0 + crop_size, sx0 : sx0 + crop_size]
    surface = ssim_surface(unstained_grey[y0:y1, x0:x1], template)
    peak = surface_peak(surface)
    cx, cy = x0 + peak.ix, y0 + peak.iy  # integer top-left of the best unstained crop
    # displacement of the crop (sub-pixel) carries the stained point along
    x = stained_xy[0] + (cx + peak.ox - sx0)
    y = stained_xy[1] + (cy + peak.oy - sy0)
    return FineMatch(float(x), float(y), peak.score, peak.on_border, int(cx), int(cy))
