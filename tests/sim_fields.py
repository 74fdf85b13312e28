"""Stained 20x fields rendered by the simulator, with the white cells its truth places there.

Shared by the detection tests: one field centred on stage (0, 0), its white cells' centres in
the frame's pixels and their radii in pixels. Fields are cached (the same field serves several
tests and parametrisations; callers get copies).
"""

from __future__ import annotations

import numpy as np

from acquisition.geometry import FieldGeometry
from acquisition.vocabulary import CELL_TYPES


def stained_field(
    profile, *, slide: str, seed: int, config, width: int = 640, height: int = 400, margin: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, xy_px, radius_px)``: a ``width x height`` stained brightfield frame at stage
    (0, 0) and the white cells of the truth of a frame ``margin`` px larger on every side (a
    detection at the edge may be a cell centred just outside the frame)."""
    key = (profile.model_dump_json(), slide, seed, config.model_dump_json(), width, height, margin)
    if key not in _CACHE:
        _CACHE[key] = _render(profile, slide, seed, config, width, height, margin)
    img, xy, radius = _CACHE[key]
    return img.copy(), xy.copy(), radius.copy()


_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _render(profile, slide, seed, config, width, height, margin):
    from acquisition.simulator.microscope import SimulatedMicroscope

    sim = SimulatedMicroscope(profile, slide=slide, seed=seed, config=config)
    # the brightfield channel as set, in focus, at gain 1
    (img,) = sim.render_stack(
        pass_="stained",
        x_um=0.0,
        y_um=0.0,
        width=width,
        height=height,
        channels=profile.stack[:1],
        gain=1.0,
    )
    truth = sim.truth("stained", [(0.0, 0.0)], width + 2 * margin, height + 2 * margin)
    cells = truth["cells"][np.isin(truth["cells"]["type"], CELL_TYPES)]
    a = np.asarray(truth["slide_to_stage"], np.float64)
    sx, sy = a[:, :2] @ np.stack([cells["x_um"], cells["y_um"]]) + a[:, 2:]
    p = profile.scan_objective.pixel_size_um
    x, y = FieldGeometry(width, height, p).stage_to_pixel(sx, sy, 0.0, 0.0)
    return img, np.stack([x, y], axis=1), cells["radius_um"] / p
