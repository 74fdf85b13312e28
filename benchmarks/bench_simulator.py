"""Speed of the simulated microscope: a full pls43 stack field, and a 100x frame.

Renders every channel of the ``pls43`` stack in stack order at 1920 x 1200, as a scan would
(brightfield first, then the single LEDs, darkfield high then low), for two fields: the first
also builds the slide's tiles, the second reuses the neighbouring ones. Then one highres
(100x) brightfield frame. Prints a markdown table; ``--out FILE`` also writes it there.

Usage::

    .venv/bin/python benchmarks/bench_simulator.py [--out FILE] [--width W --height H]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hardware_profiles
from acquisition.simulator.microscope import SimulatedMicroscope


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 / 1024 if platform.system() == "Linux" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _field(
    m: SimulatedMicroscope, profile, x: float, y: float, w: int, h: int
) -> tuple[float, float]:
    """Wall and CPU (all threads) seconds of one whole stack field."""
    z = m.focus_z_um("unstained", x, y)
    cpu = time.process_time()
    start = time.perf_counter()
    for ch in profile.stack:
        m.render(
            pass_="unstained",
            x_um=x,
            y_um=y,
            z_um=z,
            leds=dict.fromkeys(ch.leds, ch.brightness),
            exposure_ms=ch.exposure_ms,
            gain=ch.gain,
            width=w,
            height=h,
        )
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1200)
    args = parser.parse_args(argv)
    w, h = args.width, args.height

    profile = hardware_profiles.load("pls43")
    m = SimulatedMicroscope(profile, slide="bench", seed=0)
    n = len(profile.stack)
    field_w_um = w * m.pixel_size_um("unstained")

    (cold, cold_cpu), (warm, warm_cpu) = (
        _field(m, profile, 0.0, 0.0, w, h),
        _field(m, profile, field_w_um, 0.0, w, h),
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    start = time.perf_counter()
    m.truth("unstained", [(0.0, 0.0), (field_w_um, 0.0)], w, h)
    truth_s = time.perf_counter() - start

    bf = profile.stack[0]
    hx, hy = m.placement("highres") @ [0.0, 0.0, 1.0]
    start = time.perf_counter()
    m.render(
        pass_="highres",
        x_um=float(hx),
        y_um=float(hy),
        z_um=m.focus_z_um("highres", float(hx), float(hy)),
        leds=dict.fromkeys(bf.leds, bf.brightness),
        exposure_ms=100.0,
        gain=1.0,
        width=w,
        height=h,
    )
    highres = time.perf_counter() - start

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        "| measurement | seconds | CPU seconds (all threads) | per channel (ms) |",
        "|---|---|---|---|",
        f"| pls43 {n}-channel field {w}x{h}, first (builds tiles) | {cold:.2f} | "
        f"{cold_cpu:.1f} | {1000 * cold / n:.0f} |",
        f"| pls43 {n}-channel field {w}x{h}, next field | {warm:.2f} | {warm_cpu:.1f} | "
        f"{1000 * warm / n:.0f} |",
        f"| truth of both fields (cells, faults) | {truth_s:.2f} | | |",
        f"| highres (100x) brightfield frame {w}x{h} | {highres:.2f} | | |",
        f"| peak RSS | {_peak_rss_mb():.0f} MB | | |",
    ]
    table = "\n".join(rows)
    cfg = m.config
    header = (
        f"Simulator benchmark on {cores} cores, Python {platform.python_version()}, "
        f"load average {load:.1f} after the fields; {cfg.spectral_samples} spectral samples "
        f"per white LED, up to {cfg.field_angle_tiles}x{cfg.field_angle_tiles} angle tiles\n\n"
    )
    text = header + table + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
