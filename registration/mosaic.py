"""Pixels past one field's frame, looked up in the fields around it (one pass of one scan).

A cell near a field's edge in the stained pass can lie, after the slide was re-seated, partly
or wholly in the *neighbouring* unstained field. :class:`FieldMosaic` cuts a window given in
one field's pixel coordinates from whichever fields of the same pass hold its pixels — the
home field first, then the others by distance — so such a cell gets its real input instead of
black padding. Fields are placed by their recorded stage centres, rounded to whole pixels
(the pixel grids of two fields of one pass differ by a stage move; a window taken wholly from
one neighbour is exact, a window straddling two carries at most half a pixel of seam error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from registration.coarse import to_grey


class FieldMosaic:
    """Where the fields of one pass lie relative to each other.

    Parameters
    ----------
    centres_um
        ``(n_fields, 2)`` stage centres of the fields, µm.
    width, height
        Frame size, px.
    pixel_size_um
        Pixel size at the sample; image x and y are stage x and y.
    """

    def __init__(
        self, centres_um: np.ndarray, width: int, height: int, pixel_size_um: float
    ) -> None:
        self.centres = np.asarray(centres_um, dtype=np.float64).reshape(-1, 2)
        self.width = int(width)
        self.height = int(height)
        self.pixel_size_um = float(pixel_size_um)

    def offset(self, home: int, other: int) -> tuple[int, int]:
        """Add to a pixel of ``home`` to get the same slide point in ``other`` (whole px)."""
        d = (self.centres[home] - self.centres[other]) / self.pixel_size_um
        return int(np.rint(d[0])), int(np.rint(d[1]))

    def sources(self, home: int, x0: int, y0: int, w: int, h: int) -> list[int]:
        """Fields holding some pixel of the window, the home field first, then by distance."""
        # vectorised over every field (a Python loop over them made each call cost ~N
        # steps, quadratic over a scan of thousands of fields); same test as offset()
        d = self.centres[home] - self.centres
        x = x0 + np.rint(d[:, 0] / self.pixel_size_um)
        y = y0 + np.rint(d[:, 1] / self.pixel_size_um)
        near = np.flatnonzero((x < self.width) & (x + w > 0) & (y < self.height) & (y + h > 0))
        dist = np.hypot(*(self.centres[near] - self.centres[home]).T)
        out = [int(j) for j in near[np.argsort(dist, kind="stable")]]
        if home in out:
            out.remove(home)
            out.insert(0, home)
        return out

    def covers(self, home: int, x0: int, y0: int, w: int, h: int) -> bool:
        """Whether the fields of the pass together hold every pixel of the window."""
        covered = np.zeros((h, w), dtype=bool)
        for j in self.sources(home, x0, y0, w, h):
            dx, dy = self.offset(home, j)
            ax0, ay0 = max(0, -(x0 + dx)), max(0, -(y0 + dy))
            ax1 = min(w, self.width - (x0 + dx))
            ay1 = min(h, self.height - (y0 + dy))
            if ax1 > ax0 and ay1 > ay0:
                covered[ay0:ay1, ax0:ax1] = True
        return bool(covered.all())

    def inside(self, home: int, x0: int, y0: int, w: int, h: int) -> bool:
        """Whether the window lies wholly within the home field's frame."""
        return x0 >= 0 and y0 >= 0 and x0 + w <= self.width and y0 + h <= self.height

    def cut(
        self,
        home: int,
        x0: int,
        y0: int,
        w: int,
        h: int,
        image_of: Callable[[int], np.ndarray],
    ) -> tuple[np.ndarray, bool]:
        """The window ``(x0, y0, w, h)`` of ``home``'s pixel grid, from every field it touches.

        Parameters
        ----------
        image_of
            ``image_of(field)`` → that field's image (``(H, W)`` or ``(H, W, C)``); called only
            for fields the window touches.

        Returns
        -------
        (numpy.ndarray, bool)
            The window (zeros where no field has pixels) and whether every pixel was found.
        """
        out: np.ndarray | None = None
        covered = np.zeros((h, w), dtype=bool)
        for j in self.sources(home, x0, y0, w, h):
            dx, dy = self.offset(home, j)
            img = image_of(j)
            if out is None:
                out = np.zeros((h, w, *img.shape[2:]), dtype=img.dtype)
            # the window's part inside field j, in window coordinates
            ax0, ay0 = max(0, -(x0 + dx)), max(0, -(y0 + dy))
            ax1 = min(w, self.width - (x0 + dx))
            ay1 = min(h, self.height - (y0 + dy))
            if ax1 <= ax0 or ay1 <= ay0:
                continue
            need = ~covered[ay0:ay1, ax0:ax1]
            if not need.any():
                continue
            src = img[y0 + dy + ay0 : y0 + dy + ay1, x0 + dx + ax0 : x0 + dx + ax1]
            dst = out[ay0:ay1, ax0:ax1]
            dst[need] = src[need]
            covered[ay0:ay1, ax0:ax1] = True
            if covered.all():
                break
        if out is None:
            # the window touches no field at all: the caller's dtype and shape are unknown
            img = image_of(home)
            out = np.zeros((h, w, *img.shape[2:]), dtype=img.dtype)
        return out, bool(covered.all())


class NeighbourImages:
    """``image_of(field)`` for :meth:`FieldMosaic.cut`: one channel, each field read once."""

    def __init__(
        self, scan: Any, home: int, channel: int, home_image: np.ndarray, *, grey: bool = False
    ) -> None:
        self.scan, self.channel, self.grey = scan, channel, grey
        self.images = {home: home_image}

    def __call__(self, j: int) -> np.ndarray:
        if j not in self.images:
            img = self.scan.image(j, self.channel)
            self.images[j] = to_grey(img) if self.grey else img
        return self.images[j]
