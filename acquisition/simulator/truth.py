"""Ground truth of a simulated scan: every object in the scanned fields, where the slide sat,
the true magnification and the planted faults (what a simulated scan writes to ``/truth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from acquisition.simulator.raster import Raster
from acquisition.simulator.requests import check_frame
from acquisition.vocabulary import ChannelKind, Pass

if TYPE_CHECKING:
    from acquisition.simulator.microscope import SimulatedMicroscope

CELLS_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("type", "U10"),
        ("x_um", "f8"),
        ("y_um", "f8"),
        ("radius_um", "f8"),
        ("pass", "U10"),
    ]
)
FAULTS_DTYPE = np.dtype(
    [
        ("kind", "U16"),
        ("x_um", "f8"),
        ("y_um", "f8"),
        ("leds", "U64"),
        ("dx_px", "f8"),
        ("dy_px", "f8"),
    ]
)


def scan_truth(
    sim: SimulatedMicroscope,
    pass_: str,
    fields: Sequence[tuple[float, float]],
    width: int,
    height: int,
) -> dict:
    """Ground truth of a scan of ``pass_`` at these field centres (stage µm).

    Returns
    -------
    dict
        ``slide_to_stage``: 2x3 placement; ``magnification_ratio``: float for the highres
        pass, else None; ``cells``: structured array (:data:`CELLS_DTYPE`: ``id``,
        ``type``, ``x_um``/``y_um`` in slide coordinates, ``radius_um`` in this pass,
        ``pass`` = "" or the one pass the object is in) of every object present in this
        pass whose centre falls in any field; ``faults``: structured array
        (:data:`FAULTS_DTYPE`) of planted ``pls_shift`` faults, one row per field and
        single-LED stack channel LED that is shifted (stage-aligned pixels).
    """
    frame = check_frame(sim.profile, pass_, width, height, sim.pixel_size_um(pass_))
    wc, hc, p = frame.width, frame.height, frame.pixel_size_um
    half_w, half_h = (size / 2 for size in frame.size_um)
    stained = pass_ != Pass.UNSTAINED
    a = sim.placement(pass_)
    centres = np.asarray(fields, dtype=np.float64).reshape(-1, 2)
    parts: dict[int, tuple] = {}

    def inside(x, y) -> np.ndarray:
        sx = a[0, 0] * x + a[0, 1] * y + a[0, 2]
        sy = a[1, 0] * x + a[1, 1] * y + a[1, 2]
        dx = np.abs(np.asarray(sx)[..., None] - centres[:, 0])
        dy = np.abs(np.asarray(sy)[..., None] - centres[:, 1])
        return np.any((dx <= half_w) & (dy <= half_h), axis=-1)

    for fx, fy in centres:
        raster = Raster(x0=fx - half_w, y0=fy - half_h, step=p, nx=wc, ny=hc)
        objects = sim.objects_for(pass_, raster)
        for type_, recs in (("rbc", objects.rbcs), ("platelet", objects.platelets)):
            recs = recs[inside(recs["x"], recs["y"])]
            radius = recs["radius"] * (recs["shrink"] if stained else 1.0)
            for rec, r in zip(recs, radius, strict=True):
                parts[int(rec["id"])] = (type_, rec["x"], rec["y"], float(r), "")
        for cell in objects.wbcs:
            if inside(cell.x, cell.y):
                r = cell.radius * (cell.shrink if stained else 1.0)
                parts[cell.id] = (cell.type, cell.x, cell.y, r, "")
        for d in objects.debris:
            if inside(d.x, d.y):
                parts[d.id] = (d.type, d.x, d.y, d.radius, d.pass_)
    cells = np.zeros(len(parts), CELLS_DTYPE)
    for i, (oid, (t, x, y, r, ps)) in enumerate(sorted(parts.items())):
        cells[i] = (oid, t, x, y, r, ps)

    faults = []
    if pass_ == Pass.UNSTAINED:
        single = sorted(
            {ch.leds[0] for ch in sim.profile.stack if ch.kind != ChannelKind.BRIGHTFIELD}
        )
        for fx, fy in fields:
            for led in single:
                shift = sim.pls_shift_px(fx, fy, led)
                if shift is not None:
                    faults.append(("pls_shift", fx, fy, str(led), shift[0], shift[1]))
    return {
        "slide_to_stage": a,
        "magnification_ratio": sim.magnification_ratio() if pass_ == Pass.HIGHRES else None,
        "cells": cells,
        "faults": np.array(faults, FAULTS_DTYPE),
    }
