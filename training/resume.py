"""Checkpoint state of a run: what ``last.pt`` holds, and how a run resumes from it.

:func:`open_run` decides whether a run starts, restarts or resumes; :func:`checkpoint_payload`
and :func:`restore_state` are inverses (models, optimisers, schedulers, RNG and early-stopping
state), which makes an interrupted and resumed run match an uninterrupted one exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from acquisition.progress import Progress
from training.checkpoint import capture_rng, check_same_model, load_checkpoint, restore_rng
from training.config import RESUME_MUTABLE, TrainConfig
from training.errors import CheckpointError, TrainingError
from training.run import RunFolder

if TYPE_CHECKING:
    from training.trainer import Trainer


def open_run(
    config: TrainConfig, run_folder: RunFolder, *, is_main: bool, progress: Progress
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The configuration to train with and, when resuming, the checkpoint to resume from.

    Refuses a folder that already holds a run unless ``config.resume``; a run that stopped
    before its first checkpoint is cleared and started afresh.
    """
    if config.resume:
        if not run_folder.last.is_file():
            raise TrainingError(
                f"nothing to resume: {run_folder.last} does not exist (start the run "
                "without --resume)"
            )
        ckpt = load_checkpoint(run_folder.last)
        return merge_for_resume(config, ckpt["config"], run_folder.path), ckpt
    if run_folder.stopped_before_checkpoint():
        # the run died before its first checkpoint: nothing to resume, start it afresh
        if is_main:
            run_folder.clear_unfinished()
            progress.note(
                f"{run_folder.path} holds a run that stopped before its first "
                "checkpoint; starting it afresh"
            )
    elif run_folder.exists():
        raise TrainingError(
            f"{run_folder.path} already holds a run; pass --resume to continue it or "
            "choose another --out"
        )
    return config, None


def merge_for_resume(given: TrainConfig, saved: dict[str, Any], source: Path) -> TrainConfig:
    """The saved configuration with the options a resume may change taken from ``given``."""
    # runs saved before the option existed were trained without standardisation
    base = TrainConfig.model_validate({"input_norm": "scale", **saved})
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


def checkpoint_payload(t: Trainer) -> dict[str, Any]:
    """Everything :func:`restore_state` needs to continue ``t`` exactly."""
    spec = t.data.spec
    return {
        "epoch": t.epoch,
        "model": t.model_info,
        "generator": t.generator.state_dict(),
        "discriminator": None if t.critic is None else t.critic.state_dict(),
        "optimizers": {
            "g": t.opt_g.state_dict(),
            "d": None if t.opt_d is None else t.opt_d.state_dict(),
        },
        "schedulers": {
            "g": t.sched_g.state_dict(),
            "d": None if t.sched_d is None else t.sched_d.state_dict(),
        },
        "rng": capture_rng(),
        "early_stopping": {
            "best_val": float(t.best_val),
            "best_epoch": int(t.best_epoch),
            "bad_epochs": int(t.bad_epochs),
        },
        "history": [dict(r) for r in t.history],
        "config": t.config.to_jsonable(),
        "dataset": {
            "path": str(spec.path),
            "fingerprint": spec.fingerprint,
            "brightfield_position": spec.brightfield_position,
            "symmetries": list(t.symmetry_names),
        },
    }


def restore_state(t: Trainer, ckpt: dict[str, Any]) -> None:
    """Put ``t`` back in the state :func:`checkpoint_payload` saved."""
    check_same_model(ckpt["model"], t.model_info, source=str(t.run_folder.last), what="this run")
    t.generator.load_state_dict(ckpt["generator"])
    if t.critic is not None:
        if ckpt.get("discriminator") is None:
            raise CheckpointError(f"{t.run_folder.last} holds no discriminator")
        t.critic.load_state_dict(ckpt["discriminator"])
    t.opt_g.load_state_dict(ckpt["optimizers"]["g"])
    t.sched_g.load_state_dict(ckpt["schedulers"]["g"])
    if t.opt_d is not None:
        t.opt_d.load_state_dict(ckpt["optimizers"]["d"])
        t.sched_d.load_state_dict(ckpt["schedulers"]["d"])
    es = ckpt["early_stopping"]
    t.epoch = int(ckpt["epoch"])
    t.best_val = float(es["best_val"])
    t.best_epoch = int(es["best_epoch"])
    t.bad_epochs = int(es["bad_epochs"])
    t.history = [dict(r) for r in ckpt["history"]]
    restore_rng(ckpt["rng"])
