"""Paired comparison of two stack presets over training seeds (for ``ablation.py``).

Each seed trains both presets on the same dataset and evaluates them on the same test cells,
so the comparison is paired twice: by seed (a paired t-test on the per-seed means: does the
difference survive the run-to-run spread?) and by cell (a Wilcoxon signed-rank test on the
per-cell values averaged over seeds).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: (label, per-cell CSV column, summary path, higher is better)
MEASURES = (
    ("test SSIM", "ssim", ("mean", "ssim"), True),
    ("nucleus IoU", "nucleus_iou", ("clinical", "all", "nucleus_iou", "mean"), True),
    ("tolerance level", "tolerance_level", ("clinical", "all", "tolerance_level", "mean"), False),
)


def _get(summary: dict, path: tuple[str, ...]) -> float:
    for k in path:
        summary = summary[k]
    return float(summary)


def _sd(v: np.ndarray) -> float:
    return float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def _cells(eval_dir: Path, column: str) -> dict[int, float]:
    with (eval_dir / "cells.csv").open(encoding="utf-8", newline="") as fh:
        return {int(r["row"]): float(r[column]) for r in csv.DictReader(fh)}


def paired_lines(a: str, b: str, runs: dict[str, list[tuple[dict, Path]]]) -> list[str]:
    """Markdown: mean ± sd over seeds per preset, and the paired tests of ``a`` − ``b``.

    ``runs``: preset → one ``(summary, eval_dir)`` per seed, in seed order.
    """
    from scipy import stats

    n = min(len(runs[a]), len(runs[b]))
    lines = [
        f"### {a} against {b} over {n} training seeds (paired)",
        "",
        f"| measure | {a} (mean ± sd over seeds) | {b} | difference | paired t-test p "
        "(seeds) | Wilcoxon p (cells) |",
        "|---|---|---|---|---|---|",
    ]
    for label, col, path, higher in MEASURES:
        va = np.array([_get(s, path) for s, _ in runs[a][:n]])
        vb = np.array([_get(s, path) for s, _ in runs[b][:n]])
        d = va - vb
        p_seed = float(stats.ttest_rel(va, vb).pvalue) if n >= 2 and d.std() > 0 else float("nan")
        ca = [_cells(e, col) for _, e in runs[a][:n]]
        cb = [_cells(e, col) for _, e in runs[b][:n]]
        common = sorted(set.intersection(*(set(c) for c in ca + cb)))
        xa = np.array([[c[r] for r in common] for c in ca]).mean(axis=0)
        xb = np.array([[c[r] for r in common] for c in cb]).mean(axis=0)
        p_cell = (
            float(stats.wilcoxon(xa, xb).pvalue)
            if len(common) >= 6 and np.any(xa != xb)
            else float("nan")
        )
        better = "higher" if higher else "lower"
        lines.append(
            f"| {label} ({better} is better) | {va.mean():.4f} ± {_sd(va):.4f} | "
            f"{vb.mean():.4f} ± {_sd(vb):.4f} | {d.mean():+.4f} | {p_seed:.3g} | {p_cell:.3g} |"
        )
    lines += [
        "",
        "p < 0.05 in the seed test means the difference exceeds the run-to-run spread; the cell "
        "test asks whether the same cells are consistently better (it ignores seed spread).",
        "",
    ]
    return lines
