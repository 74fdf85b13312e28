"""Coarse registration of the stained pass onto the unstained pass (thesis §3.1.3, step 1).

Per field, the stained brightfield image is cropped by a physical margin (77 µm, the thesis's
264 px at 0.293 µm/px, at most 40 % of the frame's smaller side); Canny edges of both images
are correlated with OpenCV's normalised correlation coefficient (``TM_CCOEFF_NORMED``). The
search runs at half resolution over the whole margin, then at full resolution around the
peak, with a parabola through the peak for sub-pixel precision; the template is then cut into
tiles matched locally, so each field also yields point pairs that carry rotation.

Beyond the thesis: the slide moved as one rigid body between the passes, so one rigid
transform is fitted to the tiles of every field (:mod:`registration.slide_fit`, with the
transforms in :mod:`registration.rigid`).

Conventions: a displacement ``(dx, dy)`` means stained pixel ``(x, y)`` shows what unstained
pixel ``(x + dx, y + dy)`` shows (same field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from registration.correlate import correlation, parabola_offsets
from registration.errors import RegistrationError
from registration.rigid import (
    RigidTransform,
    fit_rigid,
    robust_fit_rigid,
    stage_transform_between,
)
from registration.slide_fit import PairGeometry, SlideFit, fit_slide_transform

__all__ = [
    "DEFAULT_MARGIN_UM",
    "CoarseMatch",
    "PairGeometry",
    "RegistrationError",
    "RigidTransform",
    "SlideFit",
    "coarse_match",
    "edge_map",
    "fit_rigid",
    "fit_slide_transform",
    "margin_px",
    "robust_fit_rigid",
    "stage_transform_between",
    "to_grey",
]

#: The thesis's margin: 264 px at 0.293 µm/px — the largest re-placement the search absorbs.
DEFAULT_MARGIN_UM = 77.0
MAX_MARGIN_FRACTION = 0.4
#: Smallest side of a tile matched on its own (px).
MIN_TILE_PX = 160


# -- per-field edge correlation -------------------------------------------------------------------
def to_grey(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 luminance of an RGB or grey image."""
    import cv2

    image = np.asarray(image)
    if image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return image


def edge_map(
    image: np.ndarray, *, pixel_size_um: float, smooth_um: float = 0.5, spread_um: float = 1.2
) -> np.ndarray:
    """Canny edges, spread by a Gaussian: ``(H, W) float32`` in [0, 1].

    The image is smoothed (``smooth_um``) to suppress camera noise; the Canny thresholds adapt
    to the image (90th and 40th percentiles of its gradient magnitude), so unstained and
    stained images of different contrast give edge maps of similar density. Spreading the
    thin edges (``spread_um``) makes the correlation peak tolerant to small rotations and to
    edges that sit a pixel apart in the two modalities.
    """
    import cv2

    grey = to_grey(image)
    sigma = smooth_um / pixel_size_um
    blurred = cv2.GaussianBlur(grey, (0, 0), sigma) if sigma >= 0.3 else grey
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    high = float(np.percentile(mag[::4, ::4], 90))
    if high <= 0:
        return np.zeros(grey.shape, dtype=np.float32)
    edges = cv2.Canny(blurred, 0.4 * high, high, L2gradient=True).astype(np.float32) / 255.0
    spread = spread_um / pixel_size_um
    if spread >= 0.3:
        edges = cv2.GaussianBlur(edges, (0, 0), spread)
    return edges


def margin_px(
    frame_hw: tuple[int, int], *, pixel_size_um: float, margin_um: float = DEFAULT_MARGIN_UM
) -> int:
    """The search margin in pixels: ``margin_um`` capped at 40 % of the smaller frame side."""
    if margin_um <= 0:
        raise RegistrationError(f"the coarse margin must be positive; got {margin_um} µm.")
    return int(
        min(round(margin_um / pixel_size_um), math.floor(MAX_MARGIN_FRACTION * min(frame_hw)))
    )


def _second_peak(c: np.ndarray, y: int, x: int, radius: int) -> float:
    c2 = c.copy()
    c2[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = -np.inf
    return float(c2.max()) if np.isfinite(c2).any() else float("nan")


@dataclass(frozen=True)
class CoarseMatch:
    """One field's coarse match.

    Attributes
    ----------
    dx_px, dy_px
        Displacement (stained → unstained pixels) at the stained frame centre.
    score
        ``TM_CCOEFF_NORMED`` of the whole template at the peak (−1…1).
    distinctness
        ``1 − second peak / peak`` of the correlation surface (0 = ambiguous, 1 = unique).
    tiles
        ``(n, 5)`` float: stained ``x, y`` of a tile centre, matched unstained ``x, y``, score.
    margin_px
        The margin the search used.
    """

    dx_px: float
    dy_px: float
    score: float
    distinctness: float
    tiles: np.ndarray = field(repr=False)
    margin_px: int = 0

    def reliable(self, *, min_score: float, min_distinctness: float) -> bool:
        return bool(
            np.isfinite(self.score)
            and self.score >= min_score
            and self.distinctness >= min_distinctness
        )


def coarse_match(
    unstained: np.ndarray,
    stained: np.ndarray,
    *,
    pixel_size_um: float,
    margin_um: float = DEFAULT_MARGIN_UM,
    tiles: tuple[int, int] = (3, 3),
    downsample: int = 2,
) -> CoarseMatch:
    """Match one field's stained brightfield image onto its unstained one.

    Parameters
    ----------
    unstained, stained
        ``(H, W, 3) uint8`` RGB (or ``(H, W)`` grey) brightfield images of the same field.
    pixel_size_um
        Pixel size at the sample (µm).
    margin_um
        Crop margin of the stained template on every side; the largest displacement found.
    tiles
        ``(rows, columns)`` of template tiles matched locally (0 disables).
    downsample
        Factor of the first, whole-margin search (1 = full resolution).
    """
    import cv2

    if unstained.shape[:2] != stained.shape[:2]:
        raise RegistrationError(
            f"the unstained ({unstained.shape[1]}x{unstained.shape[0]}) and stained "
            f"({stained.shape[1]}x{stained.shape[0]}) frames differ in size."
        )
    h, w = unstained.shape[:2]
    m = margin_px((h, w), pixel_size_um=pixel_size_um, margin_um=margin_um)
    if m < 4:
        raise RegistrationError(f"frames of {w}x{h} pixels are too small to register.")
    eu = edge_map(unstained, pixel_size_um=pixel_size_um)
    es = edge_map(stained, pixel_size_um=pixel_size_um)
    template = es[m : h - m, m : w - m]
    if float(template.std()) == 0.0 or float(eu.std()) == 0.0:
        return CoarseMatch(0.0, 0.0, float("nan"), 0.0, np.zeros((0, 5)), m)

    f = max(1, int(downsample))
    if f > 1 and m // f >= 4:
        eu_s = cv2.resize(eu, (w // f, h // f), interpolation=cv2.INTER_AREA)
        ms = m // f
        tpl_s = cv2.resize(es, (w // f, h // f), interpolation=cv2.INTER_AREA)[
            ms : h // f - ms, ms : w // f - ms
        ]
    else:
        f, eu_s, tpl_s, ms = 1, eu, template, m
    corr = correlation(eu_s, tpl_s)
    _, peak, _, (px, py) = cv2.minMaxLoc(corr)
    second = _second_peak(corr, py, px, radius=max(2, round(3.0 / (pixel_size_um * f))))
    distinct = 0.0 if peak <= 0 or not np.isfinite(second) else max(0.0, 1.0 - second / peak)
    dx0, dy0 = (px - ms) * f, (py - ms) * f

    # full-resolution refinement around the coarse peak
    r = f + 2
    score, fx, fy = _local_match(eu, template, m + dx0, m + dy0, r)
    if not np.isfinite(score):
        return CoarseMatch(float(dx0), float(dy0), float(peak), distinct, np.zeros((0, 5)), m)
    dx, dy = fx - m, fy - m

    # tiles: local shifts that carry rotation
    rows = []
    # a tile away from the centre moves by up to (rotation x distance) beyond the global shift
    tile_radius = 3 + math.ceil(math.radians(0.5) * max(template.shape) / 2)
    # tiles of at least MIN_TILE_PX a side, so each holds a few cells' worth of edges
    ty = min(tiles[0], template.shape[0] // MIN_TILE_PX)
    tx = min(tiles[1], template.shape[1] // MIN_TILE_PX)
    if ty > 0 and tx > 0 and ty * tx > 1:
        th, tw = template.shape[0] // ty, template.shape[1] // tx
        for i in range(ty):
            for j in range(tx):
                tile = template[i * th : (i + 1) * th, j * tw : (j + 1) * tw]
                if tile.std() < 1e-4:
                    continue
                x0, y0 = m + j * tw, m + i * th  # tile top-left in the stained frame
                s_t, fx, fy = _local_match(eu, tile, x0 + dx, y0 + dy, tile_radius)
                if not np.isfinite(s_t):
                    continue
                half_w, half_h = (tw - 1) / 2, (th - 1) / 2
                rows.append((x0 + half_w, y0 + half_h, fx + half_w, fy + half_h, s_t))
    tiles_arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return CoarseMatch(float(dx), float(dy), float(score), float(distinct), tiles_arr, m)


def _local_match(
    image: np.ndarray, template: np.ndarray, x: float, y: float, radius: int
) -> tuple[float, float, float]:
    """Match ``template`` with its top-left within ``±radius`` px of ``(x, y)`` in ``image``.

    Returns ``(score, found_x, found_y)``: the peak ``TM_CCOEFF_NORMED`` and the sub-pixel
    top-left of the match in ``image``; ``(nan, 0, 0)`` when the window leaves the image.
    """
    import cv2

    th, tw = template.shape
    h, w = image.shape
    xi, yi = round(x), round(y)
    x0, y0 = xi - radius, yi - radius
    x1, y1 = xi + radius + tw, yi + radius + th
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, w), min(y1, h)
    if cx1 - cx0 < tw + 2 or cy1 - cy0 < th + 2:
        return float("nan"), 0.0, 0.0
    window = image[cy0:cy1, cx0:cx1]
    c = correlation(window, template)
    _, peak, _, (px, py) = cv2.minMaxLoc(c)
    ox, oy = parabola_offsets(c, py, px)
    return float(peak), float(cx0 + px + ox), float(cy0 + py + oy)
