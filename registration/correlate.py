"""Template matching with a sub-pixel peak: the one correlator coarse, fine, 100x and QC use.

Every stage that locates one image inside another does the same two steps: a normalised
cross-correlation of a template over a search image (OpenCV's ``TM_CCOEFF_NORMED``; fine
matching builds an SSIM surface instead) and a parabola through the best score and its two
neighbours along each axis for the sub-pixel position. Both live here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def parabola_vertex(a: float, b: float, c: float) -> float:
    """Offset of the vertex of the parabola through ``(-1, a), (0, b), (1, c)``, within ±0.5.

    0 when the three points do not bend downwards (no maximum).
    """
    den = a - 2 * b + c
    return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def parabola_offsets(surface: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Sub-pixel offsets ``(ox, oy)`` of the maximum at ``(iy, ix)`` (0 on the border)."""
    h, w = surface.shape
    s = surface
    ox = parabola_vertex(s[iy, ix - 1], s[iy, ix], s[iy, ix + 1]) if 0 < ix < w - 1 else 0.0
    oy = parabola_vertex(s[iy - 1, ix], s[iy, ix], s[iy + 1, ix]) if 0 < iy < h - 1 else 0.0
    return ox, oy


def parabola_peak(surface: np.ndarray) -> tuple[int, int, float, float]:
    """Integer peak ``(iy, ix)`` of ``surface`` and its sub-pixel offsets ``(ox, oy)``.

    The offsets come from a parabola through the peak and its two neighbours along each axis
    (0 on the border, clipped to ±0.5).
    """
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    ox, oy = parabola_offsets(surface, int(iy), int(ix))
    return int(iy), int(ix), ox, oy


def parabola_height(surface: np.ndarray, iy: int, ix: int) -> float:
    """The peak's height raised by the parabolas through it along x and along y.

    ``(iy, ix)`` must not lie on the border. The y parabola runs through the height the x
    parabola raised (as the 100x ratio curve has always been measured), so a peak off the
    grid along both axes reads slightly low; exact along one axis.
    """
    peak = float(surface[iy, ix])
    s = surface
    for a, b in ((s[iy, ix - 1], s[iy, ix + 1]), (s[iy - 1, ix], s[iy + 1, ix])):
        den = float(a - 2 * peak + b)
        if den < 0:
            peak -= float(a - b) ** 2 / (8 * den)
    return peak


def correlation(
    image: np.ndarray, template: np.ndarray, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """``TM_CCOEFF_NORMED`` of ``template`` at every top-left position inside ``image``."""
    import cv2

    if mask is None:
        return cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
    return cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED, mask=mask)


@dataclass(frozen=True)
class Peak:
    """The best place of a template in a search image.

    ``iy, ix``: integer top-left of the best match in the correlation surface; ``ox, oy``:
    sub-pixel offsets (parabola); ``score``: the surface at ``(iy, ix)``; ``on_border``: the
    peak lies on the surface's edge, so the true maximum may lie beyond the search.
    """

    iy: int
    ix: int
    ox: float
    oy: float
    score: float
    on_border: bool

    @property
    def x(self) -> float:
        """Sub-pixel column of the template's top-left in the search image."""
        return self.ix + self.ox

    @property
    def y(self) -> float:
        """Sub-pixel row of the template's top-left in the search image."""
        return self.iy + self.oy


def surface_peak(surface: np.ndarray) -> Peak:
    """:class:`Peak` of a score surface (highest value; parabola for the sub-pixel part)."""
    iy, ix, ox, oy = parabola_peak(surface)
    h, w = surface.shape
    border = ix in (0, w - 1) or iy in (0, h - 1)
    return Peak(iy, ix, ox, oy, float(surface[iy, ix]), bool(border))


def match_peak(image: np.ndarray, template: np.ndarray) -> Peak:
    """Correlate ``template`` over ``image`` and return the sub-pixel :class:`Peak`."""
    return surface_peak(correlation(image, template))


def centred_window(
    shape_hw: tuple[int, ...], size_wh: tuple[int, int], centre: tuple[float, float], radius: int
) -> tuple[int, int] | None:
    """Top-left ``(x0, y0)`` of the window that lets a ``size_wh`` template centred near
    ``centre`` move ``±radius`` px; ``None`` when that window leaves the image."""
    tw, th = size_wh
    x0 = round(centre[0] - (tw - 1) / 2) - radius
    y0 = round(centre[1] - (th - 1) / 2) - radius
    h, w = shape_hw[:2]
    if x0 < 0 or y0 < 0 or x0 + tw + 2 * radius > w or y0 + th + 2 * radius > h:
        return None
    return x0, y0
