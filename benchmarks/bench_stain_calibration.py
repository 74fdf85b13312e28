"""Stained absorbance per structure: the simulator against two real Romanowsky sets.

Measures ``-ln(I / I_glass)`` (median per structure, R G B) on the real white-cell crops in
``../shared/data/wbc-stains`` (expert masks: nucleus, cytoplasm; red cells found by colour) and
on simulated stained 20x crops of the same kind (truth masks), with the same code
(:mod:`acquisition.simulator.absorbance`). A simulated value passes when it lies within the
span of the two real sets widened by 30 % (``[0.7 min, 1.3 max]``). Writes a markdown table,
followed by the nucleus density and dye of each white-cell type over the slide's median
nucleus, real and simulated (:mod:`nucleus_density`; ``--density-fields 0`` leaves it out).

Usage::

    python benchmarks/bench_stain_calibration.py [--cells 40] [--density-fields 6]
        [--out docs/stain-calibration.md]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from acquisition.simulator.absorbance import structure_absorbance
from acquisition.simulator.crops import (
    brightfield_channel,
    brightfield_exposure_ms,
    cell_stage_xy,
    render_crop,
    white_cells,
)
from acquisition.vocabulary import CELL_TYPES as WBC_TYPES

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wbc-stains"
SETS = ("set1-tecom-120px", "set2-cellavision-300px")


def _keys() -> list[str]:
    return ["rbc"] + [f"{s}:{t}" for s in ("nucleus", "cytoplasm") for t in WBC_TYPES]


def real_absorbance(folder: Path) -> dict[str, np.ndarray]:
    """Median absorbance (R, G, B) per structure key over one real set."""
    import cv2

    with (folder / "classes.csv").open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    acc: dict[str, list] = {}
    for iid, cls in rows:
        name = f"{int(iid):03d}.png"
        img = cv2.imread(str(folder / "images" / name))[..., ::-1]
        m = cv2.imread(str(folder / "masks" / name), cv2.IMREAD_GRAYSCALE)
        nuc, cyt, bg = m > 200, (m > 60) & (m < 200), m < 60
        t = WBC_TYPES[int(cls) - 1]
        for k, v in structure_absorbance(img, nuc, cyt, bg).items():
            acc.setdefault("rbc" if k == "rbc" else f"{k}:{t}", []).append(v)
    return {k: np.median(np.array(v), axis=0) for k, v in acc.items()}


def simulated_absorbance(
    n_cells: int, *, seed: int = 0, config=None, crop: int = 96
) -> dict[str, np.ndarray]:
    """Median absorbance per structure key over stained 20x crops of simulated white cells."""
    import hardware_profiles as hp
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.microscope import SimulatedMicroscope

    prof = hp.load("pls43")
    # every type equally often, so the rare ones (basophils: 1 %) are measured too
    equal = tuple((t, 1.0) for t in WBC_TYPES)
    cfg = config or SimConfig(wbc_per_field=30.0, wbc_type_fractions=equal)
    sim = SimulatedMicroscope(prof, slide="stain-cal", seed=seed, config=cfg)
    bf = brightfield_channel(prof)
    acc: dict[str, list] = {}
    exp = None
    for row in white_cells(sim, n_cells, pass_="stained", max_fields=200)[:n_cells]:
        x, y = cell_stage_xy(sim, row, "stained")
        if exp is None:
            exp = brightfield_exposure_ms(sim, "stained", x, y, size=256)
        img = render_crop(
            sim, row, pass_="stained", size=crop, channels=[bf], exposures_ms={bf.name: exp}
        )[0]
        ms = sim.masks(pass_="stained", x_um=x, y_um=y, width=crop, height=crop)
        # the one centred cell, as in the real crops: other white cells are left out
        lab, _ = ndimage.label(ms["wbc"])
        own = lab == lab[crop // 2, crop // 2] if lab[crop // 2, crop // 2] else ms["wbc"]
        nuc, cyt = ms["nucleus"] & own, ms["cytoplasm"] & own
        bg = ~ms["wbc"]
        for key, v in structure_absorbance(img, nuc, cyt, bg).items():
            acc.setdefault("rbc" if key == "rbc" else f"{key}:{row['type']}", []).append(v)
    return {k: np.median(np.array(v), axis=0) for k, v in acc.items()}


def compare(
    sim: dict, reals: list[dict]
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, bool]]:
    """Rows ``(key, simulated, low, high, inside)`` with the ±30 % widened real span."""
    rows = []
    for key in _keys():
        if key not in sim or any(key not in r for r in reals):
            continue
        vals = np.stack([r[key] for r in reals])
        low, high = 0.7 * vals.min(0), 1.3 * vals.max(0)
        ok = bool(np.all((sim[key] >= low) & (sim[key] <= high)))
        rows.append((key, sim[key], low, high, ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=40)
    ap.add_argument(
        "--density-fields", type=int, default=6, help="simulated fields of the density tables"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"real stain sets not found at {SHARED}; nothing to compare with")
        return 1
    reals = [real_absorbance(SHARED / s) for s in SETS]
    sim = simulated_absorbance(args.cells)
    rows = compare(sim, reals)

    def f(v):
        return " ".join(f"{x:.2f}" for x in v)

    lines = [
        "# Stained absorbance: simulator against two real Romanowsky sets",
        "",
        "`-ln(I/I_glass)` per channel (R G B), median per structure. Real: "
        f"{SETS[0]} and {SETS[1]} (expert masks; red cells by colour). Simulated: "
        f"{len(sim)} structures from {args.cells} stained 20x crops (`pls43`, truth masks). "
        "Allowed: the two sets' span widened by 30 %.",
        "",
        "| structure | set 1 | set 2 | simulated | allowed low | allowed high | inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, v, low, high, ok in rows:
        lines.append(
            f"| {key} | {f(reals[0][key])} | {f(reals[1][key])} | {f(v)} | {f(low)} | "
            f"{f(high)} | {'yes' if ok else 'NO'} |"
        )
    n_ok = sum(r[4] for r in rows)
    lines += ["", f"{n_ok} of {len(rows)} structures inside the real span (±30 %).", ""]
    if args.density_fields > 0:
        from nucleus_density import density_tables

        lines += density_tables(args.density_fields, SHARED)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
