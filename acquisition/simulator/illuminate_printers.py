"""What the Illuminate firmware prints for its query commands, byte for byte.

Pure functions of the array's state: each returns the reply as an object (for the emulator's
``compact`` printing) and as the exact text the firmware's JSON printers write (some end
without a newline, so the terminator follows on the same line). The commands that call them
are in :mod:`.illuminate_firmware`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from acquisition.simulator.illuminate_protocol import WAVELENGTHS_NM

#: The MAC address, serial and part numbers the emulated board reports.
MAC_ADDRESS = "04:e9:e5:00:00:01"


def about_lines(device_name: str, firmware_version: str) -> list[str]:
    """The ``about`` banner."""
    rule = "=" * 100
    return [
        rule,
        f"  {device_name} LED Array Controller",
        f"  Illuminate r{firmware_version} | Serial Number: 0001 | "
        f"Part Number: 0001 | Teensy MAC address: MAC: {MAC_ADDRESS}",
        "  For help, type ?",
        rule,
    ]


def led_values(
    ids: Sequence[int],
    values: Sequence[tuple[int, ...]],
    span: range,
    raw_value: Callable[[int], int],
) -> tuple[dict, str]:
    """``pvals``: each LED's channel values in ``span`` (scaled by ``raw_value``)."""
    last = len(ids) - 1
    text = '{\n    "led_values" : {\n'
    table = {}
    for i in span:
        vals = [raw_value(v) for v in values[i]]
        table[str(ids[i])] = vals
        # the firmware compares with the LED count, not the range's end (its quirk)
        end = "], \n" if i != last else "] \n"
        text += f'        "{ids[i]}" : [' + ",".join(map(str, vals)) + end
    text += "    }\n}\n"
    return {"led_values": table}, text


def led_positions(
    ids: Sequence[int], positions: Sequence[tuple[float, float, float]], span: range
) -> tuple[dict, str]:
    """``pledpos``: each LED's position (mm) in ``span``."""
    text = '{\n    "led_position_list_cartesian" : {\n'
    table = {}
    for i in span:
        x, y, z = positions[i]
        table[str(ids[i])] = [round(x, 2), round(y, 2), round(z, 2)]
        end = "],\n" if i != span[-1] else "]\n"
        text += f'        "{ids[i]}" : [' + f"{x:02.2f}, {y:02.2f}, {z:02.2f}" + end
    text += "    }\n}"  # no newline: the terminator follows on this line
    return {"led_position_list_cartesian": table}, text


def led_positions_na(
    ids: Sequence[int], positions: Sequence[tuple[float, float, float]], span: range
) -> tuple[dict, str]:
    """``pledposna``: each LED's direction sines (NA x, NA y) in ``span``."""
    text = '{\n    "led_position_list_na" : {\n'
    table = {}
    for i in span:
        x, y, z = positions[i]
        r = math.sqrt(x * x + y * y + z * z)
        table[str(ids[i])] = [round(x / r, 3), round(y / r, 3)]
        end = "],\n" if i != span[-1] else "]\n"
        text += f'        "{ids[i]}" : [' + f"{x / r:01.3f}, {y / r:01.3f}" + end
    text += "    }\n}"
    return {"led_position_list_na": table}, text


def properties(
    device_name: str,
    led_count: int,
    channels: Sequence[str],
    bit_depth: int,
    firmware_version: str,
) -> tuple[dict, str]:
    """``pprops``: the board's parameters."""
    props = {
        "device_name": device_name,
        "led_count": led_count,
        "color_channels": list(channels),
        "color_channel_center_wavelengths": {c: WAVELENGTHS_NM[c] for c in channels},
        "trigger_input_count": 1,
        "trigger_output_count": 1,
        "bit_depth": bit_depth,
        "serial_number": 1,
        "color_channel_count": len(channels),
        "part_number": 1,
        "mac_address": MAC_ADDRESS,
        "interface_version": float(".".join(firmware_version.split(".")[:2])),
    }
    names = ", ".join(f'"{c}"' for c in channels)
    wavelengths = ", ".join(f'"{c}" : {WAVELENGTHS_NM[c]:.3f}' for c in channels)
    text = (
        "{\n"
        f'    "device_name" : "{device_name}",\n'
        f'    "led_count" : {led_count},\n'
        f'    "color_channels" : [{names}],\n'
        f'    "color_channel_center_wavelengths" : {{{wavelengths}}},\n'
        '    "trigger_input_count" : 1,\n'
        '    "trigger_output_count" : 1,\n'
        f'    "bit_depth" : {bit_depth},\n'
        '    "serial_number" : 1,\n'
        f'    "color_channel_count" : {len(channels)},\n'
        '    "part_number" : 1,\n'
        f'    "mac_address" : "{MAC_ADDRESS}",\n'
        f'    "interface_version" : {props["interface_version"]}\n'
        "}"  # no newline: the firmware prints "\n}" and then the terminator
    )
    return props, text
