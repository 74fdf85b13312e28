"""WBC detection on simulated 1920x1200 stained fields: against the truth, and its speed.

Several slides and stain batches (stain variation ±25 %); a WBC or a detection counts when it
lies at least :data:`EDGE` pixels inside the field. Each false detection is attributed to the
truth object it sits on. ``--against REV`` adds the CPU time of an earlier detector on the
same fields (:func:`side_by_side`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from segmentation_real import value_range

from acquisition.vocabulary import CELL_TYPES, Pass

#: pixels from the field's border inside which truths and detections count
EDGE = 45
#: the simulated field: width, height (px) and pixel size (µm)
WIDTH, HEIGHT, PIXEL_UM = 1920, 1200, 0.293


def inside(xy: np.ndarray, w: int = WIDTH, h: int = HEIGHT) -> np.ndarray:
    """Which pixel positions ``(N, 2)`` lie :data:`EDGE` px or more inside a ``w`` x ``h`` field."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= EDGE) & (x <= w - 1 - EDGE) & (y >= EDGE) & (y <= h - 1 - EDGE)


@dataclass
class Tally:
    """What the simulated fields add up to (counts, per-field times, per-object ratios)."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    n_det: int = 0
    n_smudges: int = 0
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    #: what the false detections sit on: truth object type (or "nothing") -> count
    on: dict[str, int] = field(default_factory=dict)
    #: nucleus density of the WBCs found over the field's median WBC's
    wbc_density: list[float] = field(default_factory=list)
    #: per false detection: nucleus density and dye over the field's median WBC's, area µm²
    false_stats: list[tuple[float, float, float]] = field(default_factory=list)


def render_field(prof, k: int, smudges: float | None):
    """Field ``k``: its simulator, stained image and stage position ``(x, y)`` µm."""
    from acquisition.simulator.config import SimConfig, smudges_per_field
    from acquisition.simulator.microscope import SimulatedMicroscope

    bf = prof.stack[0]
    # smudge cells at a normal smear's upper bound (2 % of the nucleated cells) unless given
    per_field = smudges_per_field(30.0) if smudges is None else smudges
    cfg = SimConfig(wbc_per_field=30.0, stain_variation=0.25, smudge_per_field=per_field)
    sim = SimulatedMicroscope(prof, slide=f"seg{k}", seed=100 + k, config=cfg)
    x, y = 400.0 * k, -250.0 * k
    img = sim.render(
        pass_=Pass.STAINED,
        x_um=x,
        y_um=y,
        z_um=sim.focus_z_um(Pass.STAINED, x, y),
        leds=dict.fromkeys(bf.leds, bf.brightness),
        exposure_ms=bf.exposure_ms,
        gain=1.0,
        width=WIDTH,
        height=HEIGHT,
    )
    return sim, img, x, y


def _pixels(truth: dict, cells: np.ndarray, x: float, y: float) -> np.ndarray:
    """The truth cells' positions in the field's pixels ``(N, 2)``."""
    from registration.truth import placed

    px = (placed(truth["slide_to_stage"], cells["x_um"], cells["y_um"]) - [x, y]) / PIXEL_UM
    px += [(WIDTH - 1) / 2, (HEIGHT - 1) / 2]
    return px


def score_field(t: Tally, sim, img: np.ndarray, x: float, y: float) -> None:
    """Detect on one field, time it, and add its scores against the truth to ``t``."""
    from registration.segment import segment_wbcs

    t.images.append(img)
    t0, c0 = time.perf_counter(), time.process_time()
    seg = segment_wbcs(img, pixel_size_um=PIXEL_UM)
    t.times.append(time.perf_counter() - t0)
    t.cpu.append(time.process_time() - c0)
    truth = sim.truth(Pass.STAINED, [(x, y)], WIDTH, HEIGHT)
    cells = truth["cells"][np.isin(truth["cells"]["type"], CELL_TYPES)]
    px = _pixels(truth, cells, x, y)
    d = np.linalg.norm(px[:, None] - seg.centroids[None], axis=2)
    close = d <= cells["radius_um"][:, None] / PIXEL_UM
    counted = inside(px)
    t.tp += int(close.any(1)[counted].sum())
    t.fn += int((~close.any(1))[counted].sum())
    det_inside = inside(seg.centroids)
    t.n_det += int(det_inside.sum())
    false = ~close.any(0) & det_inside
    t.fp += int(false.sum())
    density = seg.dye_um2 / np.maximum(seg.nucleus_areas_um2, 1e-9)
    found = close.any(0)
    ref_density = float(np.median(density[found])) if found.any() else float("nan")
    ref_dye = float(np.median(seg.dye_um2[found])) if found.any() else float("nan")
    t.wbc_density += list(density[found & det_inside] / ref_density)
    allc = truth["cells"]
    apx = _pixels(truth, allc, x, y)
    t.n_smudges += int(inside(apx[allc["type"] == "smudge"]).sum())
    for j in np.flatnonzero(false):
        kind = _covering(allc, apx, seg.centroids[j])
        t.on[kind] = t.on.get(kind, 0) + 1
        t.false_stats.append(
            (density[j] / ref_density, seg.dye_um2[j] / ref_dye, seg.nucleus_areas_um2[j])
        )


def _covering(allc: np.ndarray, apx: np.ndarray, at: np.ndarray) -> str:
    """What a false detection at pixel ``at`` sits on: the truth objects covering it, a non-red
    cell first (red cells are everywhere; a smudge or an artifact lying on one is the cause)."""
    dj = np.linalg.norm(apx - at, axis=1)
    covering = np.flatnonzero(dj <= allc["radius_um"] / PIXEL_UM)
    if not covering.size:
        return "nothing"
    other = covering[allc["type"][covering] != "rbc"]
    pool = other if other.size else covering
    return str(allc["type"][pool[np.argmin(dj[pool])]])


def tally_rows(t: Tally, n_fields: int) -> list[str]:
    """The simulator table of ``t`` (without the side-by-side timing)."""
    recall = t.tp / max(t.tp + t.fn, 1)
    precision = 1 - t.fp / max(t.n_det, 1)
    return [
        "| simulator (1920x1200, stain variation ±25 %) | value |",
        "|---|---|",
        f"| fields | {n_fields} |",
        f"| WBCs ≥ 45 px inside | {t.tp + t.fn} |",
        f"| recall | {recall:.3f} |",
        f"| detections ≥ 45 px inside | {t.n_det} |",
        f"| of them no WBC (before QC) | {t.fp} |",
        f"| smudge cells ≥ 45 px inside (truth; not white cells) | {t.n_smudges} |",
        "| ... sitting on (truth objects covering it, other than a red cell first) | "
        + (", ".join(f"{k} {v}" for k, v in sorted(t.on.items())) or "-")
        + " |",
        "| WBCs found: nucleus density / field median, 1st–99th percentile | "
        f"{value_range(np.percentile(t.wbc_density, [1, 99])) if t.wbc_density else '-'} |",
        "| no-WBC detections: nucleus density / field median WBC, lowest–highest | "
        f"{value_range(np.asarray([s[0] for s in t.false_stats]))} |",
        "| no-WBC detections: nucleus dye / field median WBC | "
        f"{value_range(np.asarray([s[1] for s in t.false_stats]))} |",
        "| no-WBC detections: nucleus area, µm² | "
        f"{value_range(np.asarray([s[2] for s in t.false_stats]))} |",
        f"| precision (before QC) | {precision:.3f} |",
        "| precision, smudge cells counted as the ruptured white cells they are | "
        f"{1 - (t.fp - t.on.get('smudge', 0)) / max(t.n_det, 1):.3f} |",
        f"| time per field, median (target ≤ 0.1 s) | {1000 * np.median(t.times):.0f} ms |",
        f"| CPU time per field, median (all threads; robust to other load) | "
        f"{1000 * np.median(t.cpu):.0f} ms |",
        f"| load average while measuring | {os.getloadavg()[0]:.1f} |",
    ]


def simulator(n_fields: int, against: str | None = None, smudges: float | None = None) -> list[str]:
    """The simulator table: ``n_fields`` fields (``smudges`` per field, if given) against the
    truth, and (``against``) the side-by-side CPU time with revision ``against``'s detector."""
    import hardware_profiles as hp

    prof = hp.load("pls43")
    t = Tally()
    for k in range(n_fields):
        score_field(t, *render_field(prof, k, smudges))
    return [*tally_rows(t, n_fields), *(side_by_side(t.images, against) if against else [])]


def _segment_at(rev: str):
    """``segment_wbcs`` of ``registration/segment.py`` as of git revision ``rev`` (before the
    detector was split into ``registration/wbc_*.py`` that file held all of it; from then on
    its steps come from this tree's modules, so compare against revisions before the split)."""
    import importlib.util
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:registration/segment.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "segment_at_rev.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("segment_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["segment_at_rev"] = module
    spec.loader.exec_module(module)
    return module.segment_wbcs


def side_by_side(images: list, rev: str, rounds: int = 3, p: float = 0.293) -> list[str]:
    """CPU time per field of this detector and of revision ``rev``'s, alternating on the same
    images (a ratio that other jobs on the machine hardly move)."""
    from registration.segment import segment_wbcs

    funcs = {"this": segment_wbcs, rev: _segment_at(rev)}
    cpu: dict[str, list[float]] = {k: [] for k in funcs}
    for f in funcs.values():
        f(images[0], pixel_size_um=p)  # imports, caches
    for _ in range(rounds):
        for img in images:
            for name, f in funcs.items():
                c0 = time.process_time()
                f(img, pixel_size_um=p)
                cpu[name].append(time.process_time() - c0)
    a, b = np.median(cpu["this"]), np.median(cpu[rev])
    return [
        f"| CPU per field side by side, this / `{rev}` ({rounds} rounds, median) | "
        f"{1000 * a:.0f} / {1000 * b:.0f} ms ({b / a:.2f}x) |",
    ]
