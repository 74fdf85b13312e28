"""`scope scan` and `scope calibrate`."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from acquisition.rig import BACKENDS
from acquisition.vocabulary import ChannelKind, Pass

# the choices come from where they are defined: the rig's backends, the vocabulary's passes
BackendChoice = StrEnum("BackendChoice", {b: b for b in BACKENDS})


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

BackendOpt = Annotated[
    BackendChoice | None,
    typer.Option(
        "--backend",
        help="sim (built-in simulator), mmcore (a "
        "Micro-Manager .cfg via pymmcore-plus) or micromanager "
        "(running Micro-Manager via pycromanager) [default: the profile's connection.backend].",
        show_default=False,
    ),
]
MmConfigOpt = Annotated[
    Path | None, typer.Option("--mm-config", help="Micro-Manager configuration (mmcore).")
]
LedPortOpt = Annotated[
    str | None, typer.Option("--led-port", help="LED array serial port or pyserial URL.")
]
LedDeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--led-device",
        help="The LED array as a Micro-Manager device (its label, e.g. LedArray), instead of "
        "--led-port.",
    ),
]
MmPortOpt = Annotated[
    int | None,
    typer.Option(
        "--mm-port", help="Micro-Manager ZMQ server port [default: 4827].", show_default=False
    ),
]
VerifyOpt = Annotated[
    bool | None,
    typer.Option(
        "--verify/--no-verify",
        help="Read every LED pattern back before imaging [default: the profile's "
        "led_array.verify, on].",
        show_default=False,
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Simulator: virtual slide seed.")]
SensorOpt = Annotated[
    str | None,
    typer.Option(
        "--sim-sensor",
        help="Simulator: camera size WxH (default: $SCOPE_SIM_SENSOR, else the profile's).",
    ),
]
SimCfgOpt = Annotated[
    Path | None, typer.Option("--sim-config", help="Simulator knobs and faults (YAML).")
]


def _sensor(text: str | None) -> tuple[int, int] | None:
    from hardware_profiles.errors import ScopeError

    if text is None:
        # tests and the README tour run small frames without changing the commands shown
        text = os.environ.get("SCOPE_SIM_SENSOR") or None
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ScopeError(f"--sim-sensor must look like WxH (e.g. 640x400), got {text!r}") from None
    if w < 64 or h < 64:
        raise ScopeError(f"--sim-sensor {text!r} is too small (at least 64x64)")
    return w, h


def open_rig_from_options(
    backend: BackendChoice | None,
    profile,
    *,
    slide: str,
    seed: int,
    sim_sensor: str | None,
    sim_config: Path | None,
    mm_config: Path | None,
    led_port: str | None,
    mm_port: int | None,
    sim_realtime: bool = False,
    led_device: str | None = None,
    verify: bool | None = None,
):
    from acquisition.rig import SimOptions, open_rig
    from acquisition.simulator.options import load_sim_options

    sim = None
    chosen = backend.value if backend is not None else profile.connection.backend
    if chosen == "sim":
        # tests and the README tour: a denser smear without changing the commands shown
        opts = load_sim_options(sim_config or os.environ.get("SCOPE_SIM_CONFIG") or None)
        sim = SimOptions(
            slide=slide,
            seed=seed,
            sensor_wh=_sensor(sim_sensor),
            realtime=opts.pop("realtime", False) or sim_realtime,
            **opts,
        )
    return open_rig(
        chosen,
        profile,
        sim=sim,
        mm_config=mm_config,
        led_port=led_port,
        led_device=led_device,
        mm_port=mm_port,
        verify=verify,
    )


def _ready() -> bool:
    """Ask "Ready?"; without a terminal to answer, say how to run unattended."""
    import sys

    from hardware_profiles.errors import ScopeError

    try:
        return typer.confirm("Ready?", default=True)
    except typer.Abort:
        if not sys.stdin.isatty():
            raise ScopeError(
                "no answer to 'Ready?' (no terminal on standard input): pass --yes to run "
                "without asking"
            ) from None
        raise


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
        if not _ready():
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
    from scope.progress import calibration_table

    console = Console()
    prof = hp.load(profile)
    guard_output(out)
    if out.exists() and not force:
        raise ScopeError(f"{out} exists; choose another --out or pass --force to replace it")
    check_target(out, "profile", command="scope calibrate", force=force)
    if not yes:
        console.print("Put an UNSTAINED smear under the 20x objective, monolayer in view.")
        if not _ready():
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
        new_profile, results = calibrate_profile(
            rig,
            prof,
            targets=targets,
            only=names,
            on_result=lambda r: console.print(
                f"  {r.name}: {r.exposure_ms:.3g} ms, gain {r.gain:.3g}"
            ),
        )
    dump(new_profile, out)
    console.print(calibration_table(results))
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
    app.command("calibrate")(calibrate)
