"""One rigid transform for the whole slide, fitted to every field's coarse match.

The slide moved as one rigid body between the passes, so :func:`fit_slide_transform` fits one
rotation + translation (stained-pass stage µm → unstained-pass stage µm) to the tile pairs of
every field (:class:`registration.coarse.CoarseMatch`), robustly; fields whose own match
disagrees with it are marked ``outlier``, fields whose own correlation is weak ``weak`` (they
are rescued by the fit). :meth:`SlideFit.predict` then seeds every cell's fine search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from acquisition.geometry import FieldGeometry
from registration.errors import RegistrationError
from registration.rigid import RigidTransform, robust_fit_rigid

if TYPE_CHECKING:
    from registration.coarse import CoarseMatch


@dataclass(frozen=True)
class PairGeometry:
    """Where each field of the two passes was taken: frame size, pixel size, stage centres.

    Pixel ↔ stage is :class:`acquisition.geometry.FieldGeometry`'s, for ``(N, 2)`` points.
    """

    width: int
    height: int
    pixel_size_um: float
    stained_centres_um: np.ndarray  # (n_fields, 2)
    unstained_centres_um: np.ndarray  # (n_fields, 2)

    @property
    def frame(self) -> FieldGeometry:
        """One field's frame (both passes share it)."""
        return FieldGeometry(self.width, self.height, self.pixel_size_um)

    def to_stage(self, xy_px: np.ndarray, centre_um: np.ndarray) -> np.ndarray:
        """Stage µm of pixels ``(..., 2)`` of the field centred at ``centre_um``."""
        xy = np.asarray(xy_px, dtype=np.float64)
        x, y = self.frame.pixel_to_stage(xy[..., 0], xy[..., 1], *np.asarray(centre_um))
        return np.stack([x, y], axis=-1)

    def to_pixel(self, xy_um: np.ndarray, centre_um: np.ndarray) -> np.ndarray:
        """Pixels of stage points ``(..., 2)`` in the field centred at ``centre_um``."""
        xy = np.asarray(xy_um, dtype=np.float64)
        x, y = self.frame.stage_to_pixel(xy[..., 0], xy[..., 1], *np.asarray(centre_um))
        return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class SlideFit:
    """The slide's rigid motion between the passes, and how each field agrees with it.

    Attributes
    ----------
    transform
        Stained-pass stage µm → unstained-pass stage µm.
    status
        Per field: ``inlier`` (its own match agrees), ``outlier`` (a reliable match that
        disagrees: a stage slip or a wrong match; its own offset is kept as a correction),
        ``weak`` (its own correlation too weak; rescued by the fit).
    residual_px
        Per field, median distance (px) between its own tile matches and the fit.
    correction_px
        ``(n_fields, 2)`` shift added to the fit's prediction in that field (outliers only).
    rms_px
        Root-mean-square residual of the pairs kept by the fit (px).
    """

    transform: RigidTransform
    geometry: PairGeometry
    status: np.ndarray
    residual_px: np.ndarray
    correction_px: np.ndarray
    rms_px: float
    n_pairs: int

    def predict(self, field_index: int, stained_xy_px: np.ndarray) -> np.ndarray:
        """Unstained-frame pixels ``(N, 2)`` of stained-frame pixels of one field."""
        g = self.geometry
        stage_s = g.to_stage(np.reshape(stained_xy_px, (-1, 2)), g.stained_centres_um[field_index])
        stage_u = self.transform.apply(stage_s)
        return (
            g.to_pixel(stage_u, g.unstained_centres_um[field_index])
            + self.correction_px[field_index]
        )


def fit_slide_transform(
    matches: list[CoarseMatch | None],
    geometry: PairGeometry,
    *,
    min_score: float = 0.05,
    min_distinctness: float = 0.15,
    outlier_px: float = 3.0,
) -> SlideFit:
    """Fit one rigid transform to the coarse matches of every field.

    Parameters
    ----------
    matches
        One :class:`CoarseMatch` per field (``None`` for a field not matched, e.g. blank).
    geometry
        Frame size, pixel size and the stage centres of each field in both passes.
    min_score, min_distinctness
        A field's own match counts only when its peak score and distinctness reach these.
    outlier_px
        A reliable field whose tiles sit farther than this (median, px) from the fit is an
        ``outlier``; pairs farther than this (or 3 σ) are excluded from the fit.

    Raises
    ------
    RegistrationError
        When no field has a reliable match.
    """
    n = len(matches)
    p = geometry.pixel_size_um
    reliable = np.array(
        [
            m is not None and m.reliable(min_score=min_score, min_distinctness=min_distinctness)
            for m in matches
        ]
    )
    if not reliable.any():
        raise RegistrationError(
            "no field could be matched between the unstained and stained passes (edge "
            "correlation too weak everywhere): are these scans of the same slide and region?"
        )
    src, dst, w, owner = [], [], [], []
    centre = np.array([(geometry.width - 1) / 2, (geometry.height - 1) / 2])
    for i, m in enumerate(matches):
        if not reliable[i]:
            continue
        pairs = m.tiles
        if len(pairs) == 0:
            pairs = np.array([[*centre, centre[0] + m.dx_px, centre[1] + m.dy_px, m.score]])
        src.append(geometry.to_stage(pairs[:, :2], geometry.stained_centres_um[i]))
        dst.append(geometry.to_stage(pairs[:, 2:4], geometry.unstained_centres_um[i]))
        w.append(np.clip(pairs[:, 4], 1e-3, None))
        owner.append(np.full(len(pairs), i))
    src_a, dst_a = np.concatenate(src), np.concatenate(dst)
    w_a, owner_a = np.concatenate(w), np.concatenate(owner)
    transform, keep, res = robust_fit_rigid(src_a, dst_a, w_a, min_threshold=outlier_px * p)
    res_px = res / p
    status = np.array(["weak"] * n, dtype=object)
    residual = np.full(n, np.nan)
    correction = np.zeros((n, 2))
    for i in range(n):
        if not reliable[i]:
            continue
        sel = owner_a == i
        residual[i] = float(np.median(res_px[sel]))
        if residual[i] > outlier_px:
            status[i] = "outlier"
            predicted = geometry.to_pixel(
                transform.apply(src_a[sel]), geometry.unstained_centres_um[i]
            )
            measured = geometry.to_pixel(dst_a[sel], geometry.unstained_centres_um[i])
            correction[i] = np.median(measured - predicted, axis=0)
        else:
            status[i] = "inlier"
    rms = float(np.sqrt(np.mean(res_px[keep] ** 2))) if keep.any() else float("nan")
    return SlideFit(
        transform, geometry, status.astype(str), residual, correction, rms, int(keep.sum())
    )
