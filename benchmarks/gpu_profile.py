"""Where a training step of the thesis network spends its GPU time (torch.profiler).

    python benchmarks/gpu_profile.py [--batch-size 128] [--padding reflect]
                                      [--memory-format contiguous]

Prints samples/s and the CUDA kernels that took the most time over two profiled steps
(plain L1 loss, bf16 autocast, fused Adam), on synthetic tensors of the real shapes. Like
``gpu_bench.py`` it imports only torch and the network, so it runs on a machine with nothing
else installed. Used to find the reflection-padding and channel-padding costs recorded in
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
    ap.add_argument("--rows", type=int, default=20, help="kernels listed")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device here (this profiles the GPU path)", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    gen = RRDBGenerator(132, blocks=4, padding=args.padding).to(dev, memory_format=fmt).train()
    opt = torch.optim.Adam(gen.parameters(), lr=2e-4, fused=True)
    x = torch.rand(args.batch_size, 132, args.size, args.size, device=dev).contiguous(
        memory_format=fmt
    )
    y = torch.rand(args.batch_size, 3, args.size, args.size, device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = gen(x)
        F.l1_loss(pred.float(), y).backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    print(
        f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, padding {args.padding}, "
        f"{args.memory_format}, batch {args.batch_size}: {args.batch_size / dt:,.0f} samples/s"
    )
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            step()
        torch.cuda.synchronize()
    print(
        prof.key_averages().table(
            sort_by="self_cuda_time_total", row_limit=args.rows, max_name_column_width=90
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
