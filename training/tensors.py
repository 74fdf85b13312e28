"""Batches between uint8 storage and the network: ``[0, 1]`` float tensors and back.

Kept apart from :mod:`training.data` (HDF5 datasets) so the GPU benchmarks, which run where
only torch and numpy exist, use the same conversions as training.
"""

from __future__ import annotations

import numpy as np
import torch


def network_input(
    stack: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(B, n, h, w, c) uint8`` → ``(B, c·n, h, w)`` in [0, 1], image-major channels.

    ``scale`` (``(c·n,)``, see :mod:`training.channels`) divides each channel; None is 255.
    """
    b, n, h, w, c = stack.shape
    x = stack.permute(0, 1, 4, 2, 3).reshape(b, n * c, h, w)
    if scale is None:
        return x.to(dtype).div_(255.0)
    return x.to(dtype).div_(scale.to(dtype).view(1, -1, 1, 1))


def network_target(
    image: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(B, h, w, c) uint8`` → ``(B, c, h, w)`` in [0, 1] (``scale`` as in network_input)."""
    y = image.permute(0, 3, 1, 2)
    if scale is None:
        return y.to(dtype).div_(255.0)
    return y.to(dtype).div_(scale.to(dtype).view(1, -1, 1, 1)).clamp_(0.0, 1.0)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """``(B, c, h, w)`` float in [0, 1] → ``(B, h, w, c) uint8`` (clipped, rounded)."""
    out = image.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()
