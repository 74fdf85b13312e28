"""Options shared by the commands that open the microscope (``scope scan``, ``scope
calibrate``): the backend and its connection, the simulator's knobs, and opening the rig
from them (:func:`open_rig_from_options`)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from acquisition.rig import BACKENDS

# the choices come from where they are defined: the rig's backends, the vocabulary's passes
BackendChoice = StrEnum("BackendChoice", {b: b for b in BACKENDS})


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


def confirm_ready() -> bool:
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


__all__ = [
    "BackendChoice",
    "BackendOpt",
    "LedDeviceOpt",
    "LedPortOpt",
    "MmConfigOpt",
    "MmPortOpt",
    "SeedOpt",
    "SensorOpt",
    "SimCfgOpt",
    "VerifyOpt",
    "confirm_ready",
    "open_rig_from_options",
]
