"""Convolution weights zero-padded so that every channel count is a multiple of 8.

cuDNN's tensor-core convolutions take channel counts in multiples of 8 (bf16/fp16); for any
other count they first copy the input into a padded buffer, on every call (the profile of a
training step on an H200: a quarter of its time in channels-last). The thesis network is as
wide as its stack (132 = 3 x 44 images) and its dense blocks take 132 + 32k channels, none a
multiple of 8. :meth:`training.models.RRDBGenerator.compute_in` makes the generator compute
in padded widths (132 -> 136; 32 stays) with the weights built here on every forward: zeros
in the added input and output channels, the parameters themselves elsewhere. The added
channels of every feature are then exactly zero and the outputs equal the plain network's up
to summation order; the parameters and checkpoints keep their shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def padded_width(channels: int, multiple: int = 8) -> int:
    """``channels`` rounded up to a multiple of ``multiple``."""
    return -(-int(channels) // multiple) * multiple


def padded_conv_weights(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_sizes: Sequence[int],
    in_padded: Sequence[int],
    out_padded: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A convolution's weight and bias with zero channels added.

    Parameters
    ----------
    weight, bias
        ``(out, sum(in_sizes), kh, kw)`` and ``(out,)`` (or None).
    in_sizes, in_padded
        The input's segments (e.g. the trunk, then each dense growth) as the weight holds
        them, and their widths in the padded input: segment ``i`` keeps its weights in its
        first ``in_sizes[i]`` channels, zeros in the rest.
    out_padded
        Output channels after padding (the original ones first, zeros after).

    Returns
    -------
    tuple
        The padded weight and bias; the inputs themselves when nothing is padded. Built by
        differentiable ops, so gradients reach the original tensors unchanged.
    """
    if sum(in_sizes) != weight.shape[1] or len(in_sizes) != len(in_padded):
        raise ValueError(
            f"input segments {list(in_sizes)} do not describe a weight of {weight.shape[1]} "
            "input channels"
        )
    extra_out = out_padded - weight.shape[0]
    if extra_out < 0 or any(p < n for n, p in zip(in_sizes, in_padded, strict=True)):
        raise ValueError("padded widths must not be smaller than the original ones")
    if list(in_sizes) != list(in_padded):
        parts = torch.split(weight, list(in_sizes), dim=1)
        weight = torch.cat(
            [
                F.pad(part, (0, 0, 0, 0, 0, p - n)) if p > n else part
                for part, n, p in zip(parts, in_sizes, in_padded, strict=True)
            ],
            dim=1,
        )
    if extra_out:
        weight = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, extra_out))
        bias = None if bias is None else F.pad(bias, (0, extra_out))
    return weight, bias
