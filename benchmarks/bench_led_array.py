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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out")
    args = ap.parse_args()

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
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
