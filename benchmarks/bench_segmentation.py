"""WBC segmentation: real stains (nucleus IoU, centroid hits) and the simulator (recall, speed).

Real data: the two public sets in ``../shared/data/wbc-stains`` (expert nucleus masks; they
stay outside the repository) with the default parameters and the sets' estimated pixel
sizes. Simulator: full 1920x1200 stained fields over several slides and stain batches,
against the truth (recall over WBCs at least 45 px inside, precision), and the time per field.

    .venv/bin/python benchmarks/bench_segmentation.py [--data DIR] [--fields N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine

SETS = {"set1-tecom-120px": 0.16, "set2-cellavision-300px": 0.08}


def real_sets(data: Path) -> list[str]:
    import cv2

    from registration.segment import segment_wbcs

    rows = []
    for name, pixel in SETS.items():
        images = sorted((data / name / "images").glob("*.png"))
        if not images:
            rows.append(f"| {name} | (not found under {data}) | | | | |")
            continue
        ious, hits, splits, extra = [], 0, 0, 0
        for f in images:
            img = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
            mask = cv2.imread(str(data / name / "masks" / f.name), cv2.IMREAD_GRAYSCALE)
            seg = segment_wbcs(img, pixel_size_um=pixel)
            pred, nucleus = seg.labels > 0, mask == 255
            ious.append((pred & nucleus).sum() / max((pred | nucleus).sum(), 1))
            inside = [bool(mask[round(y), round(x)] > 0) for x, y in seg.centroids]
            hits += any(inside)
            splits += sum(inside) > 1
            extra += len(inside) - sum(inside)
        n = len(images)
        rows.append(
            f"| {name} ({pixel} µm/px) | {n} | {np.mean(ious):.3f} / {np.median(ious):.3f} | "
            f"{hits / n:.3f} | {splits / n:.3f} | {extra / n:.2f} |"
        )
    head = (
        "| set | images | nucleus IoU mean / median | centroid in cell | cell split in two "
        "| other detections per image |\n|---|---|---|---|---|---|"
    )
    return [head, *rows]


def simulator(n_fields: int) -> list[str]:
    import hardware_profiles as hp
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.microscope import SimulatedMicroscope
    from registration.segment import segment_wbcs
    from registration.truth import WBC_TYPES, _placed

    prof = hp.load("pls43")
    bf = prof.stack[0]
    w, h, p = 1920, 1200, 0.293
    tp = fn = fp = n_det = 0
    times = []
    for k in range(n_fields):
        cfg = SimConfig(wbc_per_field=30.0, stain_variation=0.25)
        sim = SimulatedMicroscope(prof, slide=f"seg{k}", seed=100 + k, config=cfg)
        x, y = 400.0 * k, -250.0 * k
        img = sim.render(
            pass_="stained",
            x_um=x,
            y_um=y,
            z_um=sim.focus_z_um("stained", x, y),
            leds=dict.fromkeys(bf.leds, bf.brightness),
            exposure_ms=bf.exposure_ms,
            gain=1.0,
            width=w,
            height=h,
        )
        t0 = time.perf_counter()
        seg = segment_wbcs(img, pixel_size_um=p)
        times.append(time.perf_counter() - t0)
        truth = sim.truth("stained", [(x, y)], w, h)
        cells = truth["cells"][np.isin(truth["cells"]["type"], WBC_TYPES)]
        px = (_placed(truth["slide_to_stage"], cells["x_um"], cells["y_um"]) - [x, y]) / p
        px += [(w - 1) / 2, (h - 1) / 2]
        d = np.linalg.norm(px[:, None] - seg.centroids[None], axis=2)
        close = d <= cells["radius_um"][:, None] / p
        inside = (px[:, 0] >= 45) & (px[:, 0] <= w - 46) & (px[:, 1] >= 45) & (px[:, 1] <= h - 46)
        tp += int(close.any(1)[inside].sum())
        fn += int((~close.any(1))[inside].sum())
        c = seg.centroids
        det_inside = (c[:, 0] >= 45) & (c[:, 0] <= w - 46) & (c[:, 1] >= 45) & (c[:, 1] <= h - 46)
        n_det += int(det_inside.sum())
        fp += int((~close.any(0) & det_inside).sum())
    recall = tp / max(tp + fn, 1)
    precision = 1 - fp / max(n_det, 1)
    return [
        "| simulator (1920x1200, stain variation ±25 %) | value |",
        "|---|---|",
        f"| fields | {n_fields} |",
        f"| WBCs ≥ 45 px inside | {tp + fn} |",
        f"| recall | {recall:.3f} |",
        f"| detections ≥ 45 px inside | {n_det} |",
        f"| of them no WBC (before QC) | {fp} |",
        f"| precision (before QC) | {precision:.3f} |",
        f"| time per field, median (target ≤ 0.1 s) | {1000 * np.median(times):.0f} ms |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/wbc-stains"
    )
    ap.add_argument("--fields", type=int, default=6, help="simulated fields")
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    lines = [f"## WBC segmentation ({machine()})", "", "Real stains, default parameters:", ""]
    lines += real_sets(args.data)
    lines += ["", *simulator(args.fields)]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
