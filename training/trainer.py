"""``scope train``: the training loop, checkpoints, early stopping, exact resume, DDP.

One epoch = every training cell once in a seeded order (:func:`training.data.plan_epoch`),
then a validation pass (loss and metrics over the whole validation split), a row in
``metrics.csv``, a prediction grid, ``last.pt`` (and ``best.pt`` when the validation loss
improved). Training stops at ``epochs`` or after ``patience`` epochs without improvement.

Exact resume: the checkpoint written after each epoch holds model, optimiser and scheduler
states, every RNG state and the early-stopping state; batches and augmentation depend only on
``(seed, epoch)``. A run interrupted at any point and resumed with ``resume=True`` therefore
produces the same weights and metrics as an uninterrupted one (checked on CPU by the tests);
``resume`` with a larger ``epochs`` extends a finished run.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acquisition.progress import NO_PROGRESS, Progress, or_null
from training import distributed as dist_utils
from training.augment import Augmenter, stack_symmetries
from training.checkpoint import (
    capture_rng,
    check_same_model,
    load_checkpoint,
    model_info,
    resolve_checkpoint,
    restore_rng,
    save_checkpoint,
)
from training.config import RESUME_MUTABLE, TrainConfig
from training.data import (
    BatchSource,
    CellStream,
    TrainingData,
    network_input,
    network_target,
    open_training_data,
    plan_epoch,
    to_uint8_image,
)
from training.device import autocast_factory, describe_device, resolve_device, use_bf16
from training.discriminators import build_discriminator
from training.epoch_progress import EpochProgress
from training.errors import CheckpointError, TrainingError, VggWeightsError
from training.losses import GeneratorLoss, LossWeights, PerceptualLoss
from training.metrics import image_metrics
from training.models import DEFAULT_PADDING, build_generator, count_parameters
from training.predict import predict_cells
from training.presets import get_preset
from training.run import (
    RunFolder,
    now_iso,
    read_config,
    write_config,
    write_metrics,
    write_status,
)
from training.samples import cell_grid, write_image
from training.steps import gan_step, generator_step
from training.vgg import (
    VGGFeatureExtractor,
    find_vgg_weights,
    load_vgg19_features,
    missing_weights_message,
)

VAL_BATCH_MIN = 32


@dataclass(frozen=True)
class StepEvent:
    """Passed to ``on_step`` after every optimisation step (no device synchronisation)."""

    epoch: int
    step: int
    steps: int
    cells: int


@dataclass
class RunResult:
    """What :func:`train` returns."""

    run_dir: Path
    epochs_done: int
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return RunFolder(self.run_dir).best

    @property
    def last_checkpoint(self) -> Path:
        return RunFolder(self.run_dir).last

    @property
    def report(self) -> Path:
        return RunFolder(self.run_dir).report


def train(
    config: TrainConfig | dict[str, Any],
    *,
    progress: Progress | None = None,
    on_step: Callable[[StepEvent], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    command: list[str] | None = None,
) -> RunResult:
    """Train a virtual-staining network; see :class:`training.config.TrainConfig`.

    Parameters
    ----------
    config
        A :class:`TrainConfig` or a dict of its fields. With ``resume=True`` the run's saved
        configuration is used and only explicitly given fields may change (``epochs``,
        ``patience``, ``workers``, ``cache``, ``device``, ``compile``, paths).
    progress
        Where to report epochs, steps and notes (rank 0 only; the CLI passes its rich
        display); None shows nothing.
    on_step, on_epoch
        Callbacks after every step (:class:`StepEvent`) and epoch (the metrics row).
    command
        The command line to record in ``config.yaml`` (default: ``sys.argv``).

    Under ``torchrun`` every process calls this; they train one model with
    DistributedDataParallel and rank 0 writes the run folder.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
    info = dist_utils.from_environment()
    if not info.is_main:
        return _train(cfg, info, progress, on_step, on_epoch, command)
    from acquisition.files import WriteLock

    cfg.out.mkdir(parents=True, exist_ok=True)
    with WriteLock(cfg.out, what=f"run folder {cfg.out}"):
        return _train(cfg, info, progress, on_step, on_epoch, command)


def _train(cfg, info, progress, on_step, on_epoch, command) -> RunResult:
    trainer = Trainer(
        cfg,
        info,
        progress=progress,
        on_step=on_step,
        on_epoch=on_epoch,
        command=command if command is not None else list(sys.argv),
    )
    try:
        return trainer.run()
    except BaseException:
        trainer.mark_interrupted()
        raise
    finally:
        trainer.close()


def _merge_for_resume(given: TrainConfig, saved: dict[str, Any], source: Path) -> TrainConfig:
    base = TrainConfig.model_validate(saved)
    changed = []
    for key in given.model_fields_set:
        if key in RESUME_MUTABLE:
            continue
        if getattr(given, key) != getattr(base, key) and getattr(given, key) is not None:
            changed.append(
                f"--{key.replace('_', '-')} {getattr(base, key)} → {getattr(given, key)}"
            )
    if changed:
        raise TrainingError(
            f"{source} was trained with other options; resume with the same ones "
            f"(changed: {'; '.join(changed)})"
        )
    update = {k: getattr(given, k) for k in given.model_fields_set if k in RESUME_MUTABLE}
    return base.model_copy(update={**update, "resume": True})


class Trainer:
    """Holds the state of one training run; :meth:`run` trains to the end."""

    def __init__(
        self,
        config: TrainConfig,
        info: dist_utils.DistInfo,
        *,
        progress: Progress | None,
        on_step: Callable[[StepEvent], None] | None,
        on_epoch: Callable[[dict[str, Any]], None] | None,
        command: list[str],
    ) -> None:
        self.info = info
        self.run_folder = RunFolder(config.out)
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.command = command
        # float(loss) for the display syncs the device: only when something shows it
        self.show_steps = progress is not None and info.is_main
        self.progress = or_null(progress) if info.is_main else NO_PROGRESS
        self._sources: list[BatchSource] = []
        self._streams: list[CellStream] = []
        self._dist_ready = False

        resume_ckpt: dict[str, Any] | None = None
        if config.resume:
            if not self.run_folder.last.is_file():
                raise TrainingError(
                    f"nothing to resume: {self.run_folder.last} does not exist (start the run "
                    "without --resume)"
                )
            resume_ckpt = load_checkpoint(self.run_folder.last)
            config = _merge_for_resume(config, resume_ckpt["config"], self.run_folder.path)
        elif self.run_folder.stopped_before_checkpoint():
            # the run died before its first checkpoint: nothing to resume, start it afresh
            if info.is_main:
                self.run_folder.clear_unfinished()
                self.progress.note(
                    f"{self.run_folder.path} holds a run that stopped before its first "
                    "checkpoint; starting it afresh"
                )
        elif self.run_folder.exists():
            raise TrainingError(
                f"{self.run_folder.path} already holds a run; pass --resume to continue it or "
                "choose another --out"
            )
        self.preset = get_preset(config.preset)
        # absolute paths, so evaluate/stain/resume work from any working directory
        updates: dict[str, Any] = {"dataset": config.dataset.resolve()}
        for key in ("vgg_weights", "init_from"):
            if getattr(config, key) is not None:
                updates[key] = getattr(config, key).expanduser().resolve()
        if config.batch_size is None:
            updates["batch_size"] = self.preset.batch_size
        if config.lr is None:
            updates["lr"] = self.preset.lr_g
        if config.lr_d is None:
            updates["lr_d"] = self.preset.lr_d
        if config.generator is None:
            updates["generator"] = self.preset.generator
        if config.discriminator is None:
            updates["discriminator"] = self.preset.discriminator
        self.config = config = config.model_copy(update=updates)

        # -- device and numerics ------------------------------------------------------------
        self.device = resolve_device(config.device, local_rank=info.local_rank)
        self.bf16 = use_bf16(config.precision, self.device, inference=False)
        self.autocast = autocast_factory(self.device, self.bf16)
        self.channels_last = config.channels_last if config.channels_last is not None else self.bf16
        self.workers = (
            config.workers
            if config.workers is not None
            else (min(8, max(1, (_cpu_count() - 1))) if self.device.type == "cuda" else 0)
        )
        dist_utils.setup(info, self.device)
        self._dist_ready = info.enabled
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed 64x64 shapes: pick the fastest kernels

        # -- data ---------------------------------------------------------------------------
        self.data: TrainingData = open_training_data(
            config.dataset,
            stack=config.stack,
            target=config.target,
            include_flagged=config.include_flagged,
        )
        spec = self.data.spec
        if resume_ckpt is not None and resume_ckpt["dataset"]["fingerprint"] != spec.fingerprint:
            raise TrainingError(
                f"{config.dataset} is not the dataset {self.run_folder.path} was trained on "
                "(its cells or channels differ); resume needs the same file"
            )
        self.train_rows = self.data.indices("train")
        self.val_rows = self.data.indices("val")
        if len(self.train_rows) < info.world_size:
            raise TrainingError(
                f"{len(self.train_rows)} training cells cannot be shared by {info.world_size} "
                "processes"
            )
        cache = config.cache
        if cache == "device" and self.device.type != "cuda":
            cache = "ram"
        self.train_source = self._source(self.train_rows, cache)
        self.val_source = self._source(self.val_rows, cache)
        self.augmenter: Augmenter | None = None
        if config.augment:
            with _open_dataset(spec.path) as ds:
                syms = stack_symmetries(ds.channels, spec.channel_indices, profile=ds.profile)
            self.augmenter = Augmenter(syms, seed=config.seed)
        self.symmetry_names = (
            [s.name for s in self.augmenter.symmetries] if self.augmenter else ["identity"]
        )

        from training.channels import scale_tensor

        self.in_scale = scale_tensor(spec.input_scale, self.device)
        self.out_scale = scale_tensor(spec.target_scale, self.device)

        # -- losses -------------------------------------------------------------------------
        #: said once at the start: a perceptual (VGG) term only means something on RGB stains
        self.notes: list[str] = []
        w = self.preset.weights
        if not spec.rgb_target and w.perceptual > 0:
            w = LossWeights(w.l1, 0.0, w.fourier, w.gan)
            self.notes.append(
                f"the targets are {spec.out_channels} channels ({', '.join(spec.target_names)}), "
                f"not an RGB stain: preset {config.preset}'s perceptual (VGG) term is off"
            )
        self.weights = w
        weights_path = find_vgg_weights(config.vgg_weights) if spec.rgb_target else None
        if w.perceptual > 0 and weights_path is None:
            raise VggWeightsError(missing_weights_message(config.preset))
        self.vgg: VGGFeatureExtractor | None = None
        if weights_path is not None:
            self.vgg = VGGFeatureExtractor(load_vgg19_features(weights_path)).to(self.device)
            if self.channels_last:
                self.vgg = self.vgg.to(memory_format=torch.channels_last)
        self.content_loss = GeneratorLoss(
            LossWeights(w.l1, w.perceptual, w.fourier, 0.0),
            PerceptualLoss(self.vgg) if (self.vgg is not None and w.perceptual > 0) else None,
        )

        # -- models -------------------------------------------------------------------------
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        if config.generator == "rrdb":
            gkw: dict[str, Any] = {
                "features": config.features or spec.in_channels,
                "blocks": config.blocks,
                "growth": config.growth,
                "padding": DEFAULT_PADDING,
            }
        else:
            gkw = {"crop_size": spec.crop_size, "features": config.features or 64}
        if config.generator == "unet" and not self.preset.unet_innermost_norm:
            gkw["innermost_norm"] = False
        if spec.out_channels != 3:  # absent for stains: checkpoints of RGB runs are unchanged
            gkw["out_channels"] = spec.out_channels
        self.model_info = model_info(
            generator=config.generator,
            generator_kwargs=gkw,
            in_channels=spec.in_channels,
            channel_names=spec.channel_names,
            stack=spec.stack,
            target=spec.target,
            crop_size=spec.crop_size,
            pixel_size_um=spec.pixel_size_um,
        )
        self.model_info.update(
            input_components=spec.input_components,
            target_names=list(spec.target_names),
            rgb_target=spec.rgb_target,
            input_scale=None if spec.input_scale is None else list(spec.input_scale),
            target_scale=None if spec.target_scale is None else list(spec.target_scale),
        )
        self.generator = build_generator(config.generator, spec.in_channels, **gkw)
        self.critic: nn.Module | None = None
        if self.preset.gan:
            self.critic = build_discriminator(
                config.discriminator,
                crop_size=spec.crop_size,
                condition_channels=spec.in_channels,
                image_channels=spec.out_channels,
            )
        if resume_ckpt is None and config.init_from is None and config.generator == "rrdb":
            # start from the mean stained colour instead of black: otherwise a short training
            # spends its first epochs learning the background level (pale, unstained output)
            with torch.no_grad():
                self.generator.conv_last.bias.copy_(torch.from_numpy(self._mean_target_colour()))
        if resume_ckpt is None and config.init_from is not None:
            self._init_generator(config.init_from)
        elif resume_ckpt is None and self.preset.needs_init:
            raise TrainingError(
                f"preset {config.preset!r} starts from a trained maePFNET generator: pass "
                "--init-from runs/NAME (a finished maePFNET run with the same stack)"
            )
        self.generator.to(self.device)
        if self.critic is not None:
            self.critic.to(self.device)
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            if self.critic is not None:
                self.critic.to(memory_format=torch.channels_last)
        if info.enabled and self.device.type == "cuda" and config.generator == "unet":
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)

        betas = self.preset.betas
        # one fused kernel per step on GPUs instead of one per parameter tensor
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=config.lr, betas=betas, **fused
        )
        self.opt_d = (
            torch.optim.Adam(self.critic.parameters(), lr=config.lr_d, betas=betas, **fused)
            if self.critic is not None
            else None
        )
        self.sched_g = self._scheduler(self.opt_g)
        self.sched_d = self._scheduler(self.opt_d) if self.opt_d is not None else None

        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module | None = self.critic
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DDP(self.generator, device_ids=ids)
            if self.critic is not None:
                self.d_train = DDP(self.critic, device_ids=ids)
        if config.compile:
            self.g_train = torch.compile(self.g_train)

        # -- state --------------------------------------------------------------------------
        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        if resume_ckpt is not None:
            self._restore(resume_ckpt)
        self.sample_positions = self._sample_positions()
        self.columns = self._columns()

    # -- construction helpers ----------------------------------------------------------------
    def _mean_target_colour(self, max_cells: int = 512) -> np.ndarray:
        """Mean of each target channel, scaled, (up to ``max_cells`` evenly spread)."""
        rows = self.train_rows
        if len(rows) > max_cells:
            rows = rows[np.linspace(0, len(rows) - 1, max_cells).astype(np.int64)]
        with _open_dataset(self.data.spec.path) as ds:
            tds = ds.targets if self.data.spec.target == "20x" else ds.targets_highres
            targets = tds[np.unique(rows)]
        c = targets.shape[-1]
        scale = np.asarray(self.data.spec.target_scale or (255.0,) * c, np.float64)
        mean = np.clip(targets.reshape(-1, c).mean(axis=0) / scale, 0.0, 1.0)
        return mean.astype(np.float32)

    def _source(self, rows: np.ndarray, cache: str) -> BatchSource:
        stream = CellStream(self.data.spec, rows, cache=cache in ("ram", "device"))
        self._streams.append(stream)
        src = BatchSource(
            stream,
            device=self.device,
            workers=0 if cache != "none" else self.workers,
            on_device=cache == "device",
        )
        self._sources.append(src)
        return src

    def _scheduler(self, opt: torch.optim.Optimizer) -> Any:
        kind = self.config.lr_schedule
        if kind == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.config.epochs)
        if kind == "plateau":
            patience = max(1, (self.config.patience or 10) // 2)
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=0.5, patience=patience
            )
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)

    def _init_generator(self, source: Path) -> None:
        path = resolve_checkpoint(source, "best")
        ckpt = load_checkpoint(path)
        check_same_model(ckpt["model"], self.model_info, source=str(path), what="this run")
        self.generator.load_state_dict(ckpt["generator"])

    def _restore(self, ckpt: dict[str, Any]) -> None:
        check_same_model(
            ckpt["model"], self.model_info, source=str(self.run_folder.last), what="this run"
        )
        self.generator.load_state_dict(ckpt["generator"])
        if self.critic is not None:
            if ckpt.get("discriminator") is None:
                raise CheckpointError(f"{self.run_folder.last} holds no discriminator")
            self.critic.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["optimizers"]["g"])
        self.sched_g.load_state_dict(ckpt["schedulers"]["g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(ckpt["optimizers"]["d"])
            self.sched_d.load_state_dict(ckpt["schedulers"]["d"])
        es = ckpt["early_stopping"]
        self.epoch = int(ckpt["epoch"])
        self.best_val = float(es["best_val"])
        self.best_epoch = int(es["best_epoch"])
        self.bad_epochs = int(es["bad_epochs"])
        self.history = [dict(r) for r in ckpt["history"]]
        restore_rng(ckpt["rng"])

    def _sample_positions(self) -> np.ndarray:
        n = min(self.config.samples, len(self.val_rows))
        if n == 0:
            return np.empty(0, np.int64)
        return np.unique(np.linspace(0, len(self.val_rows) - 1, n).round().astype(np.int64))

    def _columns(self) -> list[str]:
        cols = ["epoch", "train_loss", "val_loss", "ssim", "psnr", "mae", "fourier"]
        if self.vgg is not None:
            cols.append("vgg")
        cols += ["lr", "train_l1"]
        w = self.weights
        if w.perceptual > 0:
            cols.append("train_perceptual")
        if w.fourier > 0:
            cols.append("train_fourier")
        if self.preset.gan:
            cols += ["train_gan", "train_d"]
        cols += ["seconds", "cells_per_s"]
        return cols

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.config
        if self.info.is_main:
            for note in self.notes:
                self.progress.note(f"note: {note}")
            self._write_config()
            write_status(
                self.run_folder,
                state="running",
                epoch=self.epoch,
                epochs=cfg.epochs,
                best_epoch=self.best_epoch,
                best_val_loss=_finite(self.best_val),
            )
        stopped_early = bool(cfg.patience and self.bad_epochs >= cfg.patience)
        if stopped_early and self.info.is_main:
            self.progress.note(
                f"{self.run_folder.path} stopped early at epoch {self.epoch} (no better "
                f"validation loss for {self.bad_epochs} epochs); raise --patience to go on"
            )
        bar = EpochProgress(self.progress)
        while not stopped_early and self.epoch < cfg.epochs:
            epoch = self.epoch + 1
            row = self._train_epoch(epoch, bar)
            row.update(self._validate())
            for sched in (self.sched_g, self.sched_d):
                if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    sched.step(row["val_loss"])
                elif sched is not None:
                    sched.step()
            improved = row["val_loss"] < self.best_val
            if improved:
                self.best_val, self.best_epoch, self.bad_epochs = row["val_loss"], epoch, 0
            else:
                self.bad_epochs += 1
            self.epoch = epoch
            self.history.append(row)
            if self.info.is_main:
                self._save_epoch(row, improved)
                bar.epoch_done(row, self.best_epoch)
            dist_utils.barrier(self.info)
            if self.on_epoch is not None:
                self.on_epoch(row)
            stopped_early = bool(cfg.patience and self.bad_epochs >= cfg.patience)
        if self.info.is_main:
            state = "stopped-early" if stopped_early else "finished"
            write_status(
                self.run_folder,
                state=state,
                epoch=self.epoch,
                epochs=cfg.epochs,
                best_epoch=self.best_epoch,
                best_val_loss=_finite(self.best_val),
            )
            from training.report import write_report

            write_report(self.run_folder.path)
        dist_utils.barrier(self.info)
        return RunResult(
            run_dir=self.run_folder.path,
            epochs_done=self.epoch,
            best_epoch=self.best_epoch,
            best_val_loss=self.best_val,
            stopped_early=stopped_early,
            history=list(self.history),
        )

    def _train_epoch(self, epoch: int, bar: EpochProgress) -> dict[str, Any]:
        cfg = self.config
        plan = plan_epoch(
            len(self.train_rows),
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            epoch=epoch,
            rank=self.info.rank,
            world_size=self.info.world_size,
        )
        self.generator.train()
        if self.critic is not None:
            self.critic.train()
        sums: dict[str, torch.Tensor] = {}
        n_local = 0
        steps = len(plan.batches)
        bar.start_epoch(epoch, cfg.epochs, steps)
        t0 = time.perf_counter()
        refresh = max(1, steps // 100)
        shown = 0
        for k, (stack, target, rows) in enumerate(self.train_source.iterate(plan.batches)):
            if self.augmenter is not None:
                stack, target = self.augmenter(stack, target, rows, epoch)
            x = network_input(stack, scale=self.in_scale)
            y = network_target(target, scale=self.out_scale)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
                y = y.contiguous(memory_format=torch.channels_last)
            if self.critic is None:
                terms = generator_step(
                    self.g_train,
                    self.content_loss,
                    self.opt_g,
                    x,
                    y,
                    scale=plan.scales[k],
                    autocast=self.autocast,
                )
            else:
                terms = gan_step(
                    self.g_train,
                    self.d_train,
                    self.content_loss,
                    self.preset.weights.gan,
                    self.opt_g,
                    self.opt_d,
                    x,
                    y,
                    scale=plan.scales[k],
                    autocast=self.autocast,
                    gan_loss=self.preset.gan_loss,
                )
            b = x.shape[0]
            for key, value in terms.items():
                acc = sums.get(key)
                sums[key] = value * b if acc is None else acc + value * b
            n_local += b
            if self.on_step is not None:
                self.on_step(StepEvent(epoch, k + 1, steps, n_local))
            if self.show_steps and ((k + 1) % refresh == 0 or k + 1 == steps):
                cells = n_local * self.info.world_size
                bar.step(k + 1 - shown, float(terms["loss"]), cells / (time.perf_counter() - t0))
                shown = k + 1
        keys = sorted(sums)
        packed = torch.stack(
            [sums[key].float() for key in keys] + [torch.tensor(float(n_local), device=self.device)]
        )
        dist_utils.all_reduce_sum(packed, self.info)
        total = float(packed[-1])
        seconds = time.perf_counter() - t0
        means = {key: float(packed[i]) / total for i, key in enumerate(keys)}
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": means.get("loss", math.nan),
            "lr": float(self.opt_g.param_groups[0]["lr"]),
            "seconds": seconds,
            "cells_per_s": total / seconds if seconds > 0 else math.nan,
        }
        for key in ("l1", "perceptual", "fourier", "gan", "d"):
            if key in means:
                row[f"train_{key}"] = means[key]
        return row

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        cfg = self.config
        plan = plan_epoch(
            len(self.val_rows),
            batch_size=max(cfg.batch_size, VAL_BATCH_MIN),
            seed=cfg.seed,
            epoch=0,
            shuffle=False,
            rank=self.info.rank,
            world_size=self.info.world_size,
            every_cell=True,
        )
        self.generator.eval()
        names = ["val_loss", "ssim", "psnr", "mae", "fourier"]
        if self.vgg is not None:
            names.append("vgg")
        sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=self.device)
        for stack, target, _rows in self.val_source.iterate(plan.batches):
            pred = predict_cells(
                self.generator,
                stack,
                autocast=self.autocast,
                channels_last=self.channels_last,
                scale=self.in_scale,
            )
            y = network_target(target, scale=self.out_scale)
            loss, _ = self.content_loss(pred, y)
            metrics = image_metrics(pred, y, vgg=self.vgg)
            b = pred.shape[0]
            values = [loss.double() * b] + [metrics[n].double().sum() for n in names[1:]]
            sums += torch.stack(
                [*values, torch.tensor(float(b), dtype=torch.float64, device=self.device)]
            )
        dist_utils.all_reduce_sum(sums, self.info)
        n = float(sums[-1])
        return {name: float(sums[i]) / n for i, name in enumerate(names)}

    # -- outputs ----------------------------------------------------------------------------
    def _checkpoint_payload(self) -> dict[str, Any]:
        spec = self.data.spec
        return {
            "epoch": self.epoch,
            "model": self.model_info,
            "generator": self.generator.state_dict(),
            "discriminator": None if self.critic is None else self.critic.state_dict(),
            "optimizers": {
                "g": self.opt_g.state_dict(),
                "d": None if self.opt_d is None else self.opt_d.state_dict(),
            },
            "schedulers": {
                "g": self.sched_g.state_dict(),
                "d": None if self.sched_d is None else self.sched_d.state_dict(),
            },
            "rng": capture_rng(),
            "early_stopping": {
                "best_val": float(self.best_val),
                "best_epoch": int(self.best_epoch),
                "bad_epochs": int(self.bad_epochs),
            },
            "history": [dict(r) for r in self.history],
            "config": self.config.to_jsonable(),
            "dataset": {
                "path": str(spec.path),
                "fingerprint": spec.fingerprint,
                "brightfield_position": spec.brightfield_position,
                "symmetries": list(self.symmetry_names),
            },
        }

    def _save_epoch(self, row: dict[str, Any], improved: bool) -> None:
        run = self.run_folder
        write_metrics(run.metrics, self.history, self.columns)
        if len(self.sample_positions):
            self._sample_grid(self.epoch)
        payload = self._checkpoint_payload()
        if improved:
            save_checkpoint(run.best, payload)
        save_checkpoint(run.last, payload)
        write_status(
            run,
            state="running",
            epoch=self.epoch,
            epochs=self.config.epochs,
            best_epoch=self.best_epoch,
            best_val_loss=_finite(self.best_val),
        )

    @torch.no_grad()
    def _sample_grid(self, epoch: int) -> None:
        batch = next(self.val_source.iterate([self.sample_positions]))
        stack, target, _rows = batch
        pred = predict_cells(
            self.generator,
            stack,
            autocast=self.autocast,
            channels_last=self.channels_last,
            scale=self.in_scale,
        )
        grid = cell_grid(self._grid_rows(stack, pred, target))
        write_image(self.run_folder.sample_grid(epoch), grid)

    def _grid_rows(
        self, stack: torch.Tensor, pred: torch.Tensor, target: torch.Tensor
    ) -> list[np.ndarray]:
        from training.channels import grid_rows

        spec = self.data.spec
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

    def _write_config(self) -> None:
        from scope._version import __version__ as scope_version

        previous: list[str] = []
        if self.config.resume and self.run_folder.config.is_file():
            previous = list(read_config(self.run_folder).get("commands", []))
        spec = self.data.spec
        doc = {
            "config": self.config.to_jsonable(),
            "commands": [*previous, shlex.join(self.command)],
            "model": self.model_info,
            "parameters": {
                "generator": count_parameters(self.generator),
                "discriminator": None if self.critic is None else count_parameters(self.critic),
            },
            "data": {
                "dataset": str(spec.path),
                "fingerprint": spec.fingerprint,
                "train_cells": len(self.train_rows),
                "val_cells": len(self.val_rows),
                "test_cells": len(self.data.splits.get("test", [])),
                "excluded_flagged": self.data.excluded_flagged,
                "excluded_no_highres": self.data.excluded_no_highres,
                "augmentation": self.symmetry_names,
            },
            "environment": {
                "scope": scope_version,
                "torch": str(torch.__version__),
                "device": describe_device(self.device),
                "precision": "bf16" if self.bf16 else "fp32",
                "channels_last": self.channels_last,
                "world_size": self.info.world_size,
                "workers": self.workers,
                "host": socket.gethostname(),
                "started": now_iso(),
            },
        }
        write_config(self.run_folder, doc)

    def mark_interrupted(self) -> None:
        """Record in ``status.json`` that the run stopped before its end (resume continues)."""
        if self.info.is_main and self.run_folder.config.is_file():
            write_status(
                self.run_folder,
                state="interrupted",
                epoch=self.epoch,
                epochs=self.config.epochs,
                best_epoch=self.best_epoch,
                best_val_loss=_finite(self.best_val),
            )

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        if self._dist_ready:
            dist_utils.teardown(self.info)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _open_dataset(path: Path) -> Any:
    from registration.dataset import Dataset

    return Dataset(path)
