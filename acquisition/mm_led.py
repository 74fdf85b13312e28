"""An Illuminate LED array that Micro-Manager owns: driven through its device properties.

When a lab's Micro-Manager configuration holds the array (adapter ``IlluminateLedArray``),
Micro-Manager owns the serial port and scope cannot open it. :class:`DeviceLedArray` then
lights each channel through the device, as the current (2025) adapter defines it:

- ``IlluminationPattern`` = ``Manual LED Indicies`` (the adapter's spelling), then
  ``ManualLedList`` = ``"5.6.7"`` (the adapter sends one ``l.5.6.7`` command);
- ``Brightness`` 0-255 before the list; ``IlluminationPattern`` = ``Clear`` turns all off;
- read-only ``LedCount`` and ``BitDepth``;
- raw commands through ``SerialCommand``; the reply appears in ``SerialResponse`` without
  the ``-==-`` terminator (``pledpos`` for the geometry check, ``pvals`` for read-back);
- the device is a Shutter (``gs.1``/``gs.0``): it is opened whenever a pattern is lit, so
  it is open when the frame is taken.

It offers the same methods as :class:`acquisition.led_array.LedArray` (``light``, ``clear``,
``lit``, ``geometry``, ``check_geometry``, ``command``, ``close``). Older adapter builds
(an SLM device with other property names) are refused with one line naming what was found.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from acquisition.led_array import (
    BIT_DEPTHS,
    LedArrayError,
    check_geometry,
    parse_positions,
    parse_values,
    to_level,
    to_raw,
)

if TYPE_CHECKING:
    from hardware_profiles.schema import HardwareProfile

MANUAL_PATTERN = "Manual LED Indicies"  # sic: the adapter's spelling
CLEAR_PATTERN = "Clear"
REQUIRED = (
    "IlluminationPattern",
    "ManualLedList",
    "Brightness",
    "LedCount",
    "BitDepth",
    "SerialCommand",
    "SerialResponse",
)


def _device_type_name(core: Any, label: str) -> str:
    try:
        kind = core.getDeviceType(label)
    except Exception:
        return "unknown"
    name = getattr(kind, "name", None) or str(kind)
    return name.split(".")[-1]


class DeviceLedArray:
    """The LED array as Micro-Manager device ``label`` of ``core`` (see the module docstring).

    Parameters
    ----------
    core
        A pymmcore-plus core (camelCase) or pycromanager's ``Core()`` (snake_case) view made
        camelCase by :class:`acquisition.micromanager.SnakeCaseCore`.
    label
        The device label in the Micro-Manager configuration (e.g. ``LedArray``).
    verify
        Read every pattern back (``pvals`` through ``SerialCommand``) and re-send it once if
        it differs; raise :class:`LedArrayError` if it still differs.
    """

    def __init__(self, core: Any, label: str, *, verify: bool = True, retries: int = 2) -> None:
        self.core = core
        self.label = label
        self.port = f"Micro-Manager device {label!r}"
        self.verify = bool(verify)
        self.retries = int(retries)
        try:
            loaded = list(core.getLoadedDevices())
        except Exception as err:
            raise LedArrayError(f"{self.port}: cannot list Micro-Manager devices: {err}") from None
        if label not in loaded:
            others = ", ".join(str(d) for d in loaded if d != "Core") or "none"
            raise LedArrayError(
                f"{self.port}: no such device in the Micro-Manager configuration (devices: "
                f"{others})"
            )
        kind = _device_type_name(core, label)
        props = set(core.getDevicePropertyNames(label))
        missing = [p for p in REQUIRED if p not in props]
        if kind != "ShutterDevice" or missing:
            raise LedArrayError(
                f"{self.port} is a {kind} lacking {', '.join(missing) or 'nothing'} (properties: "
                f"{', '.join(sorted(props)[:12])}): an older IlluminateLedArray adapter build, "
                "which scope does not drive; update Micro-Manager (2025 adapter) or give "
                "--led-port with the array's serial port instead"
            )
        self.led_count = int(float(core.getProperty(label, "LedCount")))
        self.bit_depth = int(float(core.getProperty(label, "BitDepth")))
        if self.bit_depth not in BIT_DEPTHS:
            raise LedArrayError(
                f"{self.port}: BitDepth {self.bit_depth}; scope reads 8- and 16-bit boards only"
            )
        self.firmware_version = ""
        if "InterfaceVersion" in props:
            self.firmware_version = str(core.getProperty(label, "InterfaceVersion"))
        self.device_name = str(core.getProperty(label, "ModelName")) if "ModelName" in props else ""
        self.properties: dict[str, Any] = {"led_count": self.led_count, "bit_depth": self.bit_depth}
        self._geometry = self._read_geometry()

    # ----------------------------------------------------------------------------- raw
    def _fail(self, cmd: str, detail: str) -> LedArrayError:
        return LedArrayError(f"{self.port}: {cmd!r}: {detail}")

    def command(self, cmd: str) -> list[str]:
        """Send a raw firmware command through ``SerialCommand``; the response's lines."""
        try:
            self.core.setProperty(self.label, "SerialCommand", cmd)
            text = str(self.core.getProperty(self.label, "SerialResponse"))
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise self._fail(cmd, f"the device refused the command: {first}") from None
        lines = [ln.rstrip("\r") for ln in text.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if lines and lines[-1].endswith("-==-"):  # tolerate an adapter that keeps it
            lines[-1] = lines[-1][:-4]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        if errors:
            raise self._fail(cmd, errors[0])
        return lines

    def _read_geometry(self) -> dict[int, tuple[float, float, float]]:
        for _ in range(self.retries + 1):
            rows = parse_positions(self.command("pledpos"))
            if len(rows) == self.led_count:
                return dict(sorted(rows.items()))
        raise self._fail(
            "pledpos", f"reply lists {len(rows)} LEDs but LedCount is {self.led_count}"
        )

    # ----------------------------------------------------------------------------- public API
    def geometry(self) -> dict[int, tuple[float, float, float]]:
        return dict(self._geometry)

    def check_geometry(self, profile: HardwareProfile) -> None:
        check_geometry(self._geometry, profile, self._fail)

    def light(self, leds: Sequence[int], brightness: int) -> None:
        """Light exactly ``leds`` at ``brightness`` (0-255) and open the device's shutter."""
        ids: list[int] = []
        for led in leds:
            if not isinstance(led, numbers.Integral) or isinstance(led, bool):
                raise LedArrayError(f"{self.port}: LED ids must be integers, got {led!r}")
            if int(led) not in self._geometry:
                raise LedArrayError(f"{self.port}: the array has no LED {led}")
            if int(led) not in ids:
                ids.append(int(led))
        if not isinstance(brightness, numbers.Integral) or not 0 <= brightness <= 255:
            raise LedArrayError(f"{self.port}: brightness {brightness!r} is outside 0-255")
        if not ids or brightness == 0:
            self.clear()
            return
        for _ in range(self.retries + 1):
            self._set("Brightness", int(brightness))
            self._set("IlluminationPattern", MANUAL_PATTERN)
            self._set("ManualLedList", ".".join(str(i) for i in ids))
            self._open_shutter()
            if not self.verify or self._matches(dict.fromkeys(ids, int(brightness))):
                return
        raise self._fail("pvals", f"LEDs {ids[:8]} at {brightness} did not read back as set")

    def clear(self) -> None:
        for _ in range(self.retries + 1):
            self._set("IlluminationPattern", CLEAR_PATTERN)
            if not self.verify or self._matches({}):
                return
        raise self._fail("pvals", "LEDs stay lit after the 'Clear' pattern")

    def _values(self) -> dict[int, int]:
        lines = self.command("pvals")
        try:
            return parse_values(lines, self.bit_depth)
        except Exception:  # an unreadable reply
            raise self._fail("pvals", f"unreadable reply {lines[:2]!r}") from None

    def lit(self) -> dict[int, int]:
        raw = self._values()
        levels = {led: to_level(v, self.bit_depth) for led, v in raw.items()}
        return {led: v for led, v in levels.items() if v > 0}

    def close(self) -> None:
        """Nothing to close: Micro-Manager owns the device."""

    def __enter__(self) -> DeviceLedArray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- helpers
    def _set(self, prop: str, value: object) -> None:
        try:
            self.core.setProperty(self.label, prop, value)
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LedArrayError(f"{self.port}: cannot set {prop} to {value!r}: {first}") from None

    def _open_shutter(self) -> None:
        try:
            self.core.setShutterOpen(self.label, True)
        except Exception as err:
            raise LedArrayError(f"{self.port}: cannot open the shutter: {err}") from None

    def _matches(self, expected: dict[int, int]) -> bool:
        raw = self._values()
        want = {led: to_raw(v, self.bit_depth) for led, v in expected.items()}
        return all(raw.get(led, -1) == want.get(led, 0) for led in self._geometry)
