"""Peak memory of ``scope match`` on a scan pair of many fields: it must not grow with them.

    python benchmarks/bench_match_memory.py [--fields 10000] [--out docs/bench/match_memory.md]

One small field pair is scanned on the simulator (pls43, ``le8``, 320x240 frames, about 2 white
cells per field); then both passes are replicated to N fields on a grid wider than a field
of view (hard links to the one field file per pass, written through
:class:`acquisition.scanfile.ScanWriter`, so the index, journal and virtual dataset are real).
Every field is then a genuine match with its own cells at its own stage position. The
command runs as a subprocess with default options; its peak resident memory (``ru_maxrss``
of the child, the largest of it and its workers) is the figure. Target ≤ 2 GB at 10,000
fields. What it cannot show: the cost of 1920x1200 frames per field (that is per-field work,
measured by ``bench_registration.py``), or memory of a slide whose fields all differ.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit, machine  # noqa: E402

SIM = "wbc_per_field: 60\nmax_translation_um: 5\n"
#: ``scope match`` in this interpreter, then its peak resident memory (KB): the larger of the
#: process's own and its workers' (``RUSAGE_CHILDREN`` is the largest waited-for child).
PEAK = (
    "import resource, sys\n"
    "from scope.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "ru = resource.getrusage\n"
    "print('peak_kb', max(ru(resource.RUSAGE_SELF).ru_maxrss, "
    "ru(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _scope(*argv: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scope", *argv], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"scope {' '.join(argv[:2])} failed: {proc.stderr.strip()[-1000:]}")


def base_pair(out: Path) -> tuple[Path, Path]:
    sim = out / "sim.yaml"
    sim.write_text(SIM)
    common = ["--profile", "pls43", "--sim-sensor", "320x240", "--sim-config", str(sim), "--yes"]
    base = ["scan", "--slide", "b", "--out", str(out)]
    _scope(*base, "--pass", "unstained", "--grid", "1x1", "--stack", "le8", *common)
    _scope(*base, "--pass", "stained", *common)
    return out / "b.unstained.scan.h5", out / "b.stained.scan.h5"


def replicate(src: Path, out: Path, n: int, pitch_um: float) -> Path:
    """An n-field copy of a one-field scan: the same field at n grid positions."""
    from acquisition.scanfile import FieldData, ScanFile, ScanWriter, fields_dir

    with ScanFile(src) as sf:
        profile = sf.profile
        attrs = dict(sf.attrs)
        frames = sf.frames.copy()
        z = float(sf.positions["z_um"][0])
        at = str(sf.positions["acquired_at"][0])
    side = int(np.ceil(np.sqrt(n)))
    gy, gx = np.divmod(np.arange(n), side)
    positions = np.stack([gx * pitch_um, gy * pitch_um, np.full(n, z)], axis=1)
    path = out / src.name
    keep = ("backend", "simulated", "software_version")
    writer = ScanWriter(
        path,
        slide=str(attrs["slide"]),
        pass_=str(attrs["pass"]),
        profile=profile,
        positions=positions,
        objective_name=str(attrs["objective"]),
        compression=str(attrs["compression"]),
        extra_attrs={k: attrs[k] for k in keep if k in attrs},
    )
    field0 = fields_dir(src) / "field_00000.h5"
    size = field0.stat().st_size
    for i in range(n):
        os.link(field0, writer.fields_dir / f"field_{i:05d}.h5")
        rows = frames.copy()
        rows["position"] = i
        rows["stage_x_um"] += positions[i, 0]  # readers take field centres from the frames
        rows["stage_y_um"] += positions[i, 1]
        writer.field_done(FieldData(i, z, at, rows, size))
    writer.close()
    return path


def measure(n: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "base").mkdir()
        (tmp / "big").mkdir()
        u1, s1 = base_pair(tmp / "base")
        t0 = time.perf_counter()
        u = replicate(u1, tmp / "big", n, pitch_um=400.0)
        s = replicate(s1, tmp / "big", n, pitch_um=400.0)
        build_s = time.perf_counter() - t0
        out = tmp / "big" / "b.dataset.h5"
        t0 = time.perf_counter()
        argv = ["match", str(u), str(s), "--out", str(out), "--workers", str(workers)]
        proc = subprocess.run(
            [sys.executable, "-c", PEAK, *argv],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"scope match failed: {proc.stderr.strip()[-1000:]}")
        peak_kb = int(proc.stdout.strip().splitlines()[-1].split()[-1])
        import h5py

        with h5py.File(out, "r") as f:
            n_cells = len(f["cells"])
        dataset_mb = out.stat().st_size / 1e6
    return {
        "n": n,
        "workers": workers,
        "peak_mb": peak_kb / 1024,
        "seconds": seconds,
        "build_s": build_s,
        "cells": n_cells,
        "dataset_mb": dataset_mb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fields", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args()
    rows = []
    for n in args.fields:
        r = measure(n, args.workers)
        print(f"{n} fields: peak {r['peak_mb']:.0f} MB, {r['seconds']:.0f} s", file=sys.stderr)
        rows.append(r)
    lines = [
        "### `scope match` memory at many fields",
        "",
        f"Machine: {machine()}. Command: `python benchmarks/bench_match_memory.py --fields "
        f"{' '.join(map(str, args.fields))}` (one simulated 320x240 le8 field pair replicated "
        f"to N grid positions; `scope match --workers {args.workers}`, default options).",
        "",
        "| fields | cells | peak resident memory of `scope match` | time | dataset | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['cells']:,} | {r['peak_mb']:.0f} MB | {r['seconds']:.0f} s | "
            f"{r['dataset_mb']:.0f} MB | ≤ 2 GB |"
        )
    if len(rows) >= 2 and rows[-1]["n"] < 10_000:
        a, b = rows[0], rows[-1]
        slope = (b["peak_mb"] - a["peak_mb"]) / (b["n"] - a["n"])
        lines += [
            "",
            f"Growth between {a['n']:,} and {b['n']:,} fields: {slope * 1000:.1f} MB per 1,000 "
            f"fields; extrapolated (not measured) to 10,000 fields: "
            f"{b['peak_mb'] + slope * (10_000 - b['n']):.0f} MB.",
        ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
