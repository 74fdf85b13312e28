"""Where the thesis network spends its GPU time (torch.profiler): a training step, or a stain.

    python benchmarks/gpu_profile.py [--batch-size 128] [--padding reflect]
                                      [--memory-format contiguous]
    python benchmarks/gpu_profile.py --stain [--pad-channels]   # one 1920x1200 forward
    python benchmarks/gpu_profile.py --pad-channels --memory-format channels_last
    python benchmarks/gpu_profile.py --pad-channels --compile --batch-size 256 --rows 0

Prints samples/s (or seconds per field) and the CUDA kernels that took the most time over
two profiled steps (plain L1 loss, bf16 autocast, fused Adam) or two forward passes of a
whole field (bf16 autocast, no gradients), on synthetic tensors of the real shapes.
``--pad-channels`` computes in channel counts padded to multiples of 8
(:meth:`training.models.RRDBGenerator.compute_in`; exact, for training and inference).
Like ``gpu_bench.py`` it imports only torch and the network, so it runs on a machine with
nothing else installed.
Used to find the reflection-padding and channel-padding costs recorded in
docs/benchmarks.md (GPU path).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.models import RRDBGenerator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--size", type=int, default=64, help="crop side in pixels")
    ap.add_argument("--padding", choices=["reflect", "replicate", "zeros"], default="reflect")
    ap.add_argument(
        "--memory-format", choices=["contiguous", "channels_last"], default="contiguous"
    )
    ap.add_argument("--steps", type=int, default=10, help="timed steps before the profile")
    ap.add_argument("--rows", type=int, default=20, help="kernels listed (0: no profile)")
    ap.add_argument("--stain", action="store_true", help="profile a field's forward pass")
    ap.add_argument("--field", type=int, nargs=2, default=(1200, 1920), metavar=("H", "W"))
    ap.add_argument(
        "--pad-channels", action="store_true",
        help="compute in channel counts padded to multiples of 8 (RRDBGenerator.compute_in)",
    )  # fmt: skip
    ap.add_argument(
        "--compile", action="store_true",
        help="torch.compile the generator (a training step only; about a minute to compile)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device here (this profiles the GPU path)", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    gen = RRDBGenerator(132, blocks=4, padding=args.padding)
    if args.pad_channels:
        gen.compute_in(8)
    if args.stain:
        return _profile_stain(gen, dev, fmt, args)
    gen = gen.to(dev, memory_format=fmt).train()
    opt = torch.optim.Adam(gen.parameters(), lr=2e-4, fused=True)
    model = torch.compile(gen, dynamic=False) if args.compile else gen
    x = torch.rand(args.batch_size, 132, args.size, args.size, device=dev).contiguous(
        memory_format=fmt
    )
    y = torch.rand(args.batch_size, 3, args.size, args.size, device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = model(x)
        F.l1_loss(pred.float(), y).backward()
        opt.step()

    dt = _timed(step, warmup=3, steps=args.steps)
    print(
        f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, padding {args.padding}, "
        f"{args.memory_format}, compute multiple {gen.compute_multiple}, "
        f"{'compiled' if args.compile else 'eager'}, "
        f"batch {args.batch_size}: {args.batch_size / dt:,.0f} samples/s"
    )
    if args.rows > 0:
        _print_profile(step, rows=args.rows)
    return 0


def _timed(fn, *, warmup: int, steps: int) -> float:
    """Seconds per call of ``fn`` on the GPU after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def _print_profile(fn, *, rows: int) -> None:
    """The CUDA kernels of two calls of ``fn``, by their own time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            fn()
        torch.cuda.synchronize()
    print(
        prof.key_averages().table(
            sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=90
        )
    )


def _profile_stain(gen: RRDBGenerator, dev: torch.device, fmt, args) -> int:
    """Time and profile the forward pass over one whole field (as ``stain_field`` on a GPU)."""
    gen = gen.to(dev, memory_format=fmt).eval()
    h, w = args.field
    x = torch.rand(1, 132, h, w, device=dev).contiguous(memory_format=fmt)

    @torch.no_grad()
    def forward() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            gen(x)

    dt = _timed(forward, warmup=2, steps=args.steps)
    print(
        f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, padding {args.padding}, "
        f"{args.memory_format}, width {gen.features}, growth {gen.growth}: {w}x{h} field "
        f"forward {dt:.3f} s"
    )
    _print_profile(forward, rows=args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
