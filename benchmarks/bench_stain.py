"""Time to virtually stain one whole field with the thesis's network.

Builds the thesis's 4-block RRDB generator for a stack preset of ``pls43`` (``full-nohe``:
44 images, 132 input channels, 6,515,463 parameters; weights untrained — speed does not
depend on them) and stains a random 1920x1200 field with :func:`training.tiling.stain_field`
(fully convolutional, tiled with exact halos). Prints a markdown table; ``--out`` also
writes it to a file.

Thesis reference (Wulff 2022): one 64x64 crop at a time, a 1900x1200 field
takes ≈ 77 s on an 8-core i9-11900K and ≈ 4 s on an RTX 2080 Ti. Targets: < 60 s on this
2-core CPU, < 0.2 s on an H100.

Examples::

    python benchmarks/bench_stain.py                       # CPU, bf16 where the CPU has it
    python benchmarks/bench_stain.py --device cuda --repeats 5
    python benchmarks/bench_stain.py --precision fp32 --tile 512 --out docs/bench_stain_cpu.md
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--stack", default="full-nohe")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1200)
    ap.add_argument("--tile", type=int, nargs="*", default=[None], help="tile sizes to try")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="torch.compile the generator")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    import hardware_profiles as hp
    from training.device import describe_device, resolve_device, use_bf16
    from training.infer import default_tile, stain_field
    from training.models import RRDBGenerator, count_parameters

    profile = hp.load("pls43")
    n = len(hp.select_channels(profile.channel_table(), args.stack))
    device = resolve_device(args.device)
    bf16 = use_bf16(args.precision, device, inference=True)
    torch.manual_seed(0)
    gen = RRDBGenerator(3 * n, blocks=args.blocks).eval().to(device)
    if bf16:
        gen = gen.to(memory_format=torch.channels_last)
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold the weights into the compiled graph
    model = torch.compile(gen) if args.compile else gen
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (n, args.height, args.width, 3), dtype=np.uint8)
    rows = []
    for tile in args.tile:
        t_def, halo = default_tile(
            device, gen, height=args.height, width=args.width, bf16=bf16, n_images=n
        )
        tile_px = t_def if tile is None else tile
        times, cpu_times = [], []
        for _ in range(args.repeats + (1 if device.type == "cuda" or args.compile else 0)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            stain_field(
                model,
                stack,
                device=device,
                bf16=bf16,
                tile=tile_px,
                halo=halo,
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu_times.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if device.type == "cuda" or args.compile:
            times = times[1:]  # the first call includes kernel selection / compilation
            cpu_times = cpu_times[1:]
        peak = (
            torch.cuda.max_memory_allocated(device) / 2**30
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        )
        k = int(np.argmin(times))
        rows.append((tile_px, halo, times[k], float(np.median(times)), cpu_times[k], peak))

    threads = torch.get_num_threads()
    head = (
        f"Stain one {args.width}x{args.height} field — RRDB {args.blocks} blocks, stack "
        f"{args.stack} ({n} images, {count_parameters(gen):,} parameters), "
        f"{'bf16' if bf16 else 'fp32'}, {describe_device(device)}, torch {torch.__version__}, "
        f"{platform.machine()}"
    )
    lines = [
        head,
        "",
        "| tile (px) | halo (px) | best (s) | median (s) | CPU time of best (s) | "
        "CPU time / threads (s) | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {t} | {h} | {b:.2f} | {m:.2f} | {c:.1f} | {c / threads:.1f} | {p:.1f} |"
            for t, h, b, m, c, p in rows
        ),
        "",
        f"CPU time / threads ({threads}) is the wall time the field would take with the "
        "threads' cores to itself: a figure robust to other processes sharing the machine. "
        "Peak memory is the process's resident peak on a CPU (target ≤ 4 GiB at the default "
        "tile, `training.tiling.CPU_MEMORY_LIMIT`), allocated GPU memory on a GPU.",
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
