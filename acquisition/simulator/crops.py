"""White cells of a simulated slide and channel stacks rendered in crops centred on them.

The null test's probe, the stain-calibration benchmark and simulated training sets need the
same three steps: a few white cells from the slide's truth (:func:`white_cells`), where each
sits on the stage in a given pass, staining having moved it (:func:`cell_stage_xy`), and a
channel stack rendered in a small crop centred there (:func:`render_crop`), at an exposure
that suits the model (:func:`brightfield_exposure_ms`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from acquisition.vocabulary import CELL_TYPES, ChannelKind, Pass

#: Brightfield exposure target: the brightest 0.1 % of pixels at 235 of 255 (as ``scope
#: calibrate`` sets it).
BF_LEVEL, BF_PERCENTILE = 235.0, 99.9


def white_cells(sim, n: int, *, pass_: str = Pass.STAINED, max_fields: int = 400) -> list:
    """Truth rows of at least ``n`` white cells, in the order found (fewer if the slide ends).

    Walks scan fields along +x from the stage origin in ``pass_`` (one field per truth query)
    and keeps each white cell once; the rows hold slide positions *in that pass*.
    """
    cam = sim.profile.camera
    fw = cam.sensor_width_px * sim.profile.scan_objective.pixel_size_um
    found: dict[int, np.void] = {}
    k = 0
    while len(found) < n and k < max_fields:
        t = sim.truth(pass_, [(k * fw, 0.0)], cam.sensor_width_px, cam.sensor_height_px)
        k += 1
        for row in t["cells"][np.isin(t["cells"]["type"], CELL_TYPES)]:
            found.setdefault(int(row["id"]), row)
    return list(found.values())


def cell_stage_xy(sim, row, pass_: str, *, row_pass: str = Pass.STAINED) -> tuple[float, float]:
    """Stage position (µm) of truth ``row`` (listed in ``row_pass``) in ``pass_``.

    Between the unstained pass and the stained ones the cell moved by its staining move; the
    move field is smooth, so evaluating it at the listed position is exact to a few nm.
    """
    x, y = row["x_um"], row["y_um"]
    if (pass_ == Pass.UNSTAINED) != (row_pass == Pass.UNSTAINED):
        dx, dy, _ = sim.staining_moves([row["id"]], [row["x_um"]], [row["y_um"]])
        if pass_ == Pass.UNSTAINED:
            x, y = x - dx[0], y - dy[0]
        else:
            x, y = x + dx[0], y + dy[0]
    a = sim.placement(pass_)
    sx, sy = a[:, :2] @ np.array([x, y]) + a[:, 2]
    return float(sx), float(sy)


def brightfield_channel(profile):
    """The profile's (first) brightfield stack channel."""
    return next(ch for ch in profile.stack if ch.kind == ChannelKind.BRIGHTFIELD)


def brightfield_exposure_ms(sim, pass_: str, x_um: float, y_um: float, *, size: int) -> float:
    """Exposure (ms) that puts the brightest 0.1 % of a ``size``² brightfield frame at 235."""
    bf = brightfield_channel(sim.profile)
    return sim.ideal_exposure_ms(
        pass_=pass_,
        x_um=x_um,
        y_um=y_um,
        leds=dict.fromkeys(bf.leds, bf.brightness),
        gain=bf.gain,
        level=BF_LEVEL,
        percentile=BF_PERCENTILE,
        width=size,
        height=size,
    )


def render_crop(
    sim,
    row,
    *,
    pass_: str,
    size: int,
    row_pass: str = Pass.STAINED,
    channels: Sequence | None = None,
    exposures_ms: Mapping[str, float] | None = None,
    brightness: int | None = None,
    gain: float | None = None,
) -> np.ndarray:
    """``(C, size, size, 3)`` uint8: a channel stack centred on the cell of truth ``row``.

    The crop is centred on the cell's own position in ``pass_`` (:func:`cell_stage_xy`) and
    in focus there; ``channels``, ``exposures_ms``, ``brightness`` and ``gain`` are those of
    :meth:`SimulatedMicroscope.render_stack` (default: the profile's whole stack as set).
    """
    x, y = cell_stage_xy(sim, row, pass_, row_pass=row_pass)
    return sim.render_stack(
        pass_=pass_,
        x_um=x,
        y_um=y,
        width=size,
        height=size,
        channels=channels,
        exposures_ms=exposures_ms,
        brightness=brightness,
        gain=gain,
    )
