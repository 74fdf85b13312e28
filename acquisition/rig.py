"""Open the hardware a scan drives: camera + stages (Micro-Manager) and the LED array.

Backends (``--backend``):

- ``sim``: the simulated microscope — UniMMCore with the simulator's Python camera and
  stages, and the Illuminate firmware emulator on a pseudo-terminal, driven byte for byte by
  the real serial driver;
- ``mmcore``: pymmcore-plus loads the lab's Micro-Manager configuration file (through
  UniMMCore, so ``#py`` Python-device lines work too);
- ``micromanager``: pycromanager's ``Core()`` attached to a running Micro-Manager (its ZMQ
  server on ``--mm-port``).

The backend belongs to the profile (its ``connection`` section); ``--backend`` overrides it.
On a hardware backend the LED array is either on a serial port (``--led-port``) or a device
of the Micro-Manager configuration (``--led-device``, the ``IlluminateLedArray`` adapter):
exactly one of the two, a value stored in the profile counting as given.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from acquisition.micromanager import CameraError, MicroManagerRig
from hardware_profiles import HardwareProfile
from hardware_profiles.errors import ScopeError
from hardware_profiles.schema import Connection

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
    firmware_bit_depth: int = 8
    firmware_printing: str = "firmware"
    led_device: bool = False  # light the LEDs through a Micro-Manager device, as the adapter
    verify: bool | None = None  # None: the profile's led_array.verify


class RigHooks(Protocol):
    """What a backend may add around a scan; the engine calls these whatever the backend.

    A real microscope needs neither (the operator prepares each pass by hand, and nobody
    knows the truth behind its images), so a :class:`Rig` without hooks does nothing here.
    The simulator's session (:class:`acquisition.simulator.devices.SimSession`) provides both.
    """

    def prepare_pass(self, pass_: str) -> None:
        """Stand in for the operator: put the slide of ``pass_`` under the objective, focused."""

    def scan_truth(
        self, pass_: str, centres: list[tuple[float, float]], width: int, height: int
    ) -> dict | None:
        """What a finished scan of ``pass_`` at ``centres`` (stage µm) truly shows, or None."""


@dataclass
class Rig:
    """An open microscope: ``mm`` (camera, stages), ``leds`` (LED array), optional ``hooks``.

    ``sim`` is the simulator's session when the images are simulated, for tests and
    benchmarks to inspect (snap log, device time); the scan engine never reads it.
    """

    mm: MicroManagerRig
    leds: Any  # acquisition.led_array.LedArray
    profile: HardwareProfile
    backend: str
    sim: Any = None  # acquisition.simulator.devices.SimSession
    hooks: RigHooks | None = None
    _closers: list = field(default_factory=list)

    @property
    def simulated(self) -> bool:
        """Whether the images come from the simulator (then every file says so)."""
        return self.backend == "sim" or self.sim is not None

    def prepare_pass(self, pass_: str) -> None:
        """Get the slide ready for ``pass_`` before its first image.

        Between passes the operator stains the slide or changes objective, puts the slide back
        and focuses on it; on real hardware that has happened by hand, so this does nothing.
        A backend that stands in for the operator (the simulator) does it through its hooks.
        """
        if self.hooks is not None:
            self.hooks.prepare_pass(pass_)

    set_pass = prepare_pass  # the name scripts and tests written before the hooks use

    def scan_truth(
        self, pass_: str, centres: list[tuple[float, float]], width: int, height: int
    ) -> dict | None:
        """Ground truth of a finished scan, when the backend knows it (else None)."""
        if self.hooks is None:
            return None
        return self.hooks.scan_truth(pass_, centres, width, height)

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


def resolve_connection(
    profile: HardwareProfile,
    *,
    backend: str | None = None,
    mm_config: str | Path | None = None,
    mm_port: int | None = None,
    led_port: str | None = None,
    led_device: str | None = None,
) -> Connection:
    """The profile's ``connection`` with the command line's options applied, checked.

    Raises :class:`ScopeError` (one line) for an unknown backend, a hardware backend with
    neither or both of an LED port and an LED device, or ``mmcore`` without a config.
    """
    stored = profile.connection
    backend = backend or stored.backend
    if backend not in BACKENDS:
        raise ScopeError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    port = led_port or stored.led_port
    device = led_device or stored.led_device
    conn = Connection(
        backend=backend,
        mm_config=str(mm_config) if mm_config else stored.mm_config,
        mm_port=mm_port or stored.mm_port,
        led_port=port,
        led_device=device,
    )
    if backend == "sim":
        given = [f"--led-port {led_port}"] if led_port else []
        given += [f"--led-device {led_device}"] if led_device else []
        if given:  # hardware options meant for a real rig must not yield a simulated scan
            source = "--backend sim" if backend != stored.backend else f"profile {profile.name!r}"
            raise ScopeError(
                f"{' and '.join(given)} reach a real LED array, but the backend is sim ({source}): "
                "add --backend mmcore or micromanager (or drop the option to use the simulator)"
            )
        return conn
    if port and device:
        where = []
        if stored.led_port or stored.led_device:
            kept = "led_port" if stored.led_port else "led_device"
            where.append(f"profile {profile.name!r} stores {kept}")
        extra = f" ({'; '.join(where)})" if where else ""
        raise ScopeError(
            f"give the LED array either --led-port {port} (its serial port) or --led-device "
            f"{device} (a Micro-Manager device), not both{extra}"
        )
    if not port and not device:
        raise ScopeError(
            f"--backend {backend} needs the LED array: --led-port PORT (its serial port) or "
            "--led-device LABEL (its device in the Micro-Manager configuration)"
        )
    if backend == "mmcore" and not conn.mm_config:
        raise ScopeError("--backend mmcore needs --mm-config FILE (a Micro-Manager .cfg)")
    return conn


def _open_device_leds(core: Any, label: str, profile: HardwareProfile, *, verify: bool) -> Any:
    from acquisition.mm_led import DeviceLedArray

    leds = DeviceLedArray(core, label, verify=verify)
    leds.check_geometry(profile)
    return leds


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
    verify = profile.led_array.verify if opts.verify is None else opts.verify
    closers: list = []
    microscope = SimulatedMicroscope(profile, slide=opts.slide, seed=opts.seed, config=opts.config)
    firmware = IlluminateEmulator(
        opts.firmware_leds if opts.firmware_leds is not None else profile.led_array.leds,
        firmware_version=opts.firmware_version,
        na=profile.scan_objective.na,
        bit_depth=opts.firmware_bit_depth,
        printing=opts.firmware_printing,
        # the adapter sends a channel's list as one command: current firmware's buffer
        input_buffer_bytes=16384 if opts.led_device else 64,
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
        if opts.led_device:
            from acquisition.simulator.mm_led_device import IlluminateLedArrayDevice

            core.loadPyDevice("LedArray", IlluminateLedArrayDevice())
            core.setProperty("LedArray", "Port", firmware.port)
        core.initializeAllDevices()
        core.setCameraDevice("Camera")
        core.setXYStageDevice("XYStage")
        core.setFocusDevice("ZStage")
        closers.append(core.unloadAllDevices)
        mm = MicroManagerRig(core, camera=profile.camera)
        if opts.led_device:
            leds = _open_device_leds(core, "LedArray", profile, verify=verify)
        else:
            leds = _open_leds(firmware.port, profile, verify=verify)
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
    return Rig(
        mm=mm,
        leds=leds,
        profile=profile,
        backend="sim",
        sim=session,
        hooks=session,
        _closers=closers,
    )


def _open_any_leds(core: Any, conn: Connection, profile: HardwareProfile, verify: bool) -> Any:
    if conn.led_device:
        return _open_device_leds(core, conn.led_device, profile, verify=verify)
    return _open_leds(str(conn.led_port), profile, verify=verify)


def load_mm_config(mm_config: str | Path) -> Any:
    """A UniMMCore with the lab's configuration loaded (``#py`` lines work too)."""
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
    return core


def open_mmcore(profile: HardwareProfile, conn: Connection, *, verify: bool = True) -> Rig:
    """pymmcore-plus with the lab's Micro-Manager configuration file."""
    core = load_mm_config(str(conn.mm_config))
    closers: list = [core.unloadAllDevices]
    try:
        mm = MicroManagerRig(core, camera=profile.camera)
        leds = _open_any_leds(core, conn, profile, verify)
    except BaseException:
        core.unloadAllDevices()
        raise
    closers.append(leds.close)
    return Rig(mm=mm, leds=leds, profile=profile, backend="mmcore", _closers=closers)


def pycromanager_core(mm_port: int) -> Any:
    """pycromanager's ``Core()``: a running Micro-Manager's core over ZMQ (or the Python
    core ``start_headless(python_backend=True)`` made in this process)."""
    import io
    from contextlib import redirect_stderr

    try:
        from pycromanager import Core
    except ImportError as err:
        raise ScopeError(f"pycromanager is not importable: {err}") from None
    try:
        with redirect_stderr(io.StringIO()):  # it prints a thread traceback when nothing answers
            return Core(port=mm_port)
    except Exception:
        raise ScopeError(
            f"no Micro-Manager answers on port {mm_port}: start Micro-Manager and enable "
            "Tools > Options > 'Run server on port 4827' (or pass --mm-port)"
        ) from None


def open_micromanager(profile: HardwareProfile, conn: Connection, *, verify: bool = True) -> Rig:
    """pycromanager attached to a running Micro-Manager (GUI or headless)."""
    core = pycromanager_core(conn.mm_port)
    mm = MicroManagerRig(core, camera=profile.camera)
    leds = _open_any_leds(mm.core, conn, profile, verify)
    return Rig(mm=mm, leds=leds, profile=profile, backend="micromanager", _closers=[leds.close])


def open_rig(
    backend: str | None,
    profile: HardwareProfile,
    *,
    sim: SimOptions | None = None,
    mm_config: str | Path | None = None,
    led_port: str | None = None,
    led_device: str | None = None,
    mm_port: int | None = None,
    verify: bool | None = None,
) -> Rig:
    """Open the microscope: ``backend`` (None: the profile's) and the module docstring."""
    conn = resolve_connection(
        profile,
        backend=backend,
        mm_config=mm_config,
        mm_port=mm_port,
        led_port=led_port,
        led_device=led_device,
    )
    verify = profile.led_array.verify if verify is None else verify
    if conn.backend == "sim":
        opts = sim or SimOptions()
        opts.verify = verify if opts.verify is None else opts.verify
        return open_sim(profile, opts)
    if conn.backend == "mmcore":
        return open_mmcore(profile, conn, verify=verify)
    return open_micromanager(profile, conn, verify=verify)


__all__ = [
    "BACKENDS",
    "CameraError",
    "Rig",
    "SimOptions",
    "open_rig",
    "open_sim",
    "resolve_connection",
]


SIM_PORT = "sim"


@contextlib.contextmanager
def open_led_array(
    profile: HardwareProfile,
    *,
    port: str | None = None,
    backend: str | None = None,
    mm_config: str | Path | None = None,
    mm_port: int | None = None,
    led_device: str | None = None,
    verify: bool | None = None,
    baudrate: int | None = None,
    timeout_s: float | None = None,
    sim_bit_depth: int = 8,
    sim_printing: str = "firmware",
):
    """The LED array alone (``scope led``): yields ``(leds, where)``.

    ``port="sim"`` (or no port, no device and a ``sim`` backend) opens the built-in firmware
    emulator with ``profile``'s LEDs; a serial ``port`` opens the array there; a Micro-Manager
    device (``led_device``, or stored in the profile) is reached through the backend's core.
    """
    from acquisition.led_array import LedArray

    verify = profile.led_array.verify if verify is None else verify
    serial_settings = profile.led_array.serial
    stored_device = profile.connection.led_device
    chosen = backend or profile.connection.backend
    closers: list = []
    try:
        if port == SIM_PORT or (port is None and led_device is None and chosen == "sim"):
            from acquisition.simulator.firmware import IlluminateEmulator

            emu = IlluminateEmulator.from_profile(
                profile, bit_depth=sim_bit_depth, printing=sim_printing
            )
            emu.start()
            closers.append(emu.close)
            leds = LedArray.open(emu.port, timeout_s=serial_settings.timeout_s, verify=verify)
            where = f"the built-in emulator ({sim_bit_depth}-bit, {sim_printing} printing)"
        elif port is not None and not (led_device or stored_device):
            leds = LedArray.open(
                port,
                baudrate=baudrate or serial_settings.baudrate,
                timeout_s=timeout_s or serial_settings.timeout_s,
                verify=verify,
            )
            where = port
        else:
            conn = resolve_connection(
                profile,
                backend=chosen if chosen != "sim" else "mmcore",
                mm_config=mm_config,
                mm_port=mm_port,
                led_port=port,
                led_device=led_device,
            )
            if conn.led_port:
                leds = LedArray.open(
                    conn.led_port,
                    baudrate=baudrate or serial_settings.baudrate,
                    timeout_s=timeout_s or serial_settings.timeout_s,
                    verify=verify,
                )
                where = conn.led_port
            else:
                from acquisition.micromanager import SnakeCaseCore
                from acquisition.mm_led import DeviceLedArray

                if conn.backend == "mmcore":
                    core = load_mm_config(str(conn.mm_config))
                    closers.append(core.unloadAllDevices)
                else:
                    core = pycromanager_core(conn.mm_port)
                    core = SnakeCaseCore(core) if hasattr(core, "snap_image") else core
                leds = DeviceLedArray(core, str(conn.led_device), verify=verify)
                where = leds.port
        closers.append(leds.close)
        yield leds, where
    finally:
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                closer()
