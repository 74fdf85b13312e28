"""``DIR/report.html`` of ``scope demo``: every figure as an image file beside the page.

The images come from :mod:`scope.demo_figures`; this module lays out the page.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from scope.demo_figures import (
    aligned_chemical_stain,
    field_images,
    loss_plot,
    side_by_side,
    type_grid,
)
from scope.demo_sizes import PLS_STACK
from scope.demo_summary import model_rows, registration_rows, verdict

if TYPE_CHECKING:
    from scope.demo import Demo


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(src: str, caption: str, *, wide: bool = False) -> str:
    """A figure; ``wide`` ones keep their natural size (scrolling sideways if need be)."""
    cls = " class='wide'" if wide else ""
    return (
        f'<figure{cls}><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _clinical_section(demo: Demo) -> list[str]:
    """Morphology agreement, tolerance level and type agreement of both models side by side."""
    import json

    from scope.evaluate_report import clinical_rows

    summaries = {}
    for name in ("pls", "brightfield"):
        path = demo.runs / name / "eval" / "test" / "summary.json"
        if path.is_file():
            summaries[name] = json.loads(path.read_text(encoding="utf-8"))
    if not summaries:
        return []
    header, rows = clinical_rows(summaries)
    notes = sorted({n for s in summaries.values() for n in s.get("notes", [])})
    parts = [
        "<h2>Does the virtual stain read like the chemical one?</h2>",
        "<p>The nucleus segmented identically on the virtual and the chemical stain of each "
        "test cell (mean ± sd over cells); the tolerance level of VirFluoNet's Eq. 7 (lower is "
        "better); a cell-type classifier trained on chemically stained training cells, applied "
        "to both stains (κ: agreement between the two readings).</p>",
        _table(rows, header),
        *(f"<p>note: {html.escape(n)}</p>" for n in notes),
    ]
    for name in summaries:
        if (demo.runs / name / "eval" / "test" / "hallucinations_8.png").exists():
            parts.append(
                _figure(
                    f"report/{name}_hallucinations_8.png",
                    f"{name} model: cells whose virtual nucleus adds or loses a part. Rows: "
                    "unstained brightfield | prediction | chemical stain | nucleus masks (white "
                    "both, red virtual only, green chemical only). 2x.",
                    wide=True,
                )
            )
    return parts


def write_report(demo: Demo) -> Path:
    """Write ``report.html`` and the images it shows under ``DIR/report/``."""

    folder = demo.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    res = demo.result
    fields = field_images(demo, folder)
    loss_plot(demo, folder / "loss.png")
    for name in ("pls", "brightfield"):
        for which in ("best_8", "worst_8", "hallucinations_8"):
            src = demo.runs / name / "eval" / "test" / f"{which}.png"
            if src.exists():
                shutil.copy(src, folder / f"{name}_{which}.png")
    if (demo.out / "matched-cells.png").exists():
        shutil.copy(demo.out / "matched-cells.png", folder / "matched-cells.png")
    side = side_by_side(demo, folder)
    by_type = type_grid(demo, folder)

    reg_rows = registration_rows(res)
    models = model_rows(res)
    step_rows = [[s.name, f"{s.seconds:.1f} s"] for s in res.steps]
    comp_rows = []
    if res.comparison is not None:
        for c in [res.comparison.overall, *res.comparison.by_type]:
            comp_rows.append(
                [
                    c.label,
                    str(c.n),
                    f"{c.pls:.3f}",
                    f"{c.brightfield:.3f}",
                    f"{c.diff:+.3f}",
                    f"{c.lo:+.3f} to {c.hi:+.3f}",
                    c.verdict(),
                ]
            )

    parts = [
        "<h1>scope demo</h1>",
        f"<p>{len(res.slides)} simulated slides on the <code>pls43</code> instrument, scanned, "
        "stained, rescanned at 20x and 100x, registered, and used to train a virtual-staining "
        f"network on the <code>{PLS_STACK}</code> stack and a brightfield-only baseline with "
        "the same budget. Every image below is a file beside this page.</p>",
        f"<p class='verdict'>{html.escape(verdict(res))}</p>",
        "<h2>One field under three illuminations</h2>",
        "<div class='row'>" + "".join(_figure(s, c) for s, c in fields) + "</div>",
        "<h2>Virtual and chemical stain of the same cells</h2>",
        _figure(*side, wide=True) if side else "<p>(no stained field)</p>",
        "<h2>Matched cells</h2>",
        _figure(
            "report/matched-cells.png",
            "Rows: input brightfield | stained 20x target | 100x target, resampled to 20x",
            wide=True,
        ),
        "<h2>Registration against the simulator's truth</h2>",
        _table(
            reg_rows,
            [
                "slide",
                "WBCs (truth)",
                "found",
                "recall",
                "precision",
                "median error (px)",
                "p99 error (px)",
                "slide fit error (px)",
            ],
        ),
        "<h2>Training</h2>",
        _figure("report/loss.png", "training and validation L1 loss per epoch"),
        _table(models, ["model", "stack", "test cells", "SSIM", "PSNR", "MAE"]),
        "<h2>PLS against brightfield, with uncertainty</h2>",
        "<p>Per-cell test SSIM of both models on the same cells; the interval is a 95 % "
        "percentile bootstrap of the mean paired difference over test cells. A difference "
        "whose interval includes zero is reported as not significant. Cell types are the "
        "simulator's truth.</p>",
        _table(
            comp_rows,
            ["test cells", "n", "PLS", "brightfield", "PLS − bf", "95 % interval", "verdict"],
        ),
        _figure(*by_type, wide=True) if by_type else "",
        *_clinical_section(demo),
        "<h2>Predictions against targets (test split)</h2>",
        _figure(
            "report/pls_best_8.png",
            "PLS model, the 8 test cells with the highest SSIM. Rows: unstained brightfield | "
            "prediction | chemical stain (target). 2x.",
            wide=True,
        ),
        _figure(
            "report/pls_worst_8.png",
            "PLS model, the 8 test cells with the lowest SSIM (same rows).",
            wide=True,
        ),
        _figure(
            "report/brightfield_best_8.png",
            "Brightfield-only model, its 8 best test cells (same rows).",
            wide=True,
        ),
        "<h2>Time per step</h2>",
        _table(step_rows, ["step", "time"]),
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;"
        "color:#222}img{border:1px solid #ddd}figure{margin:0.5em}"
        ".row{display:flex;flex-wrap:wrap;gap:0.5em}.row figure{flex:1 1 300px}"
        ".row img{max-width:100%}figure.wide{overflow-x:auto}figure.wide img{max-width:none}"
        "figcaption{font-size:0.85em;color:#555;max-width:70em}"
        "table{border-collapse:collapse;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.verdict{font-weight:600}"
    )
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>scope demo</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    path = demo.out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["aligned_chemical_stain", "write_report"]
