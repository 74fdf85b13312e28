"""Peak memory of ``scope match`` on a scan pair of many fields: it must not grow with them.

    python benchmarks/bench_match_memory.py [--fields 1000 3000 10000] [--workers 1]
        [--quick] [--out docs/bench/match_memory.md]

A small pair of scans is made on the simulator (pls43, ``le8``, 480x300 frames, a 2x2 grid,
about 4 white cells per field, the slide re-placed between the passes by a pure translation);
then each pass is replicated to N fields at distinct stage positions on a grid wider than a
field of view: field ``i`` reuses the pixels of simulated field ``i mod 4`` (a hard link to its
field file) and is committed through :class:`acquisition.scanfile.ScanWriter`, so the index,
journal and virtual image dataset are the real format, and the stained field ``i`` shows the
same cells as the unstained field ``i`` shifted by the simulated re-placement. ``scope match``
then runs its whole path on every field (reads, coarse match, detection, fine match, crops,
QC, dataset writing) as a subprocess with default options; its peak resident memory
(``ru_maxrss``, the larger of the command's and its largest worker's) is the figure. Target:
≤ 2 GB at 10,000 fields. ``--quick`` scans a 2x1 grid instead (a smoke test of the build).

What it cannot show: the cost of 1920x1200 frames per field (per-field work, measured by
``bench_registration.py``), overlapping fields (placed apart here, so no cell is seen twice),
or memory of a slide whose fields all differ (the per-field records are the same size).
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

#: The densest the simulator allows (60 WBCs per 1920x1200 field: about 4 per 480x300 one);
#: the re-placement between the passes a pure translation, so one rigid slide transform fits
#: the replicated fields wherever they are put.
SIM = "wbc_per_field: 60\nmax_translation_um: 5\nmax_rotation_deg: 0\n"
#: Frame size of the simulated fields.
SENSOR = "480x300"
#: Stage pitch of the replicated fields, µm (a 480x300 field at 0.293 µm/px is 141x88 µm).
PITCH_UM = 400.0
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


def base_pair(out: Path, grid: str = "2x2") -> tuple[Path, Path]:
    """A small simulated pair of scans (both passes) of ``grid`` fields."""
    sim = out / "sim.yaml"
    sim.write_text(SIM)
    common = ["--profile", "pls43", "--sim-sensor", SENSOR, "--sim-config", str(sim), "--yes"]
    base = ["scan", "--slide", "b", "--out", str(out)]
    _scope(*base, "--pass", "unstained", "--grid", grid, "--stack", "le8", *common)
    _scope(*base, "--pass", "stained", *common)
    return out / "b.unstained.scan.h5", out / "b.stained.scan.h5"


def replicate(src: Path, out: Path, n: int, pitch_um: float = PITCH_UM) -> Path:
    """An n-field scan whose field ``i`` is ``src``'s field ``i mod k`` at its own position.

    Each field's file is a hard link to the simulated one; the frames keep their recorded
    read-back offsets from the nominal position, moved to the new one.
    """
    from acquisition.scanfile import FieldData, ScanFile, ScanWriter, fields_dir

    with ScanFile(src) as sf:
        profile = sf.profile
        attrs = dict(sf.attrs)
        frames = sf.frames.copy()
        pos = sf.positions.copy()
    k = len(pos)
    side = int(np.ceil(np.sqrt(n)))
    gy, gx = np.divmod(np.arange(n), side)
    z = pos["z_um"][np.arange(n) % k].astype(np.float64)
    positions = np.stack([gx * pitch_um, gy * pitch_um, z], axis=1)
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
        extra_attrs={a: attrs[a] for a in keep if a in attrs},
    )
    files = [fields_dir(src) / f"field_{j:05d}.h5" for j in range(k)]
    sizes = [f.stat().st_size for f in files]
    rows_of = [frames[frames["position"] == j] for j in range(k)]
    for i in range(n):
        j = i % k
        os.link(files[j], writer.fields_dir / f"field_{i:05d}.h5")
        rows = rows_of[j].copy()
        rows["position"] = i
        # readers take field centres from the frames' read-back stage positions
        rows["stage_x_um"] += positions[i, 0] - pos["x_um"][j]
        rows["stage_y_um"] += positions[i, 1] - pos["y_um"][j]
        writer.field_done(FieldData(i, float(z[i]), str(pos["acquired_at"][j]), rows, sizes[j]))
    writer.close()
    return path


def measure(base: tuple[Path, Path], tmp: Path, n: int, workers: int) -> dict:
    """Replicate ``base`` to n fields under ``tmp``, match them, and measure the match."""
    big = tmp / f"n{n}"
    big.mkdir()
    t0 = time.perf_counter()
    u = replicate(base[0], big, n)
    s = replicate(base[1], big, n)
    build_s = time.perf_counter() - t0
    out = big / "b.dataset.h5"
    argv = ["match", str(u), str(s), "--out", str(out), "--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, *argv], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"scope match failed at {n} fields: {proc.stderr.strip()[-1000:]}")
    peak_kb = int(proc.stdout.strip().splitlines()[-1].split()[-1])
    import h5py

    with h5py.File(out, "r") as f:
        cells = f["cells"][()]
    flags = np.asarray(cells["qc_flags"]).astype(str)
    result = {
        "n": n,
        "workers": workers,
        "peak_mb": peak_kb / 1024,
        "seconds": seconds,
        "build_s": build_s,
        "cells": len(cells),
        "unflagged": int((flags == "").sum()),
        "fields_with_cells": len(np.unique(cells["position"])),
        "dataset_mb": out.stat().st_size / 1e6,
    }
    import shutil

    shutil.rmtree(big)  # the next size's disk
    return result


def table(rows: list[dict], argv: str, workers: int, quick: bool) -> str:
    grid = "2x1" if quick else "2x2"
    lines = [
        "### `scope match` memory at many fields",
        "",
        f"Machine: {machine()}, shared with other jobs. Command: `python "
        f"benchmarks/bench_match_memory.py {argv}` (a simulated {grid} pls43 `le8` pair of "
        f"{SENSOR} fields replicated to N stage positions; `scope match --workers {workers}`, "
        "default options; peak = `ru_maxrss` of the command and its workers).",
        "",
        "| fields | cells matched (unflagged) | fields with cells | peak resident memory "
        "| match time | build time | dataset | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['cells']:,} ({r['unflagged']:,}) | {r['fields_with_cells']:,} "
            f"| {r['peak_mb']:.0f} MB | {r['seconds']:.0f} s | {r['build_s']:.0f} s "
            f"| {r['dataset_mb']:.0f} MB | ≤ 2 GB |"
        )
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        slope = (b["peak_mb"] - a["peak_mb"]) / (b["n"] - a["n"]) * 1000
        lines += ["", f"Growth from {a['n']:,} to {b['n']:,} fields: {slope:.1f} MB per 1,000."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fields", type=int, nargs="+", default=[1000, 3000, 10000])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a 2x1 simulated pair (smoke test)")
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "base").mkdir()
        t0 = time.perf_counter()
        base = base_pair(tmp / "base", "2x1" if args.quick else "2x2")
        print(f"simulated pair: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for n in args.fields:
            r = measure(base, tmp, n, args.workers)
            print(
                f"{n} fields: peak {r['peak_mb']:.0f} MB, match {r['seconds']:.0f} s, "
                f"build {r['build_s']:.1f} s, {r['cells']} cells",
                file=sys.stderr,
                flush=True,
            )
            rows.append(r)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    emit(table(rows, shown, args.workers, args.quick), args.out)


if __name__ == "__main__":
    main()
