"""`scope calibrate`: find each channel's exposure and gain on a reference field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquisition.vocabulary import ChannelKind, Pass
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
    confirm_ready,
    open_rig_from_options,
)


def calibrate(
    profile: Annotated[str, typer.Option("--profile", help="Hardware profile to start from.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the calibrated profile.")],
    backend: BackendOpt = BackendChoice.sim,
    stack: Annotated[str | None, typer.Option("--stack", help="Only these channels.")] = None,
    level: Annotated[
        float,
        typer.Option(
            "--level",
            min=50,
            max=254,
            help="Target level (0-255) of the "
            "brightest 0.1 % for brightfield, pls and low darkfield.",
        ),
    ] = 235.0,
    high_saturation: Annotated[
        float,
        typer.Option(
            "--high-saturation",
            min=0.01,
            max=50.0,
            help="Percent of pixels to saturate in high-exposure darkfield images.",
        ),
    ] = 2.0,
    max_exposure_ms: Annotated[
        float,
        typer.Option(
            "--max-exposure-ms", min=0.1, help="Longest exposure allowed; gain makes up the rest."
        ),
    ] = 2000.0,
    x_um: Annotated[float, typer.Option("--x-um", help="Stage X of the reference field.")] = 0.0,
    y_um: Annotated[float, typer.Option("--y-um", help="Stage Y of the reference field.")] = 0.0,
    autofocus: Annotated[
        bool,
        typer.Option(
            "--autofocus/--no-autofocus",
            help="Focus the reference field first (brightfield, software autofocus).",
        ),
    ] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing profile file at --out.")
    ] = False,
    seed: SeedOpt = 0,
    sim_sensor: SensorOpt = None,
    sim_config: SimCfgOpt = None,
    mm_config: MmConfigOpt = None,
    led_port: LedPortOpt = None,
    led_device: LedDeviceOpt = None,
    mm_port: MmPortOpt = None,
) -> None:
    """Find each channel's exposure (and gain) on a reference field; write a new profile."""
    from rich.console import Console

    import hardware_profiles as hp
    from acquisition.calibrate import CalibrationTargets, calibrate_profile
    from acquisition.files import check_target, guard_output
    from acquisition.scan import stack_profile
    from hardware_profiles.errors import ScopeError
    from hardware_profiles.loader import dump
    from scope.progress import RichProgress, calibration_table

    console = Console()
    prof = hp.load(profile)
    guard_output(out)
    if out.exists() and not force:
        raise ScopeError(f"{out} exists; choose another --out or pass --force to replace it")
    check_target(out, "profile", command="scope calibrate", force=force)
    if not yes:
        console.print("Put an UNSTAINED smear under the 20x objective, monolayer in view.")
        if not confirm_ready():
            raise typer.Abort()
    chosen = stack_profile(prof, stack)
    names = {c.name for c in chosen.stack}
    targets = CalibrationTargets(
        level=level, high_saturation_percent=high_saturation, max_exposure_ms=max_exposure_ms
    )
    with open_rig_from_options(
        backend,
        prof,
        slide="calibration",
        seed=seed,
        sim_sensor=sim_sensor,
        sim_config=sim_config,
        mm_config=mm_config,
        led_port=led_port,
        led_device=led_device,
        mm_port=mm_port,
    ) as rig:
        rig.prepare_pass(Pass.UNSTAINED)
        rig.mm.move_xy(x_um, y_um)
        rig.mm.wait_for_stages()
        if autofocus:
            from acquisition.focus import focus_here

            z = focus_here(rig, next(c for c in prof.stack if c.kind == ChannelKind.BRIGHTFIELD))
            console.print(f"focused the reference field at z = {z:.2f} µm")
        with RichProgress(console) as progress:  # stdout, as the command's other output
            new_profile, results = calibrate_profile(
                rig, prof, targets=targets, only=names, progress=progress
            )
    dump(new_profile, out)
    console.print(calibration_table(results))
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
