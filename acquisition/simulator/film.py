"""The dried plasma film's optical-path texture and the cells' sub-µm texture, as lattices
in slide coordinates drawn per tile (any region gives the same values where regions overlap).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from acquisition.simulator.config import SimConfig
from acquisition.simulator.seeding import SlideStreams
from acquisition.vocabulary import Pass

#: Side of a generation tile, µm (shared with :mod:`.smear`'s object tiles).
TILE_UM = 256.0
#: Lattice spacing of the plasma-film texture, µm.
FILM_STEP_UM = 0.25
#: Correlation length of the cells' sub-µm texture (membrane folds, organelles), µm.
CELL_TEXTURE_UM = 0.15


class PlasmaFilm:
    """The film of one slide (its random ``streams``) under ``config``."""

    def __init__(self, streams: SlideStreams, config: SimConfig) -> None:
        self._rng = streams.rng
        self.config = config

    def texture(
        self, xmin: float, xmax: float, ymin: float, ymax: float, *, pass_: str = Pass.UNSTAINED
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Optical-path texture (µm) of the dried plasma film over a slide rectangle.

        Returns ``(texture, cells, x_origin, y_origin)``: float32 lattices with spacing
        :data:`FILM_STEP_UM` whose sample ``[i, j]`` sits at slide
        ``(x_origin + j * step, y_origin + i * step)``. The texture is white noise drawn per
        tile and low-passed at two correlation lengths (0.3 and 1.5 µm), so any region gives
        the same values where regions overlap; its RMS is ``config.plasma_film_opd_nm``.
        Fixing and staining redissolve and redeposit part of the film: in the stained and
        highres passes (one stained slide) the film's noise is ``c`` times the unstained
        one's plus ``sqrt(1 - c²)`` times its own, ``c`` = ``config.film_pass_correlation``.
        ``cells`` is a unit-RMS texture with a 0.15 µm correlation length from the unstained
        draw: the relative dry-mass texture of the cells lying on the film (the cells keep it).
        """
        rms = self.config.plasma_film_opd_nm * 1e-3
        step = FILM_STEP_UM
        pad = 8.0  # µm: more than the filters' reach
        ix0, ix1 = math.floor((xmin - pad) / TILE_UM), math.floor((xmax + pad) / TILE_UM)
        iy0, iy1 = math.floor((ymin - pad) / TILE_UM), math.floor((ymax + pad) / TILE_UM)
        j0 = math.floor((xmin - pad - ix0 * TILE_UM) / step)
        j1 = math.ceil((xmax + pad - ix0 * TILE_UM) / step)
        i0 = math.floor((ymin - pad - iy0 * TILE_UM) / step)
        i1 = math.ceil((ymax + pad - iy0 * TILE_UM) / step)
        region = (ix0, ix1, iy0, iy1, i0, i1, j0, j1)
        noise = self._tiled_noise("film", region)
        film = noise
        c = self.config.film_pass_correlation
        if pass_ != Pass.UNSTAINED and c < 1.0:
            own = self._tiled_noise("film-stained", region)
            film = noise * np.float32(c) + own * np.float32(math.sqrt(1.0 - c * c))
        fine = cv2.GaussianBlur(film, (0, 0), 0.3 / step)
        coarse = cv2.GaussianBlur(film, (0, 0), 1.5 / step)
        # unit variance for each scale (a Gaussian filter of white noise: var = 1/(4 pi s^2))
        fine *= np.float32(math.sqrt(4 * math.pi) * 0.3 / step)
        coarse *= np.float32(math.sqrt(4 * math.pi) * 1.5 / step)
        texture = (fine + coarse) * np.float32(rms / math.sqrt(2.0))
        # the cells' sub-µm texture: 0.15 µm correlation, unit variance (exact for the kernel)
        sig = CELL_TEXTURE_UM / step
        kern = cv2.getGaussianKernel(2 * math.ceil(3 * sig) + 1, sig).astype(np.float64)
        cells = cv2.sepFilter2D(noise, cv2.CV_32F, kern, kern)
        cells *= np.float32(1.0 / float(np.sum(kern**2)))
        return texture, cells, ix0 * TILE_UM + j0 * step, iy0 * TILE_UM + i0 * step

    def _tiled_noise(self, name: str, region: tuple) -> np.ndarray:
        """Unit white noise on the film lattice over ``region``, drawn per tile as ``name``."""
        ix0, ix1, iy0, iy1, i0, i1, j0, j1 = region
        n = round(TILE_UM / FILM_STEP_UM)
        noise = np.empty((i1 - i0, j1 - j0), np.float32)
        for iy in range(iy0, iy1 + 1):
            for ix in range(ix0, ix1 + 1):
                # this tile's rows/columns within the region
                r0, r1 = max(i0, (iy - iy0) * n), min(i1, (iy - iy0 + 1) * n)
                c0, c1 = max(j0, (ix - ix0) * n), min(j1, (ix - ix0 + 1) * n)
                if r0 >= r1 or c0 >= c1:
                    continue
                tile = self._rng(name, ix, iy).standard_normal((n, n), dtype=np.float32)
                ty, tx = (iy - iy0) * n, (ix - ix0) * n
                noise[r0 - i0 : r1 - i0, c0 - j0 : c1 - j0] = tile[
                    r0 - ty : r1 - ty, c0 - tx : c1 - tx
                ]
        return noise
