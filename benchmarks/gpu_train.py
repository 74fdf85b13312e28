"""The GPU benchmark's training stages: the generator step's samples/s, and the loader alone.

:func:`train` times :func:`training.steps.generator_step` on device-resident batches;
:func:`loader` times gathering batches from a device or pinned-host cache and converting
them. Like ``gpu_bench.py`` this imports only the standard library, torch and the network.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from gpu_common import random_perceptual_loss, seeded_generator, sync, timed
from gpu_variants import release

from training.losses import GeneratorLoss, LossWeights
from training.steps import generator_step
from training.tensors import network_input, network_target

#: The loss presets timed: L1 alone, and L1 + VGG19 perceptual + Fourier.
PRESETS = (
    ("maeNET", LossWeights()),
    ("maePFNET", LossWeights(perceptual=0.0125, fourier=0.0125)),
)


def _compile(module: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    torch._dynamo.reset()  # nothing carried over from the stain variants' compilations
    return torch.compile(module, dynamic=False, mode=mode)


def _batch(n: int, images: int, size: int, device: torch.device, gen: torch.Generator):
    stack = torch.randint(0, 256, (n, images, size, size, 3), dtype=torch.uint8, generator=gen)
    target = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=gen)
    return stack.to(device), target.to(device)


def _losses(device: torch.device, channels_last: bool) -> dict[str, GeneratorLoss]:
    """The generator loss of each preset, on ``device``."""
    losses = {}
    for preset, weights in PRESETS:
        perceptual = None
        if weights.perceptual > 0:
            perceptual = random_perceptual_loss(device, channels_last)
        losses[preset] = GeneratorLoss(weights, perceptual).to(device)
    return losses


@dataclass(frozen=True)
class TrainRun:
    """One timed training configuration."""

    batch: int
    pad: bool  # compute in channel counts padded to multiples of 8 (exact)
    channels_last: bool
    compiled: bool

    def label(self, size: int, run_cl: bool) -> str:
        parts = [f"batch {self.batch} of {size}x{size}", "compiled" if self.compiled else "eager"]
        if self.pad:
            parts.append("channels padded 132→136" if size == 64 else "channels padded")
        if self.pad or self.channels_last != run_cl:
            parts.append("channels-last" if self.channels_last else "NCHW")
        return ", ".join(parts)


def train_runs(args, device: torch.device) -> list[TrainRun]:
    """The configurations timed: the run's layout at every batch; with channel padding, padded
    in both layouts at every batch; compiled (``--compile-train``) once, at the largest batch,
    padded and channels-last when padding is on (each new shape would compile again)."""
    runs = [TrainRun(b, False, args.cl, False) for b in args.batch_size]
    if args.pad:
        runs += [TrainRun(b, True, cl, False) for cl in (False, True) for b in args.batch_size]
    if args.compile_train and not (device.type == "cpu" and args.quick):
        cl = True if args.pad else args.cl
        runs.append(TrainRun(max(args.batch_size), args.pad, cl, True))
    return runs


def train(args, device: torch.device, bf16: bool) -> list[dict]:
    """One row per (configuration, preset): training samples/s and the first steps' seconds."""
    size = 32 if args.quick else 64
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if bf16 else None
    )
    rows = []
    g = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32
    losses_by_layout: dict[bool, dict[str, GeneratorLoss]] = {}
    for run in train_runs(args, device):
        fmt = torch.channels_last if run.channels_last else torch.contiguous_format
        if run.channels_last not in losses_by_layout:
            losses_by_layout[run.channels_last] = _losses(device, run.channels_last)
        stack, target = _batch(run.batch, args.images, size, device, g)
        gen = seeded_generator(args.images, args.blocks, device, run.channels_last).train()
        if run.pad:
            gen.compute_in(8)
        opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.9))
        model = _compile(gen, getattr(args, "compile_mode", None)) if run.compiled else gen
        for preset, loss in losses_by_layout[run.channels_last].items():

            def step(model=model, opt=opt, loss=loss, stack=stack, target=target, fmt=fmt):
                x = network_input(stack, dtype=dtype).contiguous(memory_format=fmt)
                y = network_target(target)
                kw = {"autocast": autocast} if autocast else {}
                return generator_step(model, loss, opt, x, y, **kw)

            t0 = time.perf_counter()
            for _ in range(args.warmup):
                step()
            sync(device)
            first = time.perf_counter() - t0
            times = timed(step, device, args.steps)
            rows.append(
                {
                    "what": f"{preset}, {run.label(size, args.cl)}",
                    "samples_s": run.batch / statistics.median(times),
                    "first_s": first,
                }
            )
        del model, gen, opt
        release(device)
    return rows


def loader(args, device: torch.device, bf16: bool) -> list[dict]:
    """One row per cache kind (device-resident on CUDA, pinned host memory): samples/s."""
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
        times = timed(lambda x_src=x_src, y_src=y_src, p=p: epoch(x_src, y_src, p), device, 3)
        rows.append(
            {
                "what": f"`--cache {name}`: gather + convert, batch {batch} of {size}x{size}",
                "samples_s": n_batches * batch / statistics.median(times),
            }
        )
    return rows
