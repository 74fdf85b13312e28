"""Training throughput (cells per second) of the thesis's network.

Two measurements:

- ``step``: optimisation steps of the 4-block RRDB generator (``full-nohe``: 132 input
  channels, 6,515,463 parameters) on device-resident random batches of 64x64 cells — the
  compute the GPU must sustain. Presets maeNET (L1) and maePFNET (+ VGG19 perceptual and
  Fourier; random VGG weights — speed does not depend on them).
- ``pipeline`` (``--pipeline``): :func:`training.train` for one epoch on a generated dataset
  file, reading cells from HDF5 (``--cache none``) or from memory, so data loading is
  included. The figure is ``cells_per_s`` of ``metrics.csv``.

Target (the project's): ≥ 1000 cells/s on an H100, so a 30,000-cell dataset takes minutes
per epoch instead of the thesis's 12–15 h per model on an RTX 2080 Ti.

Examples::

    python benchmarks/bench_training.py                        # CPU, small step count
    python benchmarks/bench_training.py --device cuda --batch-size 20 64 128 --compile
    python benchmarks/bench_training.py --device cuda --pipeline --cells 4000 --cache device
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _step_rows(args, device, bf16):
    import torch
    from gpu_common import random_perceptual_loss

    import hardware_profiles as hp
    from training.device import autocast_factory
    from training.losses import GeneratorLoss
    from training.models import RRDBGenerator
    from training.presets import get_preset
    from training.steps import generator_step

    n = len(hp.select_channels(hp.load("pls43").channel_table(), args.stack))
    autocast = autocast_factory(device, bf16)
    rows = []
    for preset_name in args.preset:
        preset = get_preset(preset_name)
        perceptual = (
            random_perceptual_loss(device, channels_last=bf16) if preset.needs_vgg else None
        )
        loss = GeneratorLoss(preset.weights, perceptual)
        for bs in args.batch_size:
            torch.manual_seed(0)
            gen = RRDBGenerator(3 * n, blocks=args.blocks).to(device)
            if bf16:
                gen = gen.to(memory_format=torch.channels_last)
            model = torch.compile(gen) if args.compile else gen
            opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.9))
            x = torch.rand(bs, 3 * n, 64, 64, device=device)
            y = torch.rand(bs, 3, 64, 64, device=device)
            if bf16:
                x = x.contiguous(memory_format=torch.channels_last)
            for _ in range(args.warmup):
                generator_step(model, loss, opt, x, y, autocast=autocast)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                terms = generator_step(model, loss, opt, x, y, autocast=autocast)
            float(terms["loss"])  # synchronise
            dt = (time.perf_counter() - t0) / args.steps
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / args.steps
            mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0
            rows.append((preset_name, bs, dt * 1e3, bs / dt, cpu, mem))
            del gen, model, opt
    return n, rows


def _pipeline_row(args, device):
    import numpy as np

    import hardware_profiles as hp
    from registration.dataset import CELL_COLUMNS, DatasetWriter
    from training import train

    profile = hp.load("pls43")
    table = profile.channel_table()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.dataset.h5"
        rng = np.random.default_rng(0)
        with DatasetWriter(
            path, channels=table, crop_size=64, profile=profile, compression=args.compression
        ) as w:
            chunk = 200
            for start in range(0, args.cells, chunk):
                k = min(chunk, args.cells - start)
                rows = []
                for i in range(k):
                    row = dict.fromkeys(CELL_COLUMNS, 0.0)
                    row.update(
                        slide="b",
                        position=start + i,
                        qc_flags="",
                        has_highres=False,
                        split="val" if (start + i) % 20 == 0 else "train",
                    )
                    rows.append(row)
                w.add(
                    rng.integers(0, 256, (k, len(table), 64, 64, 3), dtype=np.uint8),
                    rng.integers(0, 256, (k, 64, 64, 3), dtype=np.uint8),
                    rows,
                )
        result = train(
            {
                "dataset": path,
                "out": Path(tmp) / "run",
                "preset": args.preset[0],
                "stack": args.stack,
                "blocks": args.blocks,
                "epochs": 1,
                "batch_size": args.batch_size[-1],
                "device": args.device,
                "cache": args.cache,
                "compile": args.compile,
                "workers": args.workers,
                "precision": args.precision,
                "samples": 0,
                "vgg_weights": _random_vgg(Path(tmp)) if args.preset[0] != "maeNET" else None,
            },
            progress=None,
        )
        row = result.history[0]
        return row["cells_per_s"], row["seconds"]


def _random_vgg(folder: Path) -> Path:
    import torch

    from training.vgg import vgg19_features

    path = folder / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--stack", default="full-nohe")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--preset", nargs="+", default=["maeNET", "maePFNET"])
    ap.add_argument("--batch-size", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--pipeline", action="store_true", help="also time train() on a dataset file")
    ap.add_argument("--cells", type=int, default=2000, help="cells in the pipeline dataset")
    ap.add_argument("--cache", default="none", choices=["none", "ram", "device"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--compression", default="blosc2-lz4")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)

    import torch

    from training.device import describe_device, resolve_device, use_bf16

    device = resolve_device(args.device)
    # training precision: bf16 on GPUs; on CPUs only when asked (or auto → bf16 where fast,
    # as a benchmark of what the CPU can do)
    bf16 = use_bf16(args.precision, device, inference=args.precision == "auto")
    if args.batch_size is None:
        args.batch_size = [20, 64, 128] if device.type == "cuda" else [20]
    if args.steps is None:
        args.steps = 20 if device.type == "cuda" else 2
    n, rows = _step_rows(args, device, bf16)
    lines = [
        f"Training throughput — RRDB {args.blocks} blocks, stack {args.stack} ({n} images), "
        f"64x64 cells, {'bf16 autocast' if bf16 else 'fp32'}"
        f"{' + torch.compile' if args.compile else ''}, {describe_device(device)}, "
        f"torch {torch.__version__}, {platform.machine()}",
        "",
        "| preset | batch | ms/step | cells/s | CPU s/step | peak GPU memory (GiB) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {p} | {b} | {ms:.1f} | {cps:.1f} | {c:.2f} | {m:.1f} |"
            for p, b, ms, cps, c, m in rows
        ),
        "",
        "CPU s/step: process CPU time per step (on a CPU device, divide by the thread count "
        f"({torch.get_num_threads()}) for the wall time on an otherwise idle machine).",
        "",
    ]
    if args.pipeline:
        cps, secs = _pipeline_row(args, device)
        lines += [
            f"Pipeline: train() one epoch over {args.cells} generated cells (cache "
            f"{args.cache}, batch {args.batch_size[-1]}, preset {args.preset[0]}): "
            f"**{cps:.0f} cells/s** ({secs:.1f} s).",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
