"""The Illuminate firmware's protocol (2.x): reply lines, JSON replies, values, commands.

Pure functions, tested on recorded replies; :mod:`acquisition.led_array` sends the commands
over a serial port, and :mod:`acquisition.mm_led` through Micro-Manager's adapter. Each reply
ends with ``-==-``; an error is a line ``ERROR[<code>]: ...`` (see :mod:`acquisition.led_array`
for the exchange and its retries).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hardware_profiles.errors import ScopeError

if TYPE_CHECKING:
    from hardware_profiles.schema import HardwareProfile

#: Bytes of one command line (line ending excluded) the firmware's input buffer holds.
FIRMWARE_BUFFER_BYTES = 64
#: Resolution of the positions ``pledpos`` reports, mm.
POSITION_RESOLUTION_MM = 0.01
TERMINATOR = b"-==-"

_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_ERROR_LINE = re.compile(r"ERROR\s*\[(\d+)\]\s*:\s*(.*)")
#: Bit depths of Illuminate boards: 8 (sci.iris, ...), 16 (TLC5955 boards: sci.dome, ...).
BIT_DEPTHS = (8, 16)
_VALUE_ROW = re.compile(r'\s*"(\d+)"\s*:\s*\[(\d+(?:,\d+)*)\]\s*,?\s*')
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_POSITION_ROW = re.compile(rf'\s*"(\d+)"\s*:\s*\[{_NUMBER},{_NUMBER},{_NUMBER}\]\s*,?\s*')
_LED_COUNT_ROW = re.compile(r'\s*"led_count"\s*:\s*(\d+)\s*,?\s*')


class LedArrayError(ScopeError):
    """The LED array cannot be opened, does not answer, or answers wrongly.

    The message names the port and the command, e.g. ``LED array on /dev/ttyACM0: no reply
    to 'pledpos' within 2.0 s``.
    """


class Garbled(Exception):
    """A reply that does not parse, or carries an unexpected line (the exchange is retried)."""


def _is_fuzzy(line: bytes, word: bytes, needed: int) -> bool:
    return sum(a == b for a, b in zip(line, word, strict=False)) >= needed


def expect_exactly(text: str) -> Callable[[list[str]], None]:
    def check(lines: list[str]) -> None:
        if lines != [text]:
            raise Garbled(f"expected {text!r}, got {lines!r}")

    return check


def expect_nothing(lines: list[str]) -> None:
    if lines:
        raise Garbled(f"expected an empty reply, got {lines!r}")


def parse_version(lines: list[str]) -> str:
    found = [m.group(0) for line in lines if (m := _VERSION.search(line))]
    if len(found) != 1:
        raise Garbled(f"expected one version number, got {lines!r}")
    return found[0]


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _json_object(lines: list[str]) -> dict[str, Any] | None:
    """The reply as one JSON object whatever its line layout, or None when it is not one.

    A key that appears twice (a garbled id colliding with a real one) makes it None too.
    """
    try:
        obj = json.loads("\n".join(lines), object_pairs_hook=_unique_pairs)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_props(lines: list[str]) -> dict[str, Any]:
    """The ``pprops`` JSON object (one line or many, any whitespace)."""
    obj = _json_object(lines)
    if obj is None:
        raise Garbled("reply is not a JSON object")
    return obj


def parse_positions(lines: list[str]) -> dict[int, tuple[float, float, float]]:
    """LED id -> (x, y, z) from a ``pledpos`` reply: the JSON table, or every readable row.

    Rows are read one by one only when the reply is not JSON (a damaged reply).
    """
    obj = _json_object(lines)
    if obj is not None:
        try:
            table = obj["led_position_list_cartesian"]
            return {int(k): (float(v[0]), float(v[1]), float(v[2])) for k, v in table.items()}
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            pass
    rows = {}
    for line in lines:
        m = _POSITION_ROW.fullmatch(line)
        if m is not None:
            rows[int(m.group(1))] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
    return rows


def parse_led_count(lines: list[str]) -> int:
    obj = _json_object(lines)
    if obj is not None and isinstance(obj.get("led_count"), int):
        return obj["led_count"]
    for line in lines:
        m = _LED_COUNT_ROW.fullmatch(line)
        if m is not None:
            return int(m.group(1))
    raise Garbled("reply has no readable 'led_count'")


def parse_values(lines: list[str], bit_depth: int = 8) -> dict[int, int]:
    """LED id -> raw value (largest channel, 0 to 2**bit_depth - 1) from a ``pvals`` reply.

    The reply is read as JSON; when it is not JSON (a damaged reply, or ``pvals.a.b``,
    whose last row keeps its trailing comma) every well-formed row is read on its own, so
    that a garbled row costs only that LED's reading; an id that appears twice is dropped.
    A value above the bit depth's full scale is a garbled digit and is dropped too.
    """
    full = (1 << bit_depth) - 1
    values: dict[int, int] = {}
    obj = _json_object(lines)
    table = obj.get("led_values") if obj is not None else None
    if isinstance(table, dict):
        for key, row in table.items():
            if not (isinstance(row, list) and row and key.isdigit()):
                continue
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
                continue
            if max(row) <= full and min(row) >= 0:
                values[int(key)] = max(row)
    else:
        doubled: set[int] = set()
        for line in lines:
            m = _VALUE_ROW.fullmatch(line)
            if m is None:
                continue
            led = int(m.group(1))
            if led in values:
                doubled.add(led)
            level = max(int(v) for v in m.group(2).split(","))
            if level > full:
                continue
            values[led] = level
        values = {k: v for k, v in values.items() if k not in doubled}
    if not values:
        raise Garbled("reply has no LED value rows")
    return values


def to_raw(level: int, bit_depth: int) -> int:
    """The value an 8-bit ``level`` is stored (and read back) as at ``bit_depth``: v·257 at 16."""
    return level * ((1 << bit_depth) - 1) // 255


def to_level(raw: int, bit_depth: int) -> int:
    """An 8-bit level from a raw ``pvals`` value at ``bit_depth`` (nearest)."""
    return round(raw * 255 / ((1 << bit_depth) - 1))


def parse_error(line: str) -> str | None:
    """The text of a firmware error line (``ERROR[16]: Invalid command.``, ``ERROR: ...``)."""
    if _ERROR_LINE.fullmatch(line) or line.startswith(("ERROR ", "ERROR:")):
        return line
    return None


def classify_line(raw: bytes) -> tuple[str, str]:
    """One reply line (without its newline) -> ``(kind, text)``.

    ``kind`` is ``"end"`` for the terminator (``text`` is what came before it on the same
    line: ``pprops`` and ``pledpos`` end their JSON with ``}`` and no newline, so their last
    line is ``}-==-``), ``"error"`` for a firmware error line, else ``"payload"``. Accepts
    ``\r\n`` endings. Raises :class:`Garbled` for a line that looks like a damaged
    terminator or error line.
    """
    raw = raw.rstrip(b"\r")
    if raw.endswith(TERMINATOR):
        head = raw[: -len(TERMINATOR)]
        if TERMINATOR in head or (head and set(head) <= set(b"-=")):
            raise Garbled(f"mangled terminator line {raw!r}")
        return "end", head.decode("latin-1")
    if (
        TERMINATOR in raw
        or (raw and set(raw) <= set(b"-="))
        or (len(raw) >= 4 and _is_fuzzy(raw[-4:], TERMINATOR, 3))
    ):
        raise Garbled(f"mangled terminator line {raw!r}")
    text = raw.decode("latin-1")
    if text.startswith("ERROR"):
        if parse_error(text) is None:
            raise Garbled(f"mangled error line {text!r}")
        return "error", text
    # 4 of 5 letters of "ERROR" in place needs the E or the first R
    if (raw[:1] == b"E" or raw[1:2] == b"R") and _is_fuzzy(raw[:5], b"ERROR", 4):
        raise Garbled(f"mangled error line {raw!r}")
    return "payload", text


def l_commands(leds: Sequence[int], limit: int = FIRMWARE_BUFFER_BYTES) -> list[str]:
    """``l`` commands lighting ``leds``, each at most ``limit`` bytes (the input buffer)."""
    commands, current = [], "l"
    for led in leds:
        token = f".{led}"
        if len(current) + len(token) > limit:
            commands.append(current)
            current = "l"
        current += token
    commands.append(current)
    return commands


def check_geometry(
    geometry: dict[int, tuple[float, float, float]],
    profile: HardwareProfile,
    fail: Callable[[str, str], LedArrayError],
) -> None:
    """Check that the firmware's LED table matches ``profile``'s.

    The LED ids must be the same and every coordinate must agree within
    ``0.01 mm + profile.led_array.geometry_tolerance_mm``.

    Raises
    ------
    LedArrayError
        Listing the first mismatching LEDs, firmware against profile.
    """
    leds = profile.led_array.leds
    tolerance = POSITION_RESOLUTION_MM + profile.led_array.geometry_tolerance_mm
    expected = {led.id for led in leds}
    if set(geometry) != expected:
        missing = sorted(expected - set(geometry))
        extra = sorted(set(geometry) - expected)
        parts = [f"{len(geometry)} LEDs reported, profile {profile.name!r} has {len(leds)}"]
        if missing:
            parts.append(f"missing ids {short_list(missing)}")
        if extra:
            parts.append(f"unexpected ids {short_list(extra)}")
        raise fail("pledpos", "LED table does not match the profile: " + "; ".join(parts))
    bad = []
    for led in leds:
        fx, fy, fz = geometry[led.id]
        worst = max(abs(fx - led.x_mm), abs(fy - led.y_mm), abs(fz - led.z_mm))
        if worst > tolerance + 1e-9:
            bad.append(
                f"LED {led.id} firmware ({fx:.2f}, {fy:.2f}, {fz:.2f}) vs profile "
                f"({led.x_mm:.2f}, {led.y_mm:.2f}, {led.z_mm:.2f}) mm"
            )
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise fail(
            "pledpos",
            f"geometry differs from profile {profile.name!r} at {len(bad)} of {len(leds)} "
            f"LEDs (tolerance {tolerance:.2f} mm): " + "; ".join(bad[:3]) + more,
        )


def check_family(
    version: str, props: dict[str, Any], fail: Callable[[str, str], LedArrayError]
) -> None:
    """Refuse, in one line, firmware whose protocol scope does not speak.

    The 0.x-1.x family (the one pyilluminate drives) scales colours to
    ``interface_bit_depth``, has no brightness after 1.21 and reports ``pledpos`` z in cm;
    scope speaks Illuminate 2.x (sci-microscopy/illuminate). ``fail(command, detail)`` builds
    the error (the driver's names its port).
    """
    major = int(version.split(".")[0])
    if major < 2 or "interface_bit_depth" in props:
        raise fail(
            "version",
            f"firmware Illuminate {version} is of the 0.x-1.x family (colours scaled to "
            "interface_bit_depth, pledpos z in cm), which scope does not drive: flash "
            "Illuminate 2.x from sci-microscopy/illuminate",
        )
    depth = props.get("bit_depth", 8)
    if depth not in BIT_DEPTHS:
        raise fail(
            "pprops",
            f"the board reports bit_depth {depth!r}; scope reads 8- and 16-bit boards only",
        )


def short_list(values: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
