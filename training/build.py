"""Building a run's losses, networks and optimisers from its options.

Each function takes the resolved :class:`training.config.TrainConfig`, the preset and the
dataset's :class:`training.data.DataSpec`; the trainer calls them in a fixed order (losses,
seeding, networks, optimisers) so a seed gives the same weights every time.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import distributed as dist_utils
from training.checkpoint import check_same_model, load_checkpoint, model_info, resolve_checkpoint
from training.config import TrainConfig
from training.discriminators import build_discriminator
from training.errors import VggWeightsError
from training.losses import GeneratorLoss, LossWeights, PerceptualLoss
from training.models import DEFAULT_PADDING, build_generator
from training.presets import TrainingPreset
from training.vgg import (
    VGGFeatureExtractor,
    find_vgg_weights,
    load_vgg19_features,
    missing_weights_message,
)


def resolve_options(config: TrainConfig, preset: TrainingPreset) -> TrainConfig:
    """``config`` with absolute paths and the preset's values for every option left at None."""
    # absolute paths, so evaluate/stain/resume work from any working directory
    updates: dict[str, Any] = {"dataset": config.dataset.resolve()}
    for key in ("vgg_weights", "init_from"):
        if getattr(config, key) is not None:
            updates[key] = getattr(config, key).expanduser().resolve()
    defaults = {
        "batch_size": preset.batch_size,
        "lr": preset.lr_g,
        "lr_d": preset.lr_d,
        "generator": preset.generator,
        "discriminator": preset.discriminator,
    }
    for key, value in defaults.items():
        if getattr(config, key) is None:
            updates[key] = value
    return config.model_copy(update=updates)


def data_workers(config: TrainConfig, device: torch.device) -> int:
    """Loader processes: the option, else one per spare core (up to 8) on a GPU, none on CPU."""
    if config.workers is not None:
        return config.workers
    return min(8, max(1, (_cpu_count() - 1))) if device.type == "cuda" else 0


@dataclass
class Losses:
    """The content loss and what it is made of; ``notes`` are said once at the start."""

    weights: LossWeights
    vgg: VGGFeatureExtractor | None
    content: GeneratorLoss
    notes: list[str]


def build_losses(
    config: TrainConfig,
    preset: TrainingPreset,
    spec: Any,
    device: torch.device,
    channels_last: bool,
) -> Losses:
    """The preset's content loss (L1, perceptual, Fourier) for this dataset's targets."""
    notes: list[str] = []
    w = preset.weights
    if not spec.rgb_target and w.perceptual > 0:
        # a perceptual (VGG) term only means something on RGB stains
        w = LossWeights(w.l1, 0.0, w.fourier, w.gan)
        notes.append(
            f"the targets are {spec.out_channels} channels ({', '.join(spec.target_names)}), "
            f"not an RGB stain: preset {config.preset}'s perceptual (VGG) term is off"
        )
    weights_path = find_vgg_weights(config.vgg_weights) if spec.rgb_target else None
    if w.perceptual > 0 and weights_path is None:
        raise VggWeightsError(missing_weights_message(config.preset))
    vgg: VGGFeatureExtractor | None = None
    if weights_path is not None:
        vgg = VGGFeatureExtractor(load_vgg19_features(weights_path)).to(device)
        if channels_last:
            vgg = vgg.to(memory_format=torch.channels_last)
    content = GeneratorLoss(
        LossWeights(w.l1, w.perceptual, w.fourier, 0.0),
        PerceptualLoss(vgg) if (vgg is not None and w.perceptual > 0) else None,
    )
    return Losses(w, vgg, content, notes)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's RNGs (before the networks are built)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def generator_kwargs(
    config: TrainConfig,
    preset: TrainingPreset,
    spec: Any,
    input_stats: tuple[list[float], list[float]] | None = None,
) -> dict[str, Any]:
    """The generator's constructor arguments (saved in the checkpoint to rebuild it).

    ``input_stats`` (``(mean, std)`` per input channel, :func:`input_statistics`) is
    required with ``input_norm="standardise"``.
    """
    if config.generator == "rrdb":
        gkw: dict[str, Any] = {
            "features": config.features or spec.in_channels,
            "blocks": config.blocks,
            "growth": config.growth,
            "padding": DEFAULT_PADDING,
        }
    else:
        gkw = {"crop_size": spec.crop_size, "features": config.features or 64}
    if config.generator == "unet" and not preset.unet_innermost_norm:
        gkw["innermost_norm"] = False
    if spec.out_channels != 3:  # absent for stains: checkpoints of RGB runs are unchanged
        gkw["out_channels"] = spec.out_channels
    if config.input_norm == "standardise":
        if input_stats is None:
            raise ValueError("input_norm='standardise' needs the training cells' statistics")
        gkw["input_mean"], gkw["input_std"] = list(input_stats[0]), list(input_stats[1])
    return gkw


def describe_model(config: TrainConfig, spec: Any, gkw: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``model`` entry: how to rebuild the generator and feed it."""
    info = model_info(
        generator=config.generator,
        generator_kwargs=gkw,
        in_channels=spec.in_channels,
        channel_names=spec.channel_names,
        stack=spec.stack,
        target=spec.target,
        crop_size=spec.crop_size,
        pixel_size_um=spec.pixel_size_um,
    )
    info.update(
        input_components=spec.input_components,
        target_names=list(spec.target_names),
        rgb_target=spec.rgb_target,
        input_scale=None if spec.input_scale is None else list(spec.input_scale),
        target_scale=None if spec.target_scale is None else list(spec.target_scale),
    )
    return info


def build_networks(
    config: TrainConfig, preset: TrainingPreset, spec: Any, gkw: dict[str, Any]
) -> tuple[nn.Module, nn.Module | None]:
    """The generator and, for GAN presets, the critic (on the CPU, freshly initialised)."""
    generator = build_generator(config.generator, spec.in_channels, **gkw)
    critic: nn.Module | None = None
    if preset.gan:
        critic = build_discriminator(
            config.discriminator,
            crop_size=spec.crop_size,
            condition_channels=spec.in_channels,
            image_channels=spec.out_channels,
        )
    return generator, critic


def mean_target_colour(spec: Any, rows: np.ndarray, max_cells: int = 512) -> np.ndarray:
    """Mean of each target channel, scaled, (up to ``max_cells`` evenly spread)."""
    from registration.dataset import Dataset

    if len(rows) > max_cells:
        rows = rows[np.linspace(0, len(rows) - 1, max_cells).astype(np.int64)]
    with Dataset(spec.path) as ds:
        tds = ds.targets if spec.target == "20x" else ds.targets_highres
        targets = tds[np.unique(rows)]
    c = targets.shape[-1]
    scale = np.asarray(spec.target_scale or (255.0,) * c, np.float64)
    mean = np.clip(targets.reshape(-1, c).mean(axis=0) / scale, 0.0, 1.0)
    return mean.astype(np.float32)


def input_statistics(
    spec: Any, rows: np.ndarray, max_cells: int = 256
) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each network input channel over training cells.

    Values as the network receives them (each channel divided by its scale), image-major
    like :func:`training.tensors.network_input`; up to ``max_cells`` cells evenly spread
    over ``rows``, summed cell by cell in float64. Rounded to 6 decimals (they are saved as
    the generator's arguments); the standard deviation is at least
    :data:`training.input_norm.MIN_STD`.
    """
    from registration.dataset import Dataset
    from training.input_norm import MIN_STD

    rows = np.unique(np.asarray(rows, np.int64))
    if len(rows) > max_cells:
        rows = rows[np.linspace(0, len(rows) - 1, max_cells).astype(np.int64)]
    n = spec.in_channels
    scale = np.asarray(spec.input_scale or (255.0,) * n, np.float64)
    total, total_sq, count = np.zeros(n), np.zeros(n), 0
    keep = list(spec.channel_indices)
    with Dataset(spec.path) as ds:
        for r in rows:
            cell = np.asarray(ds.inputs[int(r)][keep], np.float64)  # (n_img, h, w, c)
            x = np.moveaxis(cell, -1, 1).reshape(n, -1) / scale[:, None]
            total += x.sum(axis=1)
            total_sq += np.square(x).sum(axis=1)
            count += x.shape[1]
    if count == 0:
        raise ValueError("no training cells to measure the input statistics on")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return (
        [round(float(v), 6) for v in mean],
        [round(float(max(v, MIN_STD)), 6) for v in std],
    )


def init_generator_from(generator: nn.Module, source: Path, info: dict[str, Any]) -> None:
    """Load the best generator of run ``source`` (same model) into ``generator``."""
    path = resolve_checkpoint(source, "best")
    ckpt = load_checkpoint(path)
    check_same_model(ckpt["model"], info, source=str(path), what="this run")
    generator.load_state_dict(ckpt["generator"])


def place(module: nn.Module | None, device: torch.device, channels_last: bool) -> None:
    """Move ``module`` (if any) to ``device``, in channels-last layout if asked."""
    if module is None:
        return
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)


def build_optimisers(
    generator: nn.Module,
    critic: nn.Module | None,
    config: TrainConfig,
    preset: TrainingPreset,
    device: torch.device,
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """Adam for the generator and (if any) the critic, with the preset's betas."""
    betas = preset.betas
    # one fused kernel per step on GPUs instead of one per parameter tensor
    fused = {"fused": True} if device.type == "cuda" else {}
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas, **fused)
    opt_d = (
        torch.optim.Adam(critic.parameters(), lr=config.lr_d, betas=betas, **fused)
        if critic is not None
        else None
    )
    return opt_g, opt_d


def build_scheduler(opt: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """The learning-rate schedule the options name (constant, cosine or on plateau)."""
    kind = config.lr_schedule
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    if kind == "plateau":
        patience = max(1, (config.patience or 10) // 2)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=patience
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


def wrap_for_training(
    generator: nn.Module,
    critic: nn.Module | None,
    info: dist_utils.DistInfo,
    device: torch.device,
    compile_: bool,
) -> tuple[nn.Module, nn.Module | None]:
    """The modules the steps call: DDP-wrapped under torchrun, the generator compiled if asked."""
    g_train: nn.Module = generator
    d_train: nn.Module | None = critic
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g_train = DDP(generator, device_ids=ids)
        if critic is not None:
            d_train = DDP(critic, device_ids=ids)
    if compile_:
        g_train = torch.compile(g_train)
    return g_train, d_train


def metric_columns(vgg: Any, weights: LossWeights, gan: bool) -> list[str]:
    """The columns of ``metrics.csv`` for a run with these losses."""
    cols = ["epoch", "train_loss", "val_loss", "ssim", "psnr", "mae", "fourier"]
    if vgg is not None:
        cols.append("vgg")
    cols += ["lr", "train_l1"]
    if weights.perceptual > 0:
        cols.append("train_perceptual")
    if weights.fourier > 0:
        cols.append("train_fourier")
    if gan:
        cols += ["train_gan", "train_d"]
    cols += ["seconds", "cells_per_s"]
    return cols


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
