"""Scan index bookkeeping: the cost per finished field of a long scan, then info and resume.

    python benchmarks/bench_scan_index.py --fields 10000 [--out docs/bench/scan-index.md]
    (also: python benchmarks/bench_scan.py --index-fields 10000)

The scan file's bookkeeping (journal line + index rebuilds) per finished field of a
synthetic N-field scan with tiny frames, the mean over the last 1,000 fields including
rebuilds and the final close; then ``scope info`` and ``--resume`` on the finished scan.
Target ≤ 20 ms per field at 10,000 fields, info/resume ≤ 2 s. The last line is
``bookkeeping per field at N fields: X ms``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acquisition.vocabulary import Pass
from benchmarks._common import FRAME_META, emit, machine

ROOT = Path(__file__).resolve().parents[1]


def _positions(n: int) -> np.ndarray:
    """``(n, 3)`` field centres on a square grid 500 µm apart."""
    side = int(np.ceil(np.sqrt(n)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n]
    positions = np.zeros((n, 3))
    positions[:, :2] = grid * 500.0
    return positions


def scan_writer(
    path: Path, prof, positions: np.ndarray, *, compression: str = "none", resume: bool = False
):
    """A :class:`ScanWriter` for the unstained 20x scan ``path`` (``SLIDE.unstained.scan.h5``)
    of a benchmark: no camera, the frames come from the caller."""
    from acquisition.scanfile import ScanWriter

    return ScanWriter(
        path, slide=path.name.split(".")[0], pass_=Pass.UNSTAINED, profile=prof,
        positions=positions, objective_name="20x", compression=compression, resume=resume,
    )  # fmt: skip


def _write_scan(path: Path, prof, positions: np.ndarray) -> dict:
    """Every field of the scan written; the bookkeeping time of each (``field_done``)."""
    n = len(positions)
    frame = np.full((8, 10, 3), 7, np.uint8)
    writer = scan_writer(path, prof, positions)
    cost = np.zeros(n)
    rebuilds = 0
    t_start = time.perf_counter()
    for i in range(n):
        fw = writer.new_field(i, frame.shape[:2])
        for c in range(len(prof.stack)):
            fw.add(c, frame, FRAME_META)
        data = fw.commit(z_um=0.0)
        t0 = time.perf_counter()
        writer.field_done(data)
        cost[i] = time.perf_counter() - t0
        rebuilds += writer.schedule.unindexed == 0
        if (i + 1) % 1000 == 0:
            last_ms = writer.schedule.last_rebuild_s * 1000
            print(f"  {i + 1} fields, last rebuild {last_ms:.0f} ms", file=sys.stderr)
    t0 = time.perf_counter()
    writer.close()
    close_s = time.perf_counter() - t0
    return {
        "cost": cost,
        "rebuilds": rebuilds,
        "close_s": close_s,
        "scan_s": time.perf_counter() - t_start,
        "last_rebuild_ms": writer.schedule.last_rebuild_s * 1000,
    }


def _read_back(path: Path, prof, positions: np.ndarray) -> dict:
    """``scope info`` (in process and as a command) and ``--resume`` on the finished scan."""
    from acquisition.scanfile import ScanFile
    from scope.describe import describe_scan

    load = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    with ScanFile(path) as sf:
        n_done = len(sf.done)
        problem = sf.integrity_problem()
    describe_scan(path)
    info_s, info_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "scope", "info", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    info_cli_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"scope info failed: {proc.stderr.strip()}")
    c0, t0 = time.process_time(), time.perf_counter()
    again = scan_writer(path, prof, positions, resume=True)
    pending = len(again.pending)
    again.close()
    resume_s, resume_cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(positions)
    if n_done != n or problem or pending:
        raise SystemExit(f"index benchmark: {n_done} of {n} done, {pending} pending, {problem!r}")
    return {
        "info_s": info_s,
        "info_cpu": info_cpu,
        "resume_cpu": resume_cpu,
        "load": load,
        "info_cli_s": info_cli_s,
        "resume_s": resume_s,
    }


def index_bookkeeping(n: int) -> dict:
    """Per-field bookkeeping cost of a synthetic n-field scan (8 channels, 8x10 frames)."""
    import hardware_profiles as hp

    profile = hp.load("pls43")
    prof = profile.with_stack(profile.stack[:8])
    positions = _positions(n)
    tail = min(1000, n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idx.unstained.scan.h5"
        w = _write_scan(path, prof, positions)
        read = _read_back(path, prof, positions)
    cost = w["cost"]
    return {
        "n": n,
        "tail": tail,
        "per_field_ms": (cost[n - tail :].sum() + w["close_s"]) / tail * 1000,
        "median_ms": float(np.median(cost[n - tail :])) * 1000,
        "max_ms": float(cost[n - tail :].max()) * 1000,
        "first_ms": float(cost[: min(100, n)].mean()) * 1000,
        "close_ms": w["close_s"] * 1000,
        "last_rebuild_ms": w["last_rebuild_ms"],
        "scan_s": w["scan_s"],
        "rebuilds": w["rebuilds"],
        **read,
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=10000, metavar="N", help="fields of the scan")
    ap.add_argument("--out", help="write the markdown table to this file")
    args = ap.parse_args()
    emit(index_report(index_bookkeeping(args.fields)), args.out)


if __name__ == "__main__":
    main()
