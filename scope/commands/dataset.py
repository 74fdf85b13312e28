"""`scope dataset info|merge|split|label|simulate|import`: inspect, combine, re-split, label,
simulate and import datasets."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

dataset_app = typer.Typer(no_args_is_help=True, help="Datasets: inspect, merge, re-split, label.")


class SplitBy(StrEnum):
    auto = "auto"
    slide = "slide"
    blocks = "blocks"


FractionsOpt = Annotated[str, typer.Option("--fractions", help="train:val:test, e.g. 8:1:1.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the assignment.")]
ByOpt = Annotated[
    SplitBy, typer.Option("--by", help="auto: by slide with ≥ 5 slides, else by spatial blocks.")
]
BlockOpt = Annotated[float, typer.Option("--block-um", min=1.0, help="Spatial block side, µm.")]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Replace an existing dataset --out written by another command."),
]


@dataset_app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="A NAME.dataset.h5 file.")],
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid",
            help="Also save a PNG of cells: input brightfield | stained | "
            "100x target (flagged cells framed red).",
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=400, help="Cells in the grid.")] = 24,
    clean_only: Annotated[
        bool, typer.Option("--clean-only", help="Grid: unflagged cells only.")
    ] = False,
    seed: SeedOpt = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Counts of cells, splits and QC flags; optionally a picture grid to check matches."""
    from rich.console import Console

    from acquisition.scanfile import simulated_note
    from registration.dataset_info import describe_dataset, description_json, preview_grid
    from scope.dataset_tables import render_description

    console = Console()
    if note := simulated_note(path):
        Console(stderr=as_json).print(f"[yellow]{note}[/]", soft_wrap=True)
    if as_json:
        typer.echo(description_json(path))
    else:
        console.print(render_description(describe_dataset(path)))
    if grid is not None:
        out = preview_grid(path, grid, n=n, seed=seed, include_flagged=not clean_only)
        console.print(f"grid written to {out}")


@dataset_app.command("merge")
def merge(
    paths: Annotated[list[Path], typer.Argument(help="Datasets to merge (same channels).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged dataset to write.")],
    fractions: FractionsOpt = "8:1:1",
    seed: SeedOpt = 0,
    by: ByOpt = SplitBy.auto,
    block_um: BlockOpt = 400.0,
    force: ForceOpt = False,
) -> None:
    """Merge datasets of several slides and assign train/val/test afresh."""
    from rich.console import Console

    from registration.manage import merge_datasets
    from registration.splits import describe_mode, parse_fractions
    from scope._version import __version__

    s = merge_datasets(
        paths,
        out,
        fractions=parse_fractions(fractions),
        seed=seed,
        by=by.value,
        block_um=block_um,
        software_version=__version__,
        force=force,
    )
    n = len(paths)
    Console().print(
        f"merged {n} dataset{'s' if n != 1 else ''} ({s.n_slides} "
        f"slide{'s' if s.n_slides != 1 else ''}) into {s.path}: "
        + ", ".join(f"{k} {v}" for k, v in s.counts.items())
        + f" ({describe_mode(s.by, s.n_slides)})"
    )


@dataset_app.command("split")
def split(
    path: Annotated[Path, typer.Argument(help="The dataset to re-split (in place).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write a copy instead.")] = None,
    fractions: FractionsOpt = "8:1:1",
    seed: SeedOpt = 0,
    by: ByOpt = SplitBy.auto,
    block_um: BlockOpt = 400.0,
    force: ForceOpt = False,
) -> None:
    """Assign train/val/test again: by slide (≥ 5 slides) or by spatial blocks, seeded."""
    from rich.console import Console

    from registration.manage import resplit_dataset
    from registration.splits import describe_mode, parse_fractions

    s = resplit_dataset(
        path,
        out=out,
        fractions=parse_fractions(fractions),
        seed=seed,
        by=by.value,
        block_um=block_um,
        force=force,
    )
    Console().print(
        f"{s.path}: "
        + ", ".join(f"{k} {v}" for k, v in s.counts.items())
        + f" ({describe_mode(s.by, s.n_slides)})"
    )


@dataset_app.command("label")
def label(
    path: Annotated[Path, typer.Argument(help="The dataset to label (in place).")],
    labels: Annotated[
        Path, typer.Argument(help="CSV with columns row,type (row as in evaluate's cells.csv).")
    ],
) -> None:
    """Add white-cell types (neutrophil, lymphocyte, monocyte, eosinophil, basophil)."""
    from rich.console import Console

    from registration.labels import label_dataset

    s = label_dataset(path, labels)
    Console().print(
        f"{s.path}: {s.labelled} labelled cells ("
        + ", ".join(f"{k} {v}" for k, v in s.counts.items())
        + ")",
        soft_wrap=True,
    )


class SimTarget(StrEnum):
    stain = "stain"
    fluorescence = "fluorescence"


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@dataset_app.command("simulate")
def simulate(
    out: Annotated[Path, typer.Argument(help="The NAME.dataset.h5 to write.")],
    target: Annotated[
        SimTarget,
        typer.Option(help="stain: stained RGB crops; fluorescence: a uint16 nuclear stain."),
    ] = SimTarget.stain,
    profile: Annotated[str, typer.Option(help="Hardware profile rendered.")] = "pls43",
    cells: Annotated[int, typer.Option("--cells", min=3, help="White cells per slide.")] = 40,
    slides: Annotated[int, typer.Option("--slides", min=1, help="Virtual slides.")] = 1,
    crop_size: Annotated[int, typer.Option("--crop-size", min=16, help="Crop side, px.")] = 64,
    seed: SeedOpt = 0,
) -> None:
    """A training dataset rendered by the simulator (no scan or registration needed)."""
    from rich.console import Console

    from scope.progress import RichProgress
    from training.simulated import simulate_dataset

    with RichProgress() as progress:
        path = simulate_dataset(
            out,
            profile=profile,
            slides=tuple(f"sim-{k}" for k in range(slides)),
            cells_per_slide=cells,
            crop_size=crop_size,
            seed=seed,
            target=target.value,
            progress=progress,
        )
    Console().print(f"simulated {slides * cells} cells ({target.value} targets) into {path}")


import_app = typer.Typer(no_args_is_help=True, help="Import public datasets (already downloaded).")


@import_app.command("bsccm")
def import_bsccm_cmd(
    root: Annotated[Path, typer.Argument(help="The extracted BSCCM folder (e.g. BSCCM-tiny).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The NAME.dataset.h5 to write.")],
    channels: Annotated[
        str | None,
        typer.Option(help="LED-array inputs, comma-separated (default all; Brightfield always)."),
    ] = None,
    targets: Annotated[
        str | None, typer.Option(help="Fluorescence targets, comma-separated (default all).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Keep this many cells (seeded).")
    ] = None,
    antibodies: Annotated[
        str | None, typer.Option(help="Only this antibody condition (e.g. all).")
    ] = None,
    fractions: FractionsOpt = "8:1:1",
    seed: SeedOpt = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
) -> None:
    """BSCCM (LED-array → fluorescence) through the bsccm package; scope never downloads."""
    from rich.console import Console

    from registration.dataset import DatasetError
    from registration.import_bsccm import import_bsccm
    from registration.splits import parse_fractions
    from scope._version import __version__
    from scope.progress import RichProgress

    if out.exists() and not force:
        raise DatasetError(f"{out} already exists; pass --force to replace it")
    with RichProgress() as progress:
        path = import_bsccm(
            root,
            out,
            channels=_names(channels),
            targets=_names(targets),
            limit=limit,
            antibodies=antibodies,
            seed=seed,
            fractions=parse_fractions(fractions),
            software_version=__version__,
            progress=progress,
        )
    from registration.dataset import Dataset

    with Dataset(path) as ds:
        counts = {s: int((ds.cells["split"] == s).sum()) for s in ("train", "val", "test")}
        Console().print(
            f"imported {len(ds)} BSCCM cells into {path}: {ds.inputs.shape[1]} LED-array "
            f"channels → {', '.join(ds.target_names)}; "
            + ", ".join(f"{k} {v}" for k, v in counts.items()),
            soft_wrap=True,
        )


dataset_app.add_typer(import_app, name="import")


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
