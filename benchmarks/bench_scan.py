"""Scan engine: software overhead per frame, storage throughput, memory over a long scan.

    python benchmarks/bench_scan.py [--out docs/bench/scan.md] [--quick]
    python benchmarks/bench_scan.py --index-fields 10000 [--out docs/bench/scan-index.md]

- overhead: the simulator in real-time mode (the camera sleeps for the exposure, the stage
  for its move); overhead per frame = wall time − time inside the simulated devices (render,
  exposure, moves). Target ≤ 5 ms median.
- storage: frames rendered by the simulator (1920x1200 RGB) pushed through the storage
  thread into scan files with each lossless filter. Target ≥ 150 MB/s with the default.
- memory: resident memory after each field of a long scan: it must stay flat.
- index (``--index-fields N``): the scan file's bookkeeping (journal line + index rebuilds)
  per finished field of a synthetic N-field scan with tiny frames, the mean over the last
  1,000 fields including rebuilds and the final close; then ``scope info`` and ``--resume``
  on the finished scan. Target ≤ 20 ms per field at 10,000 fields, info/resume ≤ 2 s. Only
  this runs with ``--index-fields``; its last line is
  ``bookkeeping per field at N fields: X ms``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, machine, rss_mb


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
            pass_="unstained",
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
    from acquisition.scanfile import ScanWriter
    from acquisition.simulator.microscope import SimulatedMicroscope
    from acquisition.storage import StorageThread

    profile = hp.load("pls43")
    sim = SimulatedMicroscope(profile, slide="bench", seed=0)
    frames = []
    for ch in (profile.stack[0], profile.stack[1], profile.stack[20], profile.stack[21]):
        frames.append(
            sim.render(
                pass_="unstained",
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
            writer = ScanWriter(
                Path(tmp) / "b.unstained.scan.h5",
                slide="b",
                pass_="unstained",
                profile=prof,
                positions=np.zeros((n_fields, 3)),
                objective_name="20x",
                compression=comp,
            )
            store = StorageThread(writer)
            t0 = time.perf_counter()
            for f in range(n_fields):
                for c in range(n_channels):
                    store.frame(
                        f,
                        c,
                        frames[(f + c) % len(frames)],
                        {
                            "exposure_ms": 1.0,
                            "gain": 1.0,
                            "stage_x_um": 0.0,
                            "stage_y_um": 0.0,
                            "stage_z_um": 0.0,
                            "time": 0.0,
                        },
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
            pass_="unstained",
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
    from acquisition.scanfile import ScanWriter
    from acquisition.storage import StorageThread

    profile = hp.load("pls43")
    prof = profile.with_stack(profile.stack[:8])
    n_fields = 16 if quick else 64
    frame = np.random.default_rng(0).integers(0, 255, (1200, 1920, 3), dtype=np.uint8)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = ScanWriter(
            Path(tmp) / "m.unstained.scan.h5",
            slide="m",
            pass_="unstained",
            profile=prof,
            positions=np.zeros((n_fields, 3)),
            objective_name="20x",
            compression="lz4",
        )
        store = StorageThread(writer)
        meta = {
            "exposure_ms": 1.0,
            "gain": 1.0,
            "stage_x_um": 0.0,
            "stage_y_um": 0.0,
            "stage_z_um": 0.0,
            "time": 0.0,
        }
        for f in range(n_fields):
            for c in range(len(prof.stack)):
                store.frame(f, c, frame, meta)
            store.commit(f, z_um=0.0)
            samples.append((f + 1, rss_mb()))
        store.close()
    return samples


def index_bookkeeping(n: int) -> dict:
    """Per-field bookkeeping cost of a synthetic n-field scan (8 channels, 8x10 frames)."""
    import subprocess

    import hardware_profiles as hp
    from acquisition.scanfile import ScanFile, ScanWriter
    from scope.describe import describe_scan

    profile = hp.load("pls43")
    prof = profile.with_stack(profile.stack[:8])
    side = int(np.ceil(np.sqrt(n)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n]
    positions = np.zeros((n, 3))
    positions[:, :2] = grid * 500.0
    meta = {
        "exposure_ms": 1.0,
        "gain": 1.0,
        "stage_x_um": 0.0,
        "stage_y_um": 0.0,
        "stage_z_um": 0.0,
        "time": 0.0,
    }
    frame = np.full((8, 10, 3), 7, np.uint8)
    tail = min(1000, n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idx.unstained.scan.h5"
        writer = ScanWriter(
            path,
            slide="idx",
            pass_="unstained",
            profile=prof,
            positions=positions,
            objective_name="20x",
            compression="none",
        )
        cost = np.zeros(n)
        rebuilds = 0
        t_start = time.perf_counter()
        for i in range(n):
            fw = writer.new_field(i, frame.shape[:2])
            for c in range(len(prof.stack)):
                fw.add(c, frame, meta)
            data = fw.commit(z_um=0.0)
            t0 = time.perf_counter()
            writer.field_done(data)
            cost[i] = time.perf_counter() - t0
            rebuilds += writer._unindexed == 0
            if (i + 1) % 1000 == 0:
                print(
                    f"  {i + 1} fields, last rebuild {writer._last_rebuild_s * 1000:.0f} ms",
                    file=sys.stderr,
                )
        t0 = time.perf_counter()
        writer.close()
        close_s = time.perf_counter() - t0
        scan_s = time.perf_counter() - t_start
        per_field = (cost[n - tail :].sum() + close_s) / tail
        load = os.getloadavg()[0]
        c0, t0 = time.process_time(), time.perf_counter()
        with ScanFile(path) as sf:
            n_done = len(sf.done)
            problem = sf.integrity_problem()
        describe_scan(path)
        info_s, info_cpu = time.perf_counter() - t0, time.process_time() - c0
        root = Path(__file__).resolve().parents[1]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "scope", "info", str(path)],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        info_cli_s = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"scope info failed: {proc.stderr.strip()}")
        c0, t0 = time.process_time(), time.perf_counter()
        again = ScanWriter(
            path,
            slide="idx",
            pass_="unstained",
            profile=prof,
            positions=positions,
            objective_name="20x",
            compression="none",
            resume=True,
        )
        pending = len(again.pending)
        again.close()
        resume_s, resume_cpu = time.perf_counter() - t0, time.process_time() - c0
    if n_done != n or problem or pending:
        raise SystemExit(f"index benchmark: {n_done} of {n} done, {pending} pending, {problem!r}")
    return {
        "n": n,
        "tail": tail,
        "per_field_ms": per_field * 1000,
        "median_ms": float(np.median(cost[n - tail :])) * 1000,
        "max_ms": float(cost[n - tail :].max()) * 1000,
        "first_ms": float(cost[: min(100, n)].mean()) * 1000,
        "close_ms": close_s * 1000,
        "last_rebuild_ms": writer._last_rebuild_s * 1000,
        "scan_s": scan_s,
        "rebuilds": rebuilds,
        "info_s": info_s,
        "info_cpu": info_cpu,
        "resume_cpu": resume_cpu,
        "load": load,
        "info_cli_s": info_cli_s,
        "resume_s": resume_s,
    }


def index_report(r: dict) -> str:
    n = r["n"]
    return "\n".join(
        [
            "### Scan index bookkeeping",
            "",
            f"Machine: {machine()}. Command: `python benchmarks/bench_scan.py "
            f"--index-fields {n}` (synthetic scan: 8 channels of 8x10 frames per field, no "
            "camera; the field files themselves are not counted).",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| bookkeeping per field, fields 1-{min(100, n)} (mean) | {r['first_ms']:.2f} ms | |",
            f"| bookkeeping per field, fields {n - r['tail'] + 1:,}-{n:,}: mean incl. index "
            f"rebuilds and the final close | {r['per_field_ms']:.2f} ms | ≤ 20 ms |",
            f"| same, median (max: a field that triggered a rebuild) | {r['median_ms']:.2f} ms "
            f"({r['max_ms']:.0f} ms) | |",
            f"| one index rebuild at {n:,} fields (the final close) | {r['close_ms']:.0f} ms | |",
            f"| index rebuilds during the scan | {r['rebuilds']} | |",
            f"| `ScanFile` open + integrity check + `scope info` table, in process: wall "
            f"(CPU time) | {r['info_s']:.2f} s ({r['info_cpu']:.2f} s) | ≤ 2 s |",
            f"| `scope info` command, wall (incl. Python start-up and imports) | "
            f"{r['info_cli_s']:.2f} s | |",
            f"| `--resume` bookkeeping: open the finished scan, adopt {n:,} fields from the "
            f"journal, rebuild: wall (CPU time) | {r['resume_s']:.2f} s "
            f"({r['resume_cpu']:.2f} s) | ≤ 2 s |",
            "",
            f"Load average when info and resume ran: {r['load']:.1f} on {os.cpu_count()} "
            "cores (other jobs shared the machine); CPU time is the figure robust to that.",
            "",
            f"bookkeeping per field at {n} fields: {r['per_field_ms']:.2f} ms",
        ]
    )


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
