"""Rigid motions of the slide in the plane: the transform, its least-squares and robust fits.

Between two passes the slide moved as one rigid body (rotation + translation);
:func:`robust_fit_rigid` finds that motion from point pairs of which up to half may be wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RigidTransform:
    """``dst = R(theta) · src + t`` in the plane (µm or pixels)."""

    theta_rad: float = 0.0
    tx: float = 0.0
    ty: float = 0.0

    @property
    def theta_deg(self) -> float:
        return math.degrees(self.theta_rad)

    @property
    def matrix(self) -> np.ndarray:
        """``(2, 3)`` affine matrix."""
        c, s = math.cos(self.theta_rad), math.sin(self.theta_rad)
        return np.array([[c, -s, self.tx], [s, c, self.ty]])

    @classmethod
    def from_matrix(cls, m: np.ndarray) -> RigidTransform:
        """The rigid part of a ``(2, 3)`` affine matrix (rotation from its first column)."""
        m = np.asarray(m, dtype=np.float64)
        return cls(math.atan2(m[1, 0], m[0, 0]), float(m[0, 2]), float(m[1, 2]))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` points."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return p @ m[:, :2].T + m[:, 2]

    def inverse(self) -> RigidTransform:
        c, s = math.cos(self.theta_rad), math.sin(self.theta_rad)
        tx = -(c * self.tx + s * self.ty)
        ty = -(-s * self.tx + c * self.ty)
        return RigidTransform(-self.theta_rad, tx, ty)

    def compose(self, other: RigidTransform) -> RigidTransform:
        """``self ∘ other`` (apply ``other`` first)."""
        m = self.matrix
        o = other.matrix
        full = m[:, :2] @ o
        full[:, 2] += m[:, 2]
        return RigidTransform.from_matrix(full)


def fit_rigid(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> RigidTransform:
    """Weighted least-squares rotation + translation ``dst ≈ R src + t`` (2-D Kabsch).

    With a single point (or all points coincident) the rotation is 0.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    cs = (w[:, None] * src).sum(0)
    cd = (w[:, None] * dst).sum(0)
    a = src - cs
    b = dst - cd
    num = (w * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])).sum()
    den = (w * (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1])).sum()
    theta = math.atan2(num, den) if (abs(num) + abs(den)) > 1e-12 else 0.0
    r = RigidTransform(theta).matrix[:, :2]
    t = cd - r @ cs
    return RigidTransform(theta, float(t[0]), float(t[1]))


def robust_fit_rigid(
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    min_threshold: float,
    n_sigma: float = 3.0,
    max_iter: int = 10,
    n_trials: int = 300,
    seed: int = 0,
) -> tuple[RigidTransform, np.ndarray, np.ndarray]:
    """:func:`fit_rigid` that ignores outlying pairs (least median of squares, then refits).

    Candidate transforms from random pairs of points are scored by their median squared
    residual; the best one picks the inliers — residual at most
    ``max(min_threshold, n_sigma · σ)``, σ its robust scale — and the transform is refitted on
    them until the inliers stop changing. Up to half the pairs may be outliers (a slipped
    field, a wrong match). Returns ``(transform, inlier mask, residuals)``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    n = len(src)
    best = fit_rigid(src, dst, w)
    if n >= 3:
        rng = np.random.default_rng(seed)
        best_med = np.inf
        pairs = rng.integers(0, n, size=(n_trials, 2))
        for a, b in pairs:
            if a == b or np.allclose(src[a], src[b]):
                continue
            cand = fit_rigid(src[[a, b]], dst[[a, b]])
            med = float(np.median(np.sum((cand.apply(src) - dst) ** 2, axis=1)))
            if med < best_med:
                best, best_med = cand, med
        sigma = 1.4826 * (1 + 5 / max(n - 2, 1)) * math.sqrt(best_med)
    else:
        sigma = 0.0
    transform = best
    res = np.linalg.norm(transform.apply(src) - dst, axis=1)
    keep = res <= max(min_threshold, n_sigma * sigma)
    for _ in range(max_iter):
        if keep.sum() == 0:
            keep = np.ones(n, dtype=bool)
        transform = fit_rigid(src[keep], dst[keep], w[keep])
        res = np.linalg.norm(transform.apply(src) - dst, axis=1)
        sigma = 1.4826 * float(np.median(res[keep]))
        new = res <= max(min_threshold, n_sigma * sigma)
        if np.array_equal(new, keep):
            break
        keep = new
    return transform, keep, res


def stage_transform_between(
    unstained_slide_to_stage: np.ndarray, stained_slide_to_stage: np.ndarray
) -> RigidTransform:
    """Stained-pass stage → unstained-pass stage from the two placements (``(2, 3)`` each)."""

    def full(m: np.ndarray) -> np.ndarray:
        out = np.eye(3)
        out[:2] = np.asarray(m, dtype=np.float64)
        return out

    composed = full(unstained_slide_to_stage) @ np.linalg.inv(full(stained_slide_to_stage))
    return RigidTransform.from_matrix(composed[:2])
