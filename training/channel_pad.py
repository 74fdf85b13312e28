"""An exact copy of the RRDB generator with its channel counts padded for tensor cores.

cuDNN's tensor-core convolutions take channel counts in multiples of 8 (bf16/fp16); for any
other count they first copy the input into a padded buffer, on every call. The thesis network
is as wide as its stack (132 = 3 x 44 images) and its dense blocks take 132 + 32k channels,
none a multiple of 8. :func:`pad_channels` returns a copy whose trunk width and dense growth
are rounded up (132 -> 136, 32 stays) with zero weights and biases in the added channels:
those channels are exactly zero after every layer (a zero pre-activation stays zero through
the leaky ReLU, the mirror padding and the scaled residuals), so the copy computes the
original's outputs, only summed in a different order (float64: equal to ~1e-15).

The first convolution still reads the stack's own channels (the input is given; one layer of
the 64). For inference only: a training step would move the zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models import RRDBGenerator


def padded_width(channels: int, multiple: int = 8) -> int:
    """``channels`` rounded up to a multiple of ``multiple``."""
    return -(-int(channels) // multiple) * multiple


def pad_channels(generator: RRDBGenerator, *, multiple: int = 8) -> RRDBGenerator:
    """A copy of ``generator`` whose trunk and dense growth are multiples of ``multiple``.

    Parameters
    ----------
    generator
        An :class:`~training.models.RRDBGenerator` (not compiled: pad, then compile).
    multiple
        Channel granularity; 8 suits bf16/fp16 tensor cores.

    Returns
    -------
    RRDBGenerator
        A new generator on the same device, in the same dtype and mode, with
        ``features`` and ``growth`` rounded up and the same ``in_channels``, outputs,
        blocks and padding. Its outputs equal the original's up to summation order. Its
        state dict has the padded shapes: it is not a checkpoint of the original.

    Raises
    ------
    TypeError
        ``generator`` is not an RRDB generator (the U-Net, or a compiled wrapper).
    ValueError
        ``multiple`` is not a positive integer.
    """
    if not isinstance(generator, RRDBGenerator):
        raise TypeError(
            "pad_channels takes an RRDBGenerator (pad before torch.compile), "
            f"got {type(generator).__name__}"
        )
    if int(multiple) < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    f, g = generator.features, generator.growth
    fp, gp = padded_width(f, multiple), padded_width(g, multiple)
    ref = next(generator.parameters())
    padded = RRDBGenerator(
        generator.in_channels,
        features=fp,
        blocks=generator.blocks,
        growth=gp,
        out_channels=generator.conv_last.out_channels,
        padding=generator.padding,
    ).to(device=ref.device, dtype=ref.dtype)
    ins = generator.in_channels
    _copy(padded.conv_first, generator.conv_first, [ins], [ins])
    for rrdb_p, rrdb in zip(padded.body, generator.body, strict=True):
        for name in ("rdb1", "rdb2", "rdb3"):
            src, dst = getattr(rrdb, name), getattr(rrdb_p, name)
            for k in range(1, 6):  # conv k reads x, x1 ... x(k-1): one trunk, k-1 growths
                _copy(getattr(dst, f"conv{k}"), getattr(src, f"conv{k}"),
                      [f, *[g] * (k - 1)], [fp, *[gp] * (k - 1)])  # fmt: skip
    _copy(padded.conv_body, generator.conv_body, [f], [fp])
    _copy(padded.conv_last, generator.conv_last, [f], [fp])
    padded.train(generator.training)
    padded.requires_grad_(ref.requires_grad)
    return padded


@torch.no_grad()
def _copy(dst: nn.Conv2d, src: nn.Conv2d, in_sizes: list[int], in_padded: list[int]) -> None:
    """Weights of ``src`` into the leading channels of each segment of ``dst``; zeros elsewhere.

    ``in_sizes`` are the segments of ``src``'s input (the trunk, then each dense growth) and
    ``in_padded`` the same segments in ``dst``'s input; outputs fill ``dst``'s first
    channels.
    """
    dst.weight.zero_()
    dst.bias.zero_()
    out = src.out_channels
    s = d = 0
    for n, p in zip(in_sizes, in_padded, strict=True):
        dst.weight[:out, d : d + n] = src.weight[:, s : s + n]
        s, d = s + n, d + p
    dst.bias[:out] = src.bias
