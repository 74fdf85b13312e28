"""`scope train`, `scope evaluate`, `scope stain`: thin wrappers over :mod:`training`."""

from __future__ import annotations

import os
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer


class Preset(StrEnum):
    maeNET = "maeNET"
    maePNET = "maePNET"
    maePFNET = "maePFNET"
    maePF_RpGAN_SN = "maePF-RpGAN-SN"
    pix2pix = "pix2pix"


class Stack(StrEnum):
    full = "full"
    full_nohe = "full-nohe"
    le36 = "le36"
    le36_nohe = "le36-nohe"
    le18 = "le18"
    le8 = "le8"
    brightfield = "brightfield"


class Target(StrEnum):
    x20 = "20x"
    highres = "highres"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Generator(StrEnum):
    rrdb = "rrdb"
    unet = "unet"


class Critic(StrEnum):
    vgg = "vgg"
    patch = "patch"


class Schedule(StrEnum):
    constant = "constant"
    cosine = "cosine"
    plateau = "plateau"


class Cache(StrEnum):
    none = "none"
    ram = "ram"
    device = "device"


class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


class Checkpoint(StrEnum):
    best = "best"
    last = "last"


class Engine(StrEnum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


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


def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset file (.dataset.h5).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder, e.g. runs/NAME.")],
    preset: Annotated[
        Preset | None, typer.Option(help="Loss preset (default maePFNET; needs VGG19 weights).")
    ] = None,
    stack: Annotated[Stack | None, typer.Option(help="Stack preset (default full-nohe).")] = None,
    target: Annotated[Target | None, typer.Option(help="20x or highres (default 20x).")] = None,
    include_flagged: Annotated[
        bool | None, typer.Option("--include-flagged/--exclude-flagged", help="QC-flagged cells.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs (200).")] = None,
    patience: Annotated[
        int | None, typer.Option(min=1, help="Early-stopping patience in epochs (10).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Cells per step and process (preset: 20).")
    ] = None,
    generator: Annotated[
        Generator | None, typer.Option(help="rrdb (thesis) or unet (preset's).")
    ] = None,
    blocks: Annotated[int | None, typer.Option(min=1, help="RRDB blocks (4).")] = None,
    features: Annotated[
        int | None, typer.Option(min=1, help="Generator width (default: input channels).")
    ] = None,
    growth: Annotated[int | None, typer.Option(min=1, help="RRDB growth channels (32).")] = None,
    discriminator: Annotated[
        Critic | None, typer.Option(help="GAN critic: vgg (thesis) or patch (preset's).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Generator learning rate (2e-4).")] = None,
    lr_d: Annotated[float | None, typer.Option(help="Critic learning rate (4e-4).")] = None,
    lr_schedule: Annotated[Schedule | None, typer.Option(help="Learning-rate schedule.")] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment", help="Flips/rotations that respect the LEDs."),
    ] = None,
    device: Annotated[Device | None, typer.Option(help="auto, cpu or cuda.")] = None,
    precision: Annotated[Precision | None, typer.Option(help="auto, fp32 or bf16.")] = None,
    compile_: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the generator.")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data-loading processes.")] = None,
    cache: Annotated[Cache | None, typer.Option(help="Keep cells in ram or on the device.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (0).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out (or extend it).")
    ] = False,
    vgg_weights: Annotated[
        Path | None, typer.Option(help="torchvision VGG19 ImageNet weights (.pth).")
    ] = None,
    init_from: Annotated[
        Path | None, typer.Option(help="Run or checkpoint whose generator starts this run.")
    ] = None,
    samples: Annotated[int | None, typer.Option(min=0, help="Cells in sample grids (8).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    log: Annotated[
        Log,
        typer.Option(
            "--log",
            help="csv (metrics.csv, always written) or tensorboard (also scalars and sample "
            "grids in RUN/tensorboard/).",
        ),
    ] = Log.csv,
) -> None:
    """Train a virtual-staining network on a dataset (multi-GPU: run under torchrun)."""
    from rich.console import Console

    from scope.progress import RichProgress
    from training import train as run_training
    from training.config import TrainConfig

    given = {
        "dataset": dataset,
        "out": out,
        "preset": preset,
        "stack": stack,
        "target": target,
        "include_flagged": include_flagged,
        "epochs": epochs,
        "patience": patience,
        "batch_size": batch_size,
        "generator": generator,
        "blocks": blocks,
        "features": features,
        "growth": growth,
        "discriminator": discriminator,
        "lr": lr,
        "lr_d": lr_d,
        "lr_schedule": lr_schedule,
        "augment": augment,
        "device": device,
        "precision": precision,
        "compile": compile_,
        "workers": workers,
        "cache": cache,
        "seed": seed,
        "resume": resume,
        "vgg_weights": vgg_weights,
        "init_from": init_from,
        "samples": samples,
    }
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


def evaluate(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folder(s); several: also mean ± spread over runs.")
    ],
    split: Annotated[Split, typer.Option(help="Dataset split to evaluate.")] = Split.test,
    dataset: Annotated[Path | None, typer.Option(help="Dataset file (default: the run's).")] = None,
    checkpoint: Annotated[Checkpoint, typer.Option(help="best or last.")] = Checkpoint.best,
    out: Annotated[Path | None, typer.Option(help="Output folder (RUN/eval/SPLIT).")] = None,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    precision: Annotated[Precision, typer.Option(help="auto, fp32 or bf16.")] = Precision.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Cells per forward pass.")] = 64,
    vgg_weights: Annotated[
        Path | None, typer.Option(help="VGG19 weights for the VGG metric.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Pixel metrics (Table 4.2), morphology agreement, tolerance level, cell-type agreement."""
    from rich.console import Console

    from hardware_profiles.errors import ScopeError
    from scope.evaluate_report import clinical_table, metrics_table, over_runs_table
    from scope.progress import RichProgress
    from training import evaluate as run_evaluation

    if out is not None and len(runs) > 1:
        raise ScopeError("--out names one folder: evaluate one run with it, or drop --out")
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a label is never wrapped in logs and pipes
    results = []
    for run in runs:
        with RichProgress(bars=not quiet) as progress:
            res = run_evaluation(
                run,
                split=split.value,
                dataset=dataset,
                checkpoint=checkpoint.value,
                out=out,
                device=device.value,
                precision=precision.value,
                batch_size=batch_size,
                vgg_weights=vgg_weights,
                progress=progress,
            )
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


def stain(
    run: Annotated[Path, typer.Argument(help="Run folder (or checkpoint file).")],
    scan: Annotated[Path, typer.Argument(help="Unstained scan file (.scan.h5).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    positions: Annotated[
        str | None, typer.Option(help="Fields to stain, e.g. 0,3,5 (default: all acquired).")
    ] = None,
    checkpoint: Annotated[Checkpoint, typer.Option(help="best or last.")] = Checkpoint.best,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    precision: Annotated[
        Precision, typer.Option(help="auto (bf16 on GPUs and AMX CPUs), fp32, bf16.")
    ] = Precision.auto,
    tile: Annotated[int | None, typer.Option(min=16, help="Tile core size in pixels.")] = None,
    halo: Annotated[
        int | None, typer.Option(min=0, help="Context around tiles (default: exact).")
    ] = None,
    blend: Annotated[int, typer.Option(min=0, help="Tile overlap blended, pixels.")] = 16,
    image_format: Annotated[
        list[ImageFormat] | None,
        typer.Option("--format", help="Per-field images: png, tif or none (repeatable)."),
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the generator (many fields).")
    ] = False,
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
    engine: Annotated[
        Engine,
        typer.Option(
            help="torch, onnx (onnxruntime on the CPU; exports RUN to ONNX once, cached in "
            "RUN/export/) or auto (the faster for the device)."
        ),
    ] = Engine.auto,
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
    with RichProgress(bars=not quiet) as progress:
        path = stain_scan(
            run,
            scan,
            out,
            positions=pos,
            checkpoint=checkpoint.value,
            device=device.value,
            precision=precision.value,
            tile=tile,
            halo=halo,
            blend=blend,
            formats=fmts,
            compile=compile_,
            progress=progress,
            skip_unreadable=skip_missing,
            warn=lambda line: Console(stderr=True).print(f"[yellow]warning:[/] {line}"),
            force=force,
            engine=engine.value,
        )
    Console().print(f"stained fields written to {out} ({path.name})")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("stain")(stain)
