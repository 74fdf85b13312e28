"""The tables ``scope evaluate`` prints: pixel metrics, clinical measures (overall and per
cell type) and, for several runs, mean ± spread over runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Printed rows of the clinical table: (label, summary key, as percentage).
CLINICAL_ROWS = (
    ("nucleus IoU", "nucleus_iou", False),
    ("lobe agreement", "lobe_agreement", True),
    ("N/C ratio error", "nc_ratio_error", False),
    ("granule agreement", "granule_agreement", True),
    ("tolerance level", "tolerance_level", False),
    ("TL threshold (%)", "tolerance_threshold", False),
)


def _pm(d: dict[str, float] | None, pct: bool = False) -> str:
    if not d or d.get("mean") is None or math.isnan(d["mean"]):
        return "n/a"
    if pct:
        return f"{100 * d['mean']:.0f} %"
    return f"{d['mean']:.3f} ± {d['std']:.3f}"


def _label_column(table: Any, title: str, labels: Sequence[str]) -> None:
    table.add_column(title, no_wrap=True, min_width=max(len(x) for x in labels))


def metrics_table(run: Path, res: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{run} — {res['split']} split, {res['cells']} cells, epoch {res['epoch']}")
    for col in ("SSIM", "PSNR (dB)", "MAE", "VGG", "Fourier"):
        table.add_column(col, justify="right", no_wrap=True)

    def fmt(v: float | None, digits: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    table.add_row(
        fmt(res["ssim"]), fmt(res["psnr"], 2), fmt(res["mae"]), fmt(res["vgg"]), fmt(res["fourier"])
    )
    return table


def clinical_table(res: dict[str, Any]) -> Any:
    """Rows: the measures (and, with labels, the differential); columns: all cells, per type."""
    from rich.table import Table

    c = res["clinical"]
    per = c.get("per_type", {})
    diff = c.get("differential")
    labels = [r[0] for r in CLINICAL_ROWS] + ["hallucinated cells"]
    if diff:
        labels += ["accuracy on chemical", "accuracy on virtual", "kappa"]
    table = Table(title="does the virtual stain read like the chemical one? (mean ± sd per cell)")
    _label_column(table, "measure", labels)
    table.add_column(f"all ({c['all']['cells']})", justify="right", no_wrap=True)
    for t, m in per.items():
        table.add_column(f"{t} ({m['cells']})", justify="right", no_wrap=True)
    groups = [c["all"], *per.values()]
    for label, key, pct in CLINICAL_ROWS:
        table.add_row(label, *(_pm(g[key], pct) for g in groups))
    table.add_row("hallucinated cells", *(str(g["hallucinated_cells"]) for g in groups))
    if diff:
        blank = [""] * len(per)
        table.add_row("accuracy on chemical", f"{100 * diff['accuracy_target']:.0f} %", *blank)
        table.add_row("accuracy on virtual", f"{100 * diff['accuracy_virtual']:.0f} %", *blank)
        table.add_row("kappa", f"{diff['kappa']:.3f}", *blank)
    return table


def run_values(res: dict[str, Any]) -> dict[str, float]:
    """The figures compared over runs."""
    c = res["clinical"]
    out = {
        "SSIM": res["ssim"],
        "PSNR (dB)": res["psnr"],
        "MAE": res["mae"],
        "nucleus IoU": c["all"]["nucleus_iou"]["mean"],
        "lobe agreement": c["all"]["lobe_agreement"]["mean"],
        "tolerance level": c["all"]["tolerance_level"]["mean"],
    }
    if c.get("differential"):
        out["kappa"] = c["differential"]["kappa"]
        out["accuracy on virtual"] = c["differential"]["accuracy_virtual"]
    return out


def over_runs_table(runs: Sequence[Path], results: Sequence[dict[str, Any]]) -> Any:
    """Mean ± standard deviation of each figure over the runs (a figure missing in one run is
    left out)."""
    import numpy as np
    from rich.table import Table

    values = [run_values(r) for r in results]
    keys = [k for k in values[0] if all(k in v and v[k] is not None for v in values)]
    table = Table(title=f"over {len(results)} runs: mean ± sd (spread between runs)")
    _label_column(table, "measure", keys)
    table.add_column("mean ± sd", justify="right", no_wrap=True)
    for run in runs:
        table.add_column(Path(run).name, justify="right", no_wrap=True)
    for k in keys:
        x = np.array([float(v[k]) for v in values])
        sd = float(x.std(ddof=1)) if len(x) > 1 else math.nan
        table.add_row(k, f"{x.mean():.4f} ± {sd:.4f}", *(f"{v:.4f}" for v in x))
    return table


def clinical_rows(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a side-by-side table (model → evaluation ``summary.json``): every
    measure overall, nucleus IoU and lobe agreement per cell type, and the differential."""
    names = list(summaries)
    clin = {n: s.get("clinical") or {} for n, s in summaries.items()}
    rows: list[list[str]] = []
    for label, key, pct in CLINICAL_ROWS:
        rows.append([label, *(_pm(clin[n].get("all", {}).get(key), pct) for n in names)])
    hall = [str(clin[n].get("all", {}).get("hallucinated_cells")) for n in names]
    rows.append(["hallucinated cells", *hall])
    types: list[str] = []
    for n in names:
        types += [t for t in clin[n].get("per_type", {}) if t not in types]
    for t in types:
        for label, key, pct in CLINICAL_ROWS[:2]:
            vals = [clin[n].get("per_type", {}).get(t, {}).get(key) for n in names]
            rows.append([f"{label}, {t}", *(_pm(v, pct) for v in vals)])
    if all(clin[n].get("differential") for n in names):
        d = {n: clin[n]["differential"] for n in names}
        for label, key in (
            ("type accuracy on chemical", "accuracy_target"),
            ("type accuracy on virtual", "accuracy_virtual"),
            ("kappa", "kappa"),
        ):
            rows.append([label, *(f"{d[n][key]:.3f}" for n in names)])
    return ["measure", *names], rows
