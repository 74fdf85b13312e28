"""Driver for LED arrays running the Illuminate firmware (2.x), over pyserial.

Illuminate (sci-microscopy/illuminate) speaks one command per line, arguments split by
``.``; each reply ends with ``-==-`` — alone on its line, or at the end of the JSON's last
line (``pprops`` and ``pledpos`` print ``\n}`` with no newline, so their last line is
``}-==-``) — and an error is a line ``ERROR[<code>]: ...``, with or without a following
``-==-``. JSON replies are parsed as JSON whatever their line layout; only a damaged reply
(or ``pvals.a.b``, whose last row keeps its comma) is read row by row. Values are read at
the board's ``bit_depth`` (8, or 16 on TLC5955 boards, where a level v reads back as v·257).
The protocol parsing is pure functions in :mod:`acquisition.led_protocol`
(:func:`classify_line`, :func:`parse_props`, :func:`parse_positions`, :func:`parse_values`),
tested on recorded replies; this module is the serial transport, :class:`LedArray`. The
0.x-1.x firmware family (pyilluminate's) is refused in one line.

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
import numbers
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import serial

from acquisition.led_protocol import (
    BIT_DEPTHS,
    FIRMWARE_BUFFER_BYTES,
    POSITION_RESOLUTION_MM,
    TERMINATOR,
    Garbled,
    LedArrayError,
    check_geometry,
    classify_line,
    expect_exactly,
    expect_nothing,
    l_commands,
    parse_error,
    parse_led_count,
    parse_positions,
    parse_props,
    parse_values,
    parse_version,
    short_list,
    to_level,
    to_raw,
)

if TYPE_CHECKING:
    from hardware_profiles.schema import HardwareProfile

_T = TypeVar("_T")


class _Rejected(LedArrayError):
    """The firmware answered a command with an error line, every time it was sent."""


# Failures of one exchange, handled (retried) inside the driver.
class _NoReply(Exception):
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
        version = self._exchange("version", parse_version, reconnect=False)
        if first:
            props = self._exchange("pprops", parse_props, reconnect=False)
            count = props.get("led_count")
        else:
            props = self.properties
            count = self._exchange("pprops", parse_led_count, reconnect=False, strict=False)
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
            self._exchange("sc.255.255.255", expect_exactly("CO.255.255.255"), reconnect=False)
        self._exchange("ac.0", expect_exactly("AC.0"), reconnect=False)
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
            raise self._fail("pvals", f"no readable value for LEDs {short_list(unread)}")
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
                f"LED array on {self.port}: cannot light LEDs {short_list(unknown)} with 'l': "
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
                problem = f"no readable value for LEDs {short_list(unread)}"
        what = f"LEDs {short_list(ids)} at {level}" if ids else "all LEDs off"
        cause = f"; last firmware error: {rejected}" if rejected else ""
        raise self._fail("pvals", f"{problem} after {rounds} read-backs to set {what}{cause}")

    def _send_pattern(self, ids: list[int], level: int) -> str:
        self._ensure_autoclear_off()
        self._exchange("x", expect_nothing)
        rejected = ""
        if ids:
            self._set_brightness(level)
            for cmd in l_commands(ids):
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
            for cmd in l_commands(leds, limit):
                rejected = self._send_leds(cmd) or rejected
        return rejected

    def _ensure_autoclear_off(self) -> None:
        if self._autoclear is not False:
            self._exchange("ac.0", expect_exactly("AC.0"))
            self._autoclear = False

    def _set_brightness(self, level: int) -> None:
        if self._brightness != level:
            self._brightness = None
            self._exchange(f"sb.{level}", expect_exactly(f"SB.{level}"))
            self._brightness = level

    def _send_leds(self, cmd: str) -> str:
        """Send one ``l`` command; with ``verify`` a firmware rejection is left to the
        read-back (the firmware changes nothing on a rejected command) and returned."""
        try:
            # under verify a rejected list is retried, then left to the read-back
            self._exchange(cmd, expect_nothing, trusted=not self.verify)
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
                            raise Garbled(f"unreadable line {bad[0]!r}")
                    return parse(lines) if parse is not None else lines
                except _LinkLost as err:
                    failure = err
                    break
                except (_NoReply, Garbled, _FirmwareError) as err:
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
                    raise Garbled(f"unexpected line {raw!r} after {error!r}")
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
                raise Garbled(f"unterminated line {bytes(rx)!r}")
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


__all__ = [
    "BIT_DEPTHS",
    "FIRMWARE_BUFFER_BYTES",
    "POSITION_RESOLUTION_MM",
    "TERMINATOR",
    "LedArray",
    "LedArrayError",
    "check_geometry",
    "classify_line",
    "parse_error",
    "parse_positions",
    "parse_props",
    "parse_values",
    "to_level",
    "to_raw",
]
