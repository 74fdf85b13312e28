"""A Python Micro-Manager device that behaves as the ``IlluminateLedArray`` adapter does.

Micro-Manager's adapter (mmCoreAndDevices, ``DeviceAdapters/IlluminateLEDArray``, the 2025
rewrite) is a Shutter device that owns the array's serial port. This stand-in loads into
pymmcore-plus's ``UniMMCore`` and speaks to a firmware (the emulator's pty, or any port)
over pyserial with the adapter's commands, so scope's :class:`acquisition.mm_led.DeviceLedArray`
is tested against the same properties and the same serial traffic:

- pre-init ``Port``; on initialise ``reset``, ``machine``, ``pprops`` (``LedCount``,
  ``BitDepth``, ``InterfaceVersion``, ``ModelName`` read-only);
- ``IlluminationPattern``: ``Manual LED Indicies`` draws ``l.<ManualLedList>`` (one command,
  not split), ``Clear`` sends ``x``, ``Center LED`` lights the first LED (``l.0``); the other
  patterns of the adapter are listed but not drawn here;
- ``ManualLedList`` (default ``0.1.2.3.4``) redraws when the pattern is manual;
- ``Brightness`` 0-255 sends ``sb.N``; ``SerialCommand`` sends a raw command and stores the
  reply, without ``-==-``, in ``SerialResponse``; the shutter sends ``gs.1``/``gs.0``.

A configuration file declares it with ``#py`` lines::

    #py pyDevice,LedArray,acquisition.simulator.mm_led_device,IlluminateLedArrayDevice
    #py Property,LedArray,Port,/dev/pts/7
"""

from __future__ import annotations

import json
import time

import serial
from pymmcore_plus.experimental.unicore import ShutterDevice, pymm_property

PATTERNS = (
    "Clear",
    "Brightfield",
    "Darkfield",
    "DPC Top",
    "DPC Bottom",
    "DPC Left",
    "DPC Right",
    "Color DPC",
    "Color Darkfield",
    "Manual LED Indicies",
    "Annulus",
    "Center LED",
)


class IlluminateLedArrayDevice(ShutterDevice):
    """The adapter's Shutter device, over a real serial link (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._port = ""
        self._link: serial.Serial | None = None
        self._pattern = "Clear"
        self._list = "0.1.2.3.4"
        self._brightness = 255.0
        self._response = ""
        self._open = False
        self._led_count = 0
        self._bit_depth = 8
        self._version = ""
        self._model = ""

    # ------------------------------------------------------------------------- serial
    def _ask(self, cmd: str, timeout_s: float = 2.0) -> str:
        if self._link is None:
            raise RuntimeError("IlluminateLedArray: the device is not initialised")
        self._link.reset_input_buffer()
        self._link.write(cmd.encode("ascii") + b"\n")
        data = b""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            data += self._link.read(self._link.in_waiting or 1)
            if b"-==-" in data:
                return data[: data.index(b"-==-")].decode("latin-1")
            if b"ERROR" in data and data.endswith(b"\n"):
                time.sleep(0.02)  # a -==- may follow an error on some builds
                data += self._link.read(self._link.in_waiting)
                return data.split(b"-==-")[0].decode("latin-1")
        raise RuntimeError(f"IlluminateLedArray: no reply to {cmd!r}")

    def _send(self, cmd: str) -> None:
        reply = self._ask(cmd)
        self._response = reply
        if "ERROR" in reply:
            raise RuntimeError(f"IlluminateLedArray: {reply.strip()}")

    def initialize(self) -> None:
        self._link = serial.Serial(self._port, 115200, timeout=0.01)
        self._ask("reset")
        self._ask("machine")
        props = json.loads(self._ask("pprops"))
        self._led_count = int(props["led_count"])
        self._bit_depth = int(props.get("bit_depth", 8))
        self._version = str(props.get("interface_version", ""))
        self._model = str(props.get("device_name", ""))

    def shutdown(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    # ------------------------------------------------------------------------- shutter
    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._send(f"gs.{int(bool(open))}")
        self._open = bool(open)

    # ------------------------------------------------------------------------- properties
    @pymm_property(is_pre_init=True, name="Port")
    def port(self) -> str:
        """Serial port of the array."""
        return self._port

    @port.setter
    def port(self, value: str) -> None:
        self._port = str(value)

    @pymm_property(allowed_values=PATTERNS, name="IlluminationPattern")
    def pattern(self) -> str:
        return self._pattern

    @pattern.setter
    def pattern(self, value: str) -> None:
        self._pattern = str(value)
        self._draw()

    @pymm_property(name="ManualLedList")
    def manual_led_list(self) -> str:
        return self._list

    @manual_led_list.setter
    def manual_led_list(self, value: str) -> None:
        self._list = str(value)
        if self._pattern == "Manual LED Indicies":
            self._draw()

    @pymm_property(limits=(0.0, 255.0), name="Brightness")
    def brightness(self) -> float:
        return self._brightness

    @brightness.setter
    def brightness(self, value: float) -> None:
        self._brightness = float(value)
        self._send(f"sb.{round(self._brightness)}")

    @pymm_property(name="SerialCommand")
    def serial_command(self) -> str:
        return ""

    @serial_command.setter
    def serial_command(self, value: str) -> None:
        self._response = self._ask(str(value))

    @pymm_property(name="SerialResponse")
    def serial_response(self) -> str:
        return self._response

    @serial_response.setter
    def serial_response(self, value: str) -> None:
        self._response = str(value)

    @pymm_property(is_read_only=True, name="LedCount")
    def led_count(self) -> int:
        return self._led_count

    @pymm_property(is_read_only=True, name="BitDepth")
    def bit_depth(self) -> int:
        return self._bit_depth

    @pymm_property(is_read_only=True, name="InterfaceVersion")
    def interface_version(self) -> str:
        return self._version

    @pymm_property(is_read_only=True, name="ModelName")
    def model_name(self) -> str:
        return self._model

    def _draw(self) -> None:
        if self._pattern == "Clear":
            self._send("x")
        elif self._pattern == "Manual LED Indicies":
            self._send("l." + self._list)
        elif self._pattern == "Center LED":
            self._send("l.0")
