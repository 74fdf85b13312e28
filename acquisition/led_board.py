"""An Illuminate board after the handshake: which firmware, how many LEDs, where they sit.

:class:`IlluminateBoard` adds to the serial exchange (:class:`acquisition.led_link.IlluminateLink`)
the handshake — machine-readable replies, ``version``, ``pprops``, the ``pledpos`` geometry
read twice, autoclear off — redone after every reconnection (where the same board must
answer), the geometry check against a profile and raw commands. Lighting LEDs is
:class:`acquisition.led_array.LedArray`, built on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acquisition.led_link import IlluminateLink, LinkLost
from acquisition.led_protocol import (
    FIRMWARE_BUFFER_BYTES,
    LedArrayError,
    check_family,
    check_geometry,
    expect_exactly,
    parse_led_count,
    parse_positions,
    parse_props,
    parse_version,
)

if TYPE_CHECKING:
    from hardware_profiles.schema import HardwareProfile


class IlluminateBoard(IlluminateLink):
    """An Illuminate board on a serial port, its handshake done by :meth:`_connect_board`.

    Attributes
    ----------
    port
        Device path or pyserial URL the board was opened on.
    firmware_version
        Version string the firmware reports (``version``).
    led_count
        Number of LEDs (``pprops``).
    device_name
        Device name (``pprops``), or ``""`` when the firmware reports none.
    properties
        The whole ``pprops`` JSON object.
    bit_depth
        Bits per LED value (8, or 16 on TLC5955 boards).
    """

    def __init__(self, port: str, *, baudrate: int, timeout_s: float, retries: int) -> None:
        super().__init__(port, baudrate=baudrate, timeout_s=timeout_s, retries=retries)
        self.firmware_version = ""
        self.led_count = 0
        self.device_name = ""
        self.properties: dict[str, Any] = {}
        self._geometry: dict[int, tuple[float, float, float]] = {}
        self.bit_depth = 8
        self._autoclear: bool | None = None  # what the firmware was last told, if known
        self._brightness: int | None = None

    def _connect_board(self) -> None:
        """Connect and shake hands; the port is closed again if the handshake fails."""
        self._connect()
        try:
            self._handshake(first=True)
        except BaseException:
            self.close()
            raise

    def _handshake(self, *, first: bool) -> None:
        """Machine mode, ``version``, ``pprops``, ``pledpos``, autoclear off.

        After a reconnection (``first=False``) the same firmware version, LED count and
        geometry must answer, else a different array is on the port.
        """
        self._autoclear = self._brightness = None
        try:
            self._resync(send_newline=True)  # ends a half-written line a previous program left
        except LinkLost as err:
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
            check_family(version, props, self._fail)
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(port={self.port!r}, firmware={self.firmware_version!r}, "
            f"leds={self.led_count})"
        )


__all__ = ["IlluminateBoard"]
