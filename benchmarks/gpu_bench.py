"""GPU benchmark of the thesis network: stain per field in every variant worth measuring,
training samples/s, the loader alone, and a GPU-vs-CPU correctness check of each variant.

    python benchmarks/gpu_bench.py [--device cuda] [--out docs/bench/gpu.md] [--no-compile]
    python benchmarks/gpu_bench.py --device cpu --quick      # the script's own test, on a CPU

Runs where only torch and numpy exist (GPU machines come with their own Python and torch and
nothing else): it imports the network, the training step and the losses, never pydantic,
h5py or hdf5plugin, and feeds synthetic tensors of the real shapes — the thesis's 4-block RRDB
generator for ``full-nohe`` (44 images → 132 input channels, width 132, 6,515,463 parameters;
random weights: speed does not depend on them).

- stain: :func:`training.infer.stain_field` of a 1920x1200 field (host uint8 stack in, host
  uint8 image out), median of the timed repeats, in each variant (``gpu_variants.py``):
  eager; ``torch.compile``\\ d (``--no-compile`` drops it); the channel counts padded to
  multiples of 8 by :func:`training.channel_pad.pad_channels`, eager and compiled
  (``--no-pad-channels``); the forward captured as a CUDA graph, plain and padded
  (``--no-cuda-graphs``; CUDA only: "skipped (needs CUDA)" elsewhere);
- correctness: each variant's field output against the CPU's fp32 stain of a 256x256 square
  of the same field (a crop with the receptive radius around it: exact in its interior);
  mean and max absolute differences must stay within bf16 tolerance (fails the run
  otherwise); and the padded against the plain eager output (exact up to summation order);
- train: :func:`training.steps.generator_step` on device-resident batches of 64x64 cells,
  presets maeNET (L1) and maePFNET (+ VGG19 perceptual + Fourier), batches 20, 128 and 256,
  eager (``--compile-train`` adds a compiled run at the largest batch: two minutes of
  compilation, no gain measured on an H200);
- loader: batches gathered from a device-resident uint8 cache (``--cache device``) and from
  pinned host memory copied to the device (``--cache ram``), converted with
  :func:`training.tensors.network_input`: it must outpace the training step. (Reading cells
  from HDF5, ``--cache none``, needs h5py: ``benchmarks/bench_training.py --pipeline``.)

The report is written to ``--out`` after each stage (marked incomplete until the run ends);
``--keep-earlier`` keeps the runs already on that page below the new one.

Target on an H100-class GPU: stain < 0.2 s per field, train ≥ 1,000 samples/s.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.device import default_channels_last
from training.infer import stain_field
from training.losses import GeneratorLoss, LossWeights, PerceptualLoss
from training.models import RRDBGenerator, count_parameters
from training.steps import generator_step
from training.tensors import network_input, network_target
from training.vgg import VGGFeatureExtractor, vgg19_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_variants import build, release, stain_variants

#: bf16 against fp32 through ~60 convolutions, outputs in [0, 1] (measured on CPU: mean
#: 0.002, max 0.02 for random weights); a real defect (wrong layout, wrong tile) is ≫ this.
TOLERANCE = {"mean": 0.01, "max": 0.08}
THESIS = {"images": 44, "blocks": 4}
QUICK = {"images": 4, "blocks": 1}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _generator(n_images: int, blocks: int, device: torch.device, cl: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    gen = RRDBGenerator(3 * n_images, blocks=blocks).to(device)
    return gen.to(memory_format=torch.channels_last) if cl else gen


def _compile(module: torch.nn.Module) -> torch.nn.Module:
    torch._dynamo.reset()  # nothing carried over from the stain variants' compilations
    return torch.compile(module, dynamic=False)


def field_reference(args, stack: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """The CPU fp32 stain of a centred square of the field, and where it lies in the field.

    A pixel depends on inputs within the receptive radius ``r`` only, so staining a crop of
    side ``size + 2r`` gives, in its interior, exactly the whole-field pass's values there:
    every variant's field output is checked against it without staining a field on the CPU.
    """
    size = 24 if args.quick else 256
    gen = _generator(args.images, args.blocks, torch.device("cpu"), False).eval()
    r = gen.receptive_radius
    _, h, w, _ = stack.shape
    y0, x0 = (h - size) // 2 - r, (w - size) // 2 - r
    if min(y0, x0) < 0:
        raise ValueError(f"a {w}x{h} field is too small for the {size}x{size} check")
    crop = stack[:, y0 : y0 + size + 2 * r, x0 : x0 + size + 2 * r]
    ref = stain_field(gen, crop, device="cpu", bf16=False, dtype=np.float32)
    region = (slice(y0 + r, y0 + r + size), slice(x0 + r, x0 + r + size))
    return region, ref[r : r + size, r : r + size]


def _check(out: np.ndarray, region, ref: np.ndarray) -> dict:
    diff = np.abs(out[region] - ref)
    ok = diff.mean() <= TOLERANCE["mean"] and diff.max() <= TOLERANCE["max"]
    return {
        "size": ref.shape[0],
        "mean": float(diff.mean()),
        "max": float(diff.max()),
        "ok": bool(ok),
    }


def stain(
    args, device: torch.device, bf16: bool, rows: list[dict], done_one: Callable[[], None]
) -> float | None:
    """Append one row per stain variant to ``rows`` (timed, checked against the CPU).

    ``done_one`` is called after each. A variant that raises is recorded with its error and
    the next one runs (the run then fails). Returns the largest difference between the
    channel-padded and the plain eager outputs on the device (None when either did not run):
    exact up to summation order.
    """
    w, h = (96, 64) if args.quick else (1920, 1200)
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (args.images, h, w, 3), dtype=np.uint8)
    region, ref = field_reference(args, stack)
    gen = _generator(args.images, args.blocks, device, args.cl).eval()
    variants = stain_variants(
        device, compile=args.compile, pad=args.pad, graphs=args.graphs, quick=args.quick
    )
    kw = {"device": device, "bf16": bf16, "channels_last": args.cl}
    eager: dict[bool, np.ndarray] = {}
    for v in variants:
        what = f"{w}x{h} field, {v.label(gen)}"
        if v.skip:
            rows.append({"what": what, "skip": v.skip})
        else:
            try:
                row, out = _stain_variant(v, gen, stack, kw, args, device)
            except Exception as exc:  # one variant's failure must not cost the others' rows
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
                rows.append({"what": what, "error": reason})
                print(f"stain {what}: FAILED ({reason})", flush=True)
            else:
                row["check"] = _check(out, region, ref)
                rows.append({"what": what, **row})
                if v.mode == "eager":
                    eager[v.pad] = out
                print(f"stain {what}: {row['median_s']:.3f} s", flush=True)
            release(device)
        done_one()
    return float(np.abs(eager[True] - eager[False]).max()) if len(eager) == 2 else None


def _stain_variant(v, gen, stack, kw: dict, args, device) -> tuple[dict, np.ndarray]:
    """Time one variant over the field; its row and its float32 output for the check."""
    model = build(v, gen, channels_last=args.cl)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    stain_field(model, stack, **kw)  # warm-up: kernels, compilation, graph capture
    _sync(device)
    first = time.perf_counter() - t0
    times = _timed(lambda: stain_field(model, stack, **kw), device, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    out = stain_field(model, stack, dtype=np.float32, **kw)
    row = {
        "median_s": statistics.median(times),
        "best_s": min(times),
        "first_s": first,
        "peak_gib": peak,
    }
    return row, out


def _batch(n: int, images: int, size: int, device: torch.device, gen: torch.Generator):
    stack = torch.randint(0, 256, (n, images, size, size, 3), dtype=torch.uint8, generator=gen)
    target = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=gen)
    return stack.to(device), target.to(device)


def train(args, device: torch.device, bf16: bool) -> list[dict]:
    size = 32 if args.quick else 64
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if bf16 else None
    )
    rows = []
    g = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32
    fmt = torch.channels_last if args.cl else torch.contiguous_format
    losses = {}
    for preset, weights in (
        ("maeNET", LossWeights()),
        ("maePFNET", LossWeights(perceptual=0.0125, fourier=0.0125)),
    ):
        perceptual = None
        if weights.perceptual > 0:
            feats = vgg19_features().eval()
            for p in feats.parameters():
                p.requires_grad_(False)
            vgg = VGGFeatureExtractor(feats).to(device)
            if args.cl:
                vgg = vgg.to(memory_format=torch.channels_last)
            perceptual = PerceptualLoss(vgg)
        losses[preset] = GeneratorLoss(weights, perceptual).to(device)
    # one compiled generator, at the largest batch only: each new shape would compile again
    runs = [(False, b) for b in args.batch_size]
    if args.compile_train and not (device.type == "cpu" and args.quick):
        runs.append((True, max(args.batch_size)))
    for compiled, batch in runs:
        stack, target = _batch(batch, args.images, size, device, g)
        gen = _generator(args.images, args.blocks, device, args.cl).train()
        opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.9))
        model = _compile(gen) if compiled else gen
        for preset, loss in losses.items():

            def step(model=model, opt=opt, loss=loss, stack=stack, target=target):
                x = network_input(stack, dtype=dtype).contiguous(memory_format=fmt)
                y = network_target(target)
                kw = {"autocast": autocast} if autocast else {}
                return generator_step(model, loss, opt, x, y, **kw)

            t0 = time.perf_counter()
            for _ in range(args.warmup):
                step()
            _sync(device)
            first = time.perf_counter() - t0
            times = _timed(step, device, args.steps)
            rows.append(
                {
                    "what": f"{preset}, batch {batch} of {size}x{size}, "
                    f"{'compiled' if compiled else 'eager'}",
                    "samples_s": batch / statistics.median(times),
                    "first_s": first,
                }
            )
    return rows


def loader(args, device: torch.device, bf16: bool) -> list[dict]:
    size = 32 if args.quick else 64
    n_cells = 64 if args.quick else 2048
    batch = max(args.batch_size)
    dtype = torch.bfloat16 if bf16 else torch.float32
    g = torch.Generator().manual_seed(1)
    xs = torch.randint(
        0, 256, (n_cells, args.images, size, size, 3), dtype=torch.uint8, generator=g
    )
    ys = torch.randint(0, 256, (n_cells, size, size, 3), dtype=torch.uint8, generator=g)
    rows = []
    order = torch.randperm(n_cells, generator=g)
    n_batches = max(1, n_cells // batch)

    def epoch(x_src, y_src, pin: bool) -> None:
        for b in range(n_batches):
            idx = order[b * batch : (b + 1) * batch]
            if x_src.device != device:
                x_b, y_b = x_src[idx], y_src[idx]
                if pin:
                    x_b, y_b = x_b.pin_memory(), y_b.pin_memory()
                x_b = x_b.to(device, non_blocking=pin)
                y_b = y_b.to(device, non_blocking=pin)
            else:
                i = idx.to(device)
                x_b, y_b = x_src[i], y_src[i]
            network_input(x_b, dtype=dtype)
            network_target(y_b)

    pin = device.type == "cuda"
    modes = [("ram", xs, ys, pin)]
    if device.type == "cuda":
        modes.insert(0, ("device", xs.to(device), ys.to(device), False))
    for name, x_src, y_src, p in modes:
        epoch(x_src, y_src, p)  # warm-up
        times = _timed(lambda x_src=x_src, y_src=y_src, p=p: epoch(x_src, y_src, p), device, 3)
        rows.append(
            {
                "what": f"`--cache {name}`: gather + convert, batch {batch} of {size}x{size}",
                "samples_s": n_batches * batch / statistics.median(times),
            }
        )
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


EARLIER = "#### Earlier runs on this page"


def _command() -> str:
    shown, skip = [], False
    for a in sys.argv[1:]:  # the command as run, without where it wrote
        if not (skip or a.startswith("--out") or a == "--keep-earlier"):
            shown.append(a)
        skip = a == "--out"
    return " ".join(["python benchmarks/gpu_bench.py", *shown])


def report(args, device, bf16, st, exact, tr, ld, wall_s, *, done: bool) -> str:
    """The run's markdown section (``done=False``: the stages so far, marked incomplete)."""
    name = device_name(device)
    net = (
        f"RRDB {args.blocks} blocks, {args.images} images "
        f"({count_parameters(RRDBGenerator(3 * args.images, blocks=args.blocks)):,} parameters)"
    )
    lines = [
        f"### GPU path: {name}",
        "",
        f"Device: **{name}**, torch {torch.__version__}, {'bf16' if bf16 else 'fp32'}"
        f", {'channels_last' if args.cl else 'contiguous (NCHW)'}; {net}; "
        "synthetic tensors of the real shapes. "
        f"Command: `{_command()}` ({wall_s:.0f} s in all).",
        "",
    ]
    if not done:
        lines += ["**Incomplete run**: it stopped (time limit or error) after these rows.", ""]
    lines += ["| measure | value | first call (s) | target |", "|---|---|---|---|"]
    for r in st:
        if "skip" in r or "error" in r:
            why = r.get("skip") or f"FAILED: {r['error']}".replace("|", "/")
            lines.append(f"| stain {r['what']} | {why} | | |")
            continue
        peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        target = "< 0.2 s (H100)" if not args.quick else ""
        lines.append(
            f"| stain {r['what']} | {r['median_s']:.3f} s median (best {r['best_s']:.3f}{peak}) "
            f"| {r['first_s']:.1f} | {target} |"
        )
    for r in tr:
        target = "≥ 1,000 (H100)" if not args.quick else ""
        lines.append(
            f"| train {r['what']} | {r['samples_s']:,.0f} samples/s | {r['first_s']:.1f} | "
            f"{target} |"
        )
    for r in ld:
        lines.append(f"| loader alone, {r['what']} | {r['samples_s']:,.0f} samples/s | | |")
    for r in st:
        if "check" not in r:
            continue
        c = r["check"]
        lines.append(
            f"| correctness: stain {r['what']} on {name} vs CPU fp32, {c['size']}x{c['size']} "
            f"of the field, mean (max) abs difference | {c['mean']:.4f} ({c['max']:.4f}) "
            f"{'ok' if c['ok'] else 'FAILED'} | | ≤ {TOLERANCE['mean']} (≤ {TOLERANCE['max']}) |"
        )
    if exact is not None:
        lines.append(
            f"| channels padded vs plain, eager, on {name}: max abs difference (the same "
            f"network; summation order only) | {exact:.2g} | | |"
        )
    return "\n".join(lines) + "\n"


#: A paragraph that plans the next run: the run itself replaces it.
PLAN = "**Next GPU run.**"


def with_earlier(text: str, page: str | None) -> str:
    """``text`` above the runs already on ``page``.

    Their own headings fold into one "earlier runs" heading; the paragraph that planned
    this run (starting with :data:`PLAN`) is dropped; every other line is kept as it was.
    """
    if not page or not page.strip():
        return text
    body, in_plan = [], False
    for i, line in enumerate(page.strip().splitlines()):
        in_plan = line.startswith(PLAN) or (in_plan and line.strip() != "")
        if in_plan or line == EARLIER or (i == 0 and line.startswith("### GPU path")):
            continue
        body.append(line)
    return "\n".join([text.rstrip(), "", EARLIER, "", "\n".join(body).strip(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny network and sizes (tests)")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument(
        "--no-pad-channels", dest="pad", action="store_false",
        help="skip the stain variants with channel counts padded to multiples of 8",
    )  # fmt: skip
    ap.add_argument(
        "--no-cuda-graphs", dest="graphs", action="store_false",
        help="skip the stain variants replayed from a CUDA graph",
    )  # fmt: skip
    ap.add_argument(
        "--compile-train", dest="compile_train", action="store_true", default=False,
        help="also time a compiled training step at the largest batch (about two minutes)",
    )  # fmt: skip
    ap.add_argument("--no-compile-train", dest="compile_train", action="store_false")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument(
        "--memory-format",
        choices=["auto", "channels_last", "contiguous"],
        default="auto",
        help="layout of activations (auto: as the trainer and scope stain choose)",
    )
    ap.add_argument("--batch-size", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=None, help="timed stain repeats")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps")
    ap.add_argument("--out", type=Path, help="also write the markdown rows here")
    ap.add_argument(
        "--keep-earlier", action="store_true",
        help="keep the runs already in --out below this one (gpu.sh does, for the docs page)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 1
    shape = QUICK if args.quick else THESIS
    args.images, args.blocks = shape["images"], shape["blocks"]
    args.batch_size = args.batch_size or ([2] if args.quick else [20, 128, 256])
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.steps = args.steps or (1 if args.quick else 20)
    args.warmup = 1 if args.quick else 3
    if args.precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    else:
        bf16 = args.precision == "bf16"
    args.cl = (
        default_channels_last(device, bf16)
        if args.memory_format == "auto"
        else args.memory_format == "channels_last"
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    earlier = None
    if args.out and args.keep_earlier and args.out.exists():
        earlier = args.out.read_text(encoding="utf-8")
    t0 = time.perf_counter()
    st, exact, tr, ld = [], None, [], []

    def write(done: bool) -> None:
        text = report(args, device, bf16, st, exact, tr, ld, time.perf_counter() - t0, done=done)
        if done:
            print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(with_earlier(text, earlier), encoding="utf-8")

    exact = stain(args, device, bf16, st, lambda: write(done=False))
    tr = train(args, device, bf16)
    print(*(f"train {r['what']}: {r['samples_s']:.0f}/s" for r in tr), sep="\n", flush=True)
    write(done=False)
    ld = loader(args, device, bf16)
    write(done=True)
    failed = [r["what"] for r in st if "check" in r and not r["check"]["ok"]]
    if failed:
        print(
            "error: the device's output differs from the CPU's beyond bf16 tolerance in: "
            + "; ".join(failed),
            file=sys.stderr,
        )
    broken = [r["what"] for r in st if "error" in r]
    if broken:
        print(f"error: stain variants failed to run: {'; '.join(broken)}", file=sys.stderr)
    return 1 if failed or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
