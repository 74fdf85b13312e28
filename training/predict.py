"""Run a generator on batches of cells (validation, evaluation, sample grids)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from training.data import network_input


@torch.no_grad()
def predict_cells(
    generator: nn.Module,
    stack: torch.Tensor,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predictions ``(B, c_out, h, w)`` float32 (not clipped) of ``(B, n, h, w, c_in)`` cells.

    ``scale``: the per-channel input scale the model was trained with (None: 255).
    """
    x = network_input(stack, scale=scale)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast():
        out = generator(x)
    return out.float()
