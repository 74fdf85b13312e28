"""``scope train``: the training loop, checkpoints, early stopping, exact resume, DDP.

One epoch = every training cell once in a seeded order (:func:`training.batches.plan_epoch`),
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
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acquisition.progress import NO_PROGRESS, Progress, or_null
from acquisition.vocabulary import Split
from training import distributed as dist_utils
from training.augment import Augmenter, stack_symmetries
from training.batches import BatchSource, CellStream
from training.build import (
    build_losses,
    build_networks,
    build_optimisers,
    build_scheduler,
    data_workers,
    describe_model,
    generator_kwargs,
    init_generator_from,
    input_statistics,
    mean_target_colour,
    metric_columns,
    place,
    resolve_options,
    seed_everything,
    wrap_for_training,
)
from training.channels import scale_tensor
from training.config import TrainConfig
from training.data import (
    TrainingData,
    open_training_data,
)
from training.device import (
    autocast_factory,
    compute_on,
    default_channels_last,
    resolve_device,
    use_bf16,
)
from training.epoch import StepEvent, train_epoch, validate
from training.epoch_outputs import sample_positions, save_epoch, write_run_config, write_state
from training.epoch_progress import EpochProgress
from training.errors import TrainingError
from training.predict import predict_cells
from training.presets import get_preset
from training.resume import open_run, restore_state
from training.run import RunFolder


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


class Trainer:
    """Holds the state of one training run; :meth:`run` trains to the end.

    Built in a fixed order (run folder and options, device, data, losses, networks,
    optimisers, resumed state) by :mod:`training.build` and :mod:`training.resume`.
    """

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

        config, resume_ckpt = open_run(
            config, self.run_folder, is_main=info.is_main, progress=self.progress
        )
        self.preset = get_preset(config.preset)
        self.config = config = resolve_options(config, self.preset)
        self._setup_device()
        self._setup_data(resume_ckpt)
        losses = build_losses(config, self.preset, self.data.spec, self.device, self.channels_last)
        self.weights, self.vgg, self.content_loss = losses.weights, losses.vgg, losses.content
        #: said once at the start
        self.notes: list[str] = losses.notes
        self._setup_networks(resumed=resume_ckpt is not None)

        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        if resume_ckpt is not None:
            restore_state(self, resume_ckpt)
        self.sample_positions = sample_positions(len(self.val_rows), config.samples)
        self.columns = metric_columns(self.vgg, self.weights, self.preset.gan)

    def _setup_device(self) -> None:
        config, info = self.config, self.info
        self.device = resolve_device(config.device, local_rank=info.local_rank)
        self.bf16 = use_bf16(config.precision, self.device, inference=False)
        self.autocast = autocast_factory(self.device, self.bf16)
        self.channels_last = (
            config.channels_last
            if config.channels_last is not None
            else default_channels_last(self.device, self.bf16)
        )
        self.workers = data_workers(config, self.device)
        dist_utils.setup(info, self.device)
        self._dist_ready = info.enabled
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed 64x64 shapes: pick the fastest kernels

    def _setup_data(self, resume_ckpt: dict[str, Any] | None) -> None:
        config = self.config
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
        self.train_rows = self.data.indices(Split.TRAIN)
        self.val_rows = self.data.indices(Split.VAL)
        if len(self.train_rows) < self.info.world_size:
            raise TrainingError(
                f"{len(self.train_rows)} training cells cannot be shared by "
                f"{self.info.world_size} processes"
            )
        cache = config.cache
        if cache == "device" and self.device.type != "cuda":
            cache = "ram"
        self.train_source = self._source(self.train_rows, cache)
        self.val_source = self._source(self.val_rows, cache)
        self.augmenter: Augmenter | None = None
        if config.augment:
            from registration.dataset import Dataset

            with Dataset(spec.path) as ds:
                syms = stack_symmetries(ds.channels, spec.channel_indices, profile=ds.profile)
            self.augmenter = Augmenter(syms, seed=config.seed)
        self.symmetry_names = (
            [s.name for s in self.augmenter.symmetries] if self.augmenter else ["identity"]
        )
        self.in_scale = scale_tensor(spec.input_scale, self.device)
        self.out_scale = scale_tensor(spec.target_scale, self.device)

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

    def _setup_networks(self, *, resumed: bool) -> None:
        config, spec, preset = self.config, self.data.spec, self.preset
        seed_everything(config.seed)
        stats = (
            input_statistics(spec, self.train_rows) if config.input_norm == "standardise" else None
        )
        gkw = generator_kwargs(config, preset, spec, stats)
        self.model_info = describe_model(config, spec, gkw)
        self.generator, self.critic = build_networks(config, preset, spec, gkw)
        if not resumed and config.init_from is None and config.generator == "rrdb":
            # start from the mean stained colour instead of black: otherwise a short training
            # spends its first epochs learning the background level (pale, unstained output)
            colour = mean_target_colour(spec, self.train_rows)
            with torch.no_grad():
                self.generator.conv_last.bias.copy_(torch.from_numpy(colour))
        if not resumed and config.init_from is not None:
            init_generator_from(self.generator, config.init_from, self.model_info)
        elif not resumed and preset.needs_init:
            raise TrainingError(
                f"preset {config.preset!r} starts from a trained maePFNET generator: pass "
                "--init-from runs/NAME (a finished maePFNET run with the same stack)"
            )
        place(compute_on(self.generator, self.device), self.device, self.channels_last)
        place(self.critic, self.device, self.channels_last)
        if self.info.enabled and self.device.type == "cuda" and config.generator == "unet":
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
        self.opt_g, self.opt_d = build_optimisers(
            self.generator, self.critic, config, preset, self.device
        )
        self.sched_g = build_scheduler(self.opt_g, config)
        self.sched_d = build_scheduler(self.opt_d, config) if self.opt_d is not None else None
        self.g_train, self.d_train = wrap_for_training(
            self.generator, self.critic, self.info, self.device, config.compile
        )

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.config
        if self.info.is_main:
            for note in self.notes:
                self.progress.note(f"note: {note}")
            write_run_config(self)
            write_state(self, "running")
        stopped_early = bool(cfg.patience and self.bad_epochs >= cfg.patience)
        if stopped_early and self.info.is_main:
            self.progress.note(
                f"{self.run_folder.path} stopped early at epoch {self.epoch} (no better "
                f"validation loss for {self.bad_epochs} epochs); raise --patience to go on"
            )
        bar = EpochProgress(self.progress)
        while not stopped_early and self.epoch < cfg.epochs:
            epoch = self.epoch + 1
            row = train_epoch(self, epoch, bar)
            row.update(validate(self))
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
                save_epoch(self, improved)
                bar.epoch_done(row, self.best_epoch)
            dist_utils.barrier(self.info)
            if self.on_epoch is not None:
                self.on_epoch(row)
            stopped_early = bool(cfg.patience and self.bad_epochs >= cfg.patience)
        if self.info.is_main:
            write_state(self, "stopped-early" if stopped_early else "finished")
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

    def predict(self, stack: torch.Tensor) -> torch.Tensor:
        """The generator's output for a batch of uint8 stacks (as in validation)."""
        return predict_cells(
            self.generator,
            stack,
            autocast=self.autocast,
            channels_last=self.channels_last,
            scale=self.in_scale,
        )

    def mark_interrupted(self) -> None:
        """Record in ``status.json`` that the run stopped before its end (resume continues)."""
        if self.info.is_main and self.run_folder.config.is_file():
            write_state(self, "interrupted")

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        if self._dist_ready:
            dist_utils.teardown(self.info)
