"""The images 100x matching works on: colour and grey channels, the LoG-enhanced 100x image,
resampling between the 100x and 20x grids (:mod:`registration.highres` uses them).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from registration.highres import HighresMatch


def grey_channel(image: np.ndarray) -> np.ndarray:
    """The green channel as float32: the "grey" image both objectives are matched on.

    Green is where eosin and haemoglobin absorb and where objectives are best corrected;
    the red and blue channels of the 20x images carry chromatic blur and shifts that bias a
    luminance match by a pixel or two.
    """
    image = np.asarray(image)
    return (image[..., 1] if image.ndim == 3 else image).astype(np.float32)


def chroma_channel(image: np.ndarray) -> np.ndarray:
    """``ln(red) − ln(green)`` as float32: the stained smear's colour, blind to grey losses.

    Stains and haemoglobin absorb green far more than red; light lost to phase relief (the
    dark rims a dry 20x objective shows around cells, which an oil-immersion 100x objective
    barely shows) is nearly colourless and cancels in the difference. Both objectives show
    this image alike, up to resolution.
    """
    image = np.asarray(image, dtype=np.float32)
    return (np.log(image[..., 0] + 1.0) - np.log(image[..., 1] + 1.0)).astype(np.float32)


def enhance_highres(
    image: np.ndarray, *, gaussian_ksize: int = 9, laplacian_ksize: int = 7
) -> np.ndarray:
    """Grey (green), brightness-adjusted, LoG-subtracted 100x image: ``(H, W) float32``.

    Brightness adjustment maps the 1st–99th percentile to 0–1. The Laplacian is normalised
    to unit gain on a quadratic (OpenCV's larger apertures scale it up), so the subtraction
    is ``grey − σ²·∇²(G * grey)`` with σ the Gaussian's — an edge accentuation of fixed
    strength whatever the kernel sizes.
    """
    import cv2

    grey = grey_channel(image)
    lo, hi = np.percentile(grey[::4, ::4], (1, 99))
    grey = (grey - np.float32(lo)) / np.float32(max(float(hi - lo), 1.0))
    blurred = cv2.GaussianBlur(grey, (gaussian_ksize, gaussian_ksize), 0)
    lap = cv2.Laplacian(blurred, cv2.CV_32F, ksize=laplacian_ksize) / laplacian_gain(
        laplacian_ksize
    )
    sigma = 0.3 * ((gaussian_ksize - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a ksize
    return (grey - np.float32(sigma * sigma) * lap).astype(np.float32)


def laplacian_gain(ksize: int) -> float:
    """OpenCV's Laplacian of ``x²/2 + y²/2`` (true value 2) divided by 2."""
    import cv2

    n = 4 * ksize + 1
    yy, xx = np.mgrid[:n, :n].astype(np.float32) - n // 2
    q = 0.5 * (xx * xx + yy * yy)
    return float(cv2.Laplacian(q, cv2.CV_32F, ksize=ksize)[n // 2, n // 2]) / 2.0


def to_grid(
    smoothed: np.ndarray,
    ratio: float,
    size_wh: tuple[int, int],
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The enhanced 100x image resampled onto a 20x grid of ``size_wh``.

    The grid is centred ``offset`` (20x px) away from the 100x frame's centre. ``smoothed``
    must already be smoothed over one 20x pixel (:func:`antialias`); it is sampled as is.
    """
    import cv2

    hh, wh = smoothed.shape
    tw, th = size_wh
    m = np.array(
        [
            [ratio, 0, (wh - 1) / 2 + ratio * (offset[0] - (tw - 1) / 2)],
            [0, ratio, (hh - 1) / 2 + ratio * (offset[1] - (th - 1) / 2)],
        ],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        smoothed,
        m,
        (tw, th),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def antialias(enhanced: np.ndarray, ratio: float) -> np.ndarray:
    """Smooth a 100x image over about one 20x pixel (σ = 0.35 · ratio) before resampling."""
    import cv2

    return cv2.GaussianBlur(enhanced, (0, 0), 0.35 * ratio)


def resample_target(
    highres: np.ndarray, match: HighresMatch, origin: tuple[int, int], size: int
) -> np.ndarray | None:
    """The 100x RGB image averaged onto the 20x crop grid with top-left ``origin``.

    Each target pixel is the mean of ``k x k`` bilinear samples of the 100x image spread
    evenly over its footprint (``k = ceil(ratio)``): area averaging at any ratio. Returns
    ``(size, size, 3) uint8``, or ``None`` when the footprint leaves the 100x frame.
    """
    import cv2

    hh, wh = highres.shape[:2]
    r = match.ratio
    k = max(2, math.ceil(r))
    sub = (np.arange(size * k) + 0.5) / k - 0.5  # 20x coordinates of the samples
    xs = (origin[0] + sub - match.x) * r + (wh - 1) / 2
    ys = (origin[1] + sub - match.y) * r + (hh - 1) / 2
    if xs[0] < 0 or ys[0] < 0 or xs[-1] > wh - 1 or ys[-1] > hh - 1:
        return None
    # only the footprint, in float (8-bit samples would round before averaging)
    x0, y0 = int(np.floor(xs[0])), int(np.floor(ys[0]))
    x1, y1 = min(int(np.ceil(xs[-1])) + 1, wh), min(int(np.ceil(ys[-1])) + 1, hh)
    region = np.ascontiguousarray(highres[y0:y1, x0:x1], dtype=np.float32)
    map_x, map_y = np.meshgrid((xs - x0).astype(np.float32), (ys - y0).astype(np.float32))
    samples = cv2.remap(region, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    avg = samples.reshape(size, k, size, k, 3).mean(axis=(1, 3))
    return np.clip(np.round(avg), 0, 255).astype(np.uint8)
