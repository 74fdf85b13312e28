"""The Illuminate LED-array firmware's state and commands, without a serial port.

:class:`IlluminateFirmware` answers one command line at a time (:meth:`~IlluminateFirmware.reply`)
as the firmware does: it parses the line with :mod:`.illuminate_protocol`, validates the
command completely, changes its LED state and returns the reply text; what its query commands
print is in :mod:`.illuminate_printers`. The device that serves it on a pseudo-terminal is
:class:`~acquisition.simulator.firmware.IlluminateEmulator`; the protocol and the choices
made where the firmware is silent are described there.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from acquisition.simulator import illuminate_printers as printers
from acquisition.simulator.illuminate_protocol import (
    ERROR_ARGUMENT_COUNT,
    ERROR_ARGUMENT_RANGE,
    ERROR_INVALID_ARGUMENT,
    ERROR_INVALID_COMMAND,
    ERROR_MEMORY,
    INPUT_BUFFER_BYTES,
    NAMED_LEVELS,
    POWER_ON_BRIGHTNESS,
    PRINTING_STYLES,
    TERMINATOR,
    VERSION,
    CommandError,
    Reply,
    error_line,
    number,
    split_command,
)

if TYPE_CHECKING:
    from hardware_profiles.schema import Led


class IlluminateFirmware:
    """The firmware of an Illuminate LED array: its state, its commands, its replies.

    Parameters are those of :class:`~acquisition.simulator.firmware.IlluminateEmulator`
    except the serial link's (``faults``, ``line_ending``).
    """

    def __init__(
        self,
        leds: Sequence[Led],
        *,
        firmware_version: str = "2.1",
        na: float = 0.4,
        device_name: str = "scope-sim-array",
        bit_depth: int = 8,
        printing: str = "firmware",
        error_terminator: bool | None = None,
        input_buffer_bytes: int = INPUT_BUFFER_BYTES,
    ) -> None:
        leds = list(leds)
        if not leds:
            raise ValueError("An LED array needs at least one LED; got an empty list.")
        ids = [int(led.id) for led in leds]
        if len(set(ids)) != len(ids):
            raise ValueError(f"LED ids must be unique; got {ids}.")
        if not VERSION.fullmatch(firmware_version):
            raise ValueError(
                f"firmware_version must look like '2.1' (numbers separated by dots), "
                f"got {firmware_version!r}."
            )
        if not 0.0 < na <= 1.0:
            raise ValueError(f"na must lie in (0, 1], got {na}.")
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
        if printing not in PRINTING_STYLES:
            raise ValueError(f"printing must be one of {PRINTING_STYLES}, got {printing!r}.")
        self.firmware_version = firmware_version
        self.device_name = device_name
        self.bit_depth = bit_depth
        self.printing = printing
        self.input_buffer_bytes = int(input_buffer_bytes)
        self._errors_terminated = (
            int(firmware_version.split(".")[0]) < 2
            if error_terminator is None
            else error_terminator
        )
        self._ids = ids
        self._index = {led_id: i for i, led_id in enumerate(ids)}
        rgb = any(getattr(led, "color", "white") == "rgb" for led in leds)
        self._channels = ("r", "g", "b") if rgb else ("w",)
        # int16 centi-millimetres, z relative to the first LED, as in the firmware's tables
        self._centi = [
            (round(led.x_mm * 100), round(led.y_mm * 100), round(led.z_mm * 100)) for led in leds
        ]
        self._z0_centi = self._centi[0][2]
        self._initial_na = float(na)
        self.command_log: list[str] = []
        self._lock = threading.Lock()
        with self._lock:
            self._reset_state()
        self._commands = self._command_table()

    # ----------------------------------------------------------------------------- state
    def lit(self) -> dict[int, int]:
        """LED id -> brightness (0-255, the largest colour channel) of every LED now lit.

        With the global shutter closed (``gs.0``) no LED shines, whatever the values.
        """
        with self._lock:
            if not self._shutter_open:
                return {}
            return {
                self._ids[i]: max(values) for i, values in enumerate(self._values) if any(values)
            }

    def _reset_state(self) -> None:
        """Power-on state (call with the lock held)."""
        self._values = [(0,) * len(self._channels) for _ in self._ids]
        self._autoclear = True
        self._shutter_open = True
        self._machine = False
        self._brightness = POWER_ON_BRIGHTNESS
        # power-on colour as in the firmware: full scale shared between the channels
        self._color = [round(255 / len(self._channels))] * len(self._channels)
        self._na = self._initial_na
        self._distance_centi = self._z0_centi

    def _led_value(self) -> tuple[int, ...]:
        return tuple((c * self._brightness + 254) // 255 for c in self._color)

    def _positions_mm(self) -> list[tuple[float, float, float]]:
        shift = self._distance_centi - self._z0_centi
        return [(x / 100, y / 100, (z + shift) / 100) for x, y, z in self._centi]

    def _sin_theta(self) -> list[float]:
        return [
            math.hypot(x, y) / math.sqrt(x * x + y * y + z * z) for x, y, z in self._positions_mm()
        ]

    def _show(self, indices: Sequence[int]) -> None:
        value = self._led_value()
        if self._autoclear:
            self._values = [(0,) * len(self._channels) for _ in self._ids]
        for i in indices:
            self._values[i] = value

    # ----------------------------------------------------------------------------- replies
    def reply(self, text: str, overflow: bool = False) -> str:
        """The whole reply to one command line (``\\n`` line endings, terminator included).

        ``overflow``: the line was longer than the input buffer (answered with error 17).
        """
        self.command_log.append(text + ("..." if overflow else ""))
        try:
            if overflow:
                raise CommandError(
                    ERROR_MEMORY,
                    f"command longer than the {self.input_buffer_bytes}-byte input buffer",
                )
            tokens = split_command(text)
            if not tokens:
                raise CommandError(ERROR_INVALID_COMMAND, f"{text!r}")
            handler = self._commands.get(tokens[0])
            if handler is None:
                raise CommandError(ERROR_INVALID_COMMAND, f"unknown command {tokens[0]!r}")
            with self._lock:
                reply = handler(tokens[1:])
            if reply.raw is not None:
                return reply.raw + TERMINATOR + "\n"
            lines = reply.short if (self._machine or reply.long is None) else reply.long
            return "\n".join([*lines, TERMINATOR]) + "\n"
        except CommandError as err:
            line = error_line(err.code, err.detail)
            return "\n".join([line, TERMINATOR] if self._errors_terminated else [line]) + "\n"

    # ----------------------------------------------------------------------------- commands
    def _command_table(self) -> dict[str, Callable[[list[str]], Reply]]:
        table: dict[str, Callable[[list[str]], Reply]] = {}
        for names, handler in (
            (("?", "help"), self._cmd_help),
            (("ab", "about"), self._cmd_about),
            (("reboot", "reset"), self._cmd_reset),
            (("ver", "version"), self._cmd_version),
            (("machine",), self._cmd_machine),
            (("human",), self._cmd_human),
            (("ac", "autoClear"), self._cmd_autoclear),
            (("na", "setNa"), self._cmd_na),
            (("sc", "setColor"), self._cmd_color),
            (("sb", "setBrightness"), self._cmd_brightness),
            (("sad", "setArrayDistance"), self._cmd_distance),
            (("l", "led"), self._cmd_led),
            (("x", "xx"), self._cmd_clear),
            (("ff", "fillArray"), self._cmd_fill),
            (("bf", "brightfield"), self._cmd_brightfield),
            (("df", "darkfield"), self._cmd_darkfield),
            (("pvals", "printVals"), self._cmd_pvals),
            (("pp", "pprops", "printParams"), self._cmd_pprops),
            (("pledpos", "printLedPositions"), self._cmd_pledpos),
            (("pledposna", "printLedPositionsNa"), self._cmd_pledposna),
            (("gs", "globalShutter"), self._cmd_global_shutter),
        ):
            for name in names:
                table[name] = handler
        return table

    @staticmethod
    def _no_args(args: list[str]) -> None:
        if args:
            raise CommandError(ERROR_ARGUMENT_COUNT, f"expected no arguments, got {len(args)}")

    def _cmd_help(self, args: list[str]) -> Reply:
        self._no_args(args)
        names: dict[Callable, list[str]] = {}
        for name, handler in self._commands.items():
            names.setdefault(handler, []).append(name)
        lines = ["-----------------------------------", "Command List:"]
        lines += [f"COMMAND: {' / '.join(n)}" for n in names.values()]
        return Reply(lines)

    def _cmd_about(self, args: list[str]) -> Reply:
        self._no_args(args)
        return Reply(printers.about_lines(self.device_name, self.firmware_version))

    def _cmd_reset(self, args: list[str]) -> Reply:
        self._no_args(args)
        machine = self._machine
        self._reset_state()
        self._machine = machine  # the output mode survives a reset (stored in EEPROM)
        return Reply(["RESET"], ["Resetting Array"])

    def _cmd_version(self, args: list[str]) -> Reply:
        self._no_args(args)
        return Reply([self.firmware_version])

    def _cmd_machine(self, args: list[str]) -> Reply:
        self._no_args(args)
        self._machine = True
        return Reply(["Command output set to machine-readable"])

    def _cmd_human(self, args: list[str]) -> Reply:
        self._no_args(args)
        self._machine = False
        return Reply(["Command output set to human-readable"])

    def _cmd_autoclear(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError(ERROR_ARGUMENT_COUNT, f"expected ac or ac.[0/1], got {len(args)}")
        if args:
            if args[0] not in ("0", "1"):
                raise CommandError(ERROR_INVALID_ARGUMENT, f"autoclear {args[0]!r} is not 0 or 1")
            self._autoclear = args[0] == "1"
        flag = int(self._autoclear)
        return Reply([f"AC.{flag}"], [f"Auto clear mode: {flag}"])

    def _cmd_na(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError(ERROR_ARGUMENT_COUNT, f"expected na or na.[100*NA], got {len(args)}")
        if args:
            value = number(args[0], what="NA", maximum=100) / 100.0
            if len(args[0]) == 1:  # the firmware reads na.4 as 0.4
                value *= 10.0
            if not 0.0 < value <= 1.0:
                raise CommandError(ERROR_ARGUMENT_RANGE, f"NA {value:.2f} is outside (0, 1]")
            self._na = value
        return Reply([f"NA.{round(self._na * 100):02d}"], [f"Current NA is {self._na:.2f}."])

    def _cmd_brightness(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError(ERROR_ARGUMENT_COUNT, f"expected sb or sb.[0-255], got {len(args)}")
        if args:
            level = NAMED_LEVELS.get(args[0])
            self._brightness = (
                level if level is not None else number(args[0], what="brightness", maximum=255)
            )
        b = self._brightness
        return Reply([f"SB.{b}"], [f"Current brightness value is {b}."])

    def _cmd_color(self, args: list[str]) -> Reply:
        if len(args) == 1:
            level = NAMED_LEVELS.get(args[0])
            rgb = [level if level is not None else number(args[0], what="colour", maximum=255)] * 3
        elif len(args) == 3:
            rgb = [number(a, what="colour", maximum=255) for a in args]
        elif args:
            raise CommandError(
                ERROR_ARGUMENT_COUNT, f"expected sc.[v] or sc.[r].[g].[b], got {len(args)}"
            )
        else:
            rgb = None
        if rgb is not None:
            # a white array has one channel: its colour follows the brightest component
            self._color = rgb if len(self._channels) == 3 else [max(rgb)]
        text = ".".join(str(c) for c in self._color)
        return Reply([f"CO.{text}"], [f"Current color value is {text}."])

    def _cmd_distance(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError(ERROR_ARGUMENT_COUNT, f"expected sad or sad.[mm], got {len(args)}")
        if args:
            mm = number(args[0], what="array distance (mm)", maximum=255)
            if mm == 0:
                raise CommandError(ERROR_ARGUMENT_RANGE, "array distance must be positive")
            self._distance_centi = mm * 100
        mm = round(self._distance_centi / 100)
        return Reply([f"DZ.{mm}"], [f"Current array distance from sample is {mm}mm"])

    def _cmd_led(self, args: list[str]) -> Reply:
        indices = []
        for token in args:
            led_id = number(token, what="LED", maximum=65535)
            if led_id not in self._index:
                raise CommandError(
                    ERROR_ARGUMENT_RANGE,
                    f"LED {led_id} is not on this array (ids {min(self._ids)}-{max(self._ids)})",
                )
            indices.append(self._index[led_id])
        self._show(indices or [0])  # a bare `l` lights the first LED, as the firmware does
        return Reply([])

    def _cmd_clear(self, args: list[str]) -> Reply:
        self._no_args(args)
        self._values = [(0,) * len(self._channels) for _ in self._ids]
        return Reply([])

    def _cmd_fill(self, args: list[str]) -> Reply:
        self._no_args(args)
        self._show(range(len(self._ids)))
        return Reply([])

    def _cmd_brightfield(self, args: list[str]) -> Reply:
        self._no_args(args)
        self._show([i for i, s in enumerate(self._sin_theta()) if s <= self._na])
        return Reply([])

    def _cmd_darkfield(self, args: list[str]) -> Reply:
        self._no_args(args)
        self._show([i for i, s in enumerate(self._sin_theta()) if s >= self._na])
        return Reply([])

    def _index_range(self, args: list[str]) -> range:
        n = len(self._ids)
        if len(args) > 2:
            raise CommandError(
                ERROR_ARGUMENT_COUNT, f"expected at most [start].[end], got {len(args)}"
            )
        start = number(args[0], what="start index", maximum=n) if args else 0
        end = number(args[1], what="end index", maximum=n) if len(args) > 1 else n
        if start >= end:
            raise CommandError(ERROR_ARGUMENT_RANGE, f"empty index range {start}-{end}")
        return range(start, end)

    def _cmd_global_shutter(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise CommandError(ERROR_ARGUMENT_COUNT, f"expected gs or gs.[0/1], got {len(args)}")
        if args:
            if args[0] not in ("0", "1"):
                raise CommandError(ERROR_INVALID_ARGUMENT, f"shutter {args[0]!r} is not 0 or 1")
            self._shutter_open = args[0] == "1"
        return Reply([f"GS.{int(self._shutter_open)}"])

    def _json_reply(self, obj: dict, firmware_text: str) -> Reply:
        """``firmware_text`` in firmware printing, else the object on one line."""
        if self.printing == "compact":
            return Reply([], raw=json.dumps(obj, separators=(",", ":")) + "\n")
        return Reply([], raw=firmware_text)

    def _raw_value(self, v: int) -> int:
        return v * 65535 // 255 if self.bit_depth == 16 else v

    def _cmd_pvals(self, args: list[str]) -> Reply:
        span = self._index_range(args)
        return self._json_reply(
            *printers.led_values(self._ids, self._values, span, self._raw_value)
        )

    def _cmd_pledpos(self, args: list[str]) -> Reply:
        span = self._index_range(args)
        return self._json_reply(*printers.led_positions(self._ids, self._positions_mm(), span))

    def _cmd_pledposna(self, args: list[str]) -> Reply:
        span = self._index_range(args)
        return self._json_reply(*printers.led_positions_na(self._ids, self._positions_mm(), span))

    def _cmd_pprops(self, args: list[str]) -> Reply:
        self._no_args(args)
        return self._json_reply(
            *printers.properties(
                self.device_name,
                len(self._ids),
                self._channels,
                self.bit_depth,
                self.firmware_version,
            )
        )
