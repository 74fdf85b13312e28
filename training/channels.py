"""Any channel count: per-channel scales (uint8 or uint16 data) and pictures of k channels.

A dataset's inputs are ``(n_images, h, w, c_in)`` per cell and its targets ``(h, w, c_out)``,
``uint8`` or ``uint16``. The network sees every value divided by its channel's *scale*:

- ``uint8`` channels: 255 (the thesis's ``[0, 1]`` normalisation, bit-identical);
- ``uint16`` channels: the channel's 99.99th percentile over (up to) the first
  :data:`SCALE_CELLS` training cells, at least 1 — fluorescence cameras rarely fill 16 bits,
  so dividing by 65535 would squeeze a 12-bit signal into the bottom 6 % of the range.

The scales are measured once when training starts and saved with the model
(``model_info``), so evaluation and inference use exactly the training normalisation.
Targets are clipped to ``[0, 1]`` after scaling (the generator's output range).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Training cells the uint16 scales are measured on (first ones of the split, in file order).
SCALE_CELLS = 64
SCALE_PERCENTILE = 99.99


def channel_scales(values: np.ndarray) -> tuple[float, ...]:
    """Per-channel scales of ``values`` (``(..., c)`` array): 255 for uint8, else a percentile."""
    c = values.shape[-1]
    if values.dtype == np.uint8:
        return (255.0,) * c
    flat = values.reshape(-1, c).astype(np.float64)
    hi = np.percentile(flat, SCALE_PERCENTILE, axis=0) if len(flat) else np.ones(c)
    return tuple(float(max(v, 1.0)) for v in hi)


def measure_scales(
    inputs: np.ndarray, targets: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(input_scale, target_scale)`` from sample cells.

    ``inputs`` is ``(N, n_images, h, w, c_in)``; the input scale is image-major, one value
    per network input channel (``[img0 c0, img0 c1, …, img1 c0, …]``), like
    :func:`training.tensors.network_input`'s layout.
    """
    n_img, c_in = inputs.shape[1], inputs.shape[-1]
    per_image = np.moveaxis(inputs, 1, -2).reshape(-1, n_img * c_in)
    return channel_scales(per_image.astype(inputs.dtype)), channel_scales(targets)


def scale_tensor(scale: Sequence[float] | None, device: torch.device | str) -> torch.Tensor | None:
    """A ``(C,)`` float32 tensor of ``scale`` on ``device`` (None stays None: divide by 255)."""
    if scale is None:
        return None
    return torch.tensor([float(s) for s in scale], dtype=torch.float32, device=device)


def to_display(images: np.ndarray, scale: Sequence[float] | None = None) -> np.ndarray:
    """``(B, h, w, c)`` values → the same in ``uint8`` for pictures (each channel by its scale)."""
    if images.dtype == np.uint8 and (scale is None or all(s == 255.0 for s in scale)):
        return images
    s = np.asarray(scale if scale is not None else [255.0] * images.shape[-1], np.float64)
    out = np.clip(images.astype(np.float64) / s * 255.0, 0, 255)
    return np.round(out).astype(np.uint8)


def as_rgb(images: np.ndarray) -> np.ndarray:
    """``(B, h, w, 1 or 3) uint8`` → ``(B, h, w, 3)`` (grey repeated)."""
    if images.shape[-1] == 3:
        return images
    return np.repeat(images[..., :1], 3, axis=-1)


def grid_rows(
    reference: np.ndarray,
    prediction: np.ndarray,
    target: np.ndarray,
    *,
    rgb_target: bool,
    reference_scale: Sequence[float] | None = None,
    target_scale: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Rows of a prediction picture: reference input, then prediction and target.

    ``reference`` is ``(B, h, w, c_in)`` (the brightfield image), ``prediction`` ``(B, h, w,
    c_out) uint8`` (already in ``[0, 255]``), ``target`` ``(B, h, w, c_out)`` as stored. An
    RGB stain is shown as colour rows (prediction, target); ``k`` other channels as ``2k``
    grey rows, prediction above target for each channel.
    """
    ref = as_rgb(to_display(reference, reference_scale))
    tgt = to_display(target, target_scale)
    if rgb_target:
        return [ref, prediction, tgt]
    rows = [ref]
    for k in range(prediction.shape[-1]):
        rows += [as_rgb(prediction[..., k : k + 1]), as_rgb(tgt[..., k : k + 1])]
    return rows
