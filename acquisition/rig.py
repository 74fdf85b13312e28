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

This module holds the :class:`Rig` every backend returns, its optional hooks
(:class:`RigHooks`), the choice of backend (:func:`resolve_connection`, :func:`open_rig`);
the backends are :mod:`acquisition.rig_sim` and :mod:`acquisition.rig_mm`, the LED array's
opening :mod:`acquisition.led_open` (all re-exported here).
"""

from __future__ import annotations

import contextlib
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
    "SIM_PORT",
    "CameraError",
    "Rig",
    "RigHooks",
    "SimOptions",
    "load_mm_config",
    "open_led_array",
    "open_micromanager",
    "open_mmcore",
    "open_rig",
    "open_sim",
    "pycromanager_core",
    "resolve_connection",
]

# the backends, importable from here as before (they import this module's types lazily)
from acquisition.led_open import SIM_PORT, open_led_array  # noqa: E402
from acquisition.rig_mm import (  # noqa: E402
    load_mm_config,
    open_micromanager,
    open_mmcore,
    pycromanager_core,
)
from acquisition.rig_sim import open_sim  # noqa: E402
