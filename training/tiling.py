"""Staining one field: the network applied tile by tile, with halos, the cores blended.

The RRDB generator has no layer that sees more than :attr:`receptive_radius` pixels away
(63 for 4 blocks), so a field is cut into large tiles that each carry a *halo* of at least
that radius: every pixel of a tile's core is then computed from exactly the inputs a
single pass over the whole field would use, and the cores (overlapping by ``blend`` pixels,
joined with linear ramps) reproduce the single-pass image. With a smaller halo the ramps hide
the seams. On a GPU, or with memory to spare, one tile covers a whole 1920x1200 field.

The pix2pix U-Net is not translation-equivariant beyond its training crop (its bottleneck is
1x1 for 64x64 inputs), so it is applied to crop-sized windows overlapping by a quarter and
blended the same way (tiled inference with alpha blending, as in VirFluoNet).

Where the tiles lie is :mod:`training.tile_geometry`; how large they may be for the memory
at hand is :mod:`training.stain_memory` (:func:`default_tile`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from training.defaults import DEFAULT_BLEND
from training.device import (
    autocast_factory,
    default_channels_last,
    keep_freed_memory,
    release_freed_memory,
)
from training.models import RRDBGenerator
from training.stain_memory import default_tile, is_bf16_generator, plain_generator
from training.tile_geometry import Tile, tile_plan, tile_sides, window_span


@torch.no_grad()
def stain_field(
    generator: nn.Module,
    stack: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool | None = None,
    tile: Tile | None = None,
    halo: int | None = None,
    blend: int = DEFAULT_BLEND,
    dtype: type = np.uint8,
    max_memory: float | None = None,
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
        Core size in pixels, square or ``(rows, columns)`` (default: :func:`default_tile`).
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
    arr = _checked_stack(stack, generator)
    n, h, w, _ = arr.shape
    (th, tw), halo, blend = _tiling(
        generator, device, (h, w), tile, halo, blend, bf16=bf16, max_memory=max_memory
    )
    cl = default_channels_last(device, bf16) if channels_last is None else channels_last
    if bf16 and device.type == "cpu":
        generator = cpu_bf16_generator(generator)
    # a generator already in bf16 needs no autocast (on a CPU autocast pads in fp32)
    autocast = autocast_factory(device, bf16 and not is_bf16_generator(generator))
    in_dtype = torch.bfloat16 if bf16 else torch.float32
    if device.type == "cpu":
        keep_freed_memory()
    src = arr.to(device)  # (n, H, W, 3) uint8: each window is cut from it, no field-sized copy
    acc = torch.zeros((3, h, w), dtype=torch.float32, device=device)
    wsum = torch.zeros((1, h, w), dtype=torch.float32, device=device)
    plan = tile_plan(h, w, tile=(th, tw), blend=blend)
    # every window (and core) has one size: one input and one core buffer serve them all, so
    # nothing but the network's own activations is allocated per window
    (y0, y1, x0, x1, _), *_ = plan
    wy = min(h, y1 - y0 + 2 * halo)  # as window_span
    wx = min(w, x1 - x0 + 2 * halo)
    fmt = torch.channels_last if cl else torch.contiguous_format
    inp = torch.empty((1, 3 * n, wy, wx), dtype=in_dtype, device=device, memory_format=fmt)
    # the same memory seen as the stack's layout: (hh, ww, n, 3) or (n, 3, hh, ww)
    dst = inp[0].permute(1, 2, 0).view(wy, wx, n, 3) if cl else inp[0].view(n, 3, wy, wx)
    core = torch.empty((3, y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    for y0, y1, x0, x1, weight in plan:
        iy0, iy1 = window_span(y0, y1, h, halo)
        ix0, ix1 = window_span(x0, x1, w, halo)
        window = src[:, iy0:iy1, ix0:ix1]  # (n, hh, ww, 3) uint8, image-major channels
        dst.copy_(window.permute(1, 2, 0, 3) if cl else window.permute(0, 3, 1, 2))
        inp.div_(255.0)  # bf16 models get bf16 inputs straight away (as autocast would)
        with autocast():
            out = generator(inp)
        core.copy_(out[0, :, y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0])
        del out
        wt = torch.from_numpy(weight).to(device)
        acc[:, y0:y1, x0:x1].addcmul_(core, wt)
        wsum[:, y0:y1, x0:x1] += wt
    del inp, dst, core
    img = acc.div_(wsum).clamp_(0, 1)
    del wsum
    if dtype == np.uint8:
        img = img.mul_(255.0).round_().to(torch.uint8)
    result = img.permute(1, 2, 0).cpu().numpy()
    if device.type == "cpu":
        del acc, img
        release_freed_memory()
    return result


def _checked_stack(stack: np.ndarray | torch.Tensor, generator: nn.Module) -> torch.Tensor:
    """The stack as a ``(n, H, W, 3) uint8`` tensor the generator takes (else ValueError)."""
    arr = torch.as_tensor(np.asarray(stack)) if not isinstance(stack, torch.Tensor) else stack
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != torch.uint8:
        raise ValueError(
            f"stack must be (n_images, H, W, 3) uint8, got {tuple(arr.shape)} {arr.dtype}"
        )
    n = arr.shape[0]
    in_ch = getattr(plain_generator(generator), "in_channels", 3 * n)
    if in_ch != 3 * n:
        raise ValueError(f"the generator takes {in_ch // 3} images, the stack has {n}")
    return arr


def _tiling(
    generator: nn.Module,
    device: torch.device,
    size: tuple[int, int],
    tile: Tile | None,
    halo: int | None,
    blend: int,
    *,
    bf16: bool,
    max_memory: float | None,
) -> tuple[tuple[int, int], int, int]:
    """``((core rows, core columns), halo, blend)`` of a field: given, or the defaults."""
    h, w = size
    if tile is None or halo is None:
        d_tile, d_halo = default_tile(
            device, generator, height=h, width=w, bf16=bf16, max_memory=max_memory, blend=blend
        )
        tile = d_tile if tile is None else tile
        halo = d_halo if halo is None else int(halo)
    th, tw = tile_sides(tile)
    if min(th, tw) < 1 or halo < 0 or blend < 0:
        raise ValueError(f"tile must be ≥ 1 and halo, blend ≥ 0; got {tile}, {halo}, {blend}")
    is_unet = not isinstance(plain_generator(generator), RRDBGenerator)
    if is_unet and (h < th or w < tw):
        raise ValueError(f"the U-Net stains windows of {th}x{tw} px; the field is {w}x{h}")
    side = min(th, tw)
    blend = min(blend, side // 2) if not is_unet else max(blend, side // 4)
    return (th, tw), halo, blend


def cpu_bf16_generator(generator: nn.Module) -> nn.Module:
    """The generator with bf16 weights for a bf16 pass on a CPU (a copy; itself if it is).

    CPU autocast runs reflection padding in fp32, so an fp32 generator under autocast pads,
    concatenates and keeps every dense-block feature in fp32 and casts each back to bf16 for
    the next convolution: twice the memory and a cast per convolution. The same network
    with bf16 weights computes the same values (autocast's convolutions take bf16 inputs,
    weights and biases either way; padding and concatenation only move values). A compiled
    generator (``torch.compile``) is returned as is: convert before compiling
    (:func:`training.infer.stain_scan` does). Only the RRDB generator is converted.
    """
    if not isinstance(generator, RRDBGenerator) or is_bf16_generator(generator):
        return generator  # compiled, ONNX (their _orig_mod) or the U-Net: as they are
    return copy.deepcopy(generator).to(torch.bfloat16)
