"""An emulator of the Illuminate LED-array firmware, speaking its serial protocol on a pty.

Illuminate (SciMicroscopy / Waller lab, ``github.com/zfphil/illuminate``) is the de-facto
open firmware of programmable LED arrays for microscopy. This module emulates it byte for
byte on a pseudo-terminal (:func:`os.openpty`), so the real pyserial driver
(:mod:`acquisition.led_array`) is exercised exactly as against hardware, and the simulated
camera renders what the emulated firmware has lit (:meth:`IlluminateEmulator.lit`), not what
the driver meant to light.

Protocol, as imitated from the firmware sources (``commandrouting``, ``ledarray.cpp``):

* one command per line (``\\n`` or ``\\r`` ends it), arguments split by ``.``; empty tokens
  are skipped, so ``l..3`` is ``l.3``; an empty line is ignored silently;
* every reply ends with ``-==-`` (on the JSON's last line after ``pprops``/``pledpos``, as
  the firmware prints them); an error is the line ``ERROR[<code>]: <text>`` with the codes
  of the firmware's error table, followed by ``-==-`` or not (``error_terminator``);
* ``machine`` / ``human`` select terse (``SB.128``, ``NA.40``, ``AC.1``) or verbose
  (``Current brightness value is 128.``) replies; JSON replies are the same in both;
* the input buffer holds 64 bytes by default (older firmware; ``input_buffer_bytes``): a
  longer line is answered with error 17 (out of memory) and discarded, like an overflow;
* commands (short and long names): ``?``/``help``, ``ab``/``about``, ``reboot``/``reset``,
  ``ver``/``version``, ``machine``, ``human``, ``ac``/``autoClear``, ``na``/``setNa``,
  ``sc``/``setColor``, ``sb``/``setBrightness``, ``sad``/``setArrayDistance``,
  ``l``/``led``, ``x``/``xx``, ``ff``/``fillArray``, ``bf``/``brightfield``,
  ``df``/``darkfield``, ``pvals``/``printVals``, ``pp``/``pprops``/``printParams``,
  ``pledpos``/``printLedPositions``, ``pledposna``/``printLedPositionsNa``.

Choices where the firmware is silent or version-dependent (documented in docs/led-array.md):
arguments are parsed strictly (``l.12x`` is "invalid argument", not LED 12) and a command is
validated completely before it changes anything; a bare ``l`` lights the first LED, as the
firmware does; on a single-channel (white) array ``sc.R.G.B`` sets the colour to
``max(R, G, B)``; LED values are ``ceil(colour * brightness / 255)``; the power-on brightness
is 255 with autoclear on; ``bf`` lights LEDs with ``sin θ <= NA`` and ``df`` those with
``sin θ >= NA``, computed from the positions as the firmware does.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import select
import threading
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hardware_profiles.schema import HardwareProfile, Led

TERMINATOR = "-==-"
#: Bytes of one command line the firmware's input buffer holds (line ending excluded).
INPUT_BUFFER_BYTES = 64

# Codes are indices into the firmware's error table (commandrouting.cpp).
ERROR_ARGUMENT_COUNT = 2
ERROR_INVALID_ARGUMENT = 8
ERROR_ARGUMENT_RANGE = 10
ERROR_INVALID_COMMAND = 16
ERROR_MEMORY = 17
_ERROR_TEXT = {
    ERROR_ARGUMENT_COUNT: "Wrong number of arguments.",
    ERROR_INVALID_ARGUMENT: "Invalid argument.",
    ERROR_ARGUMENT_RANGE: "Invalid argument range.",
    ERROR_INVALID_COMMAND: "Invalid command.",
    ERROR_MEMORY: "Not enough memory for operation.",
}

_DIGITS = re.compile(r"[0-9]+")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
_NAMED_LEVELS = {"max": 255, "min": 1, "half": 127, "quarter": 63}
_POWER_ON_BRIGHTNESS = 255
_WAVELENGTHS_NM = {"w": 550.0, "r": 625.0, "g": 525.0, "b": 470.0}


@dataclass(frozen=True)
class SerialFaults:
    """Faults injected on the emulated serial link; all off by default, seeded, deterministic.

    Attributes
    ----------
    drop_probability
        Probability that a byte received from the host is silently lost.
    garble_probability
        Probability that a byte of a reply is replaced by a different random byte.
    reply_delay_s
        Extra delay (s) before every reply, as from slow firmware.
    seed
        Seed of the fault generators: the same host traffic meets the same faults.
    """

    drop_probability: float = 0.0
    garble_probability: float = 0.0
    reply_delay_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop_probability", "garble_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SerialFaults.{name} must lie in [0, 1], got {value}.")
        if not self.reply_delay_s >= 0.0:
            raise ValueError(f"SerialFaults.reply_delay_s must be >= 0, got {self.reply_delay_s}.")


class _CommandError(Exception):
    """A command the firmware rejects: becomes an ``ERROR[code]: ...`` reply line."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@dataclass
class _Reply:
    """Payload lines of a reply in machine (short) and human (long) mode.

    ``raw``, when given, is the exact text the firmware prints before the terminator (its
    JSON printers end some replies without a newline, so ``-==-`` follows on the same line).
    """

    short: list[str]
    long: list[str] | None = None
    raw: str | None = None


#: How the emulator prints its JSON replies.
PRINTING_STYLES = ("firmware", "compact")


def _number(token: str, *, what: str, maximum: int) -> int:
    if not _DIGITS.fullmatch(token):
        raise _CommandError(ERROR_INVALID_ARGUMENT, f"{what} {token!r} is not a number")
    value = int(token)
    if value > maximum:
        raise _CommandError(ERROR_ARGUMENT_RANGE, f"{what} {value} exceeds {maximum}")
    return value


class IlluminateEmulator:
    """An Illuminate LED array on a pseudo-terminal, served by a background thread.

    Parameters
    ----------
    leds
        The array's LEDs (``id``, ``x_mm``, ``y_mm``, ``z_mm`` below the sample, ``color``),
        e.g. ``profile.led_array.leds``. Positions are stored, as by the firmware, in units
        of 0.01 mm; the first LED's ``z_mm`` is the array distance ``pprops`` reports.
    firmware_version
        Version string ``version`` answers; the major number selects the error style
        (2.x: no ``-==-`` after an error line, 1.x: one).
    na
        Initial numerical aperture for the ``bf``/``df`` patterns (``na.N`` changes it).
    faults
        Serial faults to inject (:class:`SerialFaults`); none by default. Assignable later
        through :attr:`faults`.
    device_name
        Name reported by ``about`` and ``pprops``.
    bit_depth
        8 (e.g. sci.iris) or 16 (TLC5955 boards: sci.dome, sci.round, quasi.dome...): ``pprops``
        reports it and ``pvals`` prints values at it, an 8-bit level v as v·257 on 16 bits.
    printing
        ``"firmware"``: JSON replies byte for byte as ``ledarray.cpp`` prints them, quirks
        included (``pprops``/``pledpos`` end with ``}`` and no newline, so the reply's last
        line is ``}-==-``; ``pvals`` rows end ``], `` and a range keeps the last row's comma).
        ``"compact"``: each JSON reply on one line (as a rebuilt firmware might print it).
    error_terminator
        Whether ``-==-`` follows an error line; None: by the major version (1.x yes, 2.x no).
    line_ending
        ``"\n"`` (the firmware's) or ``"\r\n"`` (as some USB-serial bridges deliver it).
    input_buffer_bytes
        Longest command line accepted: 64 as on older firmware (the default, the strictest),
        16384 as on current firmware.

    Examples
    --------
    >>> import hardware_profiles, serial
    >>> with IlluminateEmulator(hardware_profiles.load("pls43").led_array.leds) as emu:
    ...     link = serial.Serial(emu.port, 115200, timeout=1)
    ...     _ = link.write(b"l.3.17\\n")
    ...     link.readline()
    ...     emu.lit()
    ...     link.close()
    b'-==-\\n'
    {3: 255, 17: 255}
    """

    def __init__(
        self,
        leds: Sequence[Led],
        *,
        firmware_version: str = "2.1",
        na: float = 0.4,
        faults: SerialFaults | None = None,
        device_name: str = "scope-sim-array",
        bit_depth: int = 8,
        printing: str = "firmware",
        error_terminator: bool | None = None,
        line_ending: str = "\n",
        input_buffer_bytes: int = INPUT_BUFFER_BYTES,
    ) -> None:
        leds = list(leds)
        if not leds:
            raise ValueError("An LED array needs at least one LED; got an empty list.")
        ids = [int(led.id) for led in leds]
        if len(set(ids)) != len(ids):
            raise ValueError(f"LED ids must be unique; got {ids}.")
        if not _VERSION.fullmatch(firmware_version):
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
        if line_ending not in ("\n", "\r\n"):
            raise ValueError(f"line_ending must be '\\n' or '\\r\\n', got {line_ending!r}.")
        self.firmware_version = firmware_version
        self.device_name = device_name
        self.bit_depth = bit_depth
        self.printing = printing
        self.line_ending = line_ending
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
        self.faults = faults or SerialFaults()
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._commands = self._command_table()

    @classmethod
    def from_profile(cls, profile: HardwareProfile, **options) -> IlluminateEmulator:
        """An emulator with ``profile``'s LEDs and its scan objective's NA."""
        options.setdefault("na", min(profile.scan_objective.na, 1.0))
        return cls(profile.led_array.leds, **options)

    # ----------------------------------------------------------------------------- lifecycle
    @property
    def port(self) -> str:
        """Path of the pty slave (e.g. ``/dev/pts/7``) to give to ``serial.Serial``."""
        if self._port is None:
            raise RuntimeError("The emulator has no port until start() is called.")
        return self._port

    @property
    def faults(self) -> SerialFaults:
        """The faults injected from now on; assigning reseeds the fault generators."""
        return self._faults

    @faults.setter
    def faults(self, faults: SerialFaults) -> None:
        with self._lock:
            self._faults = faults
            self._drop_rng = random.Random(f"{faults.seed}:drop")
            self._garble_rng = random.Random(f"{faults.seed}:garble")

    def start(self) -> None:
        """Open the pseudo-terminal and start answering commands."""
        if self._thread is not None:
            return
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._port = os.ttyname(slave)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, name=f"illuminate-emulator {self._port}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close the pseudo-terminal (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def __enter__(self) -> IlluminateEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        self._brightness = _POWER_ON_BRIGHTNESS
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

    # ----------------------------------------------------------------------------- serial I/O
    def _serve(self) -> None:
        line = bytearray()
        overflow = False
        while not self._stop.is_set():
            readable, _, _ = select.select([self._master], [], [], 0.05)
            if not readable:
                continue
            try:
                data = os.read(self._master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                time.sleep(0.01)
                continue
            drop = self._faults.drop_probability
            for byte in data:
                if drop and self._drop_rng.random() < drop:
                    continue
                if byte in (0x0A, 0x0D):
                    if overflow or line:
                        self._dispatch(line.decode("latin-1"), overflow)
                    line.clear()
                    overflow = False
                elif len(line) >= self.input_buffer_bytes:
                    overflow = True
                else:
                    line.append(byte)

    def _dispatch(self, text: str, overflow: bool) -> None:
        self.command_log.append(text + ("..." if overflow else ""))
        try:
            if overflow:
                raise _CommandError(
                    ERROR_MEMORY,
                    f"command longer than the {self.input_buffer_bytes}-byte input buffer",
                )
            tokens = [t for t in text.split(".") if t]
            if not tokens:
                raise _CommandError(ERROR_INVALID_COMMAND, f"{text!r}")
            handler = self._commands.get(tokens[0])
            if handler is None:
                raise _CommandError(ERROR_INVALID_COMMAND, f"unknown command {tokens[0]!r}")
            with self._lock:
                reply = handler(tokens[1:])
            if reply.raw is not None:
                self._send_text(reply.raw + TERMINATOR + "\n")
                return
            lines = reply.short if (self._machine or reply.long is None) else reply.long
            self._send([*lines, TERMINATOR])
        except _CommandError as err:
            text = _ERROR_TEXT[err.code]
            message = f"{text.rstrip('.')}: {err.detail}" if err.detail else text
            error_line = f"ERROR[{err.code}]: {message}"
            self._send([error_line, TERMINATOR] if self._errors_terminated else [error_line])

    def _send(self, lines: list[str]) -> None:
        self._send_text("\n".join(lines) + "\n")

    def _send_text(self, text: str) -> None:
        if self.line_ending != "\n":
            text = text.replace("\n", self.line_ending)
        data = bytearray(text.encode("ascii", "replace"))
        faults = self._faults
        if faults.garble_probability:
            rng = self._garble_rng
            for i in range(len(data)):
                if rng.random() < faults.garble_probability:
                    data[i] = (data[i] + rng.randrange(1, 256)) % 256
        if faults.reply_delay_s:
            time.sleep(faults.reply_delay_s)
        view = memoryview(data)
        while view and not self._stop.is_set():
            _, writable, _ = select.select([], [self._master], [], 0.05)
            if writable:
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    continue

    # ----------------------------------------------------------------------------- commands
    def _command_table(self) -> dict[str, Callable[[list[str]], _Reply]]:
        table: dict[str, Callable[[list[str]], _Reply]] = {}
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
            raise _CommandError(ERROR_ARGUMENT_COUNT, f"expected no arguments, got {len(args)}")

    def _cmd_help(self, args: list[str]) -> _Reply:
        self._no_args(args)
        names: dict[Callable, list[str]] = {}
        for name, handler in self._commands.items():
            names.setdefault(handler, []).append(name)
        lines = ["-----------------------------------", "Command List:"]
        lines += [f"COMMAND: {' / '.join(n)}" for n in names.values()]
        return _Reply(lines)

    def _cmd_about(self, args: list[str]) -> _Reply:
        self._no_args(args)
        rule = "=" * 100
        return _Reply(
            [
                rule,
                f"  {self.device_name} LED Array Controller",
                f"  Illuminate r{self.firmware_version} | Serial Number: 0001 | "
                "Part Number: 0001 | Teensy MAC address: MAC: 04:e9:e5:00:00:01",
                "  For help, type ?",
                rule,
            ]
        )

    def _cmd_reset(self, args: list[str]) -> _Reply:
        self._no_args(args)
        machine = self._machine
        self._reset_state()
        self._machine = machine  # the output mode survives a reset (stored in EEPROM)
        return _Reply(["RESET"], ["Resetting Array"])

    def _cmd_version(self, args: list[str]) -> _Reply:
        self._no_args(args)
        return _Reply([self.firmware_version])

    def _cmd_machine(self, args: list[str]) -> _Reply:
        self._no_args(args)
        self._machine = True
        return _Reply(["Command output set to machine-readable"])

    def _cmd_human(self, args: list[str]) -> _Reply:
        self._no_args(args)
        self._machine = False
        return _Reply(["Command output set to human-readable"])

    def _cmd_autoclear(self, args: list[str]) -> _Reply:
        if len(args) > 1:
            raise _CommandError(ERROR_ARGUMENT_COUNT, f"expected ac or ac.[0/1], got {len(args)}")
        if args:
            if args[0] not in ("0", "1"):
                raise _CommandError(ERROR_INVALID_ARGUMENT, f"autoclear {args[0]!r} is not 0 or 1")
            self._autoclear = args[0] == "1"
        flag = int(self._autoclear)
        return _Reply([f"AC.{flag}"], [f"Auto clear mode: {flag}"])

    def _cmd_na(self, args: list[str]) -> _Reply:
        if len(args) > 1:
            raise _CommandError(
                ERROR_ARGUMENT_COUNT, f"expected na or na.[100*NA], got {len(args)}"
            )
        if args:
            value = _number(args[0], what="NA", maximum=100) / 100.0
            if len(args[0]) == 1:  # the firmware reads na.4 as 0.4
                value *= 10.0
            if not 0.0 < value <= 1.0:
                raise _CommandError(ERROR_ARGUMENT_RANGE, f"NA {value:.2f} is outside (0, 1]")
            self._na = value
        return _Reply([f"NA.{round(self._na * 100):02d}"], [f"Current NA is {self._na:.2f}."])

    def _cmd_brightness(self, args: list[str]) -> _Reply:
        if len(args) > 1:
            raise _CommandError(ERROR_ARGUMENT_COUNT, f"expected sb or sb.[0-255], got {len(args)}")
        if args:
            level = _NAMED_LEVELS.get(args[0])
            self._brightness = (
                level if level is not None else _number(args[0], what="brightness", maximum=255)
            )
        b = self._brightness
        return _Reply([f"SB.{b}"], [f"Current brightness value is {b}."])

    def _cmd_color(self, args: list[str]) -> _Reply:
        if len(args) == 1:
            level = _NAMED_LEVELS.get(args[0])
            rgb = [level if level is not None else _number(args[0], what="colour", maximum=255)] * 3
        elif len(args) == 3:
            rgb = [_number(a, what="colour", maximum=255) for a in args]
        elif args:
            raise _CommandError(
                ERROR_ARGUMENT_COUNT, f"expected sc.[v] or sc.[r].[g].[b], got {len(args)}"
            )
        else:
            rgb = None
        if rgb is not None:
            # a white array has one channel: its colour follows the brightest component
            self._color = rgb if len(self._channels) == 3 else [max(rgb)]
        text = ".".join(str(c) for c in self._color)
        return _Reply([f"CO.{text}"], [f"Current color value is {text}."])

    def _cmd_distance(self, args: list[str]) -> _Reply:
        if len(args) > 1:
            raise _CommandError(ERROR_ARGUMENT_COUNT, f"expected sad or sad.[mm], got {len(args)}")
        if args:
            mm = _number(args[0], what="array distance (mm)", maximum=255)
            if mm == 0:
                raise _CommandError(ERROR_ARGUMENT_RANGE, "array distance must be positive")
            self._distance_centi = mm * 100
        mm = round(self._distance_centi / 100)
        return _Reply([f"DZ.{mm}"], [f"Current array distance from sample is {mm}mm"])

    def _cmd_led(self, args: list[str]) -> _Reply:
        indices = []
        for token in args:
            led_id = _number(token, what="LED", maximum=65535)
            if led_id not in self._index:
                raise _CommandError(
                    ERROR_ARGUMENT_RANGE,
                    f"LED {led_id} is not on this array (ids {min(self._ids)}-{max(self._ids)})",
                )
            indices.append(self._index[led_id])
        self._show(indices or [0])  # a bare `l` lights the first LED, as the firmware does
        return _Reply([])

    def _cmd_clear(self, args: list[str]) -> _Reply:
        self._no_args(args)
        self._values = [(0,) * len(self._channels) for _ in self._ids]
        return _Reply([])

    def _cmd_fill(self, args: list[str]) -> _Reply:
        self._no_args(args)
        self._show(range(len(self._ids)))
        return _Reply([])

    def _cmd_brightfield(self, args: list[str]) -> _Reply:
        self._no_args(args)
        self._show([i for i, s in enumerate(self._sin_theta()) if s <= self._na])
        return _Reply([])

    def _cmd_darkfield(self, args: list[str]) -> _Reply:
        self._no_args(args)
        self._show([i for i, s in enumerate(self._sin_theta()) if s >= self._na])
        return _Reply([])

    def _index_range(self, args: list[str]) -> range:
        n = len(self._ids)
        if len(args) > 2:
            raise _CommandError(
                ERROR_ARGUMENT_COUNT, f"expected at most [start].[end], got {len(args)}"
            )
        start = _number(args[0], what="start index", maximum=n) if args else 0
        end = _number(args[1], what="end index", maximum=n) if len(args) > 1 else n
        if start >= end:
            raise _CommandError(ERROR_ARGUMENT_RANGE, f"empty index range {start}-{end}")
        return range(start, end)

    def _cmd_global_shutter(self, args: list[str]) -> _Reply:
        if len(args) > 1:
            raise _CommandError(ERROR_ARGUMENT_COUNT, f"expected gs or gs.[0/1], got {len(args)}")
        if args:
            if args[0] not in ("0", "1"):
                raise _CommandError(ERROR_INVALID_ARGUMENT, f"shutter {args[0]!r} is not 0 or 1")
            self._shutter_open = args[0] == "1"
        return _Reply([f"GS.{int(self._shutter_open)}"])

    def _json_reply(self, obj: dict, firmware_text: str) -> _Reply:
        """``firmware_text`` in firmware printing, else the object on one line."""
        if self.printing == "compact":
            return _Reply([], raw=json.dumps(obj, separators=(",", ":")) + "\n")
        return _Reply([], raw=firmware_text)

    def _raw_value(self, v: int) -> int:
        return v * 65535 // 255 if self.bit_depth == 16 else v

    def _cmd_pvals(self, args: list[str]) -> _Reply:
        span = self._index_range(args)
        last = len(self._ids) - 1
        text = '{\n    "led_values" : {\n'
        table = {}
        for i in span:
            values = [self._raw_value(v) for v in self._values[i]]
            table[str(self._ids[i])] = values
            # the firmware compares with the LED count, not the range's end (its quirk)
            end = "], \n" if i != last else "] \n"
            text += f'        "{self._ids[i]}" : [' + ",".join(map(str, values)) + end
        text += "    }\n}\n"
        return self._json_reply({"led_values": table}, text)

    def _cmd_pledpos(self, args: list[str]) -> _Reply:
        span = self._index_range(args)
        positions = self._positions_mm()
        text = '{\n    "led_position_list_cartesian" : {\n'
        table = {}
        for i in span:
            x, y, z = positions[i]
            table[str(self._ids[i])] = [round(x, 2), round(y, 2), round(z, 2)]
            end = "],\n" if i != span[-1] else "]\n"
            text += f'        "{self._ids[i]}" : [' + f"{x:02.2f}, {y:02.2f}, {z:02.2f}" + end
        text += "    }\n}"  # no newline: the terminator follows on this line
        return self._json_reply({"led_position_list_cartesian": table}, text)

    def _cmd_pledposna(self, args: list[str]) -> _Reply:
        span = self._index_range(args)
        positions = self._positions_mm()
        text = '{\n    "led_position_list_na" : {\n'
        table = {}
        for i in span:
            x, y, z = positions[i]
            r = math.sqrt(x * x + y * y + z * z)
            table[str(self._ids[i])] = [round(x / r, 3), round(y / r, 3)]
            end = "],\n" if i != span[-1] else "]\n"
            text += f'        "{self._ids[i]}" : [' + f"{x / r:01.3f}, {y / r:01.3f}" + end
        text += "    }\n}"
        return self._json_reply({"led_position_list_na": table}, text)

    def _cmd_pprops(self, args: list[str]) -> _Reply:
        self._no_args(args)
        props = {
            "device_name": self.device_name,
            "led_count": len(self._ids),
            "color_channels": list(self._channels),
            "color_channel_center_wavelengths": {c: _WAVELENGTHS_NM[c] for c in self._channels},
            "trigger_input_count": 1,
            "trigger_output_count": 1,
            "bit_depth": self.bit_depth,
            "serial_number": 1,
            "color_channel_count": len(self._channels),
            "part_number": 1,
            "mac_address": "04:e9:e5:00:00:01",
            "interface_version": float(".".join(self.firmware_version.split(".")[:2])),
        }
        channels = ", ".join(f'"{c}"' for c in self._channels)
        wavelengths = ", ".join(f'"{c}" : {_WAVELENGTHS_NM[c]:.3f}' for c in self._channels)
        text = (
            "{\n"
            f'    "device_name" : "{self.device_name}",\n'
            f'    "led_count" : {len(self._ids)},\n'
            f'    "color_channels" : [{channels}],\n'
            f'    "color_channel_center_wavelengths" : {{{wavelengths}}},\n'
            '    "trigger_input_count" : 1,\n'
            '    "trigger_output_count" : 1,\n'
            f'    "bit_depth" : {self.bit_depth},\n'
            '    "serial_number" : 1,\n'
            f'    "color_channel_count" : {len(self._channels)},\n'
            '    "part_number" : 1,\n'
            '    "mac_address" : "04:e9:e5:00:00:01",\n'
            f'    "interface_version" : {props["interface_version"]}\n'
            "}"  # no newline: the firmware prints "\n}" and then the terminator
        )
        return self._json_reply(props, text)
