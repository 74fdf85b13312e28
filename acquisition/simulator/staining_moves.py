"""What fixing, staining and rinsing do to where cells lie: smooth film deformation, each
cell's own jitter, and cells washed off.

The stained and highres passes image the same stained slide, so they share these moves; the
unstained pass is the reference. :class:`~acquisition.simulator.smear.VirtualSmear` applies
them to every region it hands out for a stained pass.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from acquisition.simulator.config import SimConfig
from acquisition.simulator.seeding import SlideStreams, hash_normal, hash_uniform
from acquisition.simulator.smear_objects import SmearObjects


class StainingMoves:
    """The staining moves of one slide (its random ``streams``) under ``config``."""

    def __init__(self, streams: SlideStreams, config: SimConfig) -> None:
        self._rng = streams.rng
        self.config = config

    def pass_offsets(
        self, ids: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How staining moved and lost cells: ``(dx, dy, lost)`` per object (slide µm).

        Fixing, staining and rinsing deform the film: a smooth displacement field (a few
        random modes, 40-150 µm wavelengths, RMS ``0.6 x cell_displacement_um``), plus each
        cell's own jitter (10 % of ``cell_displacement_um`` RMS); rinsing washes a few cells
        off (``cell_loss_fraction``). ``x, y`` are the unstained slide positions. The stained
        and highres passes image the same stained slide, so they share these; the unstained
        pass is the reference.
        """
        ids = np.asarray(ids, dtype=np.int64)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        cfg = self.config
        amp = cfg.cell_displacement_um
        salt = np.uint64(int.from_bytes(self._rng("staining").bytes(8), "little"))
        keys = ids.astype(np.uint64) ^ salt
        dx = np.zeros(ids.shape)
        dy = np.zeros(ids.shape)
        if amp > 0:
            for kx, ky, ax, ay, ph in self._staining_modes:
                wave = np.cos(kx * x + ky * y + ph)
                dx += ax * wave
                dy += ay * wave
            dx *= amp
            dy *= amp
            jitter = 0.1 * amp
            dx += jitter * hash_normal(keys, 1)
            dy += jitter * hash_normal(keys, 3)
        lost = hash_uniform(keys, 5) < cfg.cell_loss_fraction
        return dx, dy, lost

    @functools.cached_property
    def _staining_modes(self) -> np.ndarray:
        """Modes ``(kx, ky, ax, ay, phase)`` of the staining field, unit RMS of 0.6 overall."""
        rng = self._rng("staining-field")
        n = 6
        lam = rng.uniform(40.0, 150.0, n)
        ang = rng.uniform(0, 2 * np.pi, n)
        k = 2 * np.pi / lam
        a = rng.normal(0.0, 1.0, (n, 2))
        # RMS of |D| = sqrt(sum(|a|²)/2) -> scale to 0.6
        a *= 0.6 / math.sqrt(float(np.sum(a * a)) / 2)
        return np.column_stack(
            [k * np.cos(ang), k * np.sin(ang), a[:, 0], a[:, 1], rng.uniform(0, 2 * np.pi, n)]
        )

    def apply(self, objects: SmearObjects) -> SmearObjects:
        """``objects`` (unstained positions) as the stained slide holds them: moved, some lost."""
        out = SmearObjects(debris=objects.debris)
        for name in ("rbcs", "platelets"):
            recs = getattr(objects, name)
            dx, dy, lost = self.pass_offsets(recs["id"], recs["x"], recs["y"])
            moved = recs[~lost].copy()
            moved["x"] += dx[~lost]
            moved["y"] += dy[~lost]
            setattr(out, name, moved)
        if objects.wbcs:
            dx, dy, lost = self.pass_offsets(
                np.array([c.id for c in objects.wbcs]),
                np.array([c.x for c in objects.wbcs]),
                np.array([c.y for c in objects.wbcs]),
            )
            out.wbcs = [
                dataclasses.replace(c, x=c.x + float(dx[k]), y=c.y + float(dy[k]))
                for k, c in enumerate(objects.wbcs)
                if not lost[k]
            ]
        return out
