"""Software autofocus and a focus map of the slide surface.

A slide is never perfectly flat on the stage: over a few millimetres its surface rises and
curves by more than the 20x objective's depth of field (λ/NA² ≈ 3.4 µm at 0.4 NA). ``--focus
map`` focuses a few reference fields by maximising the sharpness of the brightfield image over
a Z search, fits a smooth surface through them, and gives every field its own Z.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from acquisition.progress import NO_PROGRESS, Progress
from hardware_profiles import Channel
from hardware_profiles.errors import ScopeError

#: The progress bar of reference fields focused by :func:`focus_map`.
FOCUS_BAR = "focus"


class FocusError(ScopeError):
    """Autofocus found no sharpness peak."""


def sharpness(image: np.ndarray) -> float:
    """Normalised variance of the Laplacian of the grey image (larger is sharper)."""
    import cv2

    grey = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    mean = float(grey.mean())
    return float(lap.var()) / (mean * mean + 1e-6)


def _parabola_vertex(z: np.ndarray, s: np.ndarray, i: int, *, peak: bool) -> float:
    """Vertex of the least-squares parabola through the samples around index ``i``."""
    lo, hi = max(0, i - 2), min(len(z), i + 3)
    if hi - lo < 3:
        return float(z[i])
    a, b, _ = np.polyfit(z[lo:hi], s[lo:hi], 2)
    if (peak and a >= 0) or (not peak and a <= 0):
        return float(z[i])
    return float(np.clip(-b / (2 * a), z[lo], z[hi - 1]))


def contrast(image: np.ndarray) -> float:
    """Normalised contrast (standard deviation over mean) of the grey image."""
    grey = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    return float(grey.std() / (grey.mean() + 1e-6))


def focus_from_curve(
    z: np.ndarray, contrasts: np.ndarray, sharpnesses: np.ndarray
) -> tuple[float, str]:
    """Best focus from a through-focus series; returns ``(z, mode)``.

    Unstained cells are mostly *phase* objects: in brightfield they show the least contrast
    exactly in focus and more on either side (defocus turns phase into intensity), so their
    contrast curve has a pronounced interior minimum — ``mode="dip"``, focus at its vertex.
    Absorbing samples (stained cells), and dried cells whose strong phase scatters light
    outside the objective even in focus, show no such dip; they are sharpest in focus —
    ``mode="peak"``, the maximum of the Laplacian sharpness.
    """
    z = np.asarray(z, dtype=np.float64)
    c = np.asarray(contrasts, dtype=np.float64)
    i = int(np.argmin(c))
    # a dip rises clearly on both sides; a minimum at one end of a monotone stretch is not
    # (strongly scattering dried cells are most contrasted in focus: no dip at all)
    if (
        0 < i < len(c) - 1
        and c[i] < 0.8 * float(np.median(c))
        and c[i] < 0.8 * float(c[:i].max())
        and c[i] < 0.8 * float(c[i + 1 :].max())
    ):
        return _parabola_vertex(z, c, i, peak=False), "dip"
    s = np.asarray(sharpnesses, dtype=np.float64)
    return _parabola_vertex(z, s, int(np.argmax(s)), peak=True), "peak"


@dataclass
class FocusResult:
    x_um: float
    y_um: float
    z_um: float
    sharpness: float


def autofocus(
    snap_at: Callable[[float], np.ndarray],
    *,
    z_start_um: float,
    search_um: float = 15.0,
    coarse_step_um: float = 1.0,
    fine_step_um: float = 0.25,
) -> tuple[float, float]:
    """Z (µm) of best focus near ``z_start_um``: a coarse scan, then a fine one around it.

    ``snap_at(z)`` moves the focus drive to ``z`` and returns the brightfield image there.
    Returns ``(z_best, sharpness_at_best)``; :func:`focus_from_curve` says what "best" means
    for phase (unstained) and absorbing (stained) samples.
    """

    def series(zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = [snap_at(float(z)) for z in zs]
        return (
            np.array([contrast(im) for im in images]),
            np.array([sharpness(im) for im in images]),
        )

    zs = z_start_um + np.arange(-search_um, search_um + coarse_step_um / 2, coarse_step_um)
    c, s = series(zs)
    if not np.isfinite(s).all() or s.max() <= 0:
        raise FocusError(f"no image structure to focus on near z={z_start_um:.1f} µm")
    z_coarse, mode = focus_from_curve(zs, c, s)
    half = 1.5 * coarse_step_um
    zf = z_coarse + np.arange(-half, half + fine_step_um / 2, fine_step_um)
    cf, sf = series(zf)
    if mode == "dip":
        i = int(np.argmin(cf))
        return _parabola_vertex(zf, cf, i, peak=False), float(sf[i])
    i = int(np.argmax(sf))
    return _parabola_vertex(zf, sf, i, peak=True), float(sf[i])


def reference_indices(positions: np.ndarray, *, per_side: int = 3) -> list[int]:
    """Fields nearest to a ``per_side x per_side`` lattice over the scan's bounding box."""
    xy = positions[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    picks: list[int] = []
    for fy in np.linspace(0, 1, per_side):
        for fx in np.linspace(0, 1, per_side):
            target = lo + (hi - lo) * np.array([fx, fy])
            i = int(np.argmin(((xy - target) ** 2).sum(axis=1)))
            if i not in picks:
                picks.append(i)
    return picks


class SurfaceFit:
    """Least-squares surface ``z(x, y)``: constant, plane or quadratic by the point count."""

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        self.x0, self.y0 = float(np.mean(x)), float(np.mean(y))
        n = len(z)
        self.order = 0 if n < 3 else (1 if n < 6 else 2)
        self.coef, *_ = np.linalg.lstsq(self._design(x, y), z, rcond=None)

    def _design(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = (np.asarray(x, dtype=np.float64) - self.x0) / 1000.0  # mm: well-conditioned
        v = (np.asarray(y, dtype=np.float64) - self.y0) / 1000.0
        cols = [np.ones_like(u)]
        if self.order >= 1:
            cols += [u, v]
        if self.order >= 2:
            cols += [u * u, u * v, v * v]
        return np.stack(cols, axis=1)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._design(np.atleast_1d(x), np.atleast_1d(y)) @ self.coef


def focus_here(rig, channel: Channel, *, search_um: float = 15.0) -> float:
    """Autofocus the field under the objective with ``channel``; leaves Z there."""
    rig.leds.light(channel.leds, channel.brightness)
    rig.mm.set_exposure(channel.exposure_ms)
    rig.mm.set_gain(channel.gain)

    def snap_at(z: float) -> np.ndarray:
        rig.mm.move_z(z)
        rig.mm.wait_for_stages()
        return rig.mm.snap()

    try:
        z, _ = autofocus(snap_at, z_start_um=rig.mm.read_stage().z_um, search_um=search_um)
    finally:
        rig.leds.clear()
    rig.mm.move_z(z)
    rig.mm.wait_for_stages()
    return z


def focus_map(
    rig,
    positions: np.ndarray,
    channel: Channel,
    *,
    per_side: int = 3,
    search_um: float = 15.0,
    progress: Progress = NO_PROGRESS,
) -> tuple[np.ndarray, list[FocusResult]]:
    """Autofocus reference fields, fit the surface, return Z for every position.

    ``rig`` is an open :class:`acquisition.rig.Rig`; ``channel`` the brightfield channel;
    ``progress`` gets a bar of reference fields focused.
    """
    refs = reference_indices(positions, per_side=per_side)
    progress.start(FOCUS_BAR, len(refs), label="focus map")
    rig.leds.light(channel.leds, channel.brightness)
    rig.mm.set_exposure(channel.exposure_ms)
    rig.mm.set_gain(channel.gain)
    results: list[FocusResult] = []
    try:
        for i in refs:
            x, y, z0 = positions[i]
            rig.mm.move_xy(x, y)
            rig.mm.wait_for_stages()

            def snap_at(z: float) -> np.ndarray:
                rig.mm.move_z(z)
                rig.mm.wait_for_stages()
                return rig.mm.snap()

            z, s = autofocus(snap_at, z_start_um=float(z0), search_um=search_um)
            res = FocusResult(float(x), float(y), z, s)
            results.append(res)
            progress.advance(FOCUS_BAR, info=f"z {z:.1f} µm")
    finally:
        rig.leds.clear()
    fit = SurfaceFit(
        np.array([r.x_um for r in results]),
        np.array([r.y_um for r in results]),
        np.array([r.z_um for r in results]),
    )
    return fit(positions[:, 0], positions[:, 1]), results
