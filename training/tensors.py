"""Batches between uint8 storage and the network: ``[0, 1]`` float tensors and back.

Kept apart from :mod:`training.data` (HDF5 datasets) so the GPU benchmarks, which run where
only torch and numpy exist, use the same conversions as training.
"""

from __future__ import annotations

import numpy as np
import torch


def network_input(stack: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, n, h, w, 3) uint8`` → ``(B, 3n, h, w)`` in [0, 1], image-major channels."""
    b, n, h, w, c = stack.shape
    x = stack.permute(0, 1, 4, 2, 3).reshape(b, n * c, h, w)
    return x.to(dtype).div_(255.0)


def network_target(image: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, h, w, 3) uint8`` → ``(B, 3, h, w)`` in [0, 1]."""
    return image.permute(0, 3, 1, 2).to(dtype).div_(255.0)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """``(B, 3, h, w)`` float in [0, 1] → ``(B, h, w, 3) uint8`` (clipped, rounded)."""
    out = image.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()
