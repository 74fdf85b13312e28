"""Per-channel input standardisation inside the generator.

The network sees each stack image's channels divided by their scale (255 for ``uint8``), so
a brightfield image of an unstained smear arrives as values near 1 with dips of a few per
cent where cells are, and a darkfield image as values near 0. A network without
normalisation layers (the RRDB) then spends its first optimiser steps learning to amplify
those small modulations, and the channels with the least contrast — brightfield above all —
are learned last. With ``--input-norm standardise`` each input channel is shifted by its mean
and divided by its standard deviation, measured once on the training cells
(:func:`training.build.input_statistics`) and kept in the checkpoint's generator arguments,
so the stored model maps the same ``[0, 1]`` inputs as before: inference, evaluation and the
exported models need nothing else.

Standardising is a reparametrisation of the first convolution (the same functions can be
represented with or without it); what changes is the optimisation: Adam moves every weight
by about the learning rate per step, so the first layer's response to a channel's contrast
grows in proportion to that contrast unless the channel is standardised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Smallest standard deviation a channel is divided by (a constant channel stays finite).
MIN_STD = 1e-3


class InputStandardiser(nn.Module):
    """``(x - mean) / std`` per channel of a ``(B, C, H, W)`` tensor (fixed, not trained).

    The buffers are not saved in the state dict: the generator is rebuilt with the same
    ``mean`` and ``std`` from its checkpoint's arguments.
    """

    def __init__(self, channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean, std = [float(v) for v in mean], [float(v) for v in std]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"input statistics need one value per input channel ({channels}); "
                f"got {len(mean)} means and {len(std)} standard deviations"
            )
        if not all(s > 0 for s in std):
            raise ValueError("input standard deviations must be positive")
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "inv_std",
            torch.tensor([1.0 / s for s in std], dtype=torch.float32).view(1, -1, 1, 1),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) * self.inv_std.to(x.dtype)


def maybe_standardiser(
    channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> InputStandardiser | None:
    """An :class:`InputStandardiser`, or None when no statistics are given (the default)."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError("input_mean and input_std go together")
    return InputStandardiser(channels, mean, std)
