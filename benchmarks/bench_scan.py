"""Scan engine: software overhead per frame, storage throughput, memory over a long scan.

    python benchmarks/bench_scan.py [--out docs/bench/scan.md] [--quick]
    python benchmarks/bench_scan.py --index-fields 10000 [--out docs/bench/scan-index.md]

- overhead: the simulator in real-time mode (the camera sleeps for the exposure, the stage
  for its move); overhead per frame = wall time − time inside the simulated devices (render,
  exposure, moves). Target ≤ 5 ms median.
- storage: frames rendered by the simulator (1920x1200 RGB) pushed through the storage
  thread into scan files with each lossless filter. Target ≥ 150 MB/s with the default.
- memory: resident memory after each field of a long scan: it must stay flat.
- index (``--index-fields N``): the scan file's bookkeeping per finished field of a synthetic
  N-field scan, then ``scope info`` and ``--resume`` on it (see
  :mod:`benchmarks.bench_scan_index`). Only this runs with ``--index-fields``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acquisition.vocabulary import Pass
from benchmarks._common import FRAME_META, emit, machine, rss_mb
from benchmarks.bench_scan_index import index_bookkeeping, index_report, scan_writer


def overhead(quick: bool) -> dict:
    import hardware_profiles as hp
    from acquisition.progress import NullProgress
    from acquisition.rig import SimOptions, open_sim
    from acquisition.scan import IMAGES_BAR, plan_scan, run_scan

    profile = hp.load("pls43")
    per_frame: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_sim(profile, SimOptions(slide="bench", realtime=True)) as rig,
    ):
        plan = plan_scan(
            slide="bench",
            pass_=Pass.UNSTAINED,
            profile=profile,
            out=Path(tmp),
            frame_wh=rig.mm.frame_size,
            stack="le8" if quick else "le18",
            grid="2x1" if quick else "3x1",
        )
        marks: list[tuple[float, float]] = []

        class Marks(NullProgress):
            def advance(self, key: str, n: int = 1, *, info: str | None = None) -> None:
                if key == IMAGES_BAR:
                    marks.append((time.perf_counter(), rig.sim.device_seconds))
                else:  # field boundary: moves are not frame overhead
                    marks.append((float("nan"), 0.0))

        t0 = time.perf_counter()
        start = (t0, rig.sim.device_seconds)
        summary = run_scan(plan, rig, progress=Marks())
        wall = time.perf_counter() - t0
        prev = start
        for mark in marks:
            if np.isnan(mark[0]):
                prev = None
                continue
            if prev is not None:
                per_frame.append((mark[0] - prev[0]) - (mark[1] - prev[1]))
            prev = mark
    return {
        "frames": summary.n_images,
        "median_ms": statistics.median(per_frame) * 1000,
        "p95_ms": float(np.percentile(per_frame, 95)) * 1000,
        "wall_s": wall,
    }


def storage(quick: bool) -> list[dict]:
    import hardware_profiles as hp
    from acquisition.simulator.microscope import SimulatedMicroscope
    from acquisition.storage import StorageThread

    profile = hp.load("pls43")
    sim = SimulatedMicroscope(profile, slide="bench", seed=0)
    frames = []
    for ch in (profile.stack[0], profile.stack[1], profile.stack[20], profile.stack[21]):
        frames.append(
            sim.render(
                pass_=Pass.UNSTAINED,
                x_um=0.0,
                y_um=0.0,
                z_um=0.0,
                leds=dict.fromkeys(ch.leds, ch.brightness),
                exposure_ms=ch.exposure_ms,
                gain=ch.gain,
                width=1920,
                height=1200,
            )
        )
    n_fields, n_channels = (2, 10) if quick else (4, 20)
    prof = profile.with_stack(profile.stack[:n_channels])
    rows = []
    for comp in ("blosc2-lz4", "lz4", "zstd", "none"):
        with tempfile.TemporaryDirectory() as tmp:
            writer = scan_writer(
                Path(tmp) / "b.unstained.scan.h5", prof, np.zeros((n_fields, 3)), compression=comp
            )
            store = StorageThread(writer)
            t0 = time.perf_counter()
            for f in range(n_fields):
                for c in range(n_channels):
                    store.frame(
                        f,
                        c,
                        frames[(f + c) % len(frames)],
                        FRAME_META,
                    )
                store.commit(f, z_um=0.0)
            store.close()
            dt = time.perf_counter() - t0
            raw = store.stats.bytes_raw
            disk = sum(p.stat().st_size for p in Path(tmp).rglob("*.h5"))
            rows.append({"compression": comp, "mb_s": raw / dt / 1e6, "ratio": raw / disk})
    return rows


def memory(quick: bool) -> list[tuple[int, float]]:
    import hardware_profiles as hp
    from acquisition.progress import NullProgress
    from acquisition.rig import SimOptions, open_sim
    from acquisition.scan import FIELDS_BAR, plan_scan, run_scan

    profile = hp.load("pls43")
    samples: list[tuple[int, float]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_sim(profile, SimOptions(slide="mem", sensor_wh=(960, 600))) as rig,
    ):
        plan = plan_scan(
            slide="mem",
            pass_=Pass.UNSTAINED,
            profile=profile,
            out=Path(tmp),
            frame_wh=rig.mm.frame_size,
            stack="le8",
            grid="6x1" if quick else "8x3",
        )

        class PerField(NullProgress):
            def advance(self, key: str, n: int = 1, *, info: str | None = None) -> None:
                if key == FIELDS_BAR:
                    samples.append((len(samples) + 1, rss_mb()))

        run_scan(plan, rig, progress=PerField())
    return samples


def storage_memory(quick: bool) -> list[tuple[int, float]]:
    """Resident memory of the engine's storage path alone (no simulator) as fields grow."""
    import hardware_profiles as hp
    from acquisition.storage import StorageThread

    profile = hp.load("pls43")
    prof = profile.with_stack(profile.stack[:8])
    n_fields = 16 if quick else 64
    frame = np.random.default_rng(0).integers(0, 255, (1200, 1920, 3), dtype=np.uint8)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = scan_writer(
            Path(tmp) / "m.unstained.scan.h5", prof, np.zeros((n_fields, 3)), compression="lz4"
        )
        store = StorageThread(writer)
        for f in range(n_fields):
            for c in range(len(prof.stack)):
                store.frame(f, c, frame, FRAME_META)
            store.commit(f, z_um=0.0)
            samples.append((f + 1, rss_mb()))
        store.close()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", help="write the markdown table to this file")
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument(
        "--index-fields",
        type=int,
        metavar="N",
        help="only measure the scan index bookkeeping on a synthetic N-field scan",
    )
    args = ap.parse_args()
    if args.index_fields:
        emit(index_report(index_bookkeeping(args.index_fields)), args.out)
        return
    o = overhead(args.quick)
    s = storage(args.quick)
    m = memory(args.quick)
    sm = storage_memory(args.quick)
    lines = [
        "### Scan engine",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/bench_scan.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| software overhead per frame, median (p95), {o['frames']} frames 1920x1200, "
        f"real-time simulator | {o['median_ms']:.2f} ms ({o['p95_ms']:.2f} ms) | ≤ 5 ms |",
    ]
    for row in s:
        target = "≥ 150 MB/s" if row["compression"] == "blosc2-lz4" else ""
        lines.append(
            f"| storage throughput, {row['compression']} (ratio {row['ratio']:.2f}) | "
            f"{row['mb_s']:.0f} MB/s | {target} |"
        )
    first, last = sm[3], sm[-1]
    lines.append(
        f"| resident memory of the scan engine + storage (8 frames of 1920x1200 per field), "
        f"field {first[0]} → field {last[0]} | {first[1]:.0f} MB → {last[1]:.0f} MB | flat |"
    )
    first, last = m[1] if len(m) > 1 else m[0], m[-1]
    lines.append(
        f"| same, a whole simulated scan (960x600, le8) including the simulator's caches, "
        f"which fill up to their caps (`render_cache_mb`, tiles), field {first[0]} → "
        f"{last[0]} | {first[1]:.0f} MB → {last[1]:.0f} MB | bounded |"
    )
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
