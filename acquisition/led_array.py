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
tested on recorded replies; the serial exchange (retries, resynchronising, reconnecting) is
:class:`acquisition.led_link.IlluminateLink`; the handshake and geometry
:class:`acquisition.led_board.IlluminateBoard`; this module is the array, :class:`LedArray`:
lighting with read-back. The 0.x-1.x firmware family (pyilluminate's) is refused in
one line.

:class:`LedArray` lights channels with explicit ``l`` lists only (never ``bf``/``df``, whose
patterns depend on the firmware's NA setting), splits lists longer than 64 bytes (older
firmware's input buffer, the conservative size) over several ``l`` commands with autoclear
off, and by default reads the LED values back (``pvals``) after every change, correcting
stray or missing LEDs until the firmware reports exactly the requested pattern: a dropped or
garbled byte never leaves a wrong LED lit unnoticed.

Every reply is checked and every error names the port and the command (see
:mod:`acquisition.led_link`).

Examples
--------
>>> with LedArray.open("/dev/ttyACM0") as array:            # doctest: +SKIP
...     array.check_geometry(hardware_profiles.load("pls43"))
...     array.light([0, 1, 2], 255)
...     array.clear()
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from acquisition.led_board import IlluminateBoard
from acquisition.led_link import Rejected
from acquisition.led_protocol import (
    BIT_DEPTHS,
    FIRMWARE_BUFFER_BYTES,
    POSITION_RESOLUTION_MM,
    TERMINATOR,
    LedArrayError,
    check_geometry,
    classify_line,
    expect_exactly,
    expect_nothing,
    l_commands,
    parse_error,
    parse_positions,
    parse_props,
    parse_values,
    short_list,
    to_level,
    to_raw,
)


class LedArray(IlluminateBoard):
    """An Illuminate LED array on a serial port. Create it with :meth:`LedArray.open`.

    What the board is (``port``, ``firmware_version``, ``led_count``, ``device_name``,
    ``properties``, ``bit_depth``, :meth:`geometry`) comes from the handshake of
    :class:`acquisition.led_board.IlluminateBoard`; ``verify`` says whether every
    :meth:`light` and :meth:`clear` is read back.
    """

    def __init__(
        self, port: str, *, baudrate: int, timeout_s: float, retries: int, verify: bool
    ) -> None:
        super().__init__(port, baudrate=baudrate, timeout_s=timeout_s, retries=retries)
        self.verify = bool(verify)

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
        array._connect_board()
        return array

    # ----------------------------------------------------------------------------- lighting
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
        except Rejected as err:
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
