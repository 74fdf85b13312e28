"""An emulator of the Illuminate LED-array firmware, speaking its serial protocol on a pty.

Three modules: :mod:`.illuminate_protocol` (tokens, numbers, the error table, the
terminator), :mod:`.illuminate_firmware` (the firmware's state and commands, one reply per
command line) and this one, the device: a pseudo-terminal served by a thread, with serial
faults.

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

import os
import random
import select
import threading
import time
import tty
from typing import TYPE_CHECKING

from pydantic import Field

from acquisition.simulator.illuminate_firmware import IlluminateFirmware
from acquisition.simulator.illuminate_protocol import INPUT_BUFFER_BYTES, TERMINATOR
from acquisition.simulator.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hardware_profiles.schema import HardwareProfile, Led

__all__ = ["INPUT_BUFFER_BYTES", "TERMINATOR", "IlluminateEmulator", "SerialFaults"]


class SerialFaults(Settings):
    """Faults injected on the emulated serial link; all off by default, seeded, deterministic.

    The ``serial:`` section of ``--sim-config`` (a pydantic model: ranges on the fields, a bad
    value is one line naming the key).

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

    drop_probability: float = Field(0.0, ge=0.0, le=1.0)
    garble_probability: float = Field(0.0, ge=0.0, le=1.0)
    reply_delay_s: float = Field(0.0, ge=0.0)
    seed: int = 0


class IlluminateEmulator(IlluminateFirmware):
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
        if line_ending not in ("\n", "\r\n"):
            raise ValueError(f"line_ending must be '\\n' or '\\r\\n', got {line_ending!r}.")
        super().__init__(
            leds,
            firmware_version=firmware_version,
            na=na,
            device_name=device_name,
            bit_depth=bit_depth,
            printing=printing,
            error_terminator=error_terminator,
            input_buffer_bytes=input_buffer_bytes,
        )
        self.line_ending = line_ending
        self.faults = faults or SerialFaults()
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

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
        self._send_text(self.reply(text, overflow))

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
