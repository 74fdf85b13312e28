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

import copy

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


Tile = int | tuple[int, int]


def _sides(tile: Tile) -> tuple[int, int]:
    """``(rows, columns)`` of a core: ``tile`` is square (an int) or ``(rows, columns)``."""
    if isinstance(tile, int | np.integer):
        return int(tile), int(tile)
    th, tw = tile
    return int(th), int(tw)


def tile_plan(
    height: int, width: int, *, tile: Tile, blend: int
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Cores ``(y0, y1, x0, x1, weight)`` covering an image; ``weight`` is ``(h, w)`` float32.

    ``tile`` is the core size: square, or ``(rows, columns)``.
    """
    th, tw = _sides(tile)
    return [
        (y0, y1, x0, x1, np.outer(wy, wx))
        for y0, y1, wy in _cores(height, th, blend)
        for x0, x1, wx in _cores(width, tw, blend)
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
#: Measured CPU peak per window pixel over :func:`_window_estimate` (thesis ``full-nohe``
#: network, whole-process ``VmHWM`` less the resident memory before the pass and the field's
#: arrays; windows of 254² to 1024x1150 px): bf16 1.72-2.17x (3.6-4.5 KB/px, no intercept
#: to speak of), fp32 2.47x (10.3 KB/px, 254² windows). The factors are the largest seen
#: plus a margin; they cover oneDNN's reordered copies and the freed blocks that
#: :func:`keep_freed_memory` keeps for reuse. Re-measured by
#: ``benchmarks/bench_stain.py --sweep``; the data are in docs/training.md.
CPU_WINDOW_FACTOR = {True: 2.2, False: 2.7}
#: Bytes a CPU pass adds whatever the window size (oneDNN's primitives and kernels, the
#: threads' buffers): for the small networks of the tests; the thesis network's fit has
#: no measurable intercept.
CPU_PASS_FIXED = 64 * 2**20


def _window_estimate(generator: nn.Module, elt: int) -> float:
    """Bytes per window pixel live at once in a dense block (features, padded copies)."""
    g = _plain(generator)
    return elt * (g.in_channels + 3 * g.features + 2 * (g.features + 4 * g.growth))


def _runs_bf16(generator: nn.Module, bf16: bool, device: torch.device) -> bool:
    """Whether activations are bf16 (CPU: an fp32 generator under autocast pads in fp32)."""
    if not bf16 or device.type != "cpu":
        return bf16
    return _is_bf16(generator) or generator is _plain(generator)


def tile_bytes_per_px(generator: nn.Module, *, bf16: bool, device: torch.device) -> float:
    """Peak memory per pixel of a window (core + halo) during one RRDB pass."""
    elt = 2 if _runs_bf16(generator, bf16, device) else 4
    per_px = _window_estimate(generator, elt)
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
    (:func:`_window`), so one window's memory is reused by the next. On a GPU the memory
    one pass takes (window pixels times the estimate).
    """
    window = _window_size(height, width, tile, halo) * tile_bytes_per_px(
        generator, bf16=bf16, device=device
    )
    if device.type != "cpu":
        return int(window)
    held = resident_bytes() if resident is None else resident
    return int(held + FIELD_BYTES_PER_PX * height * width + CPU_PASS_FIXED + window)


def memory_budget(device: torch.device, max_memory: float | None = None) -> int:
    """Bytes :func:`default_tile` plans for (see there)."""
    if device.type != "cpu":
        free = GPU_SHARE * _free_memory_bytes(device)
        return int(free if max_memory is None else min(free, max_memory * 2**30))
    limit = CPU_MEMORY_LIMIT if max_memory is None else max_memory * 2**30
    return int(min(limit, resident_bytes() + AVAILABLE_SHARE * _free_memory_bytes(device)))


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
    plain = _plain(generator)
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
                _window_pixels(height, width, tile, halo, blend),
                _window_size(height, width, tile, halo),
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


def _window_size(height: int, width: int, tile: Tile, halo: int) -> int:
    """Pixels of one window (core + halos, within the field; all windows are this size)."""
    th, tw = _sides(tile)
    return min(height, min(th, height) + 2 * halo) * min(width, min(tw, width) + 2 * halo)


def _window_pixels(height: int, width: int, tile: Tile, halo: int, blend: int) -> int:
    """Pixels all the windows of a field hold (the compute, halos included)."""
    th, tw = _sides(tile)
    blend = min(blend, min(th, tw) // 2)
    n = len(_starts(height, th, blend)) * len(_starts(width, tw, blend))
    return n * _window_size(height, width, tile, halo)


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
    autocast = autocast_factory(device, bf16 and not _is_bf16(generator))
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
    wy = min(h, y1 - y0 + 2 * halo)  # as _window
    wx = min(w, x1 - x0 + 2 * halo)
    fmt = torch.channels_last if cl else torch.contiguous_format
    inp = torch.empty((1, 3 * n, wy, wx), dtype=in_dtype, device=device, memory_format=fmt)
    # the same memory seen as the stack's layout: (hh, ww, n, 3) or (n, 3, hh, ww)
    dst = inp[0].permute(1, 2, 0).view(wy, wx, n, 3) if cl else inp[0].view(n, 3, wy, wx)
    core = torch.empty((3, y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    for y0, y1, x0, x1, weight in plan:
        iy0, iy1 = _window(y0, y1, h, halo)
        ix0, ix1 = _window(x0, x1, w, halo)
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
    in_ch = getattr(_plain(generator), "in_channels", 3 * n)
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
    th, tw = _sides(tile)
    if min(th, tw) < 1 or halo < 0 or blend < 0:
        raise ValueError(f"tile must be ≥ 1 and halo, blend ≥ 0; got {tile}, {halo}, {blend}")
    is_unet = not isinstance(_plain(generator), RRDBGenerator)
    if is_unet and (h < th or w < tw):
        raise ValueError(f"the U-Net stains windows of {th}x{tw} px; the field is {w}x{h}")
    side = min(th, tw)
    blend = min(blend, side // 2) if not is_unet else max(blend, side // 4)
    return (th, tw), halo, blend


def _window(a: int, b: int, length: int, halo: int) -> tuple[int, int]:
    """Input span of the core ``[a, b)``: the core plus ``halo`` each side, shifted inside.

    Every window of a field has the same size (``core + 2·halo``, or the whole axis): near an
    edge it is moved inwards instead of cut, so the core keeps at least ``halo`` of context
    on its inner side and the field's own edge on the outer one (exact as before), and
    every pass allocates the same shapes. With windows cut at the edges each new, larger
    shape took fresh memory beside the freed blocks of the last (measured on the thesis
    network: the resident memory grew window after window instead of staying flat).
    """
    size = min(length, b - a + 2 * halo)
    start = min(max(0, a - halo), length - size)
    return start, start + size


def _is_bf16(generator: nn.Module) -> bool:
    """Whether the generator's weights are bf16 (it then takes bf16 inputs, no autocast)."""
    p = next(iter(generator.parameters()), None)
    return p is not None and p.dtype == torch.bfloat16


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
    if not isinstance(generator, RRDBGenerator) or _is_bf16(generator):
        return generator  # compiled, ONNX (their _orig_mod) or the U-Net: as they are
    return copy.deepcopy(generator).to(torch.bfloat16)
