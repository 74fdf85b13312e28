"""How much memory staining one field takes, and the tile that keeps it within a budget.

:func:`predicted_peak` is the model (a measured cost per window pixel on a CPU, the dense
blocks' live features on a GPU), :func:`memory_budget` what a pass may take, and
:func:`default_tile` the cheapest tiling whose predicted peak fits the budget. The
measurements behind the constants are re-made by ``benchmarks/bench_stain.py --sweep``; the
data are in docs/training.md.
"""

from __future__ import annotations

import torch
from torch import nn

from training.defaults import DEFAULT_BLEND
from training.device import available_memory_bytes, resident_bytes
from training.models import RRDBGenerator
from training.tile_geometry import Tile, window_pixels, window_size

#: ``scope stain`` on a CPU keeps its resident peak under this by default (``--max-memory``).
CPU_MEMORY_LIMIT = 4 * 2**30
#: ... and grows by at most this share of the available memory (a host short of memory).
AVAILABLE_SHARE = 0.5
#: On a GPU one pass may take this share of the free device memory.
GPU_SHARE = 0.4
#: Smallest default core (px): below it the halos cost more compute than the cores.
MIN_TILE = 128
#: Bytes per field pixel a pass holds besides the stack itself: float sums of the blended
#: output (12), their weights (4), the uint8 result (3), rounded up.
FIELD_BYTES_PER_PX = 20
#: Measured CPU peak per window pixel over :func:`window_estimate` (thesis ``full-nohe``
#: network, whole-process ``VmHWM`` less the resident memory before the pass and the field's
#: arrays; windows of 254² to 1024x1150 px): bf16 1.72-2.17x (3.6-4.5 KB/px, no intercept
#: to speak of), fp32 2.47x (10.3 KB/px, 254² windows). The factors are the largest seen
#: plus a margin; they cover oneDNN's reordered copies and the freed blocks that
#: :func:`training.device.keep_freed_memory` keeps for reuse. Re-measured by
#: ``benchmarks/bench_stain.py --sweep``; the data are in docs/training.md.
CPU_WINDOW_FACTOR = {True: 2.2, False: 2.7}
#: Bytes a CPU pass adds whatever the window size (oneDNN's primitives and kernels, the
#: threads' buffers, and the run-to-run spread of glibc's heap): for the small networks of
#: the tests; the thesis network's fit has no measurable intercept. A 24-wide, 2-block
#: network on a 640x960 field peaked at 650-804 MB over 10 runs on one 2-core machine
#: (prediction with 64 MiB: 787 MB) and at 910 MB on another (prediction 856 MB), so
#: 64 MiB was raised to 128.
CPU_PASS_FIXED = 128 * 2**20


def plain_generator(generator: nn.Module) -> nn.Module:
    """The module inside a ``torch.compile`` wrapper (for its architecture attributes)."""
    return getattr(generator, "_orig_mod", generator)


def is_bf16_generator(generator: nn.Module) -> bool:
    """Whether the generator's weights are bf16 (it then takes bf16 inputs, no autocast)."""
    p = next(iter(generator.parameters()), None)
    return p is not None and p.dtype == torch.bfloat16


def free_memory_bytes(device: torch.device) -> int:
    """Bytes free for a pass: the device's free memory (GPU) or the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory_bytes()


def window_estimate(generator: nn.Module, elt: int) -> float:
    """Bytes per window pixel live at once in a dense block (features, padded copies)."""
    g = plain_generator(generator)
    return elt * (g.in_channels + 3 * g.features + 2 * (g.features + 4 * g.growth))


def _runs_bf16(generator: nn.Module, bf16: bool, device: torch.device) -> bool:
    """Whether activations are bf16 (CPU: an fp32 generator under autocast pads in fp32)."""
    if not bf16 or device.type != "cpu":
        return bf16
    return is_bf16_generator(generator) or generator is plain_generator(generator)


def tile_bytes_per_px(generator: nn.Module, *, bf16: bool, device: torch.device) -> float:
    """Peak memory per pixel of a window (core + halo) during one RRDB pass."""
    elt = 2 if _runs_bf16(generator, bf16, device) else 4
    per_px = window_estimate(generator, elt)
    if device.type == "cpu":
        return per_px * CPU_WINDOW_FACTOR[elt == 2]
    return per_px


def predicted_peak(
    device: torch.device,
    generator: nn.Module,
    *,
    tile: Tile,
    halo: int,
    height: int,
    width: int,
    bf16: bool,
    resident: int | None = None,
) -> int:
    """Predicted peak bytes of staining one field with cores of ``tile`` px (see tile_plan).

    On a CPU the whole process's resident peak: ``resident`` (now, with the stack loaded;
    default measured) + the field's own arrays + :data:`CPU_PASS_FIXED` + one window's
    pixels times :func:`tile_bytes_per_px`. Every window of a field has the same size
    (:func:`training.tile_geometry.window_span`), so one window's memory is reused by the
    next. On a GPU the memory one pass takes (window pixels times the estimate).
    """
    window = window_size(height, width, tile, halo) * tile_bytes_per_px(
        generator, bf16=bf16, device=device
    )
    if device.type != "cpu":
        return int(window)
    held = resident_bytes() if resident is None else resident
    return int(held + FIELD_BYTES_PER_PX * height * width + CPU_PASS_FIXED + window)


def memory_budget(device: torch.device, max_memory: float | None = None) -> int:
    """Bytes :func:`default_tile` plans for (see there)."""
    if device.type != "cpu":
        free = GPU_SHARE * free_memory_bytes(device)
        return int(free if max_memory is None else min(free, max_memory * 2**30))
    limit = CPU_MEMORY_LIMIT if max_memory is None else max_memory * 2**30
    return int(min(limit, resident_bytes() + AVAILABLE_SHARE * free_memory_bytes(device)))


def default_tile(
    device: torch.device,
    generator: nn.Module,
    *,
    height: int,
    width: int,
    bf16: bool,
    n_images: int | None = None,
    max_memory: float | None = None,
    blend: int = DEFAULT_BLEND,
) -> tuple[tuple[int, int], int]:
    """``((rows, columns), halo)``: one pass over the whole field when it fits, else cores.

    On a CPU the budget is the whole process's resident peak: at most ``max_memory`` GiB
    (default :data:`CPU_MEMORY_LIMIT`, 4 GiB) and at most what it holds now plus
    :data:`AVAILABLE_SHARE` of the available memory. On a GPU one pass may take
    :data:`GPU_SHARE` of the free memory (and at most ``max_memory``). Peaks are
    :func:`predicted_peak`. When the whole field does not fit, the cores are the rectangles
    (sides multiples of 16 of at least :data:`MIN_TILE`, or a whole side of the field) that
    fit and compute the fewest window pixels, halos included: full-height strips when they
    fit. The halo is the receptive radius (exact interiors). ``n_images`` is unused (the
    stack is already held when this is called; kept for callers).

    Raises
    ------
    TrainingError
        ``max_memory`` is too small for even the smallest tile.
    """
    del n_images
    plain = plain_generator(generator)
    if not isinstance(plain, RRDBGenerator):
        r = getattr(plain, "receptive_radius", 64)
        return (r, r), 0
    halo = plain.receptive_radius
    budget = memory_budget(device, max_memory)
    held = resident_bytes() if device.type == "cpu" else 0

    def peak(tile: tuple[int, int]) -> int:
        return predicted_peak(
            device, generator, tile=tile, halo=halo, height=height, width=width, bf16=bf16,
            resident=held,
        )  # fmt: skip

    if peak((height, width)) <= budget:
        return (height, width), halo
    rows = [*range(MIN_TILE, height, 16), height]
    cols = [*range(MIN_TILE, width, 16), width]
    best: tuple[int, int, tuple[int, int]] | None = None
    for th in rows:
        for tw in cols:
            tile = (th, tw)
            if peak(tile) > budget:
                break  # wider cores only take more
            key = (
                window_pixels(height, width, tile, halo, blend),
                window_size(height, width, tile, halo),
            )
            if best is None or key < best[:2]:
                best = (*key, tile)
    if best is None:
        if max_memory is not None:
            from training.errors import TrainingError

            need = peak((MIN_TILE, MIN_TILE)) / 2**30
            raise TrainingError(
                f"--max-memory {max_memory:g} GiB is too small to stain {width}x{height} "
                f"fields with this network (the smallest tile needs about {need:.1f} GiB); "
                "raise it"
            )
        return (min(MIN_TILE, height), min(MIN_TILE, width)), halo
    return best[2], halo


__all__ = [
    "AVAILABLE_SHARE",
    "CPU_MEMORY_LIMIT",
    "CPU_PASS_FIXED",
    "CPU_WINDOW_FACTOR",
    "FIELD_BYTES_PER_PX",
    "GPU_SHARE",
    "MIN_TILE",
    "default_tile",
    "free_memory_bytes",
    "is_bf16_generator",
    "memory_budget",
    "plain_generator",
    "predicted_peak",
    "tile_bytes_per_px",
    "window_estimate",
]
