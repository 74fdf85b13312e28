"""``report.html``: one self-contained page per run (no server, no external files).

Loss and metric curves (matplotlib, embedded as PNG data URIs), the per-epoch metric table
with the best epoch highlighted, the prediction grids of the best and the last epoch, and,
once ``scope evaluate`` has run, its Table-4.2-style summary and best/worst grids.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from training.run import RunFolder, read_config, read_metrics, read_status

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}tr.best td{background:#e7f5e7;font-weight:600}
td.l,th.l{text-align:left}img{max-width:100%;image-rendering:pixelated}
.caption{color:#666;font-size:.85em}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _curves_png(rows: list[dict[str, float]]) -> bytes | None:
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r.get("train_loss", math.nan) for r in rows], label="train loss")
    ax1.plot(epochs, [r.get("val_loss", math.nan) for r in rows], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [r.get("ssim", math.nan) for r in rows], color="tab:green", label="SSIM")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation SSIM")
    ax2.grid(alpha=0.3)
    if "psnr" in rows[0]:
        twin = ax2.twinx()
        twin.plot(epochs, [r.get("psnr", math.nan) for r in rows], color="tab:red", alpha=0.6)
        twin.set_ylabel("PSNR (dB)", color="tab:red")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], columns: list[str], *, best: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cls = ' class="best"' if best is not None and int(r.get("epoch", -1)) == best else ""
        cells = "".join(f"<td>{_fmt(r.get(c, math.nan))}</td>" for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    return (
        f'<figure><img src="{_data_uri(path.read_bytes())}" alt="{html.escape(caption)}">'
        f'<figcaption class="caption">{html.escape(caption)}</figcaption></figure>'
    )


def _evaluation_sections(run: RunFolder) -> list[str]:
    out = []
    for folder in sorted((run.path / "eval").glob("*")):
        summary = folder / "summary.json"
        if not summary.is_file():
            continue
        s = json.loads(summary.read_text(encoding="utf-8"))
        out.append(
            f"<h2>Evaluation on the {html.escape(folder.name)} split "
            f"({s.get('cells', '?')} cells)</h2>"
        )
        cols = ["model", "SSIM", "PSNR", "MAE", "VGG", "Fourier"]
        m = s.get("mean", {})
        row = {
            "model": s.get("preset", ""),
            "SSIM": m.get("ssim", math.nan),
            "PSNR": m.get("psnr", math.nan),
            "MAE": m.get("mae", math.nan),
            "VGG": m.get("vgg", math.nan),
            "Fourier": m.get("fourier", math.nan),
        }
        out.append(_table([row], cols))
        out.extend(_clinical(s))
        out.append(_img(folder / "best_8.png", "best 8 by SSIM: brightfield | prediction | target"))
        out.append(_img(folder / "worst_8.png", "worst 8 by SSIM (see worst_100.csv)"))
        out.append(
            _img(
                folder / "hallucinations_8.png",
                "nucleus parts added or lost: brightfield | prediction | target | masks (white "
                "both, red virtual only, green target only)",
            )
        )
    return out


_CLINICAL = (
    ("nucleus IoU", "nucleus_iou"),
    ("lobe agreement", "lobe_agreement"),
    ("N/C ratio error", "nc_ratio_error"),
    ("granule agreement", "granule_agreement"),
    ("tolerance level", "tolerance_level"),
)


def _clinical(s: dict[str, Any]) -> list[str]:
    """Morphology agreement and tolerance level, overall and per cell type; the differential."""
    c = s.get("clinical")
    if not c:
        return []
    groups = {"all": c["all"], **c.get("per_type", {})}
    cols = ["cells", *(label for label, _ in _CLINICAL), "hallucinated"]
    rows = []
    for name, g in groups.items():
        row: dict[str, Any] = {"cells": f"{name} ({g['cells']})"}
        for label, key in _CLINICAL:
            m = g[key]
            row[label] = f"{m['mean']:.3f} ± {m['std']:.3f}" if m["mean"] == m["mean"] else "—"
        row["hallucinated"] = g["hallucinated_cells"]
        rows.append(row)
    out = ["<h3>Does the virtual stain read like the chemical one?</h3>", _table(rows, cols)]
    d = c.get("differential")
    if d:
        out.append(
            f"<p>Cell type: accuracy {d['accuracy_target']:.2f} on the chemical stain, "
            f"{d['accuracy_virtual']:.2f} on the virtual stain; κ between the two readings "
            f"{d['kappa']:.3f} ({d['test_cells']} labelled test cells).</p>"
        )
        conf = [
            {"true \\ read on virtual": t, **dict(zip(d["classes"], r, strict=True))}
            for t, r in zip(d["classes"], d["confusion_virtual"], strict=True)
        ]
        out.append(_table(conf, ["true \\ read on virtual", *d["classes"]]))
    out.extend(f"<p class='caption'>note: {html.escape(n)}</p>" for n in s.get("notes", []))
    return out


def write_report(run_dir: str | Path) -> Path:
    """(Re)write ``RUN/report.html`` from the run's files; returns its path."""
    run = RunFolder(run_dir)
    doc = read_config(run)
    cfg = doc.get("config", {})
    status = read_status(run)
    rows = read_metrics(run.metrics)
    best_epoch = status.get("best_epoch")
    title = f"{run.name}: {cfg.get('preset')} on {cfg.get('stack')} → {cfg.get('target')}"
    params = doc.get("parameters", {})
    data = doc.get("data", {})
    env = doc.get("environment", {})
    summary = [
        ("state", status.get("state", "unknown")),
        ("epochs", f"{len(rows)} of {cfg.get('epochs')} (best: {best_epoch})"),
        ("best validation loss", _fmt(status.get("best_val_loss") or math.nan)),
        (
            "generator",
            f"{cfg.get('generator')} — {params.get('generator', '?'):,} parameters"
            if isinstance(params.get("generator"), int)
            else str(cfg.get("generator")),
        ),
        (
            "stack",
            f"{cfg.get('stack')} ({len(doc.get('model', {}).get('channel_names', []))} images)",
        ),
        (
            "cells",
            f"train {data.get('train_cells')}, val {data.get('val_cells')}, "
            f"test {data.get('test_cells')}",
        ),
        ("augmentation", ", ".join(data.get("augmentation", []))),
        ("dataset", data.get("dataset", "")),
        ("device", f"{env.get('device')} ×{env.get('world_size', 1)}, {env.get('precision')}"),
        ("command", (doc.get("commands") or [""])[-1]),
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table>",
        *(
            f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{html.escape(str(v))}</td></tr>"
            for k, v in summary
        ),
        "</table>",
    ]
    png = _curves_png(rows)
    if png is not None:
        parts.append(f"<h2>Curves</h2><img src='{_data_uri(png)}' alt='loss curves'>")
    if rows:
        cols = list(rows[0].keys())
        parts.append("<h2>Metrics per epoch (validation)</h2>")
        parts.append(_table(rows, cols, best=best_epoch))
    grids = []
    if best_epoch:
        grids.append(_img(run.sample_grid(int(best_epoch)), f"best epoch {best_epoch}"))
    if rows and int(rows[-1]["epoch"]) != best_epoch:
        last = int(rows[-1]["epoch"])
        grids.append(_img(run.sample_grid(last), f"last epoch {last}"))
    if any(grids):
        parts.append("<h2>Validation predictions (brightfield | prediction | target)</h2>")
        parts.extend(grids)
    parts.extend(_evaluation_sections(run))
    parts.append("</body></html>")
    from acquisition.files import write_text

    write_text(run.report, "\n".join(parts))
    return run.report
