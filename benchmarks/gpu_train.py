"""The GPU benchmark's training stages: the generator step's samples/s, and the loader alone.

:func:`train` times :func:`training.steps.generator_step` on device-resident batches;
:func:`loader` times gathering batches from a device or pinned-host cache and converting
them. Like ``gpu_bench.py`` this imports only the standard library, torch and the network.
"""

from __future__ import annotations

import statistics
import time

import torch
from gpu_common import random_perceptual_loss, seeded_generator, sync, timed

from training.losses import GeneratorLoss, LossWeights
from training.steps import generator_step
from training.tensors import network_input, network_target

#: The loss presets timed: L1 alone, and L1 + VGG19 perceptual + Fourier.
PRESETS = (
    ("maeNET", LossWeights()),
    ("maePFNET", LossWeights(perceptual=0.0125, fourier=0.0125)),
)


def _compile(module: torch.nn.Module) -> torch.nn.Module:
    torch._dynamo.reset()  # nothing carried over from the stain variants' compilations
    return torch.compile(module, dynamic=False)


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


def train(args, device: torch.device, bf16: bool) -> list[dict]:
    """One row per (batch, preset): training samples/s and the first steps' seconds."""
    size = 32 if args.quick else 64
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if bf16 else None
    )
    rows = []
    g = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32
    fmt = torch.channels_last if args.cl else torch.contiguous_format
    losses = _losses(device, args.cl)
    # one compiled generator, at the largest batch only: each new shape would compile again
    runs = [(False, b) for b in args.batch_size]
    if args.compile_train and not (device.type == "cpu" and args.quick):
        runs.append((True, max(args.batch_size)))
    for compiled, batch in runs:
        stack, target = _batch(batch, args.images, size, device, g)
        gen = seeded_generator(args.images, args.blocks, device, args.cl).train()
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
            sync(device)
            first = time.perf_counter() - t0
            times = timed(step, device, args.steps)
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
