"""One epoch of training (every training cell once, in a seeded order) and the validation pass.

Both work on a :class:`training.trainer.Trainer`'s networks, data and losses; under torchrun
every process runs them on its share of the cells and the sums are all-reduced.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from training import distributed as dist_utils
from training.batches import plan_epoch
from training.data import network_input, network_target
from training.epoch_progress import EpochProgress
from training.metrics import image_metrics
from training.steps import gan_step, generator_step

if TYPE_CHECKING:
    from training.trainer import Trainer

VAL_BATCH_MIN = 32


@dataclass(frozen=True)
class StepEvent:
    """Passed to ``on_step`` after every optimisation step (no device synchronisation)."""

    epoch: int
    step: int
    steps: int
    cells: int


def train_epoch(t: Trainer, epoch: int, bar: EpochProgress) -> dict[str, Any]:
    """Train ``t`` on every training cell once; the epoch's mean losses (one metrics row)."""
    cfg = t.config
    plan = plan_epoch(
        len(t.train_rows),
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        epoch=epoch,
        rank=t.info.rank,
        world_size=t.info.world_size,
    )
    t.generator.train()
    if t.critic is not None:
        t.critic.train()
    sums: dict[str, torch.Tensor] = {}
    n_local = 0
    steps = len(plan.batches)
    bar.start_epoch(epoch, cfg.epochs, steps)
    t0 = time.perf_counter()
    refresh = max(1, steps // 100)
    shown = 0
    for k, (stack, target, rows) in enumerate(t.train_source.iterate(plan.batches)):
        if t.augmenter is not None:
            stack, target = t.augmenter(stack, target, rows, epoch)
        x = network_input(stack, scale=t.in_scale)
        y = network_target(target, scale=t.out_scale)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            y = y.contiguous(memory_format=torch.channels_last)
        if t.critic is None:
            terms = generator_step(
                t.g_train,
                t.content_loss,
                t.opt_g,
                x,
                y,
                scale=plan.scales[k],
                autocast=t.autocast,
            )
        else:
            terms = gan_step(
                t.g_train,
                t.d_train,
                t.content_loss,
                t.preset.weights.gan,
                t.opt_g,
                t.opt_d,
                x,
                y,
                scale=plan.scales[k],
                autocast=t.autocast,
                gan_loss=t.preset.gan_loss,
            )
        b = x.shape[0]
        for key, value in terms.items():
            acc = sums.get(key)
            sums[key] = value * b if acc is None else acc + value * b
        n_local += b
        if t.on_step is not None:
            t.on_step(StepEvent(epoch, k + 1, steps, n_local))
        if t.show_steps and ((k + 1) % refresh == 0 or k + 1 == steps):
            cells = n_local * t.info.world_size
            bar.step(k + 1 - shown, float(terms["loss"]), cells / (time.perf_counter() - t0))
            shown = k + 1
    keys = sorted(sums)
    packed = torch.stack(
        [sums[key].float() for key in keys] + [torch.tensor(float(n_local), device=t.device)]
    )
    dist_utils.all_reduce_sum(packed, t.info)
    total = float(packed[-1])
    seconds = time.perf_counter() - t0
    means = {key: float(packed[i]) / total for i, key in enumerate(keys)}
    row: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": means.get("loss", math.nan),
        "lr": float(t.opt_g.param_groups[0]["lr"]),
        "seconds": seconds,
        "cells_per_s": total / seconds if seconds > 0 else math.nan,
    }
    for key in ("l1", "perceptual", "fourier", "gan", "d"):
        if key in means:
            row[f"train_{key}"] = means[key]
    return row


@torch.no_grad()
def validate(t: Trainer) -> dict[str, float]:
    """The validation loss and metrics of ``t``'s generator over the whole validation split."""
    cfg = t.config
    plan = plan_epoch(
        len(t.val_rows),
        batch_size=max(cfg.batch_size, VAL_BATCH_MIN),
        seed=cfg.seed,
        epoch=0,
        shuffle=False,
        rank=t.info.rank,
        world_size=t.info.world_size,
        every_cell=True,
    )
    t.generator.eval()
    names = ["val_loss", "ssim", "psnr", "mae", "fourier"]
    if t.vgg is not None:
        names.append("vgg")
    sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=t.device)
    for stack, target, _rows in t.val_source.iterate(plan.batches):
        pred = t.predict(stack)
        y = network_target(target, scale=t.out_scale)
        loss, _ = t.content_loss(pred, y)
        metrics = image_metrics(pred, y, vgg=t.vgg)
        b = pred.shape[0]
        values = [loss.double() * b] + [metrics[n].double().sum() for n in names[1:]]
        sums += torch.stack([*values, torch.tensor(float(b), dtype=torch.float64, device=t.device)])
    dist_utils.all_reduce_sum(sums, t.info)
    n = float(sums[-1])
    return {name: float(sums[i]) / n for i, name in enumerate(names)}
