"""RGB images that carry their pixel size, so Fiji, napari and image viewers show µm.

- TIFF: an ImageJ hyperstack (``unit=micron`` in the description, X/Y resolution in pixels
  per µm) written with ``tifffile``: Fiji opens it calibrated.
- PNG: the standard ``pHYs`` chunk (pixels per metre) and a ``tEXt`` chunk
  ``pixel_size_um``; most viewers and Pillow read the ``pHYs`` chunk (ImageJ does not
  calibrate PNGs: use TIFF for measurement in Fiji).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from hardware_profiles.errors import ScopeError


class ImageWriteError(ScopeError):
    """An image that cannot be written."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(rgb: np.ndarray, pixel_size_um: float | None) -> bytes:
    """PNG of an ``(H, W, 3) uint8`` image with ``pHYs`` and ``pixel_size_um`` chunks."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageWriteError("PNG encoding failed")
    data = buf.tobytes()
    if not pixel_size_um:
        return data
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    per_m = round(1e6 / float(pixel_size_um))
    extra = _chunk(b"pHYs", struct.pack(">IIB", per_m, per_m, 1))
    extra += _chunk(b"tEXt", b"pixel_size_um\x00" + f"{float(pixel_size_um):.6g}".encode())
    return data[:ihdr_end] + extra + data[ihdr_end:]


def write_scaled_image(path: str | Path, rgb: np.ndarray, pixel_size_um: float | None) -> Path:
    """Write ``rgb`` as PNG or TIFF (by extension) carrying ``pixel_size_um``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        path.write_bytes(png_bytes(rgb, pixel_size_um))
        return path
    if suffix in (".tif", ".tiff"):
        import tifffile

        kw = {}
        if pixel_size_um:
            per_um = 1.0 / float(pixel_size_um)
            kw = {"resolution": (per_um, per_um), "metadata": {"unit": "um", "axes": "YXS"}}
        tifffile.imwrite(path, np.ascontiguousarray(rgb), imagej=True, photometric="rgb", **kw)
        return path
    raise ImageWriteError(f"cannot write image {path}: use a .png or .tif name")
