"""`make bench`: run every benchmark and rewrite docs/benchmarks.md.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--stitch]

Each script writes its markdown table to docs/bench/<name>.md; this script stitches them into
docs/benchmarks.md under a header naming the machine. Benchmarks are run on demand, never in
the test suite. Timings depend on the machine: compare figures only from the same one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine  # noqa: E402  (stdlib only: runs beside the GPU bench)

BENCH = ROOT / "docs" / "bench"

#: name -> (script, arguments, what it measures)
SUITE: dict[str, tuple[str, list[str], str]] = {
    "simulator": ("bench_simulator.py", [], "simulated microscope: a 74-channel field"),
    "led_array": ("bench_led_array.py", [], "LED-array driver round trips"),
    "scan": ("bench_scan.py", [], "scan overhead, storage throughput, memory"),
    "registration": ("bench_registration.py", [], "registration speed and accuracy"),
    "segmentation": ("bench_segmentation.py", [], "WBC segmentation on real stains"),
    "qc": ("bench_qc.py", [], "quality flags against planted faults"),
    "training": ("bench_training.py", [], "training throughput"),
    "stain": ("bench_stain.py", [], "staining a 1920x1200 field"),
    "onnx": ("bench_onnx.py", [], "staining engines on the CPU: PyTorch vs onnxruntime"),
    "export": ("bench_export.py", [], "scan export to OME-Zarr and OME-TIFF"),
    "evaluation": ("bench_evaluation.py", [], "clinical measures of scope evaluate"),
    "ablation": ("ablation.py", [], "the stack ablation: PLS vs brightfield"),
    "scan_index": (
        "bench_scan.py",
        ["--index-fields", "10000"],
        "scan index bookkeeping at 10,000 fields",
    ),
    "match_memory": (
        "bench_match_memory.py",
        ["--workers", "2"],
        "scope match peak memory at 1,000 / 3,000 / 10,000 fields",
    ),
}
#: Stitched into the page when present, never run here: they need another machine.
ELSEWHERE = {"gpu": ("bash benchmarks/gpu.sh", "on a CUDA machine (only Python and torch needed)")}
QUICK_ARGS = {
    "scan": ["--quick"],
    "qc": ["--seeds", "1", "--grid", "3x2"],
    "onnx": ["--quick"],
    "export": ["--quick"],
    "match_memory": ["--fields", "20", "200", "--quick"],
}
PAGES = {
    "simulator": "docs/simulator.md",
    "registration": "docs/registration.md",
    "segmentation": "docs/registration.md",
    "qc": "docs/registration.md",
    "training": "docs/training.md",
    "ablation": "docs/ablation.md",
    "scan_index": "docs/scanning.md",
    "match_memory": "docs/registration.md",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs where supported")
    ap.add_argument("--only", nargs="*", choices=sorted(SUITE), help="run only these")
    ap.add_argument(
        "--stitch", action="store_true", help="run nothing: rebuild the page from docs/bench/"
    )
    args = ap.parse_args()
    BENCH.mkdir(parents=True, exist_ok=True)
    names = [] if args.stitch else (args.only or list(SUITE))
    failed = []
    for name in names:
        script, extra, what = SUITE[name]
        if args.quick:
            extra = extra + QUICK_ARGS.get(name, [])
        out = BENCH / f"{name}.md"
        print(f"== {name}: {what}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *extra, "--out", str(out)], cwd=ROOT
        )
        print(
            f"   {name}: {'ok' if proc.returncode == 0 else 'FAILED'} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if proc.returncode != 0:
            failed.append(name)
    parts = [
        "# Benchmarks",
        "",
        "Every figure here was produced by a script in `benchmarks/` (`make bench` runs them",
        "all and rewrites this page; `python benchmarks/run_all.py --only NAME` one of them).",
        f"Page assembled {time.strftime('%Y-%m-%d')} on {machine()}; each section is from its",
        "script's latest run, on the machine it names.",
        "Timings depend on the machine and on what else it runs: compare like with like.",
        "",
    ]
    missing = []
    for name in SUITE:
        part = BENCH / f"{name}.md"
        if part.exists():
            parts += [part.read_text(encoding="utf-8").strip(), ""]
        else:
            missing.append(name)
    for name, (command, where) in ELSEWHERE.items():
        part = BENCH / f"{name}.md"
        if part.exists():
            parts += [part.read_text(encoding="utf-8").strip(), ""]
        else:
            parts += [f"### {name}: not measured yet", "", f"Run `{command}` {where}.", ""]
    if missing:
        parts += [
            "### Not yet re-run into this page",
            "",
            "These benchmarks' last figures, with the commands and machines that produced them,",
            "are recorded on their capability pages: "
            + ", ".join(f"`{n}` ({PAGES.get(n, 'docs/')})" for n in missing)
            + ". `python benchmarks/run_all.py --only "
            + " ".join(missing)
            + "` adds them here.",
            "",
        ]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote docs/benchmarks.md ({len(names) - len(failed)} of {len(names)} ran)")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
