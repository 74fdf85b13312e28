"""LED-array driver round trips over the firmware emulator on a pseudo-terminal.

    python benchmarks/bench_led_array.py [--out docs/bench/led_array.md]

A pty round trip costs ~50 µs; a real USB (Teensy) link is similar, a 115200-baud UART adds
~0.9 ms per 10 bytes, so these are lower bounds for slow links.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, machine


def _reply_bytes(emu, cmd: str) -> int:
    """Bytes of the emulator's reply to ``cmd`` (terminator included), read off its pty."""
    import serial

    link = serial.Serial(emu.port, 115200, timeout=1.0)
    try:
        link.write(cmd.encode("ascii") + b"\n")
        return len(link.read_until(b"-==-\n"))
    finally:
        link.close()


def uart_verify_cost(baudrate: int = 115200) -> list[str]:
    """Cost of one read-back (``pvals``) per pattern on a real UART, computed from bytes.

    8N1 framing: 10 bits a byte. USB-CDC boards (Teensy) ignore the baud rate and are far
    faster; a UART bridge at 115200 baud pays this in full on every pattern.
    """
    import hardware_profiles
    from acquisition.simulator.firmware import IlluminateEmulator
    from hardware_profiles.schema import Led

    pls43 = hardware_profiles.load("pls43").led_array.leds
    dome = [
        Led(id=i, x_mm=float(i % 25), y_mm=float(i // 25), z_mm=60.0, color="rgb")
        for i in range(581)
    ]  # a sci.dome-sized board: 581 RGB LEDs
    rows = [
        f"| board | bit depth | printing | `pvals` reply bytes | ms per pattern at {baudrate} |",
        "|---|---|---|---|---|",
    ]
    for name, leds in (("pls43, 43 white LEDs", pls43), ("581 RGB LEDs (sci.dome size)", dome)):
        for depth in (8, 16):
            for printing in ("firmware", "compact"):
                with IlluminateEmulator(leds, bit_depth=depth, printing=printing) as emu:
                    # worst case for the digits: every LED lit at full scale
                    _reply_bytes(emu, "ff")
                    n = _reply_bytes(emu, "pvals") + len("pvals\n")
                ms = n * 10 / baudrate * 1e3
                rows.append(f"| {name} | {depth} | {printing} | {n} | {ms:.1f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out")
    ap.add_argument(
        "--uart-only", action="store_true", help="Only the read-back cost on a 115200-baud UART."
    )
    args = ap.parse_args()
    if args.uart_only:
        emit(
            "\n".join(["### Read-back (verify) cost on a UART", "", *uart_verify_cost()]), args.out
        )
        return

    import hardware_profiles
    from acquisition.led_array import LedArray
    from acquisition.simulator.firmware import IlluminateEmulator

    p = hardware_profiles.load("pls43")
    rows = []
    with IlluminateEmulator.from_profile(p) as emu:
        for verify in (True, False):
            with LedArray.open(emu.port, verify=verify) as arr:
                for name, leds in (
                    ("1 LED", [17]),
                    ("13 LEDs (brightfield)", p.stack[0].leds),
                    ("43 LEDs (2 `l` commands)", list(range(43))),
                ):
                    ts = []
                    for _ in range(5):
                        t = time.perf_counter()
                        for _ in range(100):
                            arr.light(leds, 255)
                            arr.clear()
                        ts.append((time.perf_counter() - t) / 100 * 1e3)
                    rows.append(
                        (
                            f"light + clear, {name}, verify={'on' if verify else 'off'}",
                            f"{statistics.median(ts):.2f} ms",
                        )
                    )
                t = time.perf_counter()
                for _ in range(5):
                    for ch in p.stack:
                        arr.light(ch.leds, ch.brightness)
                state = "on" if verify else "off"
                rows.append(
                    (
                        f"74-channel pls43 stack per field, verify={state}",
                        f"{(time.perf_counter() - t) / 5 * 1e3:.1f} ms",
                    )
                )
        t = time.perf_counter()
        for _ in range(10):
            LedArray.open(emu.port).close()
        rows.append(
            (
                "open + handshake (pprops, pledpos x2)",
                f"{(time.perf_counter() - t) / 10 * 1e3:.1f} ms",
            )
        )
    lines = [
        "### LED array driver",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/bench_led_array.py`.",
        "",
        "| operation | median |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        "Read-back (verify) cost per pattern on a 115200-baud UART, computed from the bytes:",
        "",
        *uart_verify_cost(),
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
