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
  multiples of 8 (:meth:`training.models.RRDBGenerator.compute_in`), eager and compiled
  (``--no-pad-channels``); the forward captured as a CUDA graph, plain and padded
  (``--no-cuda-graphs``; CUDA only: "skipped (needs CUDA)" elsewhere);
- correctness: each variant's field output against the CPU's fp32 stain of a 256x256 square
  of the same field (a crop with the receptive radius around it: exact in its interior);
  mean and max absolute differences must stay within bf16 tolerance (fails the run
  otherwise); and the padded against the plain eager output (exact up to summation order);
- train: :func:`training.steps.generator_step` on device-resident batches of 64x64 cells,
  presets maeNET (L1) and maePFNET (+ VGG19 perceptual + Fourier), batches 20, 128 and 256,
  eager, plain and (unless ``--no-pad-channels``) computed in padded channel counts in both
  layouts; ``--compile-train`` adds a compiled padded channels-last run at the largest batch
  (about a minute of compilation; 719 samples/s against 598 eager on an H200);
- loader: batches gathered from a device-resident uint8 cache (``--cache device``) and from
  pinned host memory copied to the device (``--cache ram``), converted with
  :func:`training.tensors.network_input`: it must outpace the training step. (Reading cells
  from HDF5, ``--cache none``, needs h5py: ``benchmarks/bench_training.py --pipeline``.)

The report is written to ``--out`` after each stage (marked incomplete until the run ends);
``--keep-earlier`` keeps the runs already on that page below the new one.

Target on an H100-class GPU: stain < 0.2 s per field, train ≥ 1,000 samples/s.

This file holds the command line and the order of the stages; the stages live in
``gpu_stain.py`` (stain variants and their check), ``gpu_train.py`` (training step, loader)
and ``gpu_report.py`` (the markdown), with what they share in ``gpu_common.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import QUICK, THESIS
from gpu_report import report, with_earlier
from gpu_stain import stain
from gpu_train import loader, train

from training.device import default_channels_last


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the sizes ``--quick`` and the device imply filled in."""
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
    ap.add_argument(
        "--compile-mode", default=None,
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile's mode for every compiled variant (default: torch's default)",
    )  # fmt: skip
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
    shape = QUICK if args.quick else THESIS
    args.images, args.blocks = shape["images"], shape["blocks"]
    args.batch_size = args.batch_size or ([2] if args.quick else [20, 128, 256])
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.steps = args.steps or (1 if args.quick else 20)
    args.warmup = 1 if args.quick else 3
    return args


def precision_and_layout(args, device: torch.device) -> tuple[bool, bool]:
    """``(bf16, channels_last)``: as asked, or (``auto``) as the trainer would choose."""
    if args.precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    else:
        bf16 = args.precision == "bf16"
    cl = (
        default_channels_last(device, bf16)
        if args.memory_format == "auto"
        else args.memory_format == "channels_last"
    )
    return bf16, cl


def failures(st: list[dict]) -> bool:
    """Print why the run fails (a check beyond tolerance, a variant that raised); any?"""
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
    return bool(failed or broken)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 1
    bf16, args.cl = precision_and_layout(args, device)
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
    return 1 if failures(st) else 0


if __name__ == "__main__":
    raise SystemExit(main())
