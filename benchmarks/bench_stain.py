"""Time and peak memory to virtually stain one whole field with the thesis's network.

Builds the thesis's 4-block RRDB generator for a stack preset of ``pls43`` (``full-nohe``:
44 images, 132 input channels, 6,515,463 parameters; weights untrained — speed and memory
do not depend on them) and stains a random 1920x1200 field with
:func:`training.tiling.stain_field` (fully convolutional, tiled with exact halos). Each tile
size runs in a fresh process, so its peak memory is its own: on a CPU the process's
resident high-water mark (``VmHWM``, everything torch and oneDNN hold; not tracemalloc,
which cannot see them), on a GPU the allocated device memory. Prints a markdown table with
the tile chooser's predicted peak next to the measured one; ``--out`` also writes it.

``--sweep`` calibrates the chooser instead: for each ``--tile`` it stains a field of 2x2
windows (window = core + 2 halos) and fits the resident growth over the process's memory
before the pass, less the field's own arrays, as ``fixed + bytes/px x window pixels``
(the numbers behind ``training.stain_memory.CPU_WINDOW_FACTOR`` and ``CPU_PASS_FIXED``).

Thesis reference (Wulff 2022): one 64x64 crop at a time, a 1900x1200 field
takes ≈ 77 s on an 8-core i9-11900K and ≈ 4 s on an RTX 2080 Ti. Targets: < 60 s on this
2-core CPU, peak ≤ 4 GiB at the default tile; < 0.2 s on an H100.

Examples::

    python benchmarks/bench_stain.py                       # CPU, default tile (4 GiB bound)
    python benchmarks/bench_stain.py --max-memory 8        # a larger bound, larger tiles
    python benchmarks/bench_stain.py --sweep --tile 128 192 256 352
    python benchmarks/bench_stain.py --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30


def _hwm() -> int:
    """This process's resident high-water mark in bytes (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    from training.device import proc_bytes

    found = proc_bytes("/proc/self/status", "VmHWM")
    if found is not None:
        return found
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(args: argparse.Namespace) -> dict:
    """Stain one field with one tile setting in this process; the measurements as a dict."""
    import numpy as np
    import torch

    import hardware_profiles as hp
    from training import stain_memory, tiling
    from training.defaults import DEFAULT_BLEND
    from training.device import resident_bytes, resolve_device, use_bf16
    from training.models import RRDBGenerator
    from training.tile_geometry import tile_plan, tile_sides, window_size

    profile = hp.load("pls43")
    n = len(hp.select_channels(profile.channel_table(), args.stack))
    device = resolve_device(args.device)
    bf16 = use_bf16(args.precision, device, inference=True)
    torch.manual_seed(0)
    gen = RRDBGenerator(3 * n, blocks=args.blocks).eval().to(device)
    if bf16:
        gen = gen.to(memory_format=torch.channels_last)
    if bf16 and device.type == "cpu":
        gen = tiling.cpu_bf16_generator(gen)  # as training.infer.stain_scan does
    halo = gen.receptive_radius
    h, w = args.height, args.width
    if args.sweep:
        h = w = args.tile[0] + 2 * halo + 64  # 2x2 windows of core + 2 halos
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold the weights into the compiled graph
    model = torch.compile(gen) if args.compile else gen
    stack = np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    resident = resident_bytes()
    budget = stain_memory.memory_budget(device, args.max_memory)
    tile = args.tile[0]
    if tile is None:
        tile, halo = stain_memory.default_tile(
            device, gen, height=h, width=w, bf16=bf16, max_memory=args.max_memory
        )
    predicted = stain_memory.predicted_peak(
        device, gen, tile=tile, halo=halo, height=h, width=w, bf16=bf16, resident=resident
    )
    times, cpu_times = [], []
    for _ in range(args.repeats + (1 if device.type == "cuda" or args.compile else 0)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        tiling.stain_field(model, stack, device=device, bf16=bf16, tile=tile, halo=halo)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_times.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    if device.type == "cuda" or args.compile:
        times, cpu_times = times[1:], cpu_times[1:]  # kernel selection / compilation
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _hwm()
    k = min(range(len(times)), key=times.__getitem__)
    th, tw = tile_sides(tile)
    plan = tile_plan(h, w, tile=tile, blend=min(DEFAULT_BLEND, min(th, tw) // 2))
    return {
        "tile": f"{th}" if th == tw else f"{th}x{tw}",
        "halo": halo,
        "height": h,
        "width": w,
        "tiles": len(plan),
        "window_px": window_size(h, w, tile, halo),
        "best_s": times[k],
        "median_s": sorted(times)[len(times) // 2],
        "cpu_s": cpu_times[k],
        "resident": resident,
        "field_bytes": stain_memory.FIELD_BYTES_PER_PX * h * w,
        "predicted": predicted,
        "budget": budget,
        "peak": peak,
        "bf16": bf16,
        "n_images": n,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _run_child(argv: list[str], tile: int | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *argv]
    if tile is not None:
        cmd += ["--tile", str(tile)]
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"a measuring process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fit(rows: list[dict]) -> tuple[float, float]:
    """Least-squares ``growth = fixed + per_px · window_px`` over the sweep's rows."""
    import numpy as np

    x = np.array([r["window_px"] for r in rows], float)
    y = np.array([r["peak"] - r["resident"] - r["field_bytes"] for r in rows], float)
    if len(rows) < 2:
        return 0.0, float(y[0] / x[0])
    per_px, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(per_px)


def _load() -> str:
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _table(args: argparse.Namespace, rows: list[dict]) -> str:
    r0 = rows[0]
    gpu = r0["device"].startswith("cuda")
    what = "allocated GPU memory" if gpu else "resident peak (VmHWM) of the process"
    head = (
        f"Stain one {r0['width']}x{r0['height']} field — RRDB {args.blocks} blocks, stack "
        f"{args.stack} ({r0['n_images']} images), {'bf16' if r0['bf16'] else 'fp32'}, "
        f"{r0['device']} ({r0['threads']} threads), torch {r0['torch']}, {platform.machine()}; "
        f"load average {_load()}"
    )
    if args.sweep:
        head = (
            f"Peak memory per window — RRDB {args.blocks} blocks, stack {args.stack}, "
            f"{'bf16' if r0['bf16'] else 'fp32'}, {r0['device']}, fields of 2x2 windows; "
            f"load average {_load()}"
        )
    lines = [
        head,
        "",
        "| core (px) | halo (px) | field | tiles | window (px²) | best (s) | median (s) | "
        "CPU time / threads (s) | resident before (GiB) | predicted peak (GiB) | "
        "measured peak (GiB) | budget (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tile']} | {r['halo']} | {r['width']}x{r['height']} | {r['tiles']} | "
            f"{r['window_px']:,} | {r['best_s']:.1f} | {r['median_s']:.1f} | "
            f"{r['cpu_s'] / r['threads']:.1f} | {r['resident'] / GiB:.2f} | "
            f"{r['predicted'] / GiB:.2f} | {r['peak'] / GiB:.2f} | {r['budget'] / GiB:.2f} |"
        )
    lines += [
        "",
        f"Measured peak: the {what}; predicted: `training.stain_memory.predicted_peak`; budget: "
        "`training.stain_memory.memory_budget` (CPU: min(4 GiB or --max-memory, resident + half "
        "the available memory)). CPU time / threads is the wall time with the threads' cores "
        "to itself: a figure robust to other processes sharing the machine.",
        "",
    ]
    if args.sweep and not gpu:
        from training.stain_memory import window_estimate

        fixed, per_px = _fit(rows)
        est = window_estimate(_sweep_gen(args), 2 if r0["bf16"] else 4)
        lines += [
            f"Fit: growth over the resident memory before the pass, less the field's arrays = "
            f"{fixed / 2**20:.0f} MiB + {per_px:,.0f} B x window px "
            f"({per_px / est:.2f}x the dense-block estimate of {est:,.0f} B/px).",
            "",
        ]
    return "\n".join(lines)


def _sweep_gen(args: argparse.Namespace):
    import hardware_profiles as hp
    from training.models import RRDBGenerator

    n = len(hp.select_channels(hp.load("pls43").channel_table(), args.stack))
    return RRDBGenerator(3 * n, blocks=args.blocks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--stack", default="full-nohe")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1200)
    ap.add_argument("--tile", type=int, nargs="*", default=[None], help="tile sizes to try")
    ap.add_argument("--max-memory", type=float, help="GiB bound for the default tile")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="torch.compile the generator")
    ap.add_argument("--sweep", action="store_true", help="fit peak memory per window pixel")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    if args.sweep and None in args.tile:
        ap.error("--sweep needs --tile sizes, e.g. --tile 128 192 256 352")
    common = [
        f"--device={args.device}", f"--precision={args.precision}", f"--stack={args.stack}",
        f"--blocks={args.blocks}", f"--width={args.width}", f"--height={args.height}",
        f"--repeats={args.repeats}",
    ]  # fmt: skip
    common += ["--compile"] if args.compile else []
    common += [f"--max-memory={args.max_memory}"] if args.max_memory else []
    common += ["--sweep"] if args.sweep else []
    rows = []
    for tile in args.tile:
        rows.append(_run_child(common, tile))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    emit(_table(args, rows).removesuffix("\n"), args.out)  # the table ends with a newline
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
