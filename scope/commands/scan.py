"""`scope scan`: the unstained PLS stack, the stained rescan, or the 100x cells."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from acquisition.vocabulary import Pass
from scope.commands.rig_options import (
    BackendChoice,
    BackendOpt,
    LedDeviceOpt,
    LedPortOpt,
    MmConfigOpt,
    MmPortOpt,
    SeedOpt,
    SensorOpt,
    SimCfgOpt,
    VerifyOpt,
    confirm_ready,
    open_rig_from_options,
)


class Focus(StrEnum):
    none = "none"
    map = "map"


_OPERATOR_STEPS = {
    Pass.UNSTAINED: "Put the UNSTAINED smear on the stage, 20x objective, monolayer region in "
    "view.",
    Pass.STAINED: "Stain the slide (Romanowsky), let it dry, and put it back on the stage with the "
    "20x objective: the same positions will be imaged.",
    Pass.HIGHRES: "Switch to the 100x oil objective and apply immersion oil: each matched white "
    "blood cell will be imaged once.",
}


def scan(
    slide: Annotated[str, typer.Option("--slide", help="Slide name (used in file names).")],
    pass_: Annotated[Pass, typer.Option("--pass", help="unstained, stained or highres.")],
    profile: Annotated[str, typer.Option("--profile", help="Hardware profile name or YAML.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    backend: BackendOpt = BackendChoice.sim,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Stack preset (unstained pass; default full).")
    ] = None,
    grid: Annotated[
        str | None, typer.Option("--grid", help="NXxNY fields around the current stage position.")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="X0,Y0,X1,Y1 (µm) to cover with fields.")
    ] = None,
    positions: Annotated[
        Path | None, typer.Option("--positions", help="CSV with x_um,y_um[,z_um].")
    ] = None,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="A useq-schema MDASequence (.yaml/.json, e.g. from pymmcore-plus): its stage "
            "positions and grid plans are the fields.",
        ),
    ] = None,
    save_plan: Annotated[
        Path | None,
        typer.Option("--save-plan", help="Write the fields as a useq-schema plan (.yaml/.json)."),
    ] = None,
    positions_from: Annotated[
        Path | None,
        typer.Option(
            "--positions-from",
            help="Stained pass: take positions from "
            "this scan file or CSV instead of the unstained scan.",
        ),
    ] = None,
    cells: Annotated[
        Path | None, typer.Option("--cells", help="Highres pass: the cells CSV of scope match.")
    ] = None,
    overlap: Annotated[
        float, typer.Option("--overlap", min=0.0, max=0.89, help="Overlap between fields.")
    ] = 0.0,
    focus: Annotated[
        Focus,
        typer.Option(
            "--focus", help="none, or map: autofocus reference fields and fit the slide surface."
        ),
    ] = Focus.none,
    z_um: Annotated[
        float | None,
        typer.Option(
            "--z-um",
            help="Z (µm) for fields without one; default: the current stage Z, where you focused.",
        ),
    ] = None,
    compression: Annotated[
        str, typer.Option("--compression", help="blosc2-lz4 (default), zstd, lz4, gzip, none.")
    ] = "blosc2-lz4",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted scan (or start one).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    seed: SeedOpt = 0,
    sim_sensor: SensorOpt = None,
    sim_config: SimCfgOpt = None,
    sim_realtime: Annotated[
        bool, typer.Option("--sim-realtime", help="Simulator: real exposure and move times.")
    ] = False,
    mm_config: MmConfigOpt = None,
    led_port: LedPortOpt = None,
    led_device: LedDeviceOpt = None,
    mm_port: MmPortOpt = None,
    verify: VerifyOpt = None,
) -> None:
    """Scan a slide: the unstained PLS stack, the stained rescan, or the 100x cells."""
    from rich.console import Console

    import hardware_profiles as hp
    from acquisition.files import check_slide_name
    from acquisition.scan import estimate_scan_bytes, plan_scan, run_scan
    from acquisition.tables import compression_options
    from scope._version import __version__
    from scope.progress import RichProgress, scan_summary_table

    console = Console()
    check_slide_name(slide)
    compression_options(compression)
    prof = hp.load(profile)
    if not yes:
        console.print(f"[bold]{pass_.value} pass[/]: {_OPERATOR_STEPS[pass_.value]}")
        if not confirm_ready():
            raise typer.Abort()
    with open_rig_from_options(
        backend,
        prof,
        slide=slide,
        seed=seed,
        sim_sensor=sim_sensor,
        sim_config=sim_config,
        mm_config=mm_config,
        led_port=led_port,
        led_device=led_device,
        mm_port=mm_port,
        sim_realtime=sim_realtime,
        verify=verify,
    ) as rig:
        rig.prepare_pass(pass_.value)
        stage = rig.mm.read_stage()
        plan = plan_scan(
            slide=slide,
            pass_=pass_.value,
            profile=prof,
            out=out,
            frame_wh=rig.mm.frame_size,
            stage_xy=(stage.x_um, stage.y_um),
            stack=stack,
            grid=grid,
            region=region,
            positions_csv=positions,
            positions_from=positions_from,
            cells_csv=cells,
            overlap=overlap,
            compression=compression,
            focus=focus.value,
            z_um=stage.z_um if z_um is None else z_um,
            plan=plan_file,
        )
        if save_plan is not None:
            from acquisition.useq_plan import save_plan as write_plan

            meta = {"slide": slide, "pass": pass_.value, "profile": prof.name,
                    "stack": [ch.name for ch in plan.profile.stack]}  # fmt: skip
            write_plan(save_plan, plan.positions, metadata=meta)
            console.print(f"plan of {len(plan.positions)} fields written to {save_plan}")
        need = estimate_scan_bytes(plan, rig.mm.frame_size)
        console.print(
            f"[bold]scan[/] {plan.path.name}: {len(plan.positions)} fields x "
            f"{len(plan.profile.stack)} images, {rig.backend} backend; about "
            f"{need / 1e9:.2f} GB on disk"
            + (" — SIMULATED data, not a real slide" if rig.simulated else "")
        )
        with RichProgress(console) as progress:  # stdout, as the scan's other output
            summary = run_scan(
                plan, rig, resume=resume, progress=progress, software_version=__version__
            )
    console.print(scan_summary_table(summary))
    if summary.failed:
        from hardware_profiles.errors import ScopeError

        raise ScopeError(
            f"{len(summary.failed)} fields failed ({summary.failed[:10]}); run again with "
            "--resume to retry them"
        )


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
