"""`scope match`: register an unstained and a stained scan into a dataset; add 100x targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer

from scope.commands.segment import DETECTION_OPTIONS
from scope.options import with_options


class PhaseProgress:
    """A rich progress bar per pipeline phase, fed by ``progress(phase, done, total)``."""

    LABELS: ClassVar[dict[str, str]] = {
        "survey": "coarse match + WBC detection",
        "fine": "fine match (SSIM)",
        "extract": "crops + QC",
        "write": "writing dataset",
        "scale": "100x: magnification",
        "targets": "100x: targets",
    }

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("fields"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(self.LABELS.get(phase, phase), total=total)
        self.progress.update(self.tasks[phase], completed=done, total=total)

    def __enter__(self) -> PhaseProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _summary_table(s):
    from rich.table import Table

    t = Table(title=f"scope match — slide {s.slide}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    status = ", ".join(f"{n} {k}" for k, n in s.field_status.items() if n)
    t.add_row(
        "fields",
        f"{s.n_fields} ({status}" + (f", {s.n_blank} blank skipped" if s.n_blank else "") + ")",
    )
    t.add_row(
        "slide moved",
        f"{s.transform.theta_deg:+.4f}°, ({s.transform.tx:+.2f}, "
        f"{s.transform.ty:+.2f}) µm; fit rms {s.fit_rms_px:.2f} px",
    )
    t.add_row("WBCs", f"{s.n_detected} detected, {s.n_duplicates} seen twice, {s.n_cells} kept")
    flagged = ", ".join(f"{k} {v}" for k, v in sorted(s.flag_counts.items())) or "none"
    t.add_row("QC flags", flagged)
    t.add_row("median SSIM", f"{s.median_ssim:.3f}")
    if s.misaligned_channels:
        t.add_row(
            "PLS glitches", f"{s.misaligned_channels} channel images shifted against brightfield"
        )
    t.add_row("time", f"{s.seconds:.1f} s")
    t.add_row("wrote", f"{s.dataset}\n{s.cells_csv}")
    return t


def _highres_table(s):
    from rich.table import Table

    t = Table(title="scope match --highres", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    t.add_row(
        "cells",
        f"{s.n_cells} in the dataset, {s.n_imaged} imaged at 100x, "
        f"{s.n_matched} with a 100x target",
    )
    t.add_row(
        "magnification",
        f"{s.ratio:.4f} (nominal {s.nominal_ratio:g}; spread {s.ratio_spread:.4f} over cells)",
    )
    t.add_row("median score", f"{s.median_score:.3f}")
    if s.reasons:
        t.add_row("no target", ", ".join(f"{k}: {v}" for k, v in s.reasons.items()))
    t.add_row("time", f"{s.seconds:.1f} s")
    t.add_row("wrote", str(s.dataset))
    return t


@with_options(DETECTION_OPTIONS)
def match(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="UNSTAINED.scan.h5 STAINED.scan.h5, or with --highres the "
            "NAME.dataset.h5 to extend."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Dataset to write (default: <slide>.dataset.h5 beside "
            "the stained scan; with --highres: replace the dataset).",
        ),
    ] = None,
    highres: Annotated[
        Path | None,
        typer.Option("--highres", help="A highres scan: add 100x targets to the dataset."),
    ] = None,
    stained: Annotated[
        Path | None,
        typer.Option(
            "--stained", help="With --highres: the stained scan, if it moved since scope match."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Processes working on fields in parallel.")
    ] = 1,
    crop_size: Annotated[int, typer.Option("--crop-size", min=16, help="Crop side, px.")] = 64,
    search_px: Annotated[
        int, typer.Option("--search-px", min=1, max=32, help="Fine search half-width, px.")
    ] = 5,
    margin_um: Annotated[
        float,
        typer.Option(
            "--margin-um", min=1.0, help="Coarse search margin, µm (capped at 40 % of the frame)."
        ),
    ] = 77.0,
    min_ssim: Annotated[
        float, typer.Option("--min-ssim", help="Flag fine matches below this SSIM.")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the default split.")] = 0,
    fractions: Annotated[str, typer.Option("--fractions", help="train:val:test.")] = "8:1:1",
    block_um: Annotated[
        float, typer.Option("--block-um", min=1.0, help="Spatial block of the default split, µm.")
    ] = 400.0,
    wbc_param: Annotated[
        list[str] | None,
        typer.Option(
            "--wbc-param",
            help="Override any WBC detection parameter, NAME=VALUE (as scope segment "
            "--param; see docs/registration.md).",
        ),
    ] = None,
    skip_blank: Annotated[
        bool, typer.Option("--skip-blank", help="Match around blank fields instead of stopping.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a dataset --out written by another command (it may hold 100x "
            "targets), and match scans that do not look like one slide.",
        ),
    ] = False,
    **detection: Any,
) -> None:
    """Register scans into a dataset of matched cell crops (and add 100x targets).

    [bold]scope match UNSTAINED.scan.h5 STAINED.scan.h5 --out NAME.dataset.h5[/]: coarse edge
    correlation per field, one rigid slide transform, WBC detection, SSIM fine match, PLS
    crops and QC flags; writes NAME.dataset.h5 and NAME.cells.csv (stained-pass stage µm, for
    [bold]scope scan --pass highres --cells[/]).

    [bold]scope match --highres HIGHRES.scan.h5 NAME.dataset.h5[/]: matches each cell's 100x
    image to its 20x crop, measures the magnification ratio and adds 100x targets.
    """
    import dataclasses

    from rich.console import Console

    from hardware_profiles.errors import ScopeError
    from scope._version import __version__

    console = Console()
    if highres is not None:
        if len(files) != 1:
            raise ScopeError(
                "with --highres give exactly one dataset: scope match --highres "
                "HIGHRES.scan.h5 NAME.dataset.h5"
            )
        from registration.highres_dataset import add_highres

        with PhaseProgress(console) as progress:
            summary = add_highres(
                files[0],
                highres,
                out=out,
                stained=stained,
                workers=workers,
                progress=progress,
                software_version=__version__,
                force=force,
            )
        console.print(_highres_table(summary))
        return
    if len(files) != 2:
        raise ScopeError(
            "give two scans: scope match UNSTAINED.scan.h5 STAINED.scan.h5 --out NAME.dataset.h5"
        )
    from registration.match import MatchOptions, match_scans
    from registration.qc import QcOptions
    from registration.splits import parse_fractions

    unstained, stained_scan = files
    _note_simulated(files)
    for f in files:
        if not f.exists():
            raise ScopeError(f"{f} does not exist")
    if out is None:
        from acquisition.scanfile import ScanFile

        # the default name comes from the stained scan's slide (a checked name)
        with ScanFile(stained_scan) as sf:
            out = stained_scan.parent / f"{sf.slide}.dataset.h5"
    from scope.commands.segment import detection_params

    options = MatchOptions(
        wbc=detection_params(wbc_param, detection),  # the typed detection options and -p
        crop_size=crop_size,
        search_px=search_px,
        margin_um=margin_um,
        seed=seed,
        fractions=parse_fractions(fractions),
        block_um=block_um,
        workers=workers,
        skip_blank=skip_blank,
        qc=dataclasses.replace(QcOptions(), min_ssim=min_ssim),
    )
    from acquisition.files import Interrupted

    try:
        with PhaseProgress(console) as progress:
            summary = match_scans(
                unstained,
                stained_scan,
                out,
                options=options,
                progress=progress,
                software_version=__version__,
                force=force,
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: nothing was written ({out} is as it was); run the same command again"
        ) from None
    console.print(_summary_table(summary))
    for note in summary.notes:  # WBCs per field, detection and same-slide warnings
        console.print(note, style="yellow" if note.startswith("warning") else None, markup=False)


def _note_simulated(paths) -> None:
    from rich.console import Console

    from acquisition.scanfile import simulated_note

    for note in filter(None, (simulated_note(p) for p in paths)):
        Console().print(f"[yellow]{note}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("match")(match)
