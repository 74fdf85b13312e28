"""Driver for LED arrays running the Illuminate firmware (2.x), over pyserial.

Illuminate (sci-microscopy/illuminate) speaks one command per line, arguments split by
``.``; each reply ends with ``-==-`` — alone on its line, or at the end of the JSON's last
line (``pprops`` and ``pledpos`` print ``\n}`` with no newline, so their last line is
``}-==-``) — and an error is a line ``ERROR[<code>]: ...``, with or without a following
``-==-``. JSON replies are parsed as JSON whatever their line layout; only a damaged reply
(or ``pvals.a.b``, whose last row keeps its comma) is read row by row. Values are read at
the board's ``bit_depth`` (8, or 16 on TLC5955 boards, where a level v reads back as v·257).
The protocol parsing is pure functions (:func:`classify_line`, :func:`parse_props`,
:func:`parse_positions`, :func:`parse_values`), tested on recorded replies; the transport is
:class:`LedArray`. The 0.x-1.x firmware family (pyilluminate's) is refused in one line.

:class:`LedArray` lights channels with explicit ``l`` lists only (never ``bf``/``df``, whose
patterns depend on the firmware's NA setting), splits lists longer than 64 bytes (older
firmware's input buffer, the conservative size) over several ``l`` commands with autoclear
off, and by default reads the LED values back (``pvals``) after every change, correcting
stray or missing LEDs until the firmware reports exactly the requested pattern: a dropped or
garbled byte never leaves a wrong LED lit unnoticed.

Every reply is checked. A reply that does not parse or carries an unexpected line is a
garbled exchange and is retried; silence is retried after a resynchronising newline; after
``retries`` failures the port is closed, reopened and the handshake redone once before
:class:`LedArrayError` is raised. Every error names the port and the command.

Examples
--------
>>> with LedArray.open("/dev/ttyACM0") as array:            # doctest: +SKIP
...     array.check_geometry(hardware_profiles.load("pls43"))
...     array.light([0, 1, 2], 255)
...     array.clear()
"""

from __future__ import annotations

import errno
import json
import numbers
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import serial

from hardware_profiles.errors import ScopeError

if TYPE_CHECKING:
    from hardware_profiles.schema import HardwareProfile

#: Bytes of one command line (line ending excluded) the firmware's input buffer holds.
FIRMWARE_BUFFER_BYTES = 64
#: Resolution of the positions ``pledpos`` reports, mm.
POSITION_RESOLUTION_MM = 0.01
TERMINATOR = b"-==-"

_T = TypeVar("_T")
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


class _Rejected(LedArrayError):
    """The firmware answered a command with an error line, every time it was sent."""


# Failures of one exchange, handled (retried) inside the driver.
class _NoReply(Exception):
    pass


class _Garbled(Exception):
    pass


class _FirmwareError(Exception):
    pass


class _LinkLost(Exception):
    pass


def _seconds(t: float) -> str:
    return f"{t:.1f}" if round(t, 1) == t else f"{t:g}"


def _open_failure(err: BaseException) -> str:
    code = getattr(err, "errno", None)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in str(err):
        return "the port is in use by another program (scope, Micro-Manager or a terminal)"
    if isinstance(code, int) and code > 0:
        reason = os.strerror(code)
        if code == errno.EACCES:
            reason += " (on Linux add yourself to the 'dialout' group and log in again)"
        return reason
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _is_fuzzy(line: bytes, word: bytes, needed: int) -> bool:
    return sum(a == b for a, b in zip(line, word, strict=False)) >= needed


def _expect_exactly(text: str) -> Callable[[list[str]], None]:
    def check(lines: list[str]) -> None:
        if lines != [text]:
            raise _Garbled(f"expected {text!r}, got {lines!r}")

    return check


def _expect_nothing(lines: list[str]) -> None:
    if lines:
        raise _Garbled(f"expected an empty reply, got {lines!r}")


def _parse_version(lines: list[str]) -> str:
    found = [m.group(0) for line in lines if (m := _VERSION.search(line))]
    if len(found) != 1:
        raise _Garbled(f"expected one version number, got {lines!r}")
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
        raise _Garbled("reply is not a JSON object")
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


def _parse_led_count(lines: list[str]) -> int:
    obj = _json_object(lines)
    if obj is not None and isinstance(obj.get("led_count"), int):
        return obj["led_count"]
    for line in lines:
        m = _LED_COUNT_ROW.fullmatch(line)
        if m is not None:
            return int(m.group(1))
    raise _Garbled("reply has no readable 'led_count'")


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
        raise _Garbled("reply has no LED value rows")
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
    ``\r\n`` endings. Raises :class:`_Garbled` for a line that looks like a damaged
    terminator or error line.
    """
    raw = raw.rstrip(b"\r")
    if raw.endswith(TERMINATOR):
        head = raw[: -len(TERMINATOR)]
        if TERMINATOR in head or (head and set(head) <= set(b"-=")):
            raise _Garbled(f"mangled terminator line {raw!r}")
        return "end", head.decode("latin-1")
    if (
        TERMINATOR in raw
        or (raw and set(raw) <= set(b"-="))
        or (len(raw) >= 4 and _is_fuzzy(raw[-4:], TERMINATOR, 3))
    ):
        raise _Garbled(f"mangled terminator line {raw!r}")
    text = raw.decode("latin-1")
    if text.startswith("ERROR"):
        if parse_error(text) is None:
            raise _Garbled(f"mangled error line {text!r}")
        return "error", text
    # 4 of 5 letters of "ERROR" in place needs the E or the first R
    if (raw[:1] == b"E" or raw[1:2] == b"R") and _is_fuzzy(raw[:5], b"ERROR", 4):
        raise _Garbled(f"mangled error line {raw!r}")
    return "payload", text


def _l_commands(leds: Sequence[int], limit: int = FIRMWARE_BUFFER_BYTES) -> list[str]:
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


class LedArray:
    """An Illuminate LED array on a serial port. Create it with :meth:`LedArray.open`.

    Attributes
    ----------
    port
        Device path or pyserial URL the array was opened on.
    firmware_version
        Version string the firmware reports (``version``).
    led_count
        Number of LEDs (``pprops``).
    device_name
        Device name (``pprops``), or ``""`` when the firmware reports none.
    properties
        The whole ``pprops`` JSON object.
    """

    def __init__(
        self, port: str, *, baudrate: int, timeout_s: float, retries: int, verify: bool
    ) -> None:
        if not isinstance(port, str) or not port:
            raise LedArrayError(f"cannot open LED array port {port!r}: not a device path or URL")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}.")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}.")
        self.port = port
        self.baudrate = int(baudrate)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.verify = bool(verify)
        self.firmware_version = ""
        self.led_count = 0
        self.device_name = ""
        self.properties: dict[str, Any] = {}
        self._link: serial.SerialBase | None = None
        self._closed = False
        self._rx = bytearray()
        self._geometry: dict[int, tuple[float, float, float]] = {}
        self.bit_depth = 8
        self._autoclear: bool | None = None  # what the firmware was last told, if known
        self._brightness: int | None = None
        self._poll_s = min(0.02, self.timeout_s / 4)
        self._quiet_s = min(0.02, self.timeout_s / 4)

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        port: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 2.0,
        retries: int = 2,
        verify: bool = True,
    ) -> LedArray:
        """Open the array on ``port`` and shake hands with its firmware.

        Parameters
        ----------
        port
            Device path (``/dev/ttyACM0``, ``COM3``) or pyserial URL (``loop://``,
            ``rfc2217://host:port``).
        baudrate
            Serial speed (USB-CDC boards such as the Teensy ignore it).
        timeout_s
            Longest silence (s) tolerated while waiting for a reply.
        retries
            Re-sends of a failed exchange before reconnecting (once) and giving up.
        verify
            Read the LED values back after every :meth:`light` and :meth:`clear`.

        The handshake switches the firmware to machine-readable replies, reads ``version``,
        ``pprops`` and the ``pledpos`` geometry, and turns autoclear off (``ac.0``).
        """
        array = cls(port, baudrate=baudrate, timeout_s=timeout_s, retries=retries, verify=verify)
        array._connect()
        try:
            array._handshake(first=True)
        except BaseException:
            array.close()
            raise
        return array

    def _connect(self) -> None:
        try:
            if "://" in self.port:
                link = serial.serial_for_url(
                    self.port,
                    baudrate=self.baudrate,
                    timeout=self._poll_s,
                    write_timeout=self.timeout_s,
                )
            else:
                link = serial.Serial(
                    self.port,
                    self.baudrate,
                    timeout=self._poll_s,
                    write_timeout=self.timeout_s,
                    exclusive=True,
                )
        except (serial.SerialException, OSError, ValueError) as err:
            raise LedArrayError(
                f"cannot open LED array port {self.port!r}: {_open_failure(err)}"
            ) from None
        self._link = link
        self._rx.clear()

    def _handshake(self, *, first: bool) -> None:
        """Machine mode, ``version``, ``pprops``, ``pledpos``, autoclear off.

        After a reconnection (``first=False``) the same firmware version, LED count and
        geometry must answer, else a different array is on the port.
        """
        self._autoclear = self._brightness = None
        try:
            self._resync(send_newline=True)  # ends a half-written line a previous program left
        except _LinkLost as err:
            raise self._fail("machine", f"connection lost: {err}") from None
        self._exchange("machine", reconnect=False, strict=False)
        version = self._exchange("version", _parse_version, reconnect=False)
        if first:
            props = self._exchange("pprops", parse_props, reconnect=False)
            count = props.get("led_count")
        else:
            props = self.properties
            count = self._exchange("pprops", _parse_led_count, reconnect=False, strict=False)
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            raise self._fail("pprops", f"reply has no valid 'led_count' ({count!r})")
        if first:
            self._check_family(version, props)
        geometry = self._read_geometry(count)
        if not first and (
            version != self.firmware_version
            or count != self.led_count
            or geometry != self._geometry
        ):
            raise self._fail("pledpos", "a different LED array answered after reconnecting")
        self.firmware_version = version
        self.bit_depth = int(props.get("bit_depth", 8))
        self.properties = props
        self.led_count = count
        self.device_name = str(props.get("device_name", ""))
        self._geometry = geometry
        if int(props.get("color_channel_count", 1)) > 1:
            # full-scale white, so that every channel of a lit LED shows the brightness
            self._exchange("sc.255.255.255", _expect_exactly("CO.255.255.255"), reconnect=False)
        self._exchange("ac.0", _expect_exactly("AC.0"), reconnect=False)
        self._autoclear = False

    def _check_family(self, version: str, props: dict[str, Any]) -> None:
        """Refuse, in one line, firmware whose protocol scope does not speak.

        The 0.x-1.x family (the one pyilluminate drives) scales colours to
        ``interface_bit_depth``, has no brightness after 1.21 and reports ``pledpos`` z in cm;
        scope speaks Illuminate 2.x (sci-microscopy/illuminate).
        """
        major = int(version.split(".")[0])
        if major < 2 or "interface_bit_depth" in props:
            raise self._fail(
                "version",
                f"firmware Illuminate {version} is of the 0.x-1.x family (colours scaled to "
                "interface_bit_depth, pledpos z in cm), which scope does not drive: flash "
                "Illuminate 2.x from sci-microscopy/illuminate",
            )
        depth = props.get("bit_depth", 8)
        if depth not in BIT_DEPTHS:
            raise self._fail(
                "pprops",
                f"the board reports bit_depth {depth!r}; scope reads 8- and 16-bit boards only",
            )

    def _read_geometry(self, count: int) -> dict[int, tuple[float, float, float]]:
        """LED positions from ``pledpos``, each confirmed by two identical readings.

        Reading twice costs one more reply at connection time and makes the table immune
        to a garbled digit, which would still be valid JSON.
        """
        readings: dict[int, list[tuple[float, float, float]]] = {}
        settled: dict[int, tuple[float, float, float]] = {}
        for _ in range(4 * (self.retries + 1)):  # two reads suffice on a clean link
            lines = self._exchange("pledpos", reconnect=False, strict=False)
            for led, xyz in parse_positions(lines).items():
                if xyz in readings.setdefault(led, []):
                    settled[led] = xyz
                else:
                    readings[led].append(xyz)
            if len(settled) >= count:
                break
        if len(settled) != count:
            consistent = len(readings) == len(settled)  # every id seen agreed with itself
            detail = (
                f"reply lists {len(settled)} LEDs but 'pprops' reports {count}"
                if consistent or len(settled) > count
                else f"no two identical readings for {count - len(settled)} of {count} LEDs"
            )
            raise self._fail("pledpos", detail)
        return dict(sorted(settled.items()))

    # ----------------------------------------------------------------------------- public API
    def geometry(self) -> dict[int, tuple[float, float, float]]:
        """LED id -> ``(x, y, z)`` in mm from ``pledpos`` (z: distance below the sample)."""
        return dict(self._geometry)

    def check_geometry(self, profile: HardwareProfile) -> None:
        """Check the firmware's LED table against ``profile`` (see :func:`check_geometry`)."""
        check_geometry(self._geometry, profile, self._fail)

    def light(self, leds: Sequence[int], brightness: int) -> None:
        """Light exactly ``leds`` at ``brightness`` (0-255); every other LED goes dark.

        Sends ``x``, ``sb.<brightness>`` (when it changed) and ``l.<id>.<id>...`` commands
        split to fit the 64-byte input buffer. With ``verify`` the values are read back
        (``pvals``) and the pattern is re-sent until the firmware reports it exactly.
        """
        ids = self._valid_leds(leds)
        level = self._valid_brightness(brightness)
        self._apply(ids if level > 0 else [], level)

    def clear(self) -> None:
        """Turn every LED off (``x``), verified like :meth:`light`."""
        self._apply([], 0)

    def lit(self) -> dict[int, int]:
        """LED id -> level the firmware reports lit (``pvals``; largest colour channel)."""
        readings: dict[int, int] = {}
        for _ in range(self.retries + 1):
            readings.update(self._exchange("pvals", self._parse_values, strict=False))
            if set(self._geometry) <= set(readings):
                break
        else:
            unread = sorted(set(self._geometry) - set(readings))
            raise self._fail("pvals", f"no readable value for LEDs {_short_list(unread)}")
        levels = {led: to_level(raw, self.bit_depth) for led, raw in readings.items()}
        return {led: level for led, level in levels.items() if level > 0}

    def _parse_values(self, lines: list[str]) -> dict[int, int]:
        return parse_values(lines, self.bit_depth)

    def command(self, cmd: str) -> list[str]:
        """Send one raw command and return its payload lines (the ``-==-`` line excluded).

        A firmware error reply raises :class:`LedArrayError` with the firmware's message.
        """
        if not isinstance(cmd, str) or not cmd.isascii() or not cmd.isprintable() or not cmd:
            raise LedArrayError(
                f"LED array on {self.port}: {cmd!r} is not a one-line ASCII command"
            )
        if len(cmd) > FIRMWARE_BUFFER_BYTES:
            raise LedArrayError(
                f"LED array on {self.port}: {cmd[:20]!r}... is {len(cmd)} bytes; the "
                f"firmware's input buffer holds {FIRMWARE_BUFFER_BYTES}"
            )
        # a raw command may change the autoclear or brightness state behind our back
        self._autoclear = self._brightness = None
        return self._exchange(cmd, trusted=False)

    def close(self) -> None:
        """Close the serial port (the LEDs keep their state); the array cannot be used after."""
        self._closed = True
        self._close_link()

    def _close_link(self) -> None:
        if self._link is not None:
            try:
                self._link.close()
            except (serial.SerialException, OSError):
                pass
            self._link = None

    def __enter__(self) -> LedArray:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LedArray(port={self.port!r}, firmware={self.firmware_version!r}, "
            f"leds={self.led_count})"
        )

    # ----------------------------------------------------------------------------- lighting
    def _valid_leds(self, leds: Sequence[int]) -> list[int]:
        ids: list[int] = []
        for led in leds:
            if not isinstance(led, numbers.Integral) or isinstance(led, bool):
                raise LedArrayError(
                    f"LED array on {self.port}: 'l' needs integer LED ids, got {led!r}"
                )
            if int(led) not in ids:
                ids.append(int(led))
        unknown = [led for led in ids if led not in self._geometry]
        if unknown:
            raise LedArrayError(
                f"LED array on {self.port}: cannot light LEDs {_short_list(unknown)} with 'l': "
                f"the array has ids {min(self._geometry)}-{max(self._geometry)}"
            )
        return ids

    def _valid_brightness(self, brightness: int) -> int:
        if not isinstance(brightness, numbers.Integral) or isinstance(brightness, bool):
            raise LedArrayError(
                f"LED array on {self.port}: 'sb' needs an integer brightness, got {brightness!r}"
            )
        if not 0 <= brightness <= 255:
            raise LedArrayError(
                f"LED array on {self.port}: brightness {brightness} for 'sb' is outside 0-255"
            )
        return int(brightness)

    def _apply(self, ids: list[int], level: int) -> None:
        """Send the pattern; with ``verify``, read it back and correct it until it is exact.

        The pattern counts as shown only when one ``pvals`` read-back (or several with no
        command in between) shows every LED, in well-formed rows, at its expected level.
        A garbled byte can make a row unreadable or, rarely, show a wrong level (which only
        triggers a harmless correction); it cannot turn the row of an LED that is wrong into
        the exact expected row. LEDs seen wrong are corrected individually: ``sb.0`` plus an
        ``l`` list turns stray LEDs off, ``sb.<level>`` plus an ``l`` list lights missing ones.
        """
        expected = dict.fromkeys(ids, level)
        rejected = self._send_pattern(ids, level)
        if not self.verify:
            return
        raw = dict.fromkeys(ids, to_raw(level, self.bit_depth))  # what pvals prints
        rounds = 2 * (self.retries + 1)
        problem = ""
        for round_index in range(rounds):
            seen, unread = self._observe(raw)
            wrong = sorted(led for led, levels in seen.items() if levels != {raw.get(led, 0)})
            if not wrong and not unread:
                return
            if wrong:
                led = wrong[0]
                problem = (
                    f"LED {led} reads {max(seen[led])} (expected {raw.get(led, 0)} at "
                    f"{self.bit_depth} bits)"
                )
                if round_index < rounds - 1:
                    self._autoclear = None  # make sure, since several LEDs disagree
                    rejected = self._correct(wrong, expected, round_index) or rejected
            else:
                problem = f"no readable value for LEDs {_short_list(unread)}"
        what = f"LEDs {_short_list(ids)} at {level}" if ids else "all LEDs off"
        cause = f"; last firmware error: {rejected}" if rejected else ""
        raise self._fail("pvals", f"{problem} after {rounds} read-backs to set {what}{cause}")

    def _send_pattern(self, ids: list[int], level: int) -> str:
        self._ensure_autoclear_off()
        self._exchange("x", _expect_nothing)
        rejected = ""
        if ids:
            self._set_brightness(level)
            for cmd in _l_commands(ids):
                rejected = self._send_leds(cmd) or rejected
        return rejected

    def _correct(self, wrong: list[int], expected: dict[int, int], round_index: int) -> str:
        # Each further round sends shorter lists: on a lossy line a short command is far
        # more likely to arrive intact (costs nothing on a clean line, which needs none).
        limit = max(12, FIRMWARE_BUFFER_BYTES >> (round_index + 1))
        self._ensure_autoclear_off()
        rejected = ""
        for target in sorted({expected.get(led, 0) for led in wrong}):
            self._set_brightness(target)
            leds = [led for led in wrong if expected.get(led, 0) == target]
            for cmd in _l_commands(leds, limit):
                rejected = self._send_leds(cmd) or rejected
        return rejected

    def _ensure_autoclear_off(self) -> None:
        if self._autoclear is not False:
            self._exchange("ac.0", _expect_exactly("AC.0"))
            self._autoclear = False

    def _set_brightness(self, level: int) -> None:
        if self._brightness != level:
            self._brightness = None
            self._exchange(f"sb.{level}", _expect_exactly(f"SB.{level}"))
            self._brightness = level

    def _send_leds(self, cmd: str) -> str:
        """Send one ``l`` command; with ``verify`` a firmware rejection is left to the
        read-back (the firmware changes nothing on a rejected command) and returned."""
        try:
            # under verify a rejected list is retried, then left to the read-back
            self._exchange(cmd, _expect_nothing, trusted=not self.verify)
        except _Rejected as err:
            if not self.verify:
                raise
            return str(err)
        return ""

    def _observe(self, expected: dict[int, int]) -> tuple[dict[int, set[int]], list[int]]:
        """Levels seen per LED over ``pvals`` reads with no command in between.

        Reads until every LED is seen or one is seen at a level other than expected.
        """
        seen: dict[int, set[int]] = {}
        for _ in range(2 * (self.retries + 1)):  # one read suffices on a clean link
            for led, level in self._exchange("pvals", self._parse_values, strict=False).items():
                if led in self._geometry:  # else a garbled id
                    seen.setdefault(led, set()).add(level)
            if len(seen) == len(self._geometry) or any(
                levels != {expected.get(led, 0)} for led, levels in seen.items()
            ):
                break
        return seen, sorted(set(self._geometry) - set(seen))

    # ----------------------------------------------------------------------------- exchanges
    def _fail(self, cmd: str, detail: str) -> LedArrayError:
        return LedArrayError(f"LED array on {self.port}: {cmd!r}: {detail}")

    def _exchange(
        self,
        cmd: str,
        parse: Callable[[list[str]], _T] | None = None,
        *,
        reconnect: bool = True,
        strict: bool = True,
        trusted: bool = True,
    ) -> Any:
        """Send ``cmd``, return ``parse(payload)`` (or the payload), retrying failures.

        ``strict`` rejects payload lines with non-ASCII or control characters; lenient
        parsers (``pvals``) see them and skip what they cannot read. A ``trusted`` command
        is one the driver built and knows valid, so a firmware error means a corrupted
        line and is handled like a garbled reply; an untrusted (raw) command that the
        firmware rejects on every attempt is reported without reconnecting.
        """
        if self._closed:
            raise LedArrayError(f"LED array on {self.port}: {cmd!r}: the array has been closed")
        reconnected = False
        while True:
            failure: Exception | None = None
            for _ in range(self.retries + 1):
                try:
                    lines = self._transact(cmd)
                    if strict:
                        bad = [ln for ln in lines if not (ln.isascii() and ln.isprintable())]
                        if bad:
                            raise _Garbled(f"unreadable line {bad[0]!r}")
                    return parse(lines) if parse is not None else lines
                except _LinkLost as err:
                    failure = err
                    break
                except (_NoReply, _Garbled, _FirmwareError) as err:
                    failure = err
                if isinstance(failure, _FirmwareError):
                    continue  # an error line ends the reply: nothing left to discard
                try:
                    self._resync(send_newline=isinstance(failure, _NoReply))
                except _LinkLost as err:
                    failure = err
                    break
            rejected = isinstance(failure, _FirmwareError) and not trusted
            if rejected or not reconnect or reconnected:
                raise self._describe(cmd, failure, reconnected)
            self._reconnect(cmd, failure)
            reconnected = True

    def _describe(self, cmd: str, failure: Exception | None, reconnected: bool) -> LedArrayError:
        tries = f"{self.retries + 1} attempts" + (", reconnected once" if reconnected else "")
        if isinstance(failure, _NoReply):
            return LedArrayError(
                f"LED array on {self.port}: no reply to {cmd!r} within "
                f"{_seconds(self.timeout_s)} s ({tries})"
            )
        if isinstance(failure, _FirmwareError):
            return _Rejected(f"LED array on {self.port}: {cmd!r} failed ({tries}): {failure}")
        if isinstance(failure, _LinkLost):
            return LedArrayError(
                f"LED array on {self.port}: connection lost during {cmd!r}: {failure}"
            )
        detail = str(failure)
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        return LedArrayError(
            f"LED array on {self.port}: garbled reply to {cmd!r} ({tries}): {detail}"
        )

    def _reconnect(self, cmd: str, failure: Exception | None) -> None:
        self._close_link()
        try:
            self._connect()
            self._handshake(first=False)
        except LedArrayError as err:
            raise LedArrayError(
                f"{self._describe(cmd, failure, reconnected=False)}; reconnecting failed: {err}"
            ) from None

    def _transact(self, cmd: str) -> list[str]:
        link = self._link
        if link is None:
            raise _LinkLost("the port is closed")
        try:
            link.reset_input_buffer()
            self._rx.clear()
            link.write(cmd.encode("ascii") + b"\n")
        except serial.SerialTimeoutException:
            raise _NoReply("write timed out") from None
        except (serial.SerialException, OSError) as err:
            raise _LinkLost(str(err) or type(err).__name__) from None
        return self._read_reply()

    def _read_reply(self) -> list[str]:
        """Payload lines up to ``-==-`` (or an error line); raises on silence or garbage."""
        assert self._link is not None
        lines: list[str] = []
        error: str | None = None
        rx = self._rx
        last_byte = time.monotonic()
        hard_deadline = last_byte + 20 * self.timeout_s
        nudge_at: float | None = last_byte + self.timeout_s / 4
        while True:
            while (end := rx.find(b"\n")) >= 0:
                raw = bytes(rx[:end])
                del rx[: end + 1]
                kind, text = classify_line(raw)
                if error is not None:
                    if kind == "end" and not text:
                        raise _FirmwareError(error)  # an error followed by -==- (some builds)
                    raise _Garbled(f"unexpected line {raw!r} after {error!r}")
                if kind == "error":
                    error = text  # a -==- may follow; silence ends the reply otherwise
                    continue
                if text or kind == "payload":
                    lines.append(text)
                if kind == "end":
                    return lines
            now = time.monotonic()
            if error is not None and not rx and now - last_byte > self._quiet_s:
                raise _FirmwareError(error)
            if rx and now - last_byte > self._quiet_s:
                # firmware ends every line at once: a stalled partial line lost its newline
                raise _Garbled(f"unterminated line {bytes(rx)!r}")
            if now - last_byte > self.timeout_s or now > hard_deadline:
                raise _NoReply()
            if nudge_at is not None and now > nudge_at:
                # Silence so far: if the command's newline was lost, the firmware is still
                # waiting for it. An extra newline completes it; an empty line is ignored.
                nudge_at = None
                self._write(b"\n")
            try:
                waiting = self._link.in_waiting
                chunk = self._link.read(waiting or 1)
            except (serial.SerialException, OSError) as err:
                raise _LinkLost(str(err) or type(err).__name__) from None
            if chunk:
                rx += chunk
                last_byte = time.monotonic()
                nudge_at = None

    def _write(self, data: bytes) -> None:
        assert self._link is not None
        try:
            self._link.write(data)
        except serial.SerialTimeoutException:
            raise _NoReply("write timed out") from None
        except (serial.SerialException, OSError) as err:
            raise _LinkLost(str(err) or type(err).__name__) from None

    def _resync(self, *, send_newline: bool) -> None:
        """Discard whatever the firmware still sends; optionally end a half-received line."""
        link = self._link
        if link is None:
            raise _LinkLost("the port is closed")
        try:
            if send_newline:
                link.write(b"\n")
            quiet_since = time.monotonic()
            stop = quiet_since + self.timeout_s
            while time.monotonic() - quiet_since < self._quiet_s and time.monotonic() < stop:
                if link.read(link.in_waiting or 1):
                    quiet_since = time.monotonic()
            link.reset_input_buffer()
        except serial.SerialTimeoutException:
            pass
        except (serial.SerialException, OSError) as err:
            raise _LinkLost(str(err) or type(err).__name__) from None
        self._rx.clear()


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
            parts.append(f"missing ids {_short_list(missing)}")
        if extra:
            parts.append(f"unexpected ids {_short_list(extra)}")
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


def _short_list(values: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
