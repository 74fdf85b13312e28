"""Datasets rendered straight from the simulated microscope, registered by its ground truth.

For tests, benchmarks and ablations that need a dataset without running the whole
scan → match pipeline: each white blood cell the simulator's truth lists is rendered as a
crop of the unstained stack (every channel of the profile's stack, centred on the cell's
stage position in the unstained placement), as the stained 20x brightfield crop (centred on
the same cell in the stained placement) and, optionally, as a 100x crop area-averaged to the
20x grid. The crops are therefore registered exactly (up to the passes' small rotation),
where ``scope match`` would register them from the images. Splits follow
:func:`registration.splits.default_split` (by slide with ≥ 3 slides, else spatial blocks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

import hardware_profiles as hp
from acquisition.vocabulary import CELL_TYPES
from hardware_profiles import HardwareProfile
from registration.dataset import DatasetWriter
from training.errors import TrainingError

_BF_LEVEL, _BF_PERCENTILE = 235.0, 99.9


def _stage(affine: np.ndarray, sx: float, sy: float) -> tuple[float, float]:
    x, y = affine[:, :2] @ np.array([sx, sy]) + affine[:, 2]
    return float(x), float(y)


def _find_wbcs(sim, profile: HardwareProfile, n: int, *, max_fields: int = 400) -> np.ndarray:
    """At least ``n`` WBCs (truth rows, slide coordinates) from a raster of scan fields."""
    cam = profile.camera
    p = profile.scan_objective.pixel_size_um
    fw, fh = cam.sensor_width_px * p, cam.sensor_height_px * p
    found: dict[int, np.void] = {}
    cols = 4
    k = 0
    while len(found) < n and k < max_fields:
        fields = [((k + j) % cols * fw, (k + j) // cols * fh) for j in range(cols)]
        k += cols
        cells = sim.truth("unstained", fields, cam.sensor_width_px, cam.sensor_height_px)["cells"]
        for row in cells[np.isin(cells["type"], CELL_TYPES)]:
            found.setdefault(int(row["id"]), row)
    if len(found) < n:
        raise TrainingError(f"the simulated slide yielded only {len(found)} of {n} WBCs")
    rows = sorted(found.values(), key=lambda r: int(r["id"]))
    return np.array(rows[:n])


def simulate_dataset(
    path: str | Path,
    *,
    profile: str | HardwareProfile = "pls43",
    slides: Sequence[str] = ("sim-a",),
    cells_per_slide: int = 40,
    crop_size: int = 64,
    seed: int = 0,
    highres: bool = True,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    on_cell: Callable[[int, int], None] | None = None,
    target: str = "stain",
) -> Path:
    """Render a training dataset from the simulator.

    Parameters
    ----------
    path
        Output ``.dataset.h5``.
    profile
        Hardware profile (name or object); its whole stack is rendered.
    slides
        Virtual slide names (each a different smear and placement).
    cells_per_slide
        WBCs per slide.
    crop_size
        Crop side, pixels (64 in the thesis).
    seed
        Simulator seed (slides differ by name).
    highres
        Also render 100x targets (``targets_highres``, ``has_highres``).
    fractions
        Train/val/test fractions.
    on_cell
        Progress callback ``(done, total)``.
    target
        ``stain`` (the stained 20x crop, RGB ``uint8``) or ``fluorescence``: one ``uint16``
        nuclear-stain channel imaged in the unstained pass at the input's position
        (:mod:`acquisition.simulator.fluorescence`; no stained pass, no 100x targets).

    Returns
    -------
    pathlib.Path
        The dataset file.
    """
    from acquisition.simulator.microscope import SimulatedMicroscope
    from registration.splits import default_split

    if target not in ("stain", "fluorescence"):
        raise TrainingError(f"unknown simulated target {target!r}; choose stain or fluorescence")
    fluor = target == "fluorescence"
    if fluor:
        from acquisition.simulator.fluorescence import NUCLEAR_CHANNEL, nuclear_stain_field

        highres = False
        noise = np.random.default_rng([seed, 0xF1])
    prof = hp.load(profile) if isinstance(profile, str) else profile
    bf = next(ch for ch in prof.stack if ch.kind == "brightfield")
    bf_leds = dict.fromkeys(bf.leds, bf.brightness)
    total = len(slides) * cells_per_slide
    inputs, targets, highs, rows = [], [], [], []
    done = 0
    for slide in slides:
        sim = SimulatedMicroscope(prof, slide=slide, seed=seed)
        wbcs = _find_wbcs(sim, prof, cells_per_slide + 3 + cells_per_slide // 10)
        a_u, a_s = sim.placement("unstained"), sim.placement("stained")
        exp_s = exp_h = None
        ratio = sim.magnification_ratio()
        hi_px = round(crop_size * ratio)
        # staining moves each cell a little and washes a few off (the simulator's truth)
        dxs, dys, lost = sim.staining_moves(wbcs["id"], wbcs["x_um"], wbcs["y_um"])
        keep = np.flatnonzero(~lost)[:cells_per_slide]
        for cell, dx, dy in zip(wbcs[keep], dxs[keep], dys[keep], strict=True):
            xu, yu = _stage(a_u, cell["x_um"], cell["y_um"])
            xs, ys = _stage(a_s, cell["x_um"] + dx, cell["y_um"] + dy)
            zu = sim.focus_z_um("unstained", xu, yu)
            stack = sim.render_stack(
                pass_="unstained", x_um=xu, y_um=yu, z_um=zu, width=crop_size, height=crop_size
            )
            if fluor:
                stained = nuclear_stain_field(
                    sim,
                    pass_="unstained",
                    x_um=xu,
                    y_um=yu,
                    width=crop_size,
                    height=crop_size,
                    rng=noise,
                )[..., None]
            elif exp_s is None:
                exp_s = sim.ideal_exposure_ms(
                    pass_="stained",
                    x_um=xs,
                    y_um=ys,
                    leds=bf_leds,
                    gain=bf.gain,
                    level=_BF_LEVEL,
                    percentile=_BF_PERCENTILE,
                    width=256,
                    height=256,
                )
            if not fluor:
                stained = sim.render(
                    pass_="stained",
                    x_um=xs,
                    y_um=ys,
                    z_um=sim.focus_z_um("stained", xs, ys),
                    leds=bf_leds,
                    exposure_ms=exp_s,
                    gain=bf.gain,
                    width=crop_size,
                    height=crop_size,
                )
            high = np.zeros_like(stained)
            if highres and prof.highres_objective is not None:
                a_h = sim.placement("highres")
                xh, yh = _stage(a_h, cell["x_um"] + dx, cell["y_um"] + dy)
                if exp_h is None:
                    exp_h = sim.ideal_exposure_ms(
                        pass_="highres",
                        x_um=xh,
                        y_um=yh,
                        leds=bf_leds,
                        gain=bf.gain,
                        level=_BF_LEVEL,
                        percentile=_BF_PERCENTILE,
                        width=hi_px,
                        height=hi_px,
                    )
                big = sim.render(
                    pass_="highres",
                    x_um=xh,
                    y_um=yh,
                    z_um=sim.focus_z_um("highres", xh, yh),
                    leds=bf_leds,
                    exposure_ms=exp_h,
                    gain=bf.gain,
                    width=hi_px,
                    height=hi_px,
                )
                high = cv2.resize(big, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
            c = (crop_size - 1) / 2
            inputs.append(stack)
            targets.append(stained)
            highs.append(high)
            rows.append(
                {
                    "slide": slide,
                    "position": len(rows),
                    "x_px": c,
                    "y_px": c,
                    "stained_x_px": c,
                    "stained_y_px": c,
                    "x_um": xu,
                    "y_um": yu,
                    "stained_x_um": xu if fluor else xs,
                    "stained_y_um": yu if fluor else ys,
                    "coarse_score": 1.0,
                    "ssim": math.nan,
                    "has_highres": bool(highres),
                    "highres_score": math.nan,
                    "highres_scale": ratio if highres else math.nan,
                    "qc_flags": "",
                    "split": "",
                    "type": str(cell["type"]),
                }
            )
            done += 1
            if on_cell is not None:
                on_cell(done, total)
    xs_ = np.array([r["x_um"] for r in rows])
    ys_ = np.array([r["y_um"] for r in rows])
    splits = default_split(
        xs_,
        ys_,
        [r["slide"] for r in rows],
        crop_um=crop_size * prof.scan_objective.pixel_size_um,
        fractions=fractions,
        seed=seed,
    )
    for r, s in zip(rows, splits, strict=True):
        r["split"] = str(s)
    layout: dict = {}
    if fluor:
        layout = {"target_channels": [NUCLEAR_CHANNEL], "target_dtype": np.uint16}
    with DatasetWriter(
        path,
        channels=prof.channel_table(),
        crop_size=crop_size,
        profile=prof,
        provenance={"source": "simulator", "slides": list(slides), "seed": seed, "target": target},
        **layout,
    ) as writer:
        writer.add(np.stack(inputs), np.stack(targets), rows, targets_highres=np.stack(highs))
    return Path(path)
