"""Speed of the simulated microscope: a full pls43 stack field, and a 100x frame.

Renders every channel of the ``pls43`` stack in stack order at 1920 x 1200, as a scan would
(brightfield first, then the single LEDs, darkfield high then low), for two fields: the first
also builds the slide's tiles, the second reuses the neighbouring ones. Then one highres
(100x) brightfield frame. Prints a markdown table; ``--out FILE`` also writes it there.

``--exposures PROFILE`` instead checks a profile's exposures: the share of saturated pixels
per channel and the brightfield glass level, on a few fields.

Usage::

    .venv/bin/python benchmarks/bench_simulator.py [--out FILE] [--width W --height H]
    .venv/bin/python benchmarks/bench_simulator.py --exposures pls43 --width 640 --height 400
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


def exposures(profile_name: str, w: int, h: int, fields: int) -> str:
    """Saturated share per channel and brightfield glass level at the profile's exposures.

    Renders every channel of the profile's stack at its own exposure and gain on ``fields``
    fields (1 mm apart) of the default slide; the saturated share is the percentage of pixels
    with any of R, G, B at 255, the glass level the mean per channel of brightfield pixels that
    are neither a red nor a white cell (from the simulator's truth masks).
    """
    import numpy as np

    profile = hardware_profiles.load(profile_name)
    m = SimulatedMicroscope(profile, slide="exposures", seed=0)
    theta = {r["name"]: r["theta_deg"] for r in profile.channel_table()}
    sat: dict[tuple, list[float]] = {}
    glass: list[np.ndarray] = []
    for k in range(fields):
        x, y = 1000.0 * k, -700.0 * k
        # every channel at its own exposure and gain, in focus
        frames = m.render_stack(pass_="unstained", x_um=x, y_um=y, width=w, height=h)
        for ch, frame in zip(profile.stack, frames, strict=True):
            t = theta[ch.name]
            key = (str(ch.kind), str(ch.exposure_level), round(t) if t == t else -1)
            sat.setdefault(key, []).append(float((frame.max(axis=2) >= 255).mean() * 100))
            if ch.kind == "brightfield":
                mk = m.masks(pass_="unstained", x_um=x, y_um=y, width=w, height=h)
                glass.append(frame[~(mk["rbc"] | mk["wbc"])].mean(axis=0))
    rows = [
        f"Exposures of `{profile_name}` on the simulator: {fields} fields of {w}x{h} px, "
        "saturated = any of R, G, B at 255",
        "",
        "| channel | θ | images | saturated % (median) | saturated % (max) |",
        "|---|---|---|---|---|",
    ]
    for (kind, level, t), vals in sat.items():
        name = kind if level == "single" else f"{kind} {level}"
        ang = "" if t < 0 else f"{t}°"
        rows.append(f"| {name} | {ang} | {len(vals)} | {np.median(vals):.2f} | {max(vals):.2f} |")
    if glass:
        r, g, b = np.mean(glass, axis=0)
        rows += ["", f"Brightfield glass (mean R/G/B): {r:.0f}/{g:.0f}/{b:.0f} DN"]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument(
        "--exposures",
        metavar="PROFILE",
        help="instead: saturated share per channel at PROFILE's exposures (e.g. pls43)",
    )
    parser.add_argument("--fields", type=int, default=3, help="fields for --exposures")
    args = parser.parse_args(argv)
    if args.exposures:
        text = exposures(args.exposures, args.width, args.height, args.fields)
        print(text)
        if args.out:
            args.out.write_text(text)
        return text
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
