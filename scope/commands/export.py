"""`scope export scan|dataset|model`: scope's files in open formats (OME-Zarr, OME-TIFF, ONNX)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

export_app = typer.Typer(
    no_args_is_help=True,
    help="Export scans and datasets to OME-Zarr / OME-TIFF, models to ONNX.",
)


class ImageTarget(StrEnum):
    ome_zarr = "ome-zarr"
    ome_tiff = "ome-tiff"


class ModelTarget(StrEnum):
    onnx = "onnx"
    bioimageio = "bioimageio"


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output path.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _indices(text: str | None, option: str) -> list[int] | None:
    from hardware_profiles.errors import ScopeError

    if not text:
        return None
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise ScopeError(f"{option} must be comma-separated integers, got {text!r}") from None


def _run_export(func, source: Path, out: Path, to: str, quiet: bool, **kw) -> None:
    from rich.console import Console

    from scope.progress import RichProgress

    # one bar on stderr: frames written, MB and MB/s (the shared progress protocol)
    with RichProgress(bars=not quiet) as progress:
        path, n, raw = func(source, out, to=to, progress=progress, **kw)
    Console(soft_wrap=True).print(f"{path}: {n} images, {raw / 1e6:.1f} MB of pixels as {to}")


@export_app.command("scan")
def scan(
    file: Annotated[Path, typer.Argument(help="A .scan.h5 file.")],
    to: Annotated[ImageTarget, typer.Option("--to", help="ome-zarr or ome-tiff.")],
    out: OutOpt,
    fields: Annotated[
        str | None, typer.Option(help="Fields to export, e.g. 0,3,5 (default: all acquired).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """A scan as OME-Zarr (one image per field) or one OME-TIFF (one series per field)."""
    from acquisition.export_scan import export_scan

    _run_export(export_scan, file, out, to.value, quiet, fields=_indices(fields, "--fields"))


@export_app.command("dataset")
def dataset(
    file: Annotated[Path, typer.Argument(help="A .dataset.h5 file.")],
    to: Annotated[ImageTarget, typer.Option("--to", help="ome-zarr or ome-tiff.")],
    out: OutOpt,
    cells: Annotated[
        str | None, typer.Option(help="Cells (rows) to export, e.g. 0,1,2 (default: all).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """A dataset's crops, one image per cell: its stack, then the stained targets."""
    from registration.export_dataset import export_dataset

    _run_export(export_dataset, file, out, to.value, quiet, cells=_indices(cells, "--cells"))


@export_app.command("model")
def model(
    run: Annotated[Path, typer.Argument(help="Run folder (or checkpoint file).")],
    to: Annotated[
        ModelTarget, typer.Option("--to", help="onnx, or bioimageio (a package folder).")
    ],
    out: OutOpt,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    opset: Annotated[int, typer.Option(min=17, help="ONNX opset.")] = 18,
    author: Annotated[str, typer.Option(help="bioimageio: the model's author.")] = "",
    cite: Annotated[str, typer.Option(help="bioimageio: a URL or DOI to cite.")] = "",
    license_: Annotated[
        str, typer.Option("--license", help="bioimageio: SPDX license of the weights.")
    ] = "CC-BY-4.0",
) -> None:
    """A run's generator as one ONNX file (dynamic height and width) or a bioimage.io package."""
    from rich.console import Console

    from hardware_profiles.errors import ScopeError
    from training.checkpoint import generator_from_checkpoint, load_checkpoint, resolve_checkpoint
    from training.export_onnx import export_onnx

    if checkpoint not in ("best", "last"):
        raise ScopeError(f"--checkpoint must be best or last, got {checkpoint!r}")
    if to == ModelTarget.bioimageio:
        from training.bioimageio_package import write_bioimageio

        if not author or not cite:
            raise ScopeError("--to bioimageio needs --author NAME and --cite URL (or DOI)")
        rdf = write_bioimageio(
            run, out, author=author, cite=cite, license=license_, checkpoint=checkpoint
        )
        Console(soft_wrap=True).print(f"{rdf}: bioimage.io package, validated offline")
        return
    ckpt = load_checkpoint(resolve_checkpoint(run, checkpoint))
    info = {**ckpt["model"], "epoch": int(ckpt["epoch"])}
    path = export_onnx(generator_from_checkpoint(ckpt), out, model_info=info, opset=opset)
    n_in = len(ckpt["model"].get("channel_names", []))
    Console(soft_wrap=True).print(
        f"{path}: input 'input' (1, {3 * n_in}, height, width) float32 in [0, 1] "
        f"({n_in} images, image-major RGB), output 'output' (1, 3, height, width); opset {opset}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
