"""``scope evaluate``: test-set metrics in the layout of the thesis's Table 4.2, per-cell
metrics, best/worst grids and the worst-100 list for dataset cleaning (thesis §4.2.3).

Outputs in ``RUN/eval/<split>/``:

- ``summary.json`` — mean and standard deviation of every metric, the checkpoint's epoch;
- ``table.md`` — ``| model | SSIM | PSNR (dB) | MAE | VGG | Fourier |`` (Table 4.2 plus PSNR);
- ``cells.csv`` — one row per cell: dataset row, slide, position, coordinates, QC flags and
  every metric;
- ``best_8.png`` / ``worst_8.png`` — brightfield | prediction | target of the 8 best and
  worst cells by SSIM;
- ``worst_100.csv`` — the 100 worst cells by SSIM with their slide coordinates, the list the
  thesis inspected by hand (artifacts, dirt, mismatches, misaligned PLS images).

Metric definitions: :mod:`training.metrics` (SSIM: 11x11 Gaussian window, σ = 1.5, data
range 1.0, as scikit-image with ``gaussian_weights=True, use_sample_covariance=False``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.progress import Progress, or_null
from acquisition.vocabulary import Split
from training.channels import scale_tensor
from training.checkpoint import (
    check_same_model,
    generator_from_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
)
from training.clinical import MAX_TRAIN_CELLS, MIN_LABELLED, ClinicalMeasures, mask_overlay
from training.data import (
    BatchSource,
    CellStream,
    network_target,
    open_training_data,
    plan_epoch,
    to_uint8_image,
)
from training.device import autocast_factory, resolve_device, use_bf16
from training.differential import MIN_TARGET_ACCURACY, features
from training.errors import TrainingError
from training.metrics import METRIC_NAMES, image_metrics
from training.morphology import compare, measure_target
from training.predict import predict_cells
from training.run import RunFolder
from training.samples import cell_grid, write_image
from training.vgg import VGGFeatureExtractor, find_vgg_weights, load_vgg19_features

N_GRID = 8
N_WORST = 100
_HEADERS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "mae": "MAE", "vgg": "VGG", "fourier": "Fourier"}


def _table_md(name: str, mean: dict[str, float]) -> str:
    cols = ["ssim", "psnr", "mae", "vgg", "fourier"]
    head = "| model | " + " | ".join(_HEADERS[c] for c in cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"

    def cell(c: str) -> str:
        v = mean.get(c)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        return f"{v:.2f}" if c == "psnr" else f"{v:.4f}"

    return "\n".join([head, sep, f"| {name} | " + " | ".join(cell(c) for c in cols) + " |", ""])


def evaluate(
    run_dir: str | Path,
    *,
    split: str = Split.TEST,
    dataset: str | Path | None = None,
    checkpoint: str = "best",
    out: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 64,
    vgg_weights: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a run's generator on one split of its dataset.

    Parameters
    ----------
    run_dir
        A run folder (or a checkpoint file, then ``out`` is required).
    split
        ``test`` (default), ``val`` or ``train``.
    dataset
        Dataset file; default: the one the run was trained on.
    checkpoint
        ``best`` or ``last``.
    out
        Output folder; default ``RUN/eval/<split>``.
    device, precision
        As for training (``auto``: CUDA with bf16 if present, else CPU fp32).
    batch_size
        Cells per forward pass.
    vgg_weights
        VGG19 weights for the VGG metric (default: the run's, else the torch hub cache; the
        metric is reported as n/a without them).

    Returns
    -------
    dict
        ``split``, ``cells``, ``epoch``, ``dir``, and the mean of every metric (``ssim``,
        ``psnr``, ``mae``, ``fourier``, ``vgg`` or None).
    """
    ckpt_path = resolve_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    cfg = ckpt["config"]
    info = ckpt["model"]
    run_path = Path(run_dir)
    if out is None:
        if not run_path.is_dir():
            raise TrainingError("evaluating a checkpoint file needs --out DIR")
        out_dir = RunFolder(run_path).eval_dir(split)
    else:
        out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        from acquisition.files import OutputError

        raise OutputError(f"--out {out_dir} is a file; give a folder for the evaluation")
    data_path = Path(dataset) if dataset is not None else Path(cfg["dataset"])
    if not data_path.is_file():
        raise TrainingError(
            f"the run's dataset {str(data_path)!r} does not exist; pass --dataset PATH"
        )
    data = open_training_data(
        data_path,
        stack=info["stack"],
        target=info["target"],
        include_flagged=bool(cfg.get("include_flagged", False)),
    )
    if "input_scale" in info:  # the run's own normalisation (uint16 scales are measured)
        import dataclasses

        data.spec = dataclasses.replace(
            data.spec,
            input_scale=tuple(info["input_scale"]),
            target_scale=tuple(info["target_scale"]),
        )
    if list(info.get("target_names", ["R", "G", "B"])) != list(data.spec.target_names):
        raise TrainingError(
            f"{ckpt_path} predicts {', '.join(info.get('target_names', ['R', 'G', 'B']))} but "
            f"{data_path} holds targets {', '.join(data.spec.target_names)}; evaluate on a "
            "dataset with the run's target channels"
        )
    rgb = data.spec.rgb_target
    expected = {**info, "channel_names": list(data.spec.channel_names)}
    check_same_model(info, expected, source=str(ckpt_path), what=str(data_path))
    rows = data.indices(split)

    dev = resolve_device(device)
    bf16 = use_bf16(precision, dev, inference=False)
    autocast = autocast_factory(dev, bf16)
    generator = generator_from_checkpoint(ckpt).to(dev)
    weights = vgg_weights if vgg_weights is not None else cfg.get("vgg_weights")
    if weights is not None and not Path(weights).is_file():
        weights = None
    wpath = find_vgg_weights(weights) if rgb else None
    vgg = VGGFeatureExtractor(load_vgg19_features(wpath)).to(dev) if wpath else None

    stream = CellStream(data.spec, rows)
    source = BatchSource(stream, device=dev)
    plan = plan_epoch(
        len(rows), batch_size=batch_size, seed=0, epoch=0, shuffle=False, every_cell=True
    )
    names = [m for m in METRIC_NAMES if m != "vgg" or vgg is not None]
    names += [] if rgb else [f"mae_{t}" for t in data.spec.target_names]
    per_cell = {m: np.empty(len(rows), np.float64) for m in names}
    labels = cell_types(data.cells) if rgb else None
    clinical = ClinicalMeasures(len(rows), with_features=labels is not None) if rgb else None
    in_scale = scale_tensor(data.spec.input_scale, dev)
    out_scale = scale_tensor(data.spec.target_scale, dev)
    progress = or_null(progress)
    progress.start("cells", len(rows), label=f"evaluating {split}")
    for batch, (stack, target, _r) in zip(plan.batches, source.iterate(plan.batches), strict=True):
        pred = predict_cells(generator, stack, autocast=autocast, scale=in_scale)
        y = network_target(target, scale=out_scale)
        metrics = image_metrics(pred, y, vgg=vgg)
        if not rgb:  # the error of each output channel on its own
            err = (pred.float().clamp(0, 1) - y.float()).abs().mean(dim=(2, 3))
            for k, t in enumerate(data.spec.target_names):
                metrics[f"mae_{t}"] = err[:, k]
        for m in names:
            per_cell[m][batch] = metrics[m].double().cpu().numpy()
        if clinical is not None:
            clinical.add(batch, to_uint8_image(pred), target.cpu().numpy())
        progress.advance("cells", len(batch))
    notes = []
    if not rgb:
        notes.append(
            f"targets are {len(data.spec.target_names)} channels, not a stained RGB image: "
            "no VGG metric and no clinical (colour-stain) measures; mae_<channel> per channel"
        )
    elif labels is None:
        notes.append(NO_LABELS)
    else:
        notes.extend(_differential(clinical, data, labels, rows))

    from acquisition.files import atomic_output, write_text

    order = np.argsort(-per_cell["ssim"], kind="stable")  # best first
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").unlink(missing_ok=True)  # written last: marks a finished run
    for name, picks in (("best_8.png", order[:N_GRID]), ("worst_8.png", order[::-1][:N_GRID])):
        sorted_picks = np.sort(picks)
        stack, target, _r = next(source.iterate([sorted_picks]))
        sel = np.searchsorted(sorted_picks, picks)  # batches come sorted; restore rank order
        pred = predict_cells(generator, stack, autocast=autocast, scale=in_scale)
        grid = cell_grid([r[sel] for r in _grid_rows(data.spec, stack, pred, target)])
        with atomic_output(out_dir / name, keep_suffix=True) as tmp:
            write_image(tmp, grid)
    bad = clinical.hallucination_order()[:N_GRID] if clinical is not None else []
    hall_png = out_dir / "hallucinations_8.png"
    hall_png.unlink(missing_ok=True)
    if len(bad):
        sorted_picks = np.sort(bad)
        stack, target, _r = next(source.iterate([sorted_picks]))
        sel = np.searchsorted(sorted_picks, bad)
        pred_u8 = to_uint8_image(predict_cells(generator, stack, autocast=autocast))[sel]
        tgt_u8 = target.cpu().numpy()[sel]
        bf = stack[:, data.spec.brightfield_position].cpu().numpy()[sel]
        overlays = []
        for p_img, t_img in zip(pred_u8, tgt_u8, strict=True):
            a = compare(p_img, t_img)
            overlays.append(mask_overlay(t_img, a.virtual.nucleus, a.target.nucleus))
        grid = cell_grid([bf, pred_u8, tgt_u8, np.stack(overlays)])
        with atomic_output(hall_png, keep_suffix=True) as tmp:
            write_image(tmp, grid)
    stream.close()

    cells = data.cells
    extra = clinical.columns(with_types=labels is not None) if clinical is not None else {}
    _write_cells_csv(out_dir / "cells.csv", cells, rows, per_cell, names, extra=extra)
    _write_cells_csv(
        out_dir / "worst_100.csv",
        cells,
        rows,
        per_cell,
        names,
        order=order[::-1][:N_WORST],
        extra=extra,
    )
    test_types = None if labels is None else labels[rows]
    mean = {m: float(per_cell[m].mean()) for m in names}
    std = {m: float(per_cell[m].std()) for m in names}
    summary = {
        "split": split,
        "cells": len(rows),
        "preset": cfg.get("preset"),
        "stack": info["stack"],
        "target": info["target"],
        "checkpoint": checkpoint,
        "epoch": int(ckpt["epoch"]),
        "dataset": str(data_path),
        "precision": "bf16" if bf16 else "fp32",
        "mean": mean,
        "std": std,
        "clinical": clinical.summary(test_types) if clinical is not None else None,
        "notes": notes,
        "ssim_definition": "11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, data range "
        "1.0, RGB mean (scikit-image gaussian_weights=True, use_sample_covariance=False)",
    }
    write_text(out_dir / "table.md", _table_md(str(cfg.get("preset")), mean))
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1))
    if run_path.is_dir() and RunFolder(run_path).config.is_file():
        from training.report import write_report

        write_report(run_path)
    return {
        "split": split,
        "cells": len(rows),
        "epoch": int(ckpt["epoch"]),
        "dir": out_dir,
        **{m: mean.get(m) for m in METRIC_NAMES},
        "clinical": summary["clinical"],
        "mae_per_channel": {t: mean[f"mae_{t}"] for t in data.spec.target_names if not rgb},
        "notes": notes,
    }


def _grid_rows(spec: Any, stack: Any, pred: Any, target: Any) -> list[np.ndarray]:
    """Picture rows (reference, prediction, target; k grey pairs for k channels)."""
    from training.channels import grid_rows

    bf, c = spec.brightfield_position, spec.input_components
    ref_scale = None if spec.input_scale is None else spec.input_scale[bf * c : (bf + 1) * c]
    return grid_rows(
        stack[:, bf].cpu().numpy(),
        to_uint8_image(pred),
        target.cpu().numpy(),
        rgb_target=spec.rgb_target,
        reference_scale=ref_scale,
        target_scale=spec.target_scale,
    )


NO_LABELS = (
    "no cell types in the dataset: label-free measures only (add types with "
    "`scope dataset label DATASET CSV`)"
)


def cell_types(cells: np.ndarray) -> np.ndarray | None:
    """The dataset's ``type`` column ("" unknown), or None when no cell carries a type."""
    if "type" not in (cells.dtype.names or ()):
        return None
    types = np.asarray([str(t).strip().lower() for t in cells["type"]], dtype=object)
    return types if any(types) else None


def _differential(
    clinical: ClinicalMeasures, data: Any, labels: np.ndarray, rows: np.ndarray
) -> list[str]:
    """Train the type classifier on labelled training targets; notes on what it could do."""
    from registration.dataset import Dataset

    train = data.splits.get(Split.TRAIN, np.empty(0, np.int64))
    train = train[[bool(labels[r]) for r in train]] if len(train) else train
    if len(train) < MIN_LABELLED or len({labels[r] for r in train}) < 2:
        return [
            f"only {len(train)} labelled training cells of "
            f"{len({labels[r] for r in train})} types: differential agreement needs at least "
            f"{MIN_LABELLED} of 2 types"
        ]
    if len(train) > MAX_TRAIN_CELLS:
        train = np.sort(np.random.default_rng(0).choice(train, MAX_TRAIN_CELLS, replace=False))
    feats = []
    with Dataset(data.spec.path) as ds:
        tds = ds.targets if data.spec.target == "20x" else ds.targets_highres
        for a in range(0, len(train), 256):
            chunk = train[a : a + 256]
            for img in tds[chunk]:
                feats.append(features(img, measure_target(img)))
    d = clinical.classify(np.stack(feats), [labels[r] for r in train], labels[rows])
    if not d["reliable"]:
        return [
            f"the type classifier reads only {d['accuracy_target']:.0%} of the chemically "
            f"stained test cells right (< {MIN_TARGET_ACCURACY:.0%}): differential agreement "
            "measured with it means little"
        ]
    return []


def _write_cells_csv(
    path: Path,
    cells: np.ndarray,
    rows: np.ndarray,
    per_cell: dict[str, np.ndarray],
    names: list[str],
    *,
    order: np.ndarray | None = None,
    extra: dict[str, list[str]] | None = None,
) -> None:
    meta = [
        "slide",
        "position",
        "x_um",
        "y_um",
        "stained_x_um",
        "stained_y_um",
        "x_px",
        "y_px",
        "qc_flags",
    ]
    from acquisition.files import atomic_output

    extra = extra or {}
    idx = np.arange(len(rows)) if order is None else order
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        head = ["row", *meta, *names, *extra]
        w.writerow(["rank", *head] if order is not None else head)
        for rank, i in enumerate(idx, start=1):
            r = int(rows[i])
            values = [cells[m][r] for m in meta]
            metrics = [f"{per_cell[m][i]:.6g}" for m in names]
            prefix = [rank, r] if order is not None else [r]
            w.writerow([*prefix, *values, *metrics, *(extra[k][i] for k in extra)])
