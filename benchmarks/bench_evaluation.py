"""Cost of `scope evaluate`'s clinical measures for 1,000 test cells (beyond the generator).

Renders a few simulated white cells (stained 20x crops, 64x64), makes 1,000 target crops of
them by flips and 90° turns, and a "virtual stain" of each by blurring and adding noise (the
measures' cost does not depend on how good the stain is). Times, on this machine:

- the per-cell measures (:class:`training.clinical.ClinicalMeasures`: tolerance level, nucleus
  masks on both stains, lobes, ratio, granularity, hallucination check, classifier features);
- the type classifier: features of 1,000 labelled training targets, fitting, reading both.

Also measures nucleus segmentation on the real stained crops (``../shared/data/wbc-stains``)
against their expert masks when present. Target: ≤ 60 s for the whole on 2 cores.

Example::

    python benchmarks/bench_evaluation.py --out docs/bench/evaluation.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import emit, machine  # noqa: E402


def _pool(seed: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Stained 20x crops of ``cells`` simulated white cells and their truth types."""
    import hardware_profiles as hp
    from registration.dataset import Dataset
    from training.simulated import simulate_dataset

    prof = hp.load("pls43")
    prof = prof.with_stack([ch for ch in prof.stack if ch.kind == "brightfield"])  # targets only
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate_dataset(
            Path(tmp) / "b.dataset.h5",
            profile=prof,
            slides=(f"bench-{seed}",),
            cells_per_slide=cells,
            highres=False,
            seed=seed,
        )
        with Dataset(path) as ds:
            return ds.targets[:], np.asarray(ds.cells["type"])


def _augment(base: np.ndarray, types: np.ndarray, n: int, seed: int):
    """``n`` crops drawn from ``base``, each flipped and turned at random."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), n)
    out = np.empty((n, *base.shape[1:]), np.uint8)
    for k, i in enumerate(pick):
        img = np.rot90(base[i], rng.integers(4))
        out[k] = img[:, ::-1] if rng.integers(2) else img
    return out, types[pick]


def _virtual(targets: np.ndarray, seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    blurred = ndi.gaussian_filter(targets.astype(np.float64), (0, 1.2, 1.2, 0))
    noisy = blurred + rng.normal(0, 4.0, targets.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def _real_segmentation() -> list[str]:
    folder = ROOT.parent / "shared" / "data" / "wbc-stains"
    if not folder.is_dir():
        return ["(real stained crops not present: `../shared/data/wbc-stains`)"]
    import skimage.io

    from training.morphology import measure_target

    lines = [
        "| real set | crops | nucleus IoU mean | median | cell IoU mean | ms per crop |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("set1-tecom-120px", "set2-cellavision-300px"):
        nuc, cell, t = [], [], 0.0
        images = sorted((folder / name / "images").glob("*.png"))
        for p in images:
            img = skimage.io.imread(p)[..., :3]
            mask = skimage.io.imread(folder / name / "masks" / p.name)
            mask = mask[..., 0] if mask.ndim == 3 else mask
            t0 = time.perf_counter()
            m = measure_target(img)
            t += time.perf_counter() - t0
            for got, want, acc in ((m.nucleus, mask == 255, nuc), (m.cell, mask >= 128, cell)):
                acc.append((got & want).sum() / max(1, (got | want).sum()))
        lines.append(
            f"| {name} | {len(images)} | {np.mean(nuc):.3f} | {np.median(nuc):.3f} | "
            f"{np.mean(cell):.3f} | {1000 * t / len(images):.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rendered", type=int, default=60, help="distinct simulated cells")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from training.clinical import ClinicalMeasures
    from training.differential import features
    from training.morphology import measure_target

    t0 = time.perf_counter()
    base, base_types = _pool(args.seed, args.rendered)
    half = np.arange(len(base)) % 2 == 0  # test and training crops come from different cells
    targets, types = _augment(base[half], base_types[half], args.cells, args.seed)
    train, train_types = _augment(base[~half], base_types[~half], args.cells, args.seed + 1)
    virtual = _virtual(targets, args.seed)
    render_s = time.perf_counter() - t0

    cm = ClinicalMeasures(args.cells, with_features=True)
    t0 = time.perf_counter()
    for a in range(0, args.cells, args.batch):
        idx = np.arange(a, min(a + args.batch, args.cells))
        cm.add(idx, virtual[idx], targets[idx])
    per_cell_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_x = np.stack([features(img, measure_target(img)) for img in train])
    d = cm.classify(train_x, list(train_types), list(types))
    classifier_s = time.perf_counter() - t0
    total = per_cell_s + classifier_s
    s = cm.summary(types)["all"]
    lines = [
        "# `scope evaluate`: cost of the clinical measures",
        "",
        f"Measured by `python benchmarks/bench_evaluation.py` on {machine()}. {args.cells} "
        f"simulated 64x64 stained crops (flips/turns of half of {args.rendered} rendered "
        f"cells; the classifier trains on {args.cells} crops of the other half) against a "
        f"blurred, noisy copy as the virtual stain; rendering took {render_s:.0f} s (not "
        "counted).",
        "",
        "| part | seconds |",
        "|---|---|",
        f"| per-cell measures, {args.cells} cells (tolerance level, nucleus masks on both "
        f"stains, lobes, N/C ratio, granularity, hallucination, features) | {per_cell_s:.1f} |",
        f"| type classifier: features of {args.cells} training targets, fit, predict | "
        f"{classifier_s:.1f} |",
        f"| **total (target ≤ 60 s)** | **{total:.1f}** |",
        "",
        f"On this blurred copy: nucleus IoU {s['nucleus_iou']['mean']:.3f}, lobe agreement "
        f"{s['lobe_agreement']['mean']:.2f}, tolerance level {s['tolerance_level']['mean']:.4f}; "
        f"type accuracy {d['accuracy_target']:.3f} on the targets, "
        f"{d['accuracy_virtual']:.3f} on the blurred copies, κ {d['kappa']:.3f} (types: "
        + ", ".join(f"{t} {int((types == t).sum())}" for t in d["classes"])
        + "). The simulator's types: this says the classifier reads simulated cells, not "
        "real ones.",
        "",
        "## Nucleus and cell segmentation on real stained crops (expert masks)",
        "",
        *_real_segmentation(),
        "",
    ]
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
