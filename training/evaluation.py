"""``scope evaluate``: test-set metrics in the layout of the thesis's Table 4.2, per-cell
metrics, best/worst grids and the worst-100 list for dataset cleaning (thesis §4.2.3).

Outputs in ``RUN/eval/<split>/`` (laid out by :mod:`training.evaluation_outputs`):

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

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.progress import Progress, or_null
from acquisition.vocabulary import Split
from training.batches import BatchSource, CellStream, plan_epoch
from training.channels import scale_tensor
from training.checkpoint import (
    check_same_model,
    generator_from_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
)
from training.clinical import MAX_TRAIN_CELLS, MIN_LABELLED, ClinicalMeasures
from training.data import TrainingData, network_target, open_training_data, to_uint8_image
from training.device import autocast_factory, compute_on, resolve_device, use_bf16
from training.differential import MIN_TARGET_ACCURACY, features
from training.errors import TrainingError
from training.evaluation_outputs import N_WORST, table_md, write_cells_csv, write_grids
from training.metrics import METRIC_NAMES, image_metrics
from training.morphology import measure_target
from training.predict import predict_cells
from training.run import RunFolder
from training.vgg import VGGFeatureExtractor, find_vgg_weights, load_vgg19_features


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
    run_path = Path(run_dir)
    out_dir = _out_dir(run_path, out, split)
    data_path = Path(dataset) if dataset is not None else Path(cfg["dataset"])
    data = _run_data(ckpt, ckpt_path, data_path)
    rgb = data.spec.rgb_target
    rows = data.indices(split)
    model = _Model.load(ckpt, data, device=device, precision=precision, vgg_weights=vgg_weights)

    stream = CellStream(data.spec, rows)
    source = BatchSource(stream, device=model.device)
    labels = cell_types(data.cells) if rgb else None
    clinical = ClinicalMeasures(len(rows), with_features=labels is not None) if rgb else None
    per_cell, names = _score(model, data, source, batch_size, clinical, split, or_null(progress))
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

    from acquisition.files import write_text

    order = np.argsort(-per_cell["ssim"], kind="stable")  # best first
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").unlink(missing_ok=True)  # written last: marks a finished run
    write_grids(
        out_dir,
        spec=data.spec,
        source=source,
        predict=model.predict,
        order=order,
        hallucinated=clinical.hallucination_order() if clinical is not None else np.empty(0),
    )
    stream.close()

    extra = clinical.columns(with_types=labels is not None) if clinical is not None else {}
    write_cells_csv(out_dir / "cells.csv", data.cells, rows, per_cell, names, extra=extra)
    worst = order[::-1][:N_WORST]
    write_cells_csv(
        out_dir / "worst_100.csv", data.cells, rows, per_cell, names, order=worst, extra=extra
    )
    mean = {m: float(per_cell[m].mean()) for m in names}
    summary = {
        "split": split,
        "cells": len(rows),
        "preset": cfg.get("preset"),
        "stack": ckpt["model"]["stack"],
        "target": ckpt["model"]["target"],
        "checkpoint": checkpoint,
        "epoch": int(ckpt["epoch"]),
        "dataset": str(data_path),
        "precision": "bf16" if model.bf16 else "fp32",
        "mean": mean,
        "std": {m: float(per_cell[m].std()) for m in names},
        "clinical": None if clinical is None else clinical.summary(_types_of(labels, rows)),
        "notes": notes,
        "ssim_definition": "11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, data range "
        "1.0, RGB mean (scikit-image gaussian_weights=True, use_sample_covariance=False)",
    }
    write_text(out_dir / "table.md", table_md(str(cfg.get("preset")), mean))
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


def _types_of(labels: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if labels is None else labels[rows]


def _out_dir(run_path: Path, out: str | Path | None, split: str) -> Path:
    """Where the evaluation goes: ``out``, else ``RUN/eval/<split>`` (a run folder needed)."""
    if out is None:
        if not run_path.is_dir():
            raise TrainingError("evaluating a checkpoint file needs --out DIR")
        out_dir = RunFolder(run_path).eval_dir(split)
    else:
        out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        from acquisition.files import OutputError

        raise OutputError(f"--out {out_dir} is a file; give a folder for the evaluation")
    return out_dir


def _run_data(ckpt: dict, ckpt_path: Path, data_path: Path) -> TrainingData:
    """The dataset resolved as the run was trained (stack, target, scales), checked to fit."""
    cfg, info = ckpt["config"], ckpt["model"]
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
    expected = {**info, "channel_names": list(data.spec.channel_names)}
    check_same_model(info, expected, source=str(ckpt_path), what=str(data_path))
    return data


@dataclass
class _Model:
    """The run's generator on its device, with what evaluating it needs."""

    generator: Any
    device: Any
    autocast: Any
    bf16: bool
    vgg: Any
    in_scale: Any
    out_scale: Any

    @classmethod
    def load(
        cls,
        ckpt: dict,
        data: TrainingData,
        *,
        device: str,
        precision: str,
        vgg_weights: str | Path | None,
    ) -> _Model:
        dev = resolve_device(device)
        bf16 = use_bf16(precision, dev, inference=False)
        weights = vgg_weights if vgg_weights is not None else ckpt["config"].get("vgg_weights")
        if weights is not None and not Path(weights).is_file():
            weights = None
        wpath = find_vgg_weights(weights) if data.spec.rgb_target else None
        return cls(
            generator=compute_on(generator_from_checkpoint(ckpt), dev).to(dev),
            device=dev,
            autocast=autocast_factory(dev, bf16),
            bf16=bf16,
            vgg=VGGFeatureExtractor(load_vgg19_features(wpath)).to(dev) if wpath else None,
            in_scale=scale_tensor(data.spec.input_scale, dev),
            out_scale=scale_tensor(data.spec.target_scale, dev),
        )

    def predict(self, stack: Any) -> Any:
        """Float predictions ``(B, c_out, h, w)`` of a stack batch (the run's input scale)."""
        return predict_cells(self.generator, stack, autocast=self.autocast, scale=self.in_scale)


def _score(
    model: _Model,
    data: TrainingData,
    source: BatchSource,
    batch_size: int,
    clinical: ClinicalMeasures | None,
    split: str,
    progress: Progress,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every metric of every cell of ``source`` (in row order), and the metric names."""
    n = len(source)
    rgb = data.spec.rgb_target
    plan = plan_epoch(n, batch_size=batch_size, seed=0, epoch=0, shuffle=False, every_cell=True)
    names = [m for m in METRIC_NAMES if m != "vgg" or model.vgg is not None]
    names += [] if rgb else [f"mae_{t}" for t in data.spec.target_names]
    per_cell = {m: np.empty(n, np.float64) for m in names}
    progress.start("cells", n, label=f"evaluating {split}")
    for batch, (stack, target, _r) in zip(plan.batches, source.iterate(plan.batches), strict=True):
        pred = model.predict(stack)
        y = network_target(target, scale=model.out_scale)
        metrics = image_metrics(pred, y, vgg=model.vgg)
        if not rgb:  # the error of each output channel on its own
            err = (pred.float().clamp(0, 1) - y.float()).abs().mean(dim=(2, 3))
            for k, t in enumerate(data.spec.target_names):
                metrics[f"mae_{t}"] = err[:, k]
        for m in names:
            per_cell[m][batch] = metrics[m].double().cpu().numpy()
        if clinical is not None:
            clinical.add(batch, to_uint8_image(pred), target.cpu().numpy())
        progress.advance("cells", len(batch))
    return per_cell, names


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
