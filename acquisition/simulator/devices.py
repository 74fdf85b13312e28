"""The simulated camera, XY stage and focus drive as Python Micro-Manager devices.

They load into ``pymmcore_plus.experimental.unicore.UniMMCore`` like any device adapter, so
the scan engine drives the simulator through a real MMCore. The camera renders what the
**emulated firmware** has lit at snap time (``IlluminateEmulator.lit()``), never what the
driver meant to light.

Devices find their simulator through :func:`register_session`: a :class:`SimSession` holds
the microscope model, the firmware emulator and the shared stage state, under a name given
to the devices as their ``Session`` property. A Micro-Manager configuration file can
therefore declare them with ``#py`` lines::

    #py pyDevice,Camera,acquisition.simulator.devices,SimCamera
    #py Property,Camera,Session,demo
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field
from pymmcore_plus.experimental.unicore import (
    SimpleCameraDevice,
    StageDevice,
    XYStageDevice,
    pymm_property,
)

from acquisition.geometry import Orientation
from acquisition.micromanager import device_orientation
from acquisition.simulator.settings import Settings


class DeviceFaults(Settings):
    """Camera and stage faults of the simulated devices (all off by default).

    The ``devices:`` section of ``--sim-config`` (a pydantic model: ranges on the fields, a
    bad value is one line naming the key).

    Attributes
    ----------
    camera_timeout_probability
        Probability that a snap times out (the camera delivers no frame).
    stage_error_um
        A requested XY move lands up to this far off (µm).
    stage_reports_truth
        Whether the stage reports where it really is (else the requested position).
    seed
        Seed of the fault draws.
    """

    camera_timeout_probability: float = Field(0.0, ge=0.0, le=1.0)
    stage_error_um: float = Field(0.0, ge=0.0)
    stage_reports_truth: bool = True
    seed: int = 0


@dataclass
class SimSession:
    """Everything the simulated devices share: model, firmware, pass, stage state."""

    microscope: Any  # acquisition.simulator.microscope.SimulatedMicroscope
    firmware: Any  # acquisition.simulator.firmware.IlluminateEmulator
    pass_: str = "unstained"
    sensor_wh: tuple[int, int] = (1920, 1200)
    realtime: bool = False
    stage_speed_um_per_s: float = 5000.0
    settle_s: float = 0.02
    faults: DeviceFaults = field(default_factory=DeviceFaults)
    xy_true: tuple[float, float] = (0.0, 0.0)
    xy_requested: tuple[float, float] = (0.0, 0.0)
    z_um: float = 0.0
    snaps: int = 0
    focused: bool = False  # whether the "operator" has focused this pass (prepare_pass)
    device_seconds: float = 0.0  # time spent inside the simulated devices (benchmarks)
    snap_log: list = field(default_factory=list)  # LEDs the firmware showed at each snap
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault_draw(self, *key: object) -> float:
        """Deterministic uniform draw in [0, 1) for a fault decision."""
        h = hashlib.blake2b(repr((self.faults.seed, *key)).encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2**64

    # -- the hooks the scan engine calls on any rig (acquisition.rig.RigHooks) ---------------
    def prepare_pass(self, pass_: str) -> None:
        """The operator's part: switch the virtual slide to ``pass_`` and focus on it.

        Between passes the operator stains the slide or changes objective, puts the slide
        back and focuses; the session does the same, moving the focus drive to the slide's
        focal plane under the current position (once per pass).
        """
        if self.pass_ == pass_ and self.focused:
            return
        self.pass_ = pass_
        x, y = self.xy_true
        self.z_um = float(self.microscope.focus_z_um(pass_, x, y))
        self.focused = True

    def scan_truth(
        self, pass_: str, centres: list[tuple[float, float]], width: int, height: int
    ) -> dict:
        """The truth behind a finished scan (written into the scan file beside the images)."""
        return self.microscope.truth(pass_, centres, width, height)


_SESSIONS: dict[str, SimSession] = {}


def register_session(name: str, session: SimSession) -> None:
    _SESSIONS[name] = session


def unregister_session(name: str) -> None:
    _SESSIONS.pop(name, None)


def _session(name: str) -> SimSession:
    if name not in _SESSIONS:
        raise RuntimeError(
            f"no simulator session {name!r} is running in this process (known: {sorted(_SESSIONS)})"
        )
    return _SESSIONS[name]


class _SessionDevice:
    _session_name: str = "default"

    @pymm_property(is_pre_init=True, name="Session")
    def session(self) -> str:
        """Name of the simulator session (see ``register_session``)."""
        return self._session_name

    @session.setter
    def session(self, value: str) -> None:
        self._session_name = str(value)

    @property
    def sim(self) -> SimSession:
        return _session(self._session_name)


class SimCamera(_SessionDevice, SimpleCameraDevice):
    """RGB camera that renders the virtual slide under the LEDs the firmware has lit."""

    def __init__(self) -> None:
        super().__init__()
        self._exposure_ms = 10.0
        self._gain = 1.0

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    @pymm_property(limits=(1.0, 64.0), name="Gain")
    def gain(self) -> float:
        """Analogue gain (1 = neutral)."""
        return self._gain

    @gain.setter
    def gain(self, value: float) -> None:
        self._gain = float(value)

    def sensor_shape(self) -> tuple[int, int, int]:
        raw_w, raw_h = Orientation.of(self.sim.microscope.profile.camera).stage_size(
            *self.sim.sensor_wh
        )  # the sensor as mounted: a turned camera swaps the sides
        return (raw_h, raw_w, 3)

    def dtype(self) -> Any:
        return np.uint8

    def snap(self, buffer: np.ndarray) -> Mapping:
        t0 = time.perf_counter()
        try:
            return self._snap(buffer)
        finally:
            self.sim.device_seconds += time.perf_counter() - t0

    def _snap(self, buffer: np.ndarray) -> Mapping:
        sim = self.sim
        with sim.lock:
            sim.snaps += 1
            n = sim.snaps
            x, y = sim.xy_true
            z = sim.z_um
        if sim.faults.camera_timeout_probability and (
            sim.fault_draw("camera", n) < sim.faults.camera_timeout_probability
        ):
            raise TimeoutError(f"simulated camera timeout on snap {n}")
        leds = sim.firmware.lit()
        sim.snap_log.append(dict(leds))
        w, h = sim.sensor_wh
        frame = sim.microscope.render(
            pass_=sim.pass_,
            x_um=x,
            y_um=y,
            z_um=z,
            leds=leds,
            exposure_ms=self._exposure_ms,
            gain=self._gain,
            width=w,
            height=h,
        )
        if sim.realtime:
            time.sleep(self._exposure_ms / 1000.0)
        buffer[:] = device_orientation(frame, sim.microscope.profile.camera)
        return {"leds": ",".join(str(i) for i in sorted(leds))}


class SimXYStage(_SessionDevice, XYStageDevice):
    """XY stage in µm; may land off target (fault) and may or may not report it."""

    def set_position_um(self, x: float, y: float) -> None:
        t0 = time.perf_counter()
        try:
            self._move(x, y)
        finally:
            self.sim.device_seconds += time.perf_counter() - t0

    def _move(self, x: float, y: float) -> None:
        sim = self.sim
        ox, oy = sim.xy_true
        dx = dy = 0.0
        if sim.faults.stage_error_um:
            r = sim.faults.stage_error_um
            dx = (sim.fault_draw("stage-x", round(x, 3), round(y, 3)) * 2 - 1) * r
            dy = (sim.fault_draw("stage-y", round(x, 3), round(y, 3)) * 2 - 1) * r
        if sim.realtime:
            dist = float(np.hypot(x - ox, y - oy))
            time.sleep(dist / sim.stage_speed_um_per_s + sim.settle_s)
        with sim.lock:
            sim.xy_requested = (float(x), float(y))
            sim.xy_true = (float(x) + dx, float(y) + dy)

    def get_position_um(self) -> tuple[float, float]:
        sim = self.sim
        return sim.xy_true if sim.faults.stage_reports_truth else sim.xy_requested

    def set_origin_x(self) -> None:
        raise RuntimeError("the simulated stage keeps its origin fixed")

    def set_origin_y(self) -> None:
        raise RuntimeError("the simulated stage keeps its origin fixed")

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        pass


class SimZStage(_SessionDevice, StageDevice):
    """Focus drive in µm."""

    def set_position_um(self, val: float) -> None:
        sim = self.sim
        if sim.realtime:
            t0 = time.perf_counter()
            time.sleep(abs(val - sim.z_um) / 1000.0 + 0.005)
            sim.device_seconds += time.perf_counter() - t0
        with sim.lock:
            sim.z_um = float(val)

    def get_position_um(self) -> float:
        return self.sim.z_um

    def set_origin(self) -> None:
        raise RuntimeError("the simulated focus drive keeps its origin fixed")

    def home(self) -> None:
        self.set_position_um(0.0)

    def stop(self) -> None:
        pass
