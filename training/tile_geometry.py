"""Where the tiles of a field lie: cores, their blending weights and the windows around them.

A field is cut into *cores* (overlapping by ``blend`` pixels, joined with linear ramps); each
core is computed from a *window*: the core plus a halo of context each side, moved inwards
at the field's edges so that every window of a field has one size. Pure arithmetic, shared by
the staining pass (:mod:`training.tiling`) and its memory model (:mod:`training.stain_memory`).
"""

from __future__ import annotations

import numpy as np

#: A core's size: square (an int) or ``(rows, columns)``.
Tile = int | tuple[int, int]


def tile_sides(tile: Tile) -> tuple[int, int]:
    """``(rows, columns)`` of a core: ``tile`` is square (an int) or ``(rows, columns)``."""
    if isinstance(tile, int | np.integer):
        return int(tile), int(tile)
    th, tw = tile
    return int(th), int(tw)


def core_starts(length: int, core: int, blend: int) -> list[int]:
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


def core_spans(length: int, tile: int, blend: int) -> list[tuple[int, int, np.ndarray]]:
    """Cores ``(start, end, weights)`` along one axis, ramped where neighbours overlap."""
    starts = core_starts(length, tile, blend)
    cores = []
    for i, a in enumerate(starts):
        b = min(length, a + tile)
        lo = (starts[i - 1] + tile - a) if i > 0 else 0
        hi = (b - starts[i + 1]) if i + 1 < len(starts) else 0
        cores.append((a, b, _ramp(b - a, lo, hi)))
    return cores


def tile_plan(
    height: int, width: int, *, tile: Tile, blend: int
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Cores ``(y0, y1, x0, x1, weight)`` covering an image; ``weight`` is ``(h, w)`` float32.

    ``tile`` is the core size: square, or ``(rows, columns)``.
    """
    th, tw = tile_sides(tile)
    return [
        (y0, y1, x0, x1, np.outer(wy, wx))
        for y0, y1, wy in core_spans(height, th, blend)
        for x0, x1, wx in core_spans(width, tw, blend)
    ]


def window_span(a: int, b: int, length: int, halo: int) -> tuple[int, int]:
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


def window_size(height: int, width: int, tile: Tile, halo: int) -> int:
    """Pixels of one window (core + halos, within the field; all windows are this size)."""
    th, tw = tile_sides(tile)
    return min(height, min(th, height) + 2 * halo) * min(width, min(tw, width) + 2 * halo)


def window_pixels(height: int, width: int, tile: Tile, halo: int, blend: int) -> int:
    """Pixels all the windows of a field hold (the compute, halos included)."""
    th, tw = tile_sides(tile)
    blend = min(blend, min(th, tw) // 2)
    n = len(core_starts(height, th, blend)) * len(core_starts(width, tw, blend))
    return n * window_size(height, width, tile, halo)


__all__ = [
    "Tile",
    "core_spans",
    "core_starts",
    "tile_plan",
    "tile_sides",
    "window_pixels",
    "window_size",
    "window_span",
]
