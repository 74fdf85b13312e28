"""Grids in stage coordinates and how objects are accumulated on them.

A :class:`Raster` is the grid a field is rendered on; :class:`PassGeometry` says where the
slide sits in a pass and what the pass changes; :class:`Canvas` accumulates named column maps
(or masks) object by object; :func:`batch_patches` with :func:`accumulate` and
:func:`accumulate_max` rasterise many small objects at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Raster:
    """A grid in stage coordinates: sample ``(i, j)`` sits at ``(x0 + j·step, y0 + i·step)``."""

    x0: float
    y0: float
    step: float
    nx: int
    ny: int


@dataclass(frozen=True)
class PassGeometry:
    """How the slide sits on the stage in this pass and what the pass changes in the sample.

    ``placement`` is the 2x3 affine ``stage = A @ [sx, sy, 1]``; ``stained`` turns on the dyes
    and the shrinkage; ``phase_factor`` scales the optical path (oil immersion);
    ``stain_scale`` multiplies (eosin, azure, complex) per slide; the rest are the material
    knobs of :class:`~acquisition.simulator.config.SimConfig` (``kappa`` µm³/pg).
    """

    placement: np.ndarray
    stained: bool
    phase_factor: float
    stain_scale: tuple[float, float, float]
    kappa: float = 0.41
    nucleus_to_cytoplasm: float = 1.2
    coupling: float = 0.5
    texture_scale: float = 1.0
    background_stain: float = 0.0

    @property
    def rotation(self) -> float:
        return math.atan2(self.placement[1, 0], self.placement[0, 0])

    def to_stage(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.placement
        return a[0, 0] * x + a[0, 1] * y + a[0, 2], a[1, 0] * x + a[1, 1] * y + a[1, 2]


class Canvas:
    """Accumulates column maps (or masks) on a raster."""

    def __init__(self, raster: Raster, names: tuple[str, ...]) -> None:
        self.raster = raster
        self.maps = {n: np.zeros((raster.ny, raster.nx), np.float32) for n in names}

    def window(self, cx: float, cy: float, extent: float):
        """Slices and local stage offsets of the raster samples within ``extent`` of a point."""
        r = self.raster
        j0 = max(math.floor((cx - extent - r.x0) / r.step), 0)
        j1 = min(math.ceil((cx + extent - r.x0) / r.step) + 1, r.nx)
        i0 = max(math.floor((cy - extent - r.y0) / r.step), 0)
        i1 = min(math.ceil((cy + extent - r.y0) / r.step) + 1, r.ny)
        if j0 >= j1 or i0 >= i1:
            return None
        gx = (r.x0 + np.arange(j0, j1) * r.step - cx).astype(np.float32)
        gy = (r.y0 + np.arange(i0, i1) * r.step - cy).astype(np.float32)
        return (slice(i0, i1), slice(j0, j1)), gx, gy

    def add(self, name: str, where, values: np.ndarray, weight: float = 1.0) -> None:
        if name in self.maps and weight != 0.0:
            target = self.maps[name][where]
            target += values if weight == 1.0 else values * np.float32(weight)

    def add_max(self, name: str, where, values: np.ndarray) -> None:
        if name in self.maps:
            np.maximum(self.maps[name][where], values, out=self.maps[name][where])


def local_frame(gx: np.ndarray, gy: np.ndarray, angle: float, scale: float):
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    u = c * gx[None, :] + s * gy[:, None]
    v = -s * gx[None, :] + c * gy[:, None]
    return u, v


def batch_patches(raster: Raster, cx, cy, extent: float):
    """Per-object square patches: flat raster indices, validity and stage offsets."""
    n = math.ceil(2 * extent / raster.step) + 2
    j0 = np.floor((cx - extent - raster.x0) / raster.step).astype(np.int64)
    i0 = np.floor((cy - extent - raster.y0) / raster.step).astype(np.int64)
    ar = np.arange(n)
    jj = j0[:, None] + ar[None, :]
    ii = i0[:, None] + ar[None, :]
    gx = (raster.x0 + jj * raster.step - cx[:, None]).astype(np.float32)
    gy = (raster.y0 + ii * raster.step - cy[:, None]).astype(np.float32)
    valid = ((jj >= 0) & (jj < raster.nx))[:, None, :] & ((ii >= 0) & (ii < raster.ny))[:, :, None]
    flat = ii[:, :, None] * raster.nx + jj[:, None, :]
    return flat, valid, gx, gy


def accumulate(raster: Raster, flat: np.ndarray, values: np.ndarray) -> np.ndarray:
    sel = values > 0
    out = np.bincount(flat[sel], weights=values[sel], minlength=raster.nx * raster.ny)
    return out.reshape(raster.ny, raster.nx).astype(np.float32)


def accumulate_max(out: np.ndarray, flat: np.ndarray, values: np.ndarray) -> None:
    """``out.flat[i] = max(out.flat[i], values)`` over the samples (touching cells deform:
    where two overlap, the column is the thicker one's, not their sum)."""
    sel = values > 0
    np.maximum.at(out.reshape(-1), flat[sel], values[sel])
