"""The serial exchange with an Illuminate board: one command out, its checked reply back.

Each reply ends with ``-==-`` (alone on its line or after a JSON's closing brace) or is an
error line; :func:`acquisition.led_protocol.classify_line` reads each line. A reply that does
not parse or carries an unexpected line is a garbled exchange and is retried; silence is
retried after a resynchronising newline; after ``retries`` failures the port is closed,
reopened and the handshake redone once before :class:`LedArrayError` is raised. Every error
names the port and the command. The LED logic on top is :class:`acquisition.led_array.LedArray`.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import Any, Self, TypeVar

import serial

from acquisition.led_protocol import Garbled, LedArrayError, classify_line

_T = TypeVar("_T")


class Rejected(LedArrayError):
    """The firmware answered a command with an error line, every time it was sent."""


# Failures of one exchange, handled (retried) inside the link; never reach the caller.
class NoReply(Exception):
    """No complete reply within the timeout."""


class FirmwareError(Exception):
    """The reply was an error line ``ERROR[<code>]: ...``."""


class LinkLost(Exception):
    """The serial port failed or was closed."""


def seconds_text(t: float) -> str:
    return f"{t:.1f}" if round(t, 1) == t else f"{t:g}"


def open_failure(err: BaseException) -> str:
    code = getattr(err, "errno", None)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in str(err):
        return "the port is in use by another program (scope, Micro-Manager or a terminal)"
    if isinstance(code, int) and code > 0:
        reason = os.strerror(code)
        if code == errno.EACCES:
            reason += " (on Linux add yourself to the 'dialout' group and log in again)"
        return reason
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class IlluminateLink:
    """One serial connection to an Illuminate board: commands out, checked replies back.

    The base of :class:`acquisition.led_board.IlluminateBoard`, which adds the handshake
    (:meth:`_handshake`, also redone after a reconnection), and of
    :class:`acquisition.led_array.LedArray`, which adds the LED logic.
    """

    def __init__(self, port: str, *, baudrate: int, timeout_s: float, retries: int) -> None:
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
        self._link: serial.SerialBase | None = None
        self._closed = False
        self._rx = bytearray()
        self._poll_s = min(0.02, self.timeout_s / 4)
        self._quiet_s = min(0.02, self.timeout_s / 4)

    def _handshake(self, *, first: bool) -> None:
        """Bring the firmware into the state the driver expects (after every (re)connection)."""
        raise NotImplementedError

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
                f"cannot open LED array port {self.port!r}: {open_failure(err)}"
            ) from None
        self._link = link
        self._rx.clear()

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
                except LinkLost as err:
                    failure = err
                    break
                except (NoReply, Garbled, FirmwareError) as err:
                    failure = err
                if isinstance(failure, FirmwareError):
                    continue  # an error line ends the reply: nothing left to discard
                try:
                    self._resync(send_newline=isinstance(failure, NoReply))
                except LinkLost as err:
                    failure = err
                    break
            rejected = isinstance(failure, FirmwareError) and not trusted
            if rejected or not reconnect or reconnected:
                raise self._describe(cmd, failure, reconnected)
            self._reconnect(cmd, failure)
            reconnected = True

    def _describe(self, cmd: str, failure: Exception | None, reconnected: bool) -> LedArrayError:
        tries = f"{self.retries + 1} attempts" + (", reconnected once" if reconnected else "")
        if isinstance(failure, NoReply):
            return LedArrayError(
                f"LED array on {self.port}: no reply to {cmd!r} within "
                f"{seconds_text(self.timeout_s)} s ({tries})"
            )
        if isinstance(failure, FirmwareError):
            return Rejected(f"LED array on {self.port}: {cmd!r} failed ({tries}): {failure}")
        if isinstance(failure, LinkLost):
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
            raise LinkLost("the port is closed")
        try:
            link.reset_input_buffer()
            self._rx.clear()
            link.write(cmd.encode("ascii") + b"\n")
        except serial.SerialTimeoutException:
            raise NoReply("write timed out") from None
        except (serial.SerialException, OSError) as err:
            raise LinkLost(str(err) or type(err).__name__) from None
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
                        raise FirmwareError(error)  # an error followed by -==- (some builds)
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
                raise FirmwareError(error)
            if rx and now - last_byte > self._quiet_s:
                # firmware ends every line at once: a stalled partial line lost its newline
                raise Garbled(f"unterminated line {bytes(rx)!r}")
            if now - last_byte > self.timeout_s or now > hard_deadline:
                raise NoReply()
            if nudge_at is not None and now > nudge_at:
                # Silence so far: if the command's newline was lost, the firmware is still
                # waiting for it. An extra newline completes it; an empty line is ignored.
                nudge_at = None
                self._write(b"\n")
            try:
                waiting = self._link.in_waiting
                chunk = self._link.read(waiting or 1)
            except (serial.SerialException, OSError) as err:
                raise LinkLost(str(err) or type(err).__name__) from None
            if chunk:
                rx += chunk
                last_byte = time.monotonic()
                nudge_at = None

    def _write(self, data: bytes) -> None:
        assert self._link is not None
        try:
            self._link.write(data)
        except serial.SerialTimeoutException:
            raise NoReply("write timed out") from None
        except (serial.SerialException, OSError) as err:
            raise LinkLost(str(err) or type(err).__name__) from None

    def _resync(self, *, send_newline: bool) -> None:
        """Discard whatever the firmware still sends; optionally end a half-received line."""
        link = self._link
        if link is None:
            raise LinkLost("the port is closed")
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
            raise LinkLost(str(err) or type(err).__name__) from None
        self._rx.clear()


__all__ = [
    "FirmwareError",
    "IlluminateLink",
    "LinkLost",
    "NoReply",
    "Rejected",
    "open_failure",
    "seconds_text",
]
