"""Staining one field: tiles with a halo, their planning against the memory at hand.

The RRDB generator has no layer that sees more than :attr:`receptive_radius` pixels away
(63 for 4 blocks), so a field is cut into large tiles that each carry a *halo* of at least
that radius: every pixel of a tile's core is then computed from exactly the inputs a
single pass over the whole field would use, and the cores (overlapping by ``blend`` pixels,
joined with linear ramps) reproduce the single-pass image. With a smaller halo the ramps hide
the seams. On a GPU, or with memory to spare, one tile covers a whole 1920x1200 field.

The pix2pix U-Net is not translation-equivariant beyond its training crop (its bottleneck is
1x1 for 64x64 inputs), so it is applied to crop-sized windows overlapping by a quarter and
blended the same way (tiled inference with alpha blending, as in VirFluoNet).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from training.defaults import DEFAULT_BLEND
from training.device import (
    autocast_factory,
    available_memory_bytes,
    default_channels_last,
    keep_freed_memory,
    release_freed_memory,
    resident_bytes,
)
from training.models import RRDBGenerator


def _starts(length: int, core: int, blend: int) -> list[int]:
    """Start of each core along one axis: stride ``core - blend``, the last flush with the end."""
    if core >= length:
        return [0]
    stride = max(1, core - blend)
    starts = list(range(0, length - core, stride))
    starts.append(length - core)
    return starts


def _ramp(length: int, lo_blend: int, hi_blend: int) -> np.ndarray:
    """Weights along a core: linear ramps over its overlaps with neighbours, 1 elsewhere."""
    w = np.ones(length, np.float32)
    if lo_blend > 0:
        w[:lo_blend] = (np.arange(lo_blend, dtype=np.float32) + 0.5) / lo_blend
    if hi_blend > 0:
        w[-hi_blend:] = np.minimum(
            w[-hi_blend:], (np.arange(hi_blend, 0, -1, dtype=np.float32) - 0.5) / hi_blend
        )
    return w


def tile_plan(
    height: int, width: int, *, tile: int, blend: int
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Cores ``(y0, y1, x0, x1, weight)`` covering an image; ``weight`` is ``(h, w)`` float32."""
    return [
        (y0, y1, x0, x1, np.outer(wy, wx))
        for y0, y1, wy in _cores(height, tile, blend)
        for x0, x1, wx in _cores(width, tile, blend)
    ]


def _cores(length: int, tile: int, blend: int) -> list[tuple[int, int, np.ndarray]]:
    """Cores ``(start, end, weights)`` along one axis, ramped where neighbours overlap."""
    starts = _starts(length, tile, blend)
    cores = []
    for i, a in enumerate(starts):
        b = min(length, a + tile)
        lo = (starts[i - 1] + tile - a) if i > 0 else 0
        hi = (b - starts[i + 1]) if i + 1 < len(starts) else 0
        cores.append((a, b, _ramp(b - a, lo, hi)))
    return cores


def _plain(generator: nn.Module) -> nn.Module:
    """The module inside a ``torch.compile`` wrapper (for its architecture attributes)."""
    return getattr(generator, "_orig_mod", generator)


def _free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory_bytes()


#: ``scope stain`` on a CPU keeps its resident memory under this by default (tiles shrink).
CPU_MEMORY_LIMIT = 4 * 2**30
#: Measured peak bytes per tile pixel on a CPU over the dense-block estimate (oneDNN's
#: reordered copies, bf16 casts, and the freed blocks :func:`keep_freed_memory` keeps):
#: thesis ``full-nohe`` network, 256x256 and 512x512 tiles, 11.9 KB/px bf16 (estimate 2.6),
#: 9.2 KB/px fp32 (estimate 4.7). ``benchmarks/bench_stain.py`` measures the whole field.
CPU_OVERHEAD = {True: 4.6, False: 2.0}


def tile_bytes_per_px(generator: nn.Module, *, bf16: bool, device: torch.device) -> float:
    """Peak memory per pixel of a tile (core + halo) during one RRDB pass."""
    g = _plain(generator)
    elt = 2 if bf16 else 4
    per_px = elt * (g.in_channels + 3 * g.features + 2 * (g.features + 4 * g.growth))
    per_px += 4 * g.in_channels
    return per_px * (CPU_OVERHEAD[bf16] if device.type == "cpu" else 1.0)


def default_tile(
    device: torch.device,
    generator: nn.Module,
    *,
    height: int,
    width: int,
    bf16: bool,
    n_images: int | None = None,
) -> tuple[int, int]:
    """``(tile, halo)``: one pass over the whole field when it fits, else square cores.

    On a GPU the pass may use 40 % of the free memory. On a CPU it may also use 40 % of the
    available memory, and the whole process stays under :data:`CPU_MEMORY_LIMIT`: what it
    holds already and the field's own arrays (the stack once more as a tensor, the blended
    output) come off the limit first. Peak memory per pixel is :func:`tile_bytes_per_px`.
    Otherwise square cores as large as fit (multiples of 16, at least 128), with a halo of
    the receptive radius (exact interiors).
    """
    generator = _plain(generator)
    if not isinstance(generator, RRDBGenerator):
        return getattr(generator, "receptive_radius", 64), 0
    halo = generator.receptive_radius
    per_px = tile_bytes_per_px(generator, bf16=bf16, device=device)
    budget = 0.4 * _free_memory_bytes(device)
    if device.type == "cpu":
        n_in = generator.in_channels if n_images is None else 3 * n_images
        field_arrays = height * width * (n_in + 32)  # uint8 stack tensor, float sums, output
        # 85 %: the per-pixel figure is an average over measured tiles, not a bound
        budget = min(budget, 0.85 * (CPU_MEMORY_LIMIT - resident_bytes() - field_arrays))
    budget_px = max(budget, 0) / per_px
    if height * width <= budget_px:
        return max(height, width), halo
    side = int(math.sqrt(budget_px)) - 2 * halo
    return max(128, side // 16 * 16), halo


@torch.no_grad()
def stain_field(
    generator: nn.Module,
    stack: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool | None = None,
    tile: int | None = None,
    halo: int | None = None,
    blend: int = DEFAULT_BLEND,
    dtype: type = np.uint8,
) -> np.ndarray:
    """Stain one field.

    Parameters
    ----------
    generator
        A trained generator (eval mode), already on ``device``.
    stack
        ``(n_images, H, W, 3) uint8``: the model's stack channels of one unstained field.
    device, bf16, channels_last
        Where and how to compute (``channels_last``: :func:`training.device.default_channels_last`).
    tile
        Core size in pixels (default: :func:`default_tile`).
    halo
        Context added around each core (default: the generator's receptive radius, which
        makes cores exact).
    blend
        Overlap of neighbouring cores joined by linear ramps.
    dtype
        ``numpy.uint8`` (rounded) or ``numpy.float32`` (in [0, 1], for numerical use).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` stained field.
    """
    if dtype not in (np.uint8, np.float32):
        raise ValueError(f"dtype must be numpy.uint8 or numpy.float32, got {dtype}")
    device = torch.device(device)
    arr = torch.as_tensor(np.asarray(stack)) if not isinstance(stack, torch.Tensor) else stack
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != torch.uint8:
        raise ValueError(
            f"stack must be (n_images, H, W, 3) uint8, got {tuple(arr.shape)} {arr.dtype}"
        )
    n, h, w, _ = arr.shape
    in_ch = getattr(_plain(generator), "in_channels", 3 * n)
    if in_ch != 3 * n:
        raise ValueError(f"the generator takes {in_ch // 3} images, the stack has {n}")
    d_tile, d_halo = default_tile(device, generator, height=h, width=w, bf16=bf16, n_images=n)
    tile = d_tile if tile is None else int(tile)
    halo = d_halo if halo is None else int(halo)
    if tile < 1 or halo < 0 or blend < 0:
        raise ValueError(f"tile must be ≥ 1 and halo, blend ≥ 0; got {tile}, {halo}, {blend}")
    is_unet = not isinstance(_plain(generator), RRDBGenerator)
    if is_unet and (h < tile or w < tile):
        raise ValueError(f"the U-Net stains windows of {tile} px; the field is {w}x{h}")
    blend = min(blend, tile // 2) if not is_unet else max(blend, tile // 4)
    cl = default_channels_last(device, bf16) if channels_last is None else channels_last
    autocast = autocast_factory(device, bf16)
    in_dtype = torch.bfloat16 if bf16 else torch.float32
    if device.type == "cpu":
        keep_freed_memory()
    # (n, H, W, 3) → (3n, H, W) float in [0, 1] on the device, image-major channels
    x = arr.to(device).permute(0, 3, 1, 2).reshape(3 * n, h, w)
    acc = torch.zeros((3, h, w), dtype=torch.float32, device=device)
    wsum = torch.zeros((1, h, w), dtype=torch.float32, device=device)
    for y0, y1, x0, x1, weight in tile_plan(h, w, tile=tile, blend=blend):
        iy0, iy1 = max(0, y0 - halo), min(h, y1 + halo)
        ix0, ix1 = max(0, x0 - halo), min(w, x1 + halo)
        # bf16 models get bf16 inputs straight away (autocast would cast them anyway)
        inp = x[:, iy0:iy1, ix0:ix1].unsqueeze(0).to(in_dtype).div_(255.0)
        if cl:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = generator(inp)
        core = out[0, :, y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0].float()
        wt = torch.from_numpy(weight).to(device)
        acc[:, y0:y1, x0:x1] += core * wt
        wsum[:, y0:y1, x0:x1] += wt
    img = (acc / wsum).clamp_(0, 1)
    if dtype == np.uint8:
        img = img.mul_(255.0).round_().to(torch.uint8)
    result = img.permute(1, 2, 0).cpu().numpy()
    if device.type == "cpu":
        del x, acc, wsum, img
        release_freed_memory()
    return result
