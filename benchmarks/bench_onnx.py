"""Staining engines on the CPU: PyTorch vs onnxruntime for one field.

    python benchmarks/bench_onnx.py [--out docs/bench/onnx.md] [--quick] [--images 18]

A thesis-sized RRDB generator (``features = in_channels``, 4 blocks, growth 32, reflect
padding; random weights: the speed does not depend on them) stains one 1920x1200 field of
``--images`` RGB stack images with :func:`training.tiling.stain_field`, the code
``scope stain`` runs, once per engine after a warm-up pass. Both engines use the same tiling
(the default for the free memory) and the threads torch uses (``OMP_NUM_THREADS``).
``--engine auto`` picks the faster on the CPU (``training.export_onnx.CPU_DEFAULT_ENGINE``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="Write the markdown table here.")
    ap.add_argument("--quick", action="store_true", help="A 480x300 field (smoke run).")
    ap.add_argument("--images", type=int, default=18, help="Stack images (le18: 18).")
    ap.add_argument("--repeats", type=int, default=2, help="Timed passes per engine (min).")
    ap.add_argument("--tile", type=int, default=None, help="Tile core (default: by memory).")
    args = ap.parse_args()
    import torch

    from training.export_onnx import OnnxGenerator, export_onnx
    from training.infer import stain_field
    from training.models import build_generator

    w, h = (480, 300) if args.quick else (1920, 1200)
    torch.manual_seed(0)
    gen = build_generator("rrdb", 3 * args.images, blocks=4, growth=32).eval()
    stack = np.random.default_rng(0).integers(0, 256, (args.images, h, w, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = export_onnx(gen, Path(tmp) / "g.onnx")
        export_s = time.perf_counter() - t0
        engines = {"torch": gen, "onnx": OnnxGenerator(path, gen)}
        results = {}
        for name, engine in engines.items():
            stain_field(engine, stack[:, :64, :64], tile=64, dtype=np.float32)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                results[name] = stain_field(engine, stack, tile=args.tile, dtype=np.float32)
                times.append((time.perf_counter() - t0, time.process_time() - c0))
            rows.append((name, *min(times)))
            print(f"{name}: {rows[-1][1]:.1f} s, CPU {rows[-1][2]:.1f} s", flush=True)
    diff = float(np.abs(results["onnx"] - results["torch"]).max())
    threads = torch.get_num_threads()
    lines = [
        "## Staining engines on the CPU: PyTorch vs onnxruntime",
        "",
        f"Machine: {machine()}; {threads} threads (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}). One {w}x{h} field, RRDB generator "
        f"with {args.images} stack images ({3 * args.images} input channels = features, 4 "
        f"blocks, growth 32), fp32, tile {args.tile or 'by free memory'} with the exact halo "
        "(`python benchmarks/bench_onnx.py"
        f"{' --quick' if args.quick else ''}{f' --tile {args.tile}' if args.tile else ''}"
        f"{f' --repeats {args.repeats}' if args.repeats != 2 else ''}`).",
        "",
        f"| engine | seconds per field (best of {args.repeats}) | CPU seconds | CPU / threads |",
        "|---|---|---|---|",
        *[f"| {n} | {sec:.1f} | {cpu:.1f} | {cpu / threads:.1f} |" for n, sec, cpu in rows],
        "",
        f"ONNX export (once per checkpoint, cached in RUN/export/): {export_s:.1f} s. Largest "
        f"difference between the engines' outputs: {diff:.1e} (in [0, 1]). Load average "
        f"{os.getloadavg()[0]:.1f}. CPU / threads is the wall time with the threads' cores to "
        "itself if every CPU second were work (onnxruntime's threads also spin while waiting).",
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
