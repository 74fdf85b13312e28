"""The GPU benchmark's stain stage: each variant timed on a field and checked against the CPU.

:func:`stain` runs every variant of ``gpu_variants.py`` over one synthetic field; each
variant's output is compared with the CPU's fp32 stain of a square of the same field
(:func:`field_reference`, :func:`check`). Like ``gpu_bench.py`` this imports only the
standard library, numpy, torch and the network.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from gpu_common import seeded_generator, sync, timed
from gpu_variants import build, release, stain_variants

from training.infer import stain_field

#: bf16 against fp32 through ~60 convolutions, outputs in [0, 1] (measured on CPU: mean
#: 0.002, max 0.02 for random weights); a real defect (wrong layout, wrong tile) is ≫ this.
TOLERANCE = {"mean": 0.01, "max": 0.08}


def field_reference(args, stack: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """The CPU fp32 stain of a centred square of the field, and where it lies in the field.

    A pixel depends on inputs within the receptive radius ``r`` only, so staining a crop of
    side ``size + 2r`` gives, in its interior, exactly the whole-field pass's values there:
    every variant's field output is checked against it without staining a field on the CPU.
    """
    size = 24 if args.quick else 256
    gen = seeded_generator(args.images, args.blocks, torch.device("cpu"), False).eval()
    r = gen.receptive_radius
    _, h, w, _ = stack.shape
    y0, x0 = (h - size) // 2 - r, (w - size) // 2 - r
    if min(y0, x0) < 0:
        raise ValueError(f"a {w}x{h} field is too small for the {size}x{size} check")
    crop = stack[:, y0 : y0 + size + 2 * r, x0 : x0 + size + 2 * r]
    ref = stain_field(gen, crop, device="cpu", bf16=False, dtype=np.float32)
    region = (slice(y0 + r, y0 + r + size), slice(x0 + r, x0 + r + size))
    return region, ref[r : r + size, r : r + size]


def check(out: np.ndarray, region, ref: np.ndarray) -> dict:
    """Mean and max absolute difference of ``out[region]`` from ``ref``, within tolerance?"""
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
    gen = seeded_generator(args.images, args.blocks, device, args.cl).eval()
    variants = stain_variants(
        device,
        compile=args.compile,
        pad=args.pad,
        graphs=args.graphs,
        quick=args.quick,
        channels_last=args.cl,
    )
    kw = {"device": device, "bf16": bf16, "channels_last": args.cl}
    eager: dict[bool, np.ndarray] = {}
    for v in variants:
        what = f"{w}x{h} field, {v.label(gen)}"
        if v.skip:
            rows.append({"what": what, "skip": v.skip})
        else:
            try:
                row, out = stain_variant(v, gen, stack, kw, args, device)
            except Exception as exc:  # one variant's failure must not cost the others' rows
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
                rows.append({"what": what, "error": reason})
                print(f"stain {what}: FAILED ({reason})", flush=True)
            else:
                row["check"] = check(out, region, ref)
                rows.append({"what": what, **row})
                if v.mode == "eager" and v.channels_last is None:
                    eager[v.pad] = out
                print(f"stain {what}: {row['median_s']:.3f} s", flush=True)
            release(device)
        done_one()
    return float(np.abs(eager[True] - eager[False]).max()) if len(eager) == 2 else None


def stain_variant(v, gen, stack, kw: dict, args, device) -> tuple[dict, np.ndarray]:
    """Time one variant over the field; its row and its float32 output for the check."""
    mode = getattr(args, "compile_mode", None)
    model = build(v, gen, channels_last=args.cl, compile_mode=mode)
    if v.channels_last is not None:
        kw = {**kw, "channels_last": v.channels_last}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    stain_field(model, stack, **kw)  # warm-up: kernels, compilation, graph capture
    sync(device)
    first = time.perf_counter() - t0
    times = timed(lambda: stain_field(model, stack, **kw), device, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    out = stain_field(model, stack, dtype=np.float32, **kw)
    row = {
        "median_s": statistics.median(times),
        "best_s": min(times),
        "first_s": first,
        "peak_gib": peak,
    }
    return row, out
