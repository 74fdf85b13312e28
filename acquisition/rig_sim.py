"""The ``sim`` backend: the simulated microscope behind the same interfaces as real hardware.

UniMMCore with the simulator's Python camera and stages, and the Illuminate firmware emulator
on a pseudo-terminal, driven byte for byte by the real serial driver (or, with
``SimOptions.led_device``, through the Micro-Manager LED adapter). The simulator's session
is the rig's hooks (:class:`acquisition.rig.RigHooks`).
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from acquisition.led_open import open_device_leds, open_serial_leds
from acquisition.micromanager import MicroManagerRig
from hardware_profiles import HardwareProfile

if TYPE_CHECKING:
    from acquisition.rig import Rig, SimOptions


def open_sim(profile: HardwareProfile, options: SimOptions | None = None) -> Rig:
    """The simulated microscope behind real interfaces (UniMMCore + firmware on a pty)."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    from acquisition.rig import Rig, SimOptions
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
            leds = open_device_leds(core, "LedArray", profile, verify=verify)
        else:
            leds = open_serial_leds(firmware.port, profile, verify=verify)
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


__all__ = ["open_sim"]
