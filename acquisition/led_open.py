"""Open the LED array: on a serial port, as a Micro-Manager device, or alone for ``scope led``.

Every rig backend opens its array here and checks the firmware's LED table against the
profile (:meth:`check_geometry`); :func:`open_led_array` opens the array without camera or
stages, for ``scope led``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hardware_profiles import HardwareProfile
from hardware_profiles.schema import Connection


def open_device_leds(core: Any, label: str, profile: HardwareProfile, *, verify: bool) -> Any:
    from acquisition.mm_led import DeviceLedArray

    leds = DeviceLedArray(core, label, verify=verify)
    leds.check_geometry(profile)
    return leds


def open_serial_leds(port: str, profile: HardwareProfile, *, verify: bool = True) -> Any:
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


def open_any_leds(core: Any, conn: Connection, profile: HardwareProfile, verify: bool) -> Any:
    if conn.led_device:
        return open_device_leds(core, conn.led_device, profile, verify=verify)
    return open_serial_leds(str(conn.led_port), profile, verify=verify)


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
    from acquisition.rig import resolve_connection
    from acquisition.rig_mm import load_mm_config, pycromanager_core

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


__all__ = [
    "SIM_PORT",
    "open_any_leds",
    "open_device_leds",
    "open_led_array",
    "open_serial_leds",
]
