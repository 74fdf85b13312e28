"""Export throughput: a scan file → OME-Zarr and OME-TIFF (raw image bytes per second).

    python benchmarks/bench_export.py [--out docs/bench/export.md] [--quick]

Frames rendered by the simulator (1920x1200 RGB, brightfield and PLS images) are stored in a
scan file with the default compression, then exported; the time covers reading and
decompressing the scan, writing and compressing the export and its metadata. Target: ≥ 100
MB/s to OME-Zarr on 2 cores. Peak resident memory shows that export streams (it stays far
below the size of one field's stack).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, machine, rss_mb


def make_scan(folder: Path, n_fields: int, n_channels: int) -> Path:
    import hardware_profiles as hp
    from acquisition.scanfile import ScanWriter
    from acquisition.simulator.microscope import SimulatedMicroscope

    profile = hp.load("pls43")
    sim = SimulatedMicroscope(profile, slide="bench", seed=0)
    frames = []
    for ch in (profile.stack[0], profile.stack[1], profile.stack[20], profile.stack[21]):
        frames.append(
            sim.render(
                pass_="unstained", x_um=0.0, y_um=0.0, z_um=0.0,
                leds=dict.fromkeys(ch.leds, ch.brightness), exposure_ms=ch.exposure_ms,
                gain=ch.gain, width=1920, height=1200,
            )
        )  # fmt: skip
    prof = profile.with_stack(profile.stack[:n_channels])
    positions = np.array([[600.0 * i, 0.0, 0.0] for i in range(n_fields)])
    path = folder / "bench.unstained.scan.h5"
    writer = ScanWriter(
        path, slide="bench", pass_="unstained", profile=prof, positions=positions,
        objective_name="20x",
    )  # fmt: skip
    meta = {"exposure_ms": 1.0, "gain": 1.0, "stage_x_um": 0.0, "stage_y_um": 0.0,
            "stage_z_um": 0.0, "time": 0.0}  # fmt: skip
    for f in range(n_fields):
        fw = writer.new_field(f, (1200, 1920))
        for c in range(n_channels):
            fw.add(c, frames[(f + c) % len(frames)], meta)
        writer.field_done(fw.commit(z_um=0.0))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="Write the markdown table here.")
    ap.add_argument("--quick", action="store_true", help="A smaller scan (CI smoke run).")
    ap.add_argument("--make-scan", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from acquisition.export_scan import export_scan

    n_fields, n_channels = (3, 8) if args.quick else (6, 16)
    if args.make_scan:
        make_scan(Path(args.make_scan), n_fields, n_channels)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # the simulator's caches stay in a child process: the peak memory below is the export's
        flags = ["--quick"] if args.quick else []
        subprocess.run([sys.executable, __file__, *flags, "--make-scan", tmp], check=True)
        scan = Path(tmp) / "bench.unstained.scan.h5"
        base = rss_mb()
        for to, name in (("ome-zarr", "x.ome.zarr"), ("ome-tiff", "x.ome.tif")):
            out = Path(tmp) / name
            t0, c0 = time.perf_counter(), time.process_time()
            _, n, raw = export_scan(scan, out, to=to)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            disk = sum(p.stat().st_size for p in ([out] if out.is_file() else out.rglob("*")))
            rows.append((to, n, raw, dt, raw / dt / 1e6, raw / disk, raw / cpu / 1e6))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    field_mb = n_channels * 1200 * 1920 * 3 / 1e6
    lines = [
        "## Export to OME-Zarr and OME-TIFF",
        "",
        f"Machine: {machine()}. Scan: {n_fields} fields x {n_channels} images of 1920x1200 RGB "
        f"(simulator frames, {field_mb:.0f} MB per field raw), stored with the default "
        "compression, then exported (`python benchmarks/bench_export.py"
        f"{' --quick' if args.quick else ''}`).",
        "",
        "| format | fields | raw MB | seconds | MB/s (raw) | MB per CPU-second | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for to, n, raw, dt, mbs, ratio, per_cpu in rows:
        lines.append(
            f"| {to} | {n} | {raw / 1e6:.0f} | {dt:.2f} | {mbs:.0f} | {per_cpu:.0f} | {ratio:.2f} |"
        )
    lines += [
        "",
        f"Load average while measuring: {os.getloadavg()[0]:.1f} (other processes share the "
        "cores; MB per CPU-second is the export's own cost, counting every thread). Peak "
        f"resident memory of the exporting process: {peak:.0f} MB ({base:.0f} MB before the "
        f"exports); one field's stack is {field_mb:.0f} MB. Target: ≥ 100 MB/s to OME-Zarr "
        "on 2 cores.",
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
