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
        [--tune-step K] [--no-holdout] [--against REV] [--smudges N] [--smudge-fields N]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine

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
                if mask[min(round(y), h - 1), min(round(x), w - 1)] > 0 and not hit:
                    hit = True
                    a["dye"].append(seg.dye_um2[k])
                    # the nucleus's mean optical density (dye over area): how dense its chromatin
                    a["density"].append(seg.dye_um2[k] / max(seg.nucleus_areas_um2[k], 1e-9))
                elif mask[min(round(y), h - 1), min(round(x), w - 1)] > 0:
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


def _range(values: np.ndarray) -> str:
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
            f"{_range(d)} |"
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


def simulator(n_fields: int, against: str | None = None, smudges: float | None = None) -> list[str]:
    import hardware_profiles as hp
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.microscope import SimulatedMicroscope
    from registration.segment import segment_wbcs
    from registration.truth import WBC_TYPES, placed

    prof = hp.load("pls43")
    bf = prof.stack[0]
    w, h, p = 1920, 1200, 0.293
    tp = fn = fp = n_det = 0
    times, cpu, images = [], [], []
    on: dict[str, int] = {}
    # nucleus density (mean optical density) and dye over the field's median WBC, and nucleus
    # area: of the WBCs found and of the false detections
    wbc_density: list[float] = []
    false_stats: list[tuple[float, float, float]] = []
    n_smudges = 0
    extra = {} if smudges is None else {"smudge_per_field": smudges}
    for k in range(n_fields):
        cfg = SimConfig(wbc_per_field=30.0, stain_variation=0.25, **extra)
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
        images.append(img)
        t0, c0 = time.perf_counter(), time.process_time()
        seg = segment_wbcs(img, pixel_size_um=p)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        truth = sim.truth("stained", [(x, y)], w, h)
        cells = truth["cells"][np.isin(truth["cells"]["type"], WBC_TYPES)]
        px = (placed(truth["slide_to_stage"], cells["x_um"], cells["y_um"]) - [x, y]) / p
        px += [(w - 1) / 2, (h - 1) / 2]
        d = np.linalg.norm(px[:, None] - seg.centroids[None], axis=2)
        close = d <= cells["radius_um"][:, None] / p
        inside = (px[:, 0] >= 45) & (px[:, 0] <= w - 46) & (px[:, 1] >= 45) & (px[:, 1] <= h - 46)
        tp += int(close.any(1)[inside].sum())
        fn += int((~close.any(1))[inside].sum())
        c = seg.centroids
        det_inside = (c[:, 0] >= 45) & (c[:, 0] <= w - 46) & (c[:, 1] >= 45) & (c[:, 1] <= h - 46)
        n_det += int(det_inside.sum())
        false = ~close.any(0) & det_inside
        fp += int(false.sum())
        density = seg.dye_um2 / np.maximum(seg.nucleus_areas_um2, 1e-9)
        found = close.any(0)
        ref_density = float(np.median(density[found])) if found.any() else float("nan")
        ref_dye = float(np.median(seg.dye_um2[found])) if found.any() else float("nan")
        wbc_density += list(density[found & det_inside] / ref_density)
        # what each false detection sits on: the truth objects covering it, a non-red cell
        # first (red cells are everywhere; a smudge or an artifact lying on one is the cause)
        allc = truth["cells"]
        apx = (placed(truth["slide_to_stage"], allc["x_um"], allc["y_um"]) - [x, y]) / p
        apx += [(w - 1) / 2, (h - 1) / 2]
        sx, sy = apx[allc["type"] == "smudge"].T
        n_smudges += int(((sx >= 45) & (sx <= w - 46) & (sy >= 45) & (sy <= h - 46)).sum())
        for j in np.flatnonzero(false):
            dj = np.linalg.norm(apx - c[j], axis=1)
            covering = np.flatnonzero(dj <= allc["radius_um"] / p)
            kind = "nothing"
            if covering.size:
                other = covering[allc["type"][covering] != "rbc"]
                pool = other if other.size else covering
                kind = str(allc["type"][pool[np.argmin(dj[pool])]])
            on[kind] = on.get(kind, 0) + 1
            false_stats.append(
                (density[j] / ref_density, seg.dye_um2[j] / ref_dye, seg.nucleus_areas_um2[j])
            )
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
        f"| smudge cells ≥ 45 px inside (truth; not white cells) | {n_smudges} |",
        "| ... sitting on (truth objects covering it, other than a red cell first) | "
        + (", ".join(f"{k} {v}" for k, v in sorted(on.items())) or "-")
        + " |",
        "| WBCs found: nucleus density / field median, 1st–99th percentile | "
        f"{_range(np.percentile(wbc_density, [1, 99])) if wbc_density else '-'} |",
        "| no-WBC detections: nucleus density / field median WBC, lowest–highest | "
        f"{_range(np.asarray([s[0] for s in false_stats]))} |",
        "| no-WBC detections: nucleus dye / field median WBC | "
        f"{_range(np.asarray([s[1] for s in false_stats]))} |",
        "| no-WBC detections: nucleus area, µm² | "
        f"{_range(np.asarray([s[2] for s in false_stats]))} |",
        f"| precision (before QC) | {precision:.3f} |",
        f"| time per field, median (target ≤ 0.1 s) | {1000 * np.median(times):.0f} ms |",
        f"| CPU time per field, median (all threads; robust to other load) | "
        f"{1000 * np.median(cpu):.0f} ms |",
        f"| load average while measuring | {os.getloadavg()[0]:.1f} |",
        *(side_by_side(images, against) if against else []),
    ]


def smudge_stain_ratios(n_fields: int, w: int = 1920, h: int = 1200, **config) -> dict:
    """Stain of the simulator's smudge cells against intact lymphocyte nuclei (truth).

    Fields of lymphocytes and smudge cells alone (no red cells, platelets, dirt or
    precipitate; no vignetting, dust or fixed-pattern noise), so each isolated object's
    absorbance can be read against the glass: optical density (log10, summed over R, G, B)
    integrated over the object (an intact nucleus: its truth mask grown by 1 µm, for the
    blur; a smudge: the disc of its truth radius plus 1 µm) and its mean per area (an intact
    nucleus: over its mask; a smudge: over its footprint, the pixels at least 0.1 of the
    intact nuclei's median mean density). ``config`` overrides the :class:`SimConfig`.

    Returns ``intact`` and ``smudge``, each ``(N, 3)``: integrated OD and mean OD over the
    median intact nucleus's, and the area (µm²) they were read over.
    """
    import cv2

    import hardware_profiles as hp
    from acquisition.geometry import FieldGeometry
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.microscope import SimulatedMicroscope

    prof = hp.load("pls43")
    p = prof.scan_objective.pixel_size_um
    settings = dict(
        wbc_per_field=16.0,
        smudge_per_field=24.0,
        wbc_type_fractions=(("lymphocyte", 1.0),),
        rbc_coverage=0.0,
        platelets_per_field=0.0,
        dirt_per_field=0.0,
        precipitate_per_field=0.0,
        vignetting=0.0,
        dust_spots=0,
        fixed_pattern_noise=0.0,
    )
    cfg = SimConfig(**{**settings, **config})
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(1 / p) + 1,) * 2)
    intact: list[tuple[float, float, float]] = []  # (integrated OD µm², mean OD, area µm²)
    smudges: list[tuple[float, np.ndarray]] = []  # (integrated OD µm², OD of its disc)
    yy, xx = np.mgrid[:h, :w]
    for k in range(n_fields):
        sim = SimulatedMicroscope(prof, slide=f"smudge{k}", seed=k, config=cfg)
        (img,) = sim.render_stack(
            pass_="stained", x_um=0.0, y_um=0.0, width=w, height=h, channels=prof.stack[:1]
        )
        v = img.reshape(-1, 3).astype(np.float64)
        glass = np.median(v[v.min(1) >= np.percentile(v.min(1), 60)], axis=0)
        od = np.log10(glass / np.maximum(img.astype(np.float64), 0.5)).sum(2)
        nucleus = sim.masks(pass_="stained", x_um=0.0, y_um=0.0, width=w, height=h)["nucleus"]
        _, comp = cv2.connectedComponents(nucleus.astype(np.uint8))
        cells = sim.truth("stained", [(0.0, 0.0)], w, h)["cells"]
        a = np.asarray(sim.placement("stained"))
        sx, sy = a[:, :2] @ np.stack([cells["x_um"], cells["y_um"]]) + a[:, 2:]
        x, y = FieldGeometry(w, h, p).stage_to_pixel(sx, sy, 0.0, 0.0)
        r = cells["radius_um"] / p + 1.0 / p
        for i, kind in enumerate(cells["type"]):
            gap = np.hypot(x - x[i], y - y[i]) - r - r[i]
            gap[i] = np.inf
            inside = r[i] <= x[i] <= w - 1 - r[i] and r[i] <= y[i] <= h - 1 - r[i]
            if kind not in ("lymphocyte", "smudge") or not inside or gap.min() < 0.5 / p:
                continue
            disc = np.hypot(xx - x[i], yy - y[i]) <= r[i]
            if kind == "smudge":
                smudges.append((od[disc].sum() * p * p, od[disc]))
                continue
            labs = np.unique(comp[disc & nucleus])
            nuc = np.isin(comp, labs[labs > 0]) & disc
            if nuc.any():
                region = cv2.dilate(nuc.view(np.uint8), grow) > 0
                intact.append((od[region].sum() * p * p, od[nuc].mean(), nuc.sum() * p * p))
    if not intact or not smudges:
        return {"intact": np.zeros((0, 3)), "smudge": np.zeros((0, 3))}
    ref_int, ref_mean, _ = np.median(intact, axis=0)
    foot = [d[d >= 0.1 * ref_mean] for _, d in smudges]
    smudge = np.array(
        [
            (s / ref_int, f.mean() / ref_mean if f.size else 0.0, f.size * p * p)
            for (s, _), f in zip(smudges, foot, strict=True)
        ]
    )
    return {"intact": np.array(intact) / [ref_int, ref_mean, 1.0], "smudge": smudge}


def smudge_stain(n_fields: int, w: int = 1920, h: int = 1200) -> list[str]:
    """The table of :func:`smudge_stain_ratios`."""
    got = smudge_stain_ratios(n_fields, w, h)
    if not len(got["intact"]) or not len(got["smudge"]):
        return ["(smudge stain: too few isolated objects; raise the field count)", ""]

    def row(name: str, v: np.ndarray) -> str:
        cells = " | ".join(f"{np.median(c):.2f} ({c.min():.2f}–{c.max():.2f})" for c in v.T)
        return f"| {name} | {len(v)} | {cells} |"

    return [
        f"Smudge cells against intact lymphocyte nuclei ({n_fields} simulated {w}x{h} fields of "
        "lymphocytes and smudges alone; optical density log10, summed over R, G, B; integrated "
        "and mean over the median intact nucleus's; median (range)):",
        "",
        "| | objects | integrated OD | mean OD per area | area, µm² |",
        "|---|---|---|---|---|",
        row("intact lymphocyte nuclei", got["intact"]),
        row("smudge cells (footprint)", got["smudge"]),
        "",
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
        help="smudge cells per simulated field (default: the simulator's own, 0.3)",
    )
    ap.add_argument(
        "--smudge-fields",
        type=int,
        default=3,
        help="fields of the smudge-cell stain measurement (0: skip it)",
    )
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    lines = [f"## WBC segmentation ({machine()})", ""]
    lines += real_sets(args.data, args.step)
    if not args.no_holdout:
        lines += holdout(args.data, args.tune_step, args.step)
    lines += simulator(args.fields, args.against, args.smudges)
    if args.smudge_fields > 0:
        lines += ["", *smudge_stain(args.smudge_fields)]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
