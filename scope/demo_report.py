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
        picks = [(bf, f"field 0 of {slide}, unstained, brightfield")]
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
    return out


def _slide_motion(demo: Demo, slide: str) -> tuple[np.ndarray, str]:
    """``(2, 3)`` stained-stage → unstained-stage µm matrix from the match, and its words."""
    from registration.coarse import RigidTransform
    from registration.dataset import Dataset

    with Dataset(demo.data / f"{slide}.dataset.h5") as ds:
        st = ds.provenance["slide_transform"]
    t = RigidTransform.from_matrix(np.asarray(st["matrix"]))
    words = f"moved by ({t.tx:+.1f}, {t.ty:+.1f}) µm and {t.theta_deg:+.2f}°"
    return np.asarray(st["matrix"], np.float64), words


def aligned_chemical_stain(demo: Demo, slide: str, position: int) -> np.ndarray:
    """The stained pass resampled onto unstained field ``position``'s pixels.

    Each unstained pixel is carried to the stained pass's stage by the inverse of the
    registration transform, and read (bilinear) from whichever stained field holds it.
    """
    import cv2

    from acquisition.scanfile import ScanFile

    m, _ = _slide_motion(demo, slide)
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)  # unstained stage µm -> stained stage µm
    with ScanFile(demo.scans / f"{slide}.unstained.scan.h5") as u:
        h, w = u.frame_shape
        px = u.pixel_size_um
        cu = np.array([u.positions["x_um"][position], u.positions["y_um"][position]])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    # unstained pixel -> unstained stage: s = cu + (p - c)·px  (an affine in homogeneous form)
    to_stage = np.array([[px, 0, cu[0] - c[0] * px], [0, px, cu[1] - c[1] * px], [0, 0, 1]])
    out = np.zeros((h, w, 3), np.uint8)
    filled = np.zeros((h, w), bool)
    with ScanFile(demo.scans / f"{slide}.stained.scan.h5") as st:
        centres = np.stack([st.positions["x_um"], st.positions["y_um"]], axis=1)
        stage_centre = inv @ to_stage @ np.array([c[0], c[1], 1.0])
        order = np.argsort(np.hypot(*(centres - stage_centre[:2]).T))
        bf = st.brightfield_index()
        for j in order:
            cs = centres[j]
            from_stage = np.array(
                [[1 / px, 0, c[0] - cs[0] / px], [0, 1 / px, c[1] - cs[1] / px], [0, 0, 1]]
            )
            a = (from_stage @ inv @ to_stage)[:2]  # unstained px -> stained field j px
            img = st.image(int(j), bf)
            # replicate, not black, beyond the field: its edge pixels stay its own colour
            warped = cv2.warpAffine(
                img,
                a,
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            inside = cv2.warpAffine(
                np.ones((h, w), np.uint8),
                a,
                (w, h),
                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                borderValue=0,
            ).astype(bool)
            take = inside & ~filled
            out[take] = warped[take]
            filled |= take
            if filled.all():
                break
    return out


def _side_by_side(demo: Demo, folder: Path) -> tuple[str, str] | None:
    """Virtual stain | chemical stain aligned onto the same pixels, full size, one image."""
    import cv2

    stained = sorted((demo.out / "stained").glob("field_*.png"))
    if not stained:
        return None
    slide = demo.result.slides[0]
    virtual = cv2.imread(str(stained[0]))[..., ::-1]
    position = int(stained[0].stem.split("_")[-1])
    chemical = aligned_chemical_stain(demo, slide, position)
    gap = np.full((virtual.shape[0], 8, 3), 255, np.uint8)
    _save_png(folder / "virtual_vs_chemical.png", np.hstack([virtual, gap, chemical]))
    _, words = _slide_motion(demo, slide)
    return (
        "report/virtual_vs_chemical.png",
        f"Left: field {position} of {slide}, stained virtually by the PLS model from its "
        f"unstained images. Right: the chemical stain of the same cells — the stained rescan "
        f"(the slide was {words} between the passes) resampled onto the same pixels with the "
        "registration transform. Full size: one screen pixel per camera pixel.",
    )


def _type_grid(demo: Demo, folder: Path) -> str | None:
    """Test cells per WBC type: brightfield | PLS | brightfield model | chemical, 2x size."""
    from registration.dataset import Dataset
    from training.data import to_uint8_image
    from training.infer import load_generator
    from training.predict import predict_cells
    from training.samples import cell_grid

    comp = demo.result.comparison
    if comp is None or not comp.types:
        return None
    by_type: dict[str, list[int]] = {}
    for row, t in sorted(comp.types.items()):
        by_type.setdefault(t or "unknown", []).append(row)
    picks = [r for rows in by_type.values() for r in rows[:2]]
    labels = [comp.types[r] or "unknown" for r in picks]
    picks_sorted = sorted(picks)
    import torch

    columns = []
    with Dataset(demo.out / "data" / "demo.dataset.h5") as ds:
        inputs = ds.inputs[picks_sorted]
        targets = ds.targets[picks_sorted]
        names = [str(n) for n in ds.channels["name"]]
    order = [picks_sorted.index(r) for r in picks]
    inputs, targets = inputs[order], targets[order]
    bf_col = names.index(str(_brightfield_name(names)))
    columns.append(inputs[:, bf_col])
    for name in ("pls", "brightfield"):
        gen, ckpt, _dev, _bf16 = load_generator(demo.runs / name, device="cpu")
        sel = [names.index(n) for n in ckpt["model"]["channel_names"]]
        stack = torch.from_numpy(np.ascontiguousarray(inputs[:, sel]))
        with torch.no_grad():
            columns.append(to_uint8_image(predict_cells(gen, stack)))
    columns.append(targets)
    _save_png(folder / "cells_by_type.png", cell_grid(columns, scale=2))
    return _figure(
        "report/cells_by_type.png",
        "Test cells, up to two per white-cell type (the simulator's truth), one per column, "
        f"left to right: {', '.join(labels)}. Rows, top to bottom: unstained brightfield | "
        "PLS model | brightfield-only model | chemical stain (the registered stained crop). "
        "Each 64 x 64 px crop is shown at 2x.",
        wide=True,
    )


def _brightfield_name(names: list[str]) -> str:
    return next((n for n in names if n.startswith("brightfield")), names[0])


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
    from scope.demo import PLS_STACK, model_rows, verdict

    folder = demo.out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    res = demo.result
    fields = _field_images(demo, folder)
    _loss_plot(demo, folder / "loss.png")
    for name in ("pls", "brightfield"):
        for which in ("best_8", "worst_8", "hallucinations_8"):
            src = demo.runs / name / "eval" / "test" / f"{which}.png"
            if src.exists():
                shutil.copy(src, folder / f"{name}_{which}.png")
    if (demo.out / "matched-cells.png").exists():
        shutil.copy(demo.out / "matched-cells.png", folder / "matched-cells.png")
    side = _side_by_side(demo, folder)
    by_type = _type_grid(demo, folder)

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
        by_type or "",
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
