"""`scope train`, `scope evaluate`, `scope stain`: thin wrappers over :mod:`training`."""

from __future__ import annotations

import os
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from hardware_profiles.presets import PRESETS as STACK_PRESETS
from scope.options import model_options, with_options
from training.config import TrainConfig
from training.options import EvaluateOptions, StainOptions
from training.presets import PRESETS as TRAINING_PRESETS


class Log(StrEnum):
    csv = "csv"
    tensorboard = "tensorboard"


class ImageFormat(StrEnum):
    png = "png"
    tif = "tif"
    none = "none"


def _value(v: Any) -> Any:
    return v.value if isinstance(v, Enum) else v


def _command_line(values: dict[str, Any]) -> list[str]:
    """The ``scope train`` call that gives these options (recorded in config.yaml)."""
    cmd = ["scope", "train", str(values["dataset"])]
    for key, value in values.items():
        if key == "dataset" or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd


TRAIN_OPTIONS = model_options(
    TrainConfig,
    [
        "preset", "stack", "target", "include_flagged", "epochs", "patience", "batch_size",
        "generator", "blocks", "features", "growth", "input_norm", "discriminator", "lr", "lr_d",
        "lr_schedule", "augment", "device", "precision", "channels_last", "compile", "workers",
        "cache", "seed", "resume", "vgg_weights", "init_from", "samples",
    ],
    choices={"preset": TRAINING_PRESETS, "stack": STACK_PRESETS},
    flags={
        "include_flagged": "--include-flagged/--exclude-flagged",
        "resume": "--resume",
        "channels_last": "--channels-last/--no-channels-last",
    },
    unset=True,  # only the options given are passed on: resume tells them from saved ones
)  # fmt: skip


@with_options(TRAIN_OPTIONS)
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset file (.dataset.h5).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder, e.g. runs/NAME.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    log: Annotated[
        Log,
        typer.Option(
            "--log",
            help="csv (metrics.csv, always written) or tensorboard (also scalars and sample "
            "grids in RUN/tensorboard/).",
        ),
    ] = Log.csv,
    **options: Any,
) -> None:
    """Train a virtual-staining network on a dataset (multi-GPU: run under torchrun)."""
    # every option but these is a field of training.config.TrainConfig (TRAIN_OPTIONS)
    from rich.console import Console

    from scope.progress import RichProgress
    from training import train as run_training

    given = {"dataset": dataset, "out": out, **options}
    from acquisition.files import Interrupted
    from training.run import RunFolder, read_status

    values = {k: _value(v) for k, v in given.items() if v is not None}
    config = TrainConfig(**values)
    board = None
    if log == Log.tensorboard:
        from training.tensorboard_log import TensorBoardLog

        board = TensorBoardLog(out)
    try:
        with RichProgress(bars=not quiet) as progress:
            result = run_training(
                config, progress=progress, command=_command_line(values), on_epoch=board
            )
    except KeyboardInterrupt:
        run = RunFolder(out)
        if run.last.is_file():
            epoch = read_status(run).get("epoch", "?")
            raise Interrupted(
                f"interrupted: {out} keeps its checkpoint of epoch {epoch}; run the same "
                "command with --resume to continue"
            ) from None
        raise Interrupted(
            f"interrupted before the first checkpoint: run the same command again to start "
            f"{out} afresh"
        ) from None
    finally:
        if board is not None:
            board.close()
    if int(os.environ.get("RANK", "0")) == 0:
        how = "stopped early" if result.stopped_early else "finished"
        Console().print(
            f"{how} after {result.epochs_done} epochs; best epoch {result.best_epoch} "
            f"(validation loss {result.best_val_loss:.5f}) → {result.report}"
        )


EVALUATE_OPTIONS = model_options(
    EvaluateOptions,
    ["split", "dataset", "checkpoint", "out", "device", "precision", "batch_size", "vgg_weights"],
)


@with_options(EVALUATE_OPTIONS)
def evaluate(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folder(s); several: also mean ± spread over runs.")
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    **options: Any,
) -> None:
    """Pixel metrics (Table 4.2), morphology agreement, tolerance level, cell-type agreement."""
    from rich.console import Console

    from hardware_profiles.errors import ScopeError
    from scope.evaluate_report import clinical_table, metrics_table, over_runs_table
    from scope.progress import RichProgress
    from training import evaluate as run_evaluation

    opts = EvaluateOptions(**{k: _value(v) for k, v in options.items()})
    if opts.out is not None and len(runs) > 1:
        raise ScopeError("--out names one folder: evaluate one run with it, or drop --out")
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a label is never wrapped in logs and pipes
    results = []
    for run in runs:
        with RichProgress(bars=not quiet) as progress:
            res = run_evaluation(run, **dict(opts), progress=progress)
        results.append(res)
        console.print(metrics_table(run, res))
        if res.get("clinical"):
            console.print(clinical_table(res))
        if res.get("mae_per_channel"):
            console.print(
                "MAE per channel: "
                + ", ".join(f"{k} {v:.4f}" for k, v in res["mae_per_channel"].items()),
                soft_wrap=True,
            )
        for note in res["notes"]:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
        where = f"per-cell measures, grids and worst-100 list in {res['dir']}"
        console.print(where, soft_wrap=True)
    if len(results) > 1:
        console.print(over_runs_table(runs, results))


STAIN_OPTIONS = model_options(
    StainOptions,
    "checkpoint device precision tile halo blend max_memory compile engine".split(),
    flags={"compile": "--compile"},
)


@with_options(STAIN_OPTIONS)
def stain(
    run: Annotated[Path, typer.Argument(help="Run folder (or checkpoint file).")],
    scan: Annotated[Path, typer.Argument(help="Unstained scan file (.scan.h5).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    positions: Annotated[
        str | None, typer.Option(help="Fields to stain, e.g. 0,3,5 (default: all acquired).")
    ] = None,
    image_format: Annotated[
        list[ImageFormat] | None,
        typer.Option("--format", help="Per-field images: png, tif or none (repeatable)."),
    ] = None,
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing", help="Skip fields whose files are missing or damaged (warns)."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace stain output written by another command.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    **options: Any,
) -> None:
    """Virtually stain whole unstained fields: images per field plus one HDF5 file."""
    from rich.console import Console

    from hardware_profiles.errors import ScopeError
    from scope.progress import RichProgress
    from training import stain_scan

    pos = None
    if positions:
        try:
            pos = [int(p) for p in positions.replace(" ", "").split(",") if p]
        except ValueError:
            raise ScopeError(
                f"--positions must be comma-separated integers, got {positions!r}"
            ) from None
    fmts = [f.value for f in (image_format or [ImageFormat.png]) if f != ImageFormat.none]
    from acquisition.scanfile import simulated_note

    if note := simulated_note(scan):
        Console().print(f"[yellow]{note}[/]", soft_wrap=True)
    opts = StainOptions(**{k: _value(v) for k, v in options.items()})
    with RichProgress(bars=not quiet) as progress:
        path = stain_scan(
            run,
            scan,
            out,
            positions=pos,
            formats=fmts,
            progress=progress,
            skip_unreadable=skip_missing,
            warn=lambda line: progress.note(f"warning: {line}", warning=True),
            force=force,
            **dict(opts),
        )
    Console().print(f"stained fields written to {out} ({path.name})")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("stain")(stain)
