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
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

import hardware_profiles as hp
from acquisition.progress import Progress, or_null
from acquisition.simulator.config import SimConfig
from acquisition.simulator.crops import (
    brightfield_channel,
    brightfield_exposure_ms,
    cell_stage_xy,
    render_crop,
)
from acquisition.vocabulary import CELL_TYPES, Pass
from hardware_profiles import HardwareProfile
from registration.dataset import DatasetWriter
from training.errors import TrainingError


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
        truth = sim.truth(Pass.UNSTAINED, fields, cam.sensor_width_px, cam.sensor_height_px)
        cells = truth["cells"]
        for row in cells[np.isin(cells["type"], CELL_TYPES)]:
            found.setdefault(int(row["id"]), row)
    if len(found) < n:
        raise TrainingError(f"the simulated slide yielded only {len(found)} of {n} WBCs")
    rows = sorted(found.values(), key=lambda r: int(r["id"]))
    return np.array(rows[:n])


class _CellRenderer:
    """Crops of one simulated slide centred on truth cells (listed in the unstained pass).

    Each brightfield target is exposed like ``scope calibrate`` would: the exposure is
    measured once per pass, on the first cell's field (256² px at 20x, the crop at 100x).
    """

    def __init__(self, sim, crop_size: int, *, highres: bool) -> None:
        self.sim, self.size = sim, crop_size
        self.bf = brightfield_channel(sim.profile)
        self.ratio = sim.magnification_ratio()
        self.hi_px = round(crop_size * self.ratio)
        self.highres_ok = highres and sim.profile.highres_objective is not None
        self._exposure: dict[str, float] = {}

    def crop(self, cell, pass_: str, *, size: int | None = None, **kw) -> np.ndarray:
        """The profile's whole stack (or what ``kw`` selects) centred on ``cell``."""
        size = self.size if size is None else size
        return render_crop(self.sim, cell, pass_=pass_, size=size, row_pass=Pass.UNSTAINED, **kw)

    def brightfield(self, cell, pass_: str, *, size: int | None = None) -> np.ndarray:
        """``(size, size, 3)`` uint8: the brightfield image of ``cell`` in ``pass_``."""
        size = self.size if size is None else size
        if pass_ not in self._exposure:
            x, y = cell_stage_xy(self.sim, cell, pass_, row_pass=Pass.UNSTAINED)
            probe = 256 if pass_ == Pass.STAINED else size
            self._exposure[pass_] = brightfield_exposure_ms(self.sim, pass_, x, y, size=probe)
        frames = self.crop(
            cell,
            pass_,
            size=size,
            channels=[self.bf],
            exposures_ms={self.bf.name: self._exposure[pass_]},
        )
        return frames[0]

    def highres(self, cell) -> np.ndarray:
        """The 100x brightfield image of ``cell`` area-averaged to the 20x crop grid."""
        big = self.brightfield(cell, Pass.HIGHRES, size=self.hi_px)
        return cv2.resize(big, (self.size, self.size), interpolation=cv2.INTER_AREA)


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
    progress: Progress | None = None,
    target: str = "stain",
    sim_config: SimConfig | None = None,
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
    progress
        Where to report the cells rendered (bar ``cells``; the shared progress protocol).
    target
        ``stain`` (the stained 20x crop, RGB ``uint8``) or ``fluorescence``: one ``uint16``
        nuclear-stain channel imaged in the unstained pass at the input's position
        (:mod:`acquisition.simulator.fluorescence`; no stained pass, no 100x targets).
    sim_config
        The simulator's model settings (default: its defaults), e.g. the ablation's null
        ``SimConfig(nucleus_to_cytoplasm=1, stain_phase_coupling=0)``.

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
    total = len(slides) * cells_per_slide
    progress = or_null(progress)
    progress.start("cells", total, label="rendering cells")
    inputs, targets, highs, rows = [], [], [], []
    for slide in slides:
        sim = SimulatedMicroscope(prof, slide=slide, seed=seed, config=sim_config)
        render = _CellRenderer(sim, crop_size, highres=highres)
        wbcs = _find_wbcs(sim, prof, cells_per_slide + 3 + cells_per_slide // 10)
        # staining moves each cell a little and washes a few off (the simulator's truth)
        _dx, _dy, lost = sim.staining_moves(wbcs["id"], wbcs["x_um"], wbcs["y_um"])
        for cell in wbcs[np.flatnonzero(~lost)[:cells_per_slide]]:
            xu, yu = cell_stage_xy(sim, cell, Pass.UNSTAINED, row_pass=Pass.UNSTAINED)
            xs, ys = cell_stage_xy(sim, cell, Pass.STAINED, row_pass=Pass.UNSTAINED)
            inputs.append(render.crop(cell, Pass.UNSTAINED))
            if fluor:
                targets.append(
                    nuclear_stain_field(
                        sim,
                        pass_=Pass.UNSTAINED,
                        x_um=xu,
                        y_um=yu,
                        width=crop_size,
                        height=crop_size,
                        rng=noise,
                    )[..., None]
                )
            else:
                targets.append(render.brightfield(cell, Pass.STAINED))
            highs.append(render.highres(cell) if render.highres_ok else np.zeros_like(targets[-1]))
            c = (crop_size - 1) / 2
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
                    "highres_scale": render.ratio if highres else math.nan,
                    "qc_flags": "",
                    "split": "",
                    "type": str(cell["type"]),
                }
            )
            progress.advance("cells")
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
