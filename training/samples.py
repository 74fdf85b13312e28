"""Prediction grids: columns of cells, rows brightfield input | prediction | target."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from training.errors import TrainingError

_GAP = 2
_BACKGROUND = 255


def cell_grid(rows: Sequence[np.ndarray], *, scale: int = 2) -> np.ndarray:
    """Tile image rows into one RGB picture.

    Parameters
    ----------
    rows
        Each ``(n_cells, h, w, 3) uint8``; all with the same shape (e.g. brightfield,
        prediction, target).
    scale
        Integer nearest-neighbour magnification (64-pixel crops are small on screen).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3) uint8`` with white gaps between cells.
    """
    if not rows:
        raise ValueError("a grid needs at least one row of images")
    n, h, w, _ = rows[0].shape
    for r in rows:
        if r.shape != rows[0].shape:
            raise ValueError(f"grid rows differ in shape: {r.shape} vs {rows[0].shape}")
    hs, ws = h * scale, w * scale
    out = np.full(
        (len(rows) * (hs + _GAP) + _GAP, n * (ws + _GAP) + _GAP, 3), _BACKGROUND, np.uint8
    )
    for i, r in enumerate(rows):
        for j in range(n):
            tile = np.repeat(np.repeat(r[j], scale, 0), scale, 1)
            y, x = _GAP + i * (hs + _GAP), _GAP + j * (ws + _GAP)
            out[y : y + hs, x : x + ws] = tile
    return out


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3) uint8`` RGB image (PNG, TIFF, … by extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise TrainingError(f"cannot write image {path}: use a .png or .tif name")
    path.write_bytes(buf.tobytes())  # a full disk or a read-only folder raises OSError
    return path


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (for embedding in the HTML report)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise TrainingError("PNG encoding failed")
    return buf.tobytes()
