"""``DIR/report.html`` of ``scope demo``: every figure as an image file beside the page."""

from __future__ import annotations

import csv
import html
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scope.demo import Demo


def _save_png(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"cannot write {path}")
    return path


def _field_images(demo: Demo, folder: Path) -> list[tuple[str, str]]:
    from acquisition.scanfile import ScanFile

    slide = demo.result.slides[0]
    out = []
    with ScanFile(demo.scans / f"{slide}.unstained.scan.h5") as sf:
        bf = sf.brightfield_index()
        dark = [
            i
            for i, (k, lvl) in enumerate(
                zip(sf.channels["kind"], sf.channels["exposure_level"], strict=True)
            )
            if k == "darkfield" and lvl != "high"
        ]
        oblique = [i for i, k in enumerate(sf.channels["kind"]) if k == "pls"]
        picks = [(bf, "unstained, brightfield")]
        if oblique:
            i = oblique[-1]
            picks.append(
                (i, f"unstained, single LED at {sf.channels['theta_deg'][i]:.0f}° (oblique)")
            )
        if dark:
            i = dark[len(dark) // 2]
            picks.append(
                (i, f"unstained, single LED at {sf.channels['theta_deg'][i]:.0f}° (darkfield)")
            )
        for ch, caption in picks:
            name = f"field0_{sf.channels['name'][ch]}.png"
            _save_png(folder / name, sf.image(0, ch))
            out.append((f"report/{name}", caption))
    with ScanFile(demo.scans / f"{slide}.stained.scan.h5") as st:
        _save_png(folder / "field0_stained.png", st.image(0, 0))
        out.append(("report/field0_stained.png", "stained (chemically), same field"))
    return out


def _loss_plot(demo: Demo, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for name, colour in (("pls", "tab:purple"), ("brightfield", "tab:grey")):
        with (demo.runs / name / "metrics.csv").open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        epochs = [int(r["epoch"]) for r in rows]
        ax.plot(
            epochs,
            [float(r["train_loss"]) for r in rows],
            "--",
            color=colour,
            label=f"{name} train",
        )
        ax.plot(
            epochs,
            [float(r["val_loss"]) for r in rows],
            "-",
            color=colour,
            label=f"{name} validation",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("L1 loss")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(src: str, caption: str) -> str:
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def write_report(demo: Demo) -> Path:
    """Write ``report.html`` and the images it shows under ``DIR/report/``."""
    from scope.demo import PLS_STACK, model_rows, verdict

    folder = demo.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    res = demo.result
    fields = _field_images(demo, folder)
    _loss_plot(demo, folder / "loss.png")
    for name in ("pls", "brightfield"):
        for which in ("best_8", "worst_8"):
            src = demo.runs / name / "eval" / "test" / f"{which}.png"
            if src.exists():
                shutil.copy(src, folder / f"{name}_{which}.png")
    stained = sorted((demo.out / "stained").glob("*.png"))
    if stained:
        shutil.copy(stained[0], folder / "virtual_stain_field0.png")
    if (demo.out / "matched-cells.png").exists():
        shutil.copy(demo.out / "matched-cells.png", folder / "matched-cells.png")

    reg_rows = [
        [
            r["slide"],
            str(r["truth_wbc"]),
            str(r["found"]),
            f"{r['recall']:.3f}",
            f"{r['precision']:.3f}",
            f"{r['fine_median_px']:.2f}",
            f"{r['fine_p99_px']:.2f}",
            f"{r['transform_error_px']:.2f}",
        ]
        for r in res.registration
    ]
    models = model_rows(res)
    step_rows = [[s.name, f"{s.seconds:.1f} s"] for s in res.steps]

    parts = [
        "<h1>scope demo</h1>",
        f"<p>{len(res.slides)} simulated slides on the <code>pls43</code> instrument, scanned, "
        "stained, rescanned at 20x and 100x, registered, and used to train a virtual-staining "
        f"network on the <code>{PLS_STACK}</code> stack and a brightfield-only baseline with "
        "the same budget. Every image below is a file beside this page.</p>",
        f"<p class='verdict'>{html.escape(verdict(res))}</p>",
        "<h2>One field, four ways</h2>",
        "<div class='row'>" + "".join(_figure(s, c) for s, c in fields) + "</div>",
        "<h2>Matched cells</h2>",
        _figure(
            "report/matched-cells.png",
            "input brightfield | stained 20x target | 100x target, resampled to 20x",
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
        "<h2>Predictions against targets (test split)</h2>",
        "<div class='row'>"
        + _figure("report/pls_best_8.png", "PLS model, best 8: brightfield | prediction | target")
        + _figure("report/pls_worst_8.png", "PLS model, worst 8")
        + _figure("report/brightfield_best_8.png", "brightfield model, best 8")
        + "</div>",
        "<h2>A whole field, virtually stained</h2>",
        _figure(
            "report/virtual_stain_field0.png",
            f"field 0 of {res.slides[0]}, stained by the PLS model (tiled, seams blended)",
        ),
        "<h2>Time per step</h2>",
        _table(step_rows, ["step", "time"]),
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "color:#222}img{max-width:100%;border:1px solid #ddd}figure{margin:0.5em}"
        ".row{display:flex;flex-wrap:wrap;gap:0.5em}.row figure{flex:1 1 240px}"
        "figcaption{font-size:0.85em;color:#555}table{border-collapse:collapse;margin:0.5em 0}"
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
