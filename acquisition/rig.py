"""Open the hardware a scan drives: camera + stages (Micro-Manager) and the LED array.

Backends (``--backend``):

- ``sim``: the simulated microscope — UniMMCore with the simulator's Python camera and
  stages, and the Illuminate firmware emulator on a pseudo-terminal, driven byte for byte by
  the real serial driver;
- ``mmcore``: pymmcore-plus loads the lab's Micro-Manager configuration file (through
  UniMMCore, so ``#py`` Python-device lines work too); the LED array is on ``--led-port``;
- ``micromanager``: pycromanager's ``Core()`` attached to a running Micro-Manager (its ZMQ
  server on ``--mm-port``).
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from acquisition.micromanager import CameraError, MicroManagerRig
from hardware_profiles import HardwareProfile
from hardware_profiles.errors import ScopeError

Backend = Literal["sim", "mmcore", "micromanager"]
BACKENDS = ("sim", "mmcore", "micromanager")


@dataclass
class SimOptions:
    """How to build the simulated microscope for ``--backend sim``."""

    slide: str = "slide"
    seed: int = 0
    sensor_wh: tuple[int, int] | None = None  # None: the profile's sensor
    realtime: bool = False
    config: Any = None  # acquisition.simulator.config.SimConfig
    serial_faults: Any = None  # acquisition.simulator.firmware.SerialFaults
    device_faults: Any = None  # acquisition.simulator.devices.DeviceFaults
    firmware_version: str = "2.1"
    firmware_leds: Any = None  # a different LED geometry in the emulated firmware (tests)


@dataclass
class Rig:
    """An open microscope: ``mm`` (camera, stages), ``leds`` (LED array), ``sim`` (or None)."""

    mm: MicroManagerRig
    leds: Any  # acquisition.led_array.LedArray
    profile: HardwareProfile
    backend: str
    sim: Any = None  # acquisition.simulator.devices.SimSession
    _closers: list = field(default_factory=list)

    def set_pass(self, pass_: str) -> None:
        """The simulator's stand-in for the operator preparing a pass by hand.

        Between passes the operator stains the slide or changes objective, puts the slide back
        and focuses on it. The simulator does the same: it switches the virtual slide to the
        pass and moves the focus drive to the slide's focal plane under the current position.
        Real hardware is left as the operator set it.
        """
        if self.sim is None or (self.sim.pass_ == pass_ and self.sim.focused):
            return
        self.sim.pass_ = pass_
        x, y = self.sim.xy_true
        self.sim.z_um = float(self.sim.microscope.focus_z_um(pass_, x, y))
        self.sim.focused = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.leds.clear()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_leds(port: str, profile: HardwareProfile, *, verify: bool = True) -> Any:
    from acquisition.led_array import LedArray

    leds = LedArray.open(
        port,
        baudrate=profile.led_array.serial.baudrate,
        timeout_s=profile.led_array.serial.timeout_s,
        verify=verify,
    )
    try:
        leds.check_geometry(profile)
    except BaseException:
        leds.close()
        raise
    return leds


def open_sim(profile: HardwareProfile, options: SimOptions | None = None) -> Rig:
    """The simulated microscope behind real interfaces (UniMMCore + firmware on a pty)."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    from acquisition.simulator.devices import (
        DeviceFaults,
        SimCamera,
        SimSession,
        SimXYStage,
        SimZStage,
        register_session,
        unregister_session,
    )
    from acquisition.simulator.firmware import IlluminateEmulator
    from acquisition.simulator.microscope import SimulatedMicroscope

    opts = options or SimOptions()
    closers: list = []
    microscope = SimulatedMicroscope(profile, slide=opts.slide, seed=opts.seed, config=opts.config)
    firmware = IlluminateEmulator(
        opts.firmware_leds if opts.firmware_leds is not None else profile.led_array.leds,
        firmware_version=opts.firmware_version,
        na=profile.scan_objective.na,
    )
    firmware.start()
    closers.append(firmware.close)
    sensor = opts.sensor_wh or (profile.camera.sensor_width_px, profile.camera.sensor_height_px)
    name = f"sim-{uuid.uuid4().hex[:8]}"
    session = SimSession(
        microscope=microscope,
        firmware=firmware,
        sensor_wh=tuple(sensor),
        realtime=opts.realtime,
        faults=opts.device_faults or DeviceFaults(),
    )
    register_session(name, session)
    closers.append(lambda: unregister_session(name))
    try:
        mm_path = Path(tempfile.gettempdir()) / "scope-empty-mm"
        mm_path.mkdir(exist_ok=True)
        core = UniMMCore(mm_path=str(mm_path))
        for label, dev in (
            ("Camera", SimCamera()),
            ("XYStage", SimXYStage()),
            ("ZStage", SimZStage()),
        ):
            core.loadPyDevice(label, dev)
            core.setProperty(label, "Session", name)
        core.initializeAllDevices()
        core.setCameraDevice("Camera")
        core.setXYStageDevice("XYStage")
        core.setFocusDevice("ZStage")
        closers.append(core.unloadAllDevices)
        mm = MicroManagerRig(core, camera=profile.camera)
        leds = _open_leds(firmware.port, profile)
        closers.append(leds.close)
        # Serial faults start after the handshake: they model a link that degrades during a
        # long scan (the handshake's kilobyte of JSON would rarely survive per-byte garbling).
        if opts.serial_faults is not None:
            firmware.faults = opts.serial_faults
    except BaseException:
        for c in reversed(closers):
            with contextlib.suppress(Exception):
                c()
        raise
    return Rig(mm=mm, leds=leds, profile=profile, backend="sim", sim=session, _closers=closers)


def open_mmcore(profile: HardwareProfile, *, mm_config: str | Path, led_port: str) -> Rig:
    """pymmcore-plus with the lab's Micro-Manager configuration file."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    cfg = Path(mm_config)
    if not cfg.is_file():
        raise ScopeError(f"Micro-Manager configuration {str(cfg)!r} does not exist")
    core = UniMMCore()
    try:
        core.loadSystemConfiguration(str(cfg))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScopeError(f"cannot load Micro-Manager configuration {cfg}: {first}") from None
    closers: list = [core.unloadAllDevices]
    try:
        mm = MicroManagerRig(core, camera=profile.camera)
        leds = _open_leds(led_port, profile)
    except BaseException:
        core.unloadAllDevices()
        raise
    closers.append(leds.close)
    return Rig(mm=mm, leds=leds, profile=profile, backend="mmcore", _closers=closers)


def open_micromanager(profile: HardwareProfile, *, mm_port: int, led_port: str) -> Rig:
    """pycromanager attached to a running Micro-Manager (GUI or headless)."""
    import io
    from contextlib import redirect_stderr

    try:
        from pycromanager import Core
    except ImportError as err:
        raise ScopeError(f"pycromanager is not importable: {err}") from None
    try:
        with redirect_stderr(io.StringIO()):  # it prints a thread traceback when nothing answers
            core = Core(port=mm_port)
    except Exception:
        raise ScopeError(
            f"no Micro-Manager answers on port {mm_port}: start Micro-Manager and enable "
            "Tools > Options > 'Run server on port 4827' (or pass --mm-port)"
        ) from None
    mm = MicroManagerRig(core, camera=profile.camera)
    leds = _open_leds(led_port, profile)
    return Rig(mm=mm, leds=leds, profile=profile, backend="micromanager", _closers=[leds.close])


def open_rig(
    backend: str,
    profile: HardwareProfile,
    *,
    sim: SimOptions | None = None,
    mm_config: str | Path | None = None,
    led_port: str | None = None,
    mm_port: int = 4827,
) -> Rig:
    """Open the microscope for ``backend`` (see the module docstring)."""
    if backend == "sim":
        return open_sim(profile, sim)
    if backend in ("mmcore", "micromanager") and not led_port:
        raise ScopeError(f"--backend {backend} needs --led-port (the LED array's serial port)")
    if backend == "mmcore":
        if mm_config is None:
            raise ScopeError("--backend mmcore needs --mm-config FILE (a Micro-Manager .cfg)")
        return open_mmcore(profile, mm_config=mm_config, led_port=led_port)
    if backend == "micromanager":
        return open_micromanager(profile, mm_port=mm_port, led_port=led_port)
    raise ScopeError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "CameraError", "Rig", "SimOptions", "open_rig", "open_sim"]
