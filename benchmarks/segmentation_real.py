"""WBC segmentation on the real stain sets: per stain variation, and held-out tuning.

The two public sets in ``../shared/data/wbc-stains`` (one white cell per image, expert nucleus
and cell masks; they stay outside the repository) at the sets' estimated pixel sizes, each
image also under the stain and camera variations of :mod:`registration.stain_variation`;
what each column means is in ``bench_segmentation.py``'s docstring.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from registration.segment import DEFAULT_PARAMS

SETS = {"set1-tecom-120px": 0.16, "set2-cellavision-300px": 0.08}
#: the dye limit of detection (a nucleus holds at least this fraction of the slide's median)
LIMIT = DEFAULT_PARAMS.min_dye_fraction
#: the stain-adaptation constants tried in the held-out tuning
GRID = {"reference_saturation": (35.0, 50.0, 65.0), "min_nucleus_contrast": (1.2, 1.35, 1.5)}


def load_set(data: Path, name: str, step: int = 1) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(stem, RGB image, expert mask)`` of every ``step``-th image of a set."""
    import cv2

    out = []
    for f in sorted((data / name / "images").glob("*.png"))[::step]:
        img = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        out.append((f.stem, img, cv2.imread(str(data / name / "masks" / f.name), 0)))
    return out


def score_crops(crops: list, pixel_size_um: float, params: dict) -> dict[str, dict]:
    """Per variation: recall, precision, border-cut others, nucleus IoU (see the docstring)."""
    from registration.segment import segment_wbcs
    from registration.stain_variation import stain_variants

    acc: dict[str, dict] = {}
    for _, img, mask in crops:
        h, w = mask.shape
        for name, varied in stain_variants(img, pixel_size_um=pixel_size_um).items():
            a = acc.setdefault(
                name,
                {"n": 0, "hit": 0, "false": 0, "border": 0, "iou": [], "dye": [], "density": []},
            )
            seg = segment_wbcs(varied, pixel_size_um=pixel_size_um, **params)
            a["n"] += 1
            hit = False
            for k, (x, y) in enumerate(seg.centroids):
                in_cell = mask[min(round(y), h - 1), min(round(x), w - 1)] > 0
                if in_cell and not hit:
                    hit = True
                    a["dye"].append(seg.dye_um2[k])
                    # the nucleus's mean optical density (dye over area): how dense its chromatin
                    a["density"].append(seg.dye_um2[k] / max(seg.nucleus_areas_um2[k], 1e-9))
                elif in_cell:
                    a["false"] += 1  # the cell split in two
                else:
                    cell = seg.cell_labels == k + 1
                    on_border = cell[0].any() or cell[-1].any() or cell[:, 0].any()
                    if on_border or cell[:, -1].any():
                        a["border"] += 1
                    else:
                        a["false"] += 1
            a["hit"] += hit
            pred, nucleus = seg.labels > 0, mask == 255
            a["iou"].append((pred & nucleus).sum() / max((pred | nucleus).sum(), 1))
    for a in acc.values():
        a["recall"] = a["hit"] / max(a["n"], 1)
        # nucleus dye of each found cell over the set's median (the set as one slide)
        a["dye_ratio"] = np.asarray(a["dye"]) / max(float(np.median(a["dye"] or [1.0])), 1e-9)
        a["density_ratio"] = np.asarray(a["density"]) / max(
            float(np.median(a["density"] or [1.0])), 1e-9
        )
        a["precision"] = a["hit"] / max(a["hit"] + a["false"], 1)
    return acc


def value_range(values: np.ndarray) -> str:
    """``lowest–highest`` of ``values`` to two decimals; ``-`` when there are none."""
    return f"{values.min():.2f}–{values.max():.2f}" if np.size(values) else "-"


def _worst(acc: dict[str, dict]) -> tuple[float, float]:
    """(worst of recall and precision over the variations, mean IoU of the originals)."""
    worst = min(min(a["recall"], a["precision"]) for a in acc.values())
    return worst, float(np.mean(acc["original"]["iou"]))


def variation_table(name: str, pixel: float, acc: dict[str, dict]) -> list[str]:
    rows = [
        f"**{name}** ({pixel} µm/px, {acc['original']['n']} images), default parameters:",
        "",
        "| variation | recall | precision | border-cut neighbours | nucleus IoU mean / median "
        f"| nucleus dye / set median: lowest, cells under {LIMIT:g} "
        "| nucleus density / set median: lowest–highest |",
        "|---|---|---|---|---|---|---|",
    ]
    for var, a in acc.items():
        r, d = a["dye_ratio"], a["density_ratio"]
        rows.append(
            f"| {var} | {a['recall']:.3f} | {a['precision']:.3f} | {a['border']} | "
            f"{np.mean(a['iou']):.3f} / {np.median(a['iou']):.3f} | "
            f"{r.min() if r.size else float('nan'):.2f}, {int((r < LIMIT).sum())} | "
            f"{value_range(d)} |"
        )
    return [*rows, ""]


def holdout(data: Path, tune_step: int, step: int) -> list[str]:
    """Pick the adaptation constants on one set, score them on the other (both ways)."""
    sets = {n: load_set(data, n, tune_step) for n in SETS}
    if not all(sets.values()):
        return [f"(held-out tuning skipped: sets not found under {data})"]
    rows = [
        "Held-out tuning: constants picked on one set (every "
        f"{tune_step}th image: best worst-variation min(recall, precision), scores within "
        "one image of the best counted as ties and decided by nucleus IoU), "
        "scored on the other (every image, worst variation):",
        "",
        "| tuned on | picked | scored on | worst recall | worst precision | nucleus IoU mean |",
        "|---|---|---|---|---|---|",
    ]
    names = list(SETS)
    for tune, test in (names, names[::-1]):
        tried = []
        for values in itertools.product(*GRID.values()):
            params = dict(zip(GRID, values, strict=True))
            tried.append((params, *_worst(score_crops(sets[tune], SETS[tune], params))))
        # scores less than one tuning image apart are ties (the difference is one cell
        # found or missed); the nucleus IoU decides between them
        tie = 1.0 / len(sets[tune])
        top = max(worst for _, worst, _ in tried)
        pick = max((t for t in tried if t[1] >= top - tie), key=lambda t: t[2])[0]
        acc = score_crops(load_set(data, test, step), SETS[test], pick)
        rows.append(
            f"| {tune} | {', '.join(f'{k}={v:g}' for k, v in pick.items())} | {test} | "
            f"{min(a['recall'] for a in acc.values()):.3f} | "
            f"{min(a['precision'] for a in acc.values()):.3f} | "
            f"{np.mean(acc['original']['iou']):.3f} |"
        )
    return [*rows, ""]


def real_sets(data: Path, step: int = 1) -> list[str]:
    rows: list[str] = []
    for name, pixel in SETS.items():
        crops = load_set(data, name, step)
        if not crops:
            rows.append(f"({name} not found under {data})")
            continue
        rows += variation_table(name, pixel, score_crops(crops, pixel, {}))
    return rows
