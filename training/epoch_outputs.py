"""What a run writes to its folder: ``config.yaml`` at the start; after every epoch the
metrics row, a grid of sample predictions, ``last.pt`` / ``best.pt`` and ``status.json``."""

from __future__ import annotations

import math
import shlex
import socket
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from acquisition.vocabulary import Split
from training.checkpoint import save_checkpoint
from training.data import to_uint8_image
from training.device import describe_device
from training.models import count_parameters
from training.resume import checkpoint_payload
from training.run import now_iso, read_config, write_config, write_metrics, write_status
from training.samples import cell_grid, write_image

if TYPE_CHECKING:
    from training.trainer import Trainer


def finite(value: float) -> float | None:
    """``value``, or None for inf/nan (JSON has neither)."""
    return value if math.isfinite(value) else None


def write_state(t: Trainer, state: str) -> None:
    """``status.json``: ``state`` and how far ``t`` got."""
    write_status(
        t.run_folder,
        state=state,
        epoch=t.epoch,
        epochs=t.config.epochs,
        best_epoch=t.best_epoch,
        best_val_loss=finite(t.best_val),
    )


def save_epoch(t: Trainer, improved: bool) -> None:
    """Metrics, the sample grid, the checkpoints and the status after an epoch of ``t``."""
    run = t.run_folder
    write_metrics(run.metrics, t.history, t.columns)
    if len(t.sample_positions):
        sample_grid(t, t.epoch)
    payload = checkpoint_payload(t)
    if improved:
        save_checkpoint(run.best, payload)
    save_checkpoint(run.last, payload)
    write_state(t, "running")


def sample_positions(n_val: int, samples: int) -> np.ndarray:
    """Which validation cells (evenly spread) the sample grids show."""
    n = min(samples, n_val)
    if n == 0:
        return np.empty(0, np.int64)
    return np.unique(np.linspace(0, n_val - 1, n).round().astype(np.int64))


@torch.no_grad()
def sample_grid(t: Trainer, epoch: int) -> None:
    """The grid of input, prediction and target of the sample cells for ``epoch``."""
    stack, target, _rows = next(t.val_source.iterate([t.sample_positions]))
    pred = t.predict(stack)
    grid = cell_grid(_grid_rows(t, stack, pred, target))
    write_image(t.run_folder.sample_grid(epoch), grid)


def _grid_rows(
    t: Trainer, stack: torch.Tensor, pred: torch.Tensor, target: torch.Tensor
) -> list[np.ndarray]:
    from training.channels import grid_rows

    spec = t.data.spec
    bf, c = spec.brightfield_position, spec.input_components
    return grid_rows(
        stack[:, bf].cpu().numpy(),
        to_uint8_image(pred),
        target.cpu().numpy(),
        rgb_target=spec.rgb_target,
        reference_scale=None
        if spec.input_scale is None
        else spec.input_scale[bf * c : (bf + 1) * c],
        target_scale=spec.target_scale,
    )


def write_run_config(t: Trainer) -> None:
    """``config.yaml``: the options, every command line, the model, the data, the machine."""
    from scope._version import __version__ as scope_version

    previous: list[str] = []
    if t.config.resume and t.run_folder.config.is_file():
        previous = list(read_config(t.run_folder).get("commands", []))
    spec = t.data.spec
    doc: dict[str, Any] = {
        "config": t.config.to_jsonable(),
        "commands": [*previous, shlex.join(t.command)],
        "model": t.model_info,
        "parameters": {
            "generator": count_parameters(t.generator),
            "discriminator": None if t.critic is None else count_parameters(t.critic),
        },
        "data": {
            "dataset": str(spec.path),
            "fingerprint": spec.fingerprint,
            "train_cells": len(t.train_rows),
            "val_cells": len(t.val_rows),
            "test_cells": len(t.data.splits.get(Split.TEST, [])),
            "excluded_flagged": t.data.excluded_flagged,
            "excluded_no_highres": t.data.excluded_no_highres,
            "augmentation": t.symmetry_names,
        },
        "environment": {
            "scope": scope_version,
            "torch": str(torch.__version__),
            "device": describe_device(t.device),
            "precision": "bf16" if t.bf16 else "fp32",
            "channels_last": t.channels_last,
            "world_size": t.info.world_size,
            "workers": t.workers,
            "host": socket.gethostname(),
            "started": now_iso(),
        },
    }
    write_config(t.run_folder, doc)
