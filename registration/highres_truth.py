"""100x targets against the simulator's truth: where each matched 100x frame truly sits.

Used by the registration tests and benchmarks after ``scope match --highres`` on simulated
scans (real scans have no truth).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def highres_placement_errors(
    summary, highres: str | Path, stained: str | Path
) -> tuple[np.ndarray, float]:
    """``(errors, true_ratio)``: how far (stained px) each cell with a 100x target was placed
    from where its 100x frame truly sits, and the true magnification ratio.

    ``summary`` is what :func:`registration.highres_dataset.add_highres` returned (its
    ``placements`` and ``dataset``); ``highres`` and ``stained`` the two scans it matched.
    """
    from acquisition.scanfile import ScanFile
    from registration.dataset import Dataset
    from registration.rigid import RigidTransform

    with ScanFile(highres) as h, ScanFile(stained) as st, Dataset(summary.dataset) as ds:
        a_h = RigidTransform.from_matrix(h.truth()["slide_to_stage"])
        a_s = RigidTransform.from_matrix(st.truth()["slide_to_stage"])
        ratio = float(h.truth()["magnification_ratio"])
        hxy = np.stack([h.positions["x_um"], h.positions["y_um"]], axis=1)
        sxy = np.stack([st.positions["x_um"], st.positions["y_um"]], axis=1)
        geometry = st.geometry
        cells = ds.cells
    errors = []
    for row, (j, x, y) in summary.placements.items():
        if not cells["has_highres"][row]:
            continue
        f = cells["position"][row]
        true_stage = a_s.apply(a_h.inverse().apply(hxy[j]))[0]
        tx, ty = geometry.stage_to_pixel(true_stage[0], true_stage[1], sxy[f, 0], sxy[f, 1])
        errors.append(math.hypot(x - tx, y - ty))
    return np.asarray(errors), ratio


__all__ = ["highres_placement_errors"]
