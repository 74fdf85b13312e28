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
) -> torch.Tensor:
    """Stained predictions ``(B, 3, h, w)`` float32 (not clipped) of ``(B, n, h, w, 3) uint8``."""
    x = network_input(stack)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast():
        out = generator(x)
    return out.float()
