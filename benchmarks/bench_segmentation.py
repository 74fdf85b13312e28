"""WBC segmentation: real stains under stain variations (held-out tuning), the simulator, speed.

Real data: the two public sets in ``../shared/data/wbc-stains`` (one white cell per image,
expert nucleus and cell masks; they stay outside the repository), at the sets' estimated
pixel sizes, each image also under the synthetic stain and camera variations of
:mod:`registration.stain_variation`. Per variation: **recall** (images where a detection's
centroid lies in the expert cell), **precision** (those hits over the hits plus the other
detections, a second detection in the same cell counting as false; a detection outside the
expert cell whose own cell touches the image border is left out and counted apart: the
masks mark only the centred cell, and its neighbours cut by the border are real white cells
that ``find_wbcs`` returns by design), **nucleus IoU** against the expert nucleus, and the
found cells' **nucleus dye** (integrated optical density) over the set's median: detection
drops nuclei under ``min_dye_fraction`` of their slide's median (stain precipitate), so a
set taken as one slide must keep every cell above it.

Held-out tuning: the two stain-adaptation constants (``reference_saturation``,
``min_nucleus_contrast``) are picked on one set (the best worst-variation score) and
scored on the other, both ways. Simulator: full 1920x1200 stained fields over several slides
and stain batches, against the truth, and the time per field; and the stain of its smudge
cells against intact lymphocyte nuclei (:func:`smudge_stain`).

    .venv/bin/python benchmarks/bench_segmentation.py [--data DIR] [--fields N] [--step K]
        [--tune-step K] [--no-holdout] [--simulator-only] [--against REV] [--smudges N]
        [--smudge-fields N] [--out FILE]

This file holds the command line; the measurements live in ``segmentation_real.py`` (the
real sets, held-out tuning), ``segmentation_simulated.py`` (simulated fields, speed) and
``segmentation_smudges.py`` (the simulator's smudge cells).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine
from segmentation_real import GRID, LIMIT, SETS, holdout, load_set, real_sets, score_crops
from segmentation_simulated import side_by_side, simulator
from segmentation_smudges import smudge_stain, smudge_stain_ratios

__all__ = [  # what other scripts and tests import from here
    "GRID",
    "LIMIT",
    "SETS",
    "holdout",
    "load_set",
    "real_sets",
    "score_crops",
    "side_by_side",
    "simulator",
    "smudge_stain",
    "smudge_stain_ratios",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/wbc-stains"
    )
    ap.add_argument("--fields", type=int, default=6, help="simulated fields")
    ap.add_argument("--step", type=int, default=1, help="score every STEP-th real image")
    ap.add_argument("--tune-step", type=int, default=4, help="tune on every K-th image")
    ap.add_argument("--no-holdout", action="store_true", help="skip the held-out tuning")
    ap.add_argument(
        "--against",
        metavar="REV",
        help="also time the detector of git revision REV side by side on the same fields",
    )
    ap.add_argument(
        "--smudges",
        type=float,
        help="smudge cells per simulated field (default: 2 %% of the nucleated cells, a normal "
        "smear's upper bound: 0.61 beside the fields' 30 white cells)",
    )
    ap.add_argument(
        "--smudge-fields",
        type=int,
        default=3,
        help="fields of the smudge-cell stain measurement (0: skip it)",
    )
    ap.add_argument(
        "--simulator-only",
        action="store_true",
        help="skip the real sets and the held-out tuning (the simulator tables only)",
    )
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    lines = [f"## WBC segmentation ({machine()})", ""]
    if not args.simulator_only:
        lines += real_sets(args.data, args.step)
        if not args.no_holdout:
            lines += holdout(args.data, args.tune_step, args.step)
    lines += simulator(args.fields, args.against, args.smudges)
    if args.smudge_fields > 0:
        lines += ["", *smudge_stain(args.smudge_fields)]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
