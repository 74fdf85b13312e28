"""The end of ``scope demo``: its summary tables and its one-sentence verdict.

Shared by the terminal summary (``scope/commands/demo.py``) and the HTML report
(:mod:`scope.demo_report`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from scope.demo_sizes import PLS_STACK

if TYPE_CHECKING:
    from scope.demo import DemoResult


def model_rows(result: DemoResult) -> list[list[str]]:
    """model, stack, test cells, SSIM, PSNR, MAE — for the summary and the report."""
    rows = []
    for name, stack in (("pls", PLS_STACK), ("brightfield", "brightfield")):
        m = result.metrics.get(name, {})
        mean = m.get("mean", m)
        rows.append(
            [
                name,
                stack,
                str(m.get("cells", "")),
                f"{mean.get('ssim', float('nan')):.4f}",
                f"{mean.get('psnr', float('nan')):.2f}",
                f"{mean.get('mae', float('nan')):.4f}",
            ]
        )
    return rows


def registration_rows(result: DemoResult, *, unit: str = "") -> list[list[str]]:
    """slide, WBCs (truth), found, recall, precision, median, p99 and slide-fit errors (px,
    followed by ``unit``) — for the summary and the report."""
    return [
        [
            r["slide"],
            str(r["truth_wbc"]),
            str(r["found"]),
            f"{r['recall']:.3f}",
            f"{r['precision']:.3f}",
            f"{r['fine_median_px']:.2f}{unit}",
            f"{r['fine_p99_px']:.2f}{unit}",
            f"{r['transform_error_px']:.2f}{unit}",
        ]
        for r in result.registration
    ]


def summary_tables(result: DemoResult) -> list[Table]:
    """The end-of-demo tables: registration vs truth, models, steps and files."""
    reg = Table(title="registration against the simulator's truth")
    for col in (
        "slide",
        "WBCs (truth)",
        "found",
        "recall",
        "precision",
        "median error",
        "p99 error",
        "slide fit error",
    ):
        reg.add_column(col, justify="right" if col != "slide" else "left")
    for row in registration_rows(result, unit=" px"):
        reg.add_row(*row)
    models = Table(title="virtual staining, test split (20x target)")
    for col in ("model", "stack", "cells", "SSIM", "PSNR", "MAE"):
        models.add_column(col, justify="right" if col not in ("model", "stack") else "left")
    for row in model_rows(result):
        models.add_row(*row)
    steps = Table(title=f"steps ({result.total_seconds:.0f} s in all)")
    steps.add_column("step")
    steps.add_column("time", justify="right")
    for s in result.steps:
        steps.add_row(s.name, f"{s.seconds:.1f} s")
    return [reg, models, steps]


def comparison_table(comp: Any) -> Table:
    """PLS vs brightfield SSIM per cell type, with the 95 % bootstrap interval of the gap."""
    t = Table(title="test SSIM, PLS vs brightfield (paired over the same cells)")
    for col in ("cells", "n", "PLS", "brightfield", "PLS − bf", "95 % interval", "verdict"):
        t.add_column(col, justify="left" if col in ("cells", "verdict") else "right")
    for c in [comp.overall, *comp.by_type]:
        t.add_row(
            c.label,
            str(c.n),
            f"{c.pls:.3f}",
            f"{c.brightfield:.3f}",
            f"{c.diff:+.3f}",
            f"[{c.lo:+.3f}, {c.hi:+.3f}]",
            c.verdict(),
        )
    return t


def verdict(result: DemoResult) -> str:
    """One honest sentence: did the PLS model beat the brightfield baseline on test SSIM?"""
    comp = result.comparison
    if comp is None:
        return "The models were not compared."
    c = comp.overall
    gap = (
        f"test SSIM {c.pls:.3f} vs {c.brightfield:.3f} over {c.n} test cells, difference "
        f"{c.diff:+.3f} (95 % bootstrap interval {c.lo:+.3f} to {c.hi:+.3f})"
    )
    if not c.significant:
        return (
            f"No significant difference between the PLS model ({PLS_STACK}) and the "
            f"brightfield-only baseline: {gap}. The interval includes zero, so this run "
            "cannot tell them apart; `scope demo --full` and docs/benchmarks.md train at a "
            "useful size."
        )
    better = "beats" if c.diff > 0 else "loses to"
    return (
        f"The PLS model ({PLS_STACK}) {better} the brightfield-only baseline with the same "
        f"data and training budget: {gap}."
    )
