"""`scope match`: register an unstained and a stained scan into a dataset; add 100x targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from registration.highres_options import HighresOptions
from registration.match_options import MatchOptions
from registration.qc_options import QcOptions
from scope.commands.segment import DETECTION_NAMES, DETECTION_OPTIONS
from scope.options import build_model, model_options, with_options

#: Options taken from the models: choices, ranges, defaults and help in one place.
MATCH_OPTIONS = [
    *model_options(MatchOptions, ["workers"], flags={"workers": "--workers -j"}),
    *model_options(MatchOptions, ["crop_size", "search_px", "margin_um"]),
    *model_options(QcOptions, ["min_ssim"]),
    *model_options(MatchOptions, ["seed"]),
]
SPLIT_OPTIONS = model_options(MatchOptions, ["block_um"])
BLANK_OPTIONS = model_options(MatchOptions, ["skip_blank"], flags={"skip_blank": "--skip-blank"})
#: The 100x matching options a lab is likeliest to adjust, typed; the rest via --highres-param.
HIGHRES_FLAGS = {"search_um": "--highres-search-um", "min_score": "--highres-min-score"}
HIGHRES_OPTIONS = model_options(
    HighresOptions, list(HIGHRES_FLAGS), flags=HIGHRES_FLAGS, unset=True
)


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


@with_options(
    [*MATCH_OPTIONS, *SPLIT_OPTIONS, *BLANK_OPTIONS, *DETECTION_OPTIONS, *HIGHRES_OPTIONS]
)
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
    fractions: Annotated[str, typer.Option("--fractions", help="train:val:test.")] = "8:1:1",
    wbc_param: Annotated[
        list[str] | None,
        typer.Option(
            "--wbc-param",
            help="Override any WBC detection parameter, NAME=VALUE (as scope segment "
            "--param; see docs/registration.md).",
        ),
    ] = None,
    highres_param: Annotated[
        list[str] | None,
        typer.Option(
            "--highres-param",
            help="With --highres: override any 100x matching option, NAME=VALUE (a field of "
            "HighresOptions, e.g. scale_range=0.05; see docs/registration.md).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a dataset --out written by another command (it may hold 100x "
            "targets), and match scans that do not look like one slide.",
        ),
    ] = False,
    **options: Any,
) -> None:
    """Register scans into a dataset of matched cell crops (and add 100x targets).

    [bold]scope match UNSTAINED.scan.h5 STAINED.scan.h5 --out NAME.dataset.h5[/]: coarse edge
    correlation per field, one rigid slide transform, WBC detection, SSIM fine match, PLS
    crops and QC flags; writes NAME.dataset.h5 and NAME.cells.csv (stained-pass stage µm, for
    [bold]scope scan --pass highres --cells[/]).

    [bold]scope match --highres HIGHRES.scan.h5 NAME.dataset.h5[/]: matches each cell's 100x
    image to its 20x crop, measures the magnification ratio and adds 100x targets.
    """
    from rich.console import Console

    from hardware_profiles.errors import ScopeError
    from scope._version import __version__
    from scope.progress import RichProgress

    console = Console()
    highres_typed = {name: options.pop(name) for name in HIGHRES_FLAGS}
    if highres is not None:
        summary = _add_highres(
            files, highres, out=out, stained=stained, typed=highres_typed, params=highres_param,
            workers=options["workers"], force=force, console=console,
        )  # fmt: skip
        console.print(_highres_table(summary))
        return
    stray = [HIGHRES_FLAGS[k] for k, v in highres_typed.items() if v is not None]
    if stray or highres_param:
        flag = stray[0] if stray else "--highres-param"
        raise ScopeError(f"{flag} applies to scope match --highres only; add --highres SCAN")
    if len(files) != 2:
        raise ScopeError(
            "give two scans: scope match UNSTAINED.scan.h5 STAINED.scan.h5 --out NAME.dataset.h5"
        )
    from registration.match import match_scans
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

    detection = {name: options.pop(name) for name in DETECTION_NAMES}
    qc = QcOptions(min_ssim=options.pop("min_ssim"))
    match_options = MatchOptions(
        wbc=detection_params(wbc_param, detection),  # the typed detection options and -p
        fractions=parse_fractions(fractions),
        qc=qc,
        **options,
    )
    from acquisition.files import Interrupted

    try:
        with RichProgress(console) as progress:
            summary = match_scans(
                unstained,
                stained_scan,
                out,
                options=match_options,
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


def _add_highres(
    files: list[Path],
    highres: Path,
    *,
    out: Path | None,
    stained: Path | None,
    typed: dict[str, Any],
    params: list[str] | None,
    workers: int,
    force: bool,
    console,
):
    """``scope match --highres``: the options checked, then :func:`add_highres` with a bar."""
    from hardware_profiles.errors import ScopeError
    from registration.highres_dataset import add_highres
    from scope._version import __version__
    from scope.progress import RichProgress

    if len(files) != 1:
        raise ScopeError(
            "with --highres give exactly one dataset: scope match --highres "
            "HIGHRES.scan.h5 NAME.dataset.h5"
        )
    options = build_model(
        HighresOptions, typed, params, flags=HIGHRES_FLAGS, option="--highres-param"
    )
    with RichProgress(console) as progress:
        return add_highres(
            files[0],
            highres,
            out=out,
            stained=stained,
            options=options,
            workers=workers,
            progress=progress,
            software_version=__version__,
            force=force,
        )


def _note_simulated(paths) -> None:
    from rich.console import Console

    from acquisition.scanfile import simulated_note

    for note in filter(None, (simulated_note(p) for p in paths)):
        Console().print(f"[yellow]{note}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("match")(match)
