"""Synthetic stain and camera variations of an RGB image, for checking WBC detection.

Another lab's smears differ from ours in white balance, stain intensity and hue, colour
saturation, focus and compression. :func:`stain_variants` applies each of these to an image
so a detector can be checked against them (``benchmarks/bench_segmentation.py``, the tests).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Variant = Callable[[np.ndarray, float], np.ndarray]


def _gains(gains: tuple[float, float, float]) -> Variant:
    def apply(image: np.ndarray, pixel_size_um: float) -> np.ndarray:
        return np.clip(image.astype(np.float32) * np.float32(gains), 0, 255).astype(np.uint8)

    return apply


def _hsv(hue_deg: float = 0.0, saturation: float = 1.0) -> Variant:
    def apply(image: np.ndarray, pixel_size_um: float) -> np.ndarray:
        import cv2

        hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + hue_deg * 256.0 / 360.0) % 256.0
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        return cv2.cvtColor(np.round(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)

    return apply


def _stain_strength(factor: float) -> Variant:
    """Scale every pixel's optical density against the glass: a lighter or darker stain."""

    def apply(image: np.ndarray, pixel_size_um: float) -> np.ndarray:
        from registration.segment import background_colour

        bg = background_colour(image)
        img = np.maximum(image.astype(np.float32), 1.0)
        out = bg * (img / bg) ** factor
        return np.clip(out, 0, 255).astype(np.uint8)

    return apply


def _jpeg(quality: int) -> Variant:
    def apply(image: np.ndarray, pixel_size_um: float) -> np.ndarray:
        import cv2

        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        assert ok
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    return apply


def _blur(sigma_um: float) -> Variant:
    def apply(image: np.ndarray, pixel_size_um: float) -> np.ndarray:
        import cv2

        return cv2.GaussianBlur(image, (0, 0), sigma_um / pixel_size_um)

    return apply


def _chain(*steps: Variant) -> Variant:
    def apply(image: np.ndarray, pixel_size_um: float) -> np.ndarray:
        for step in steps:
            image = step(image, pixel_size_um)
        return image

    return apply


#: name -> function(image, pixel_size_um) -> image; "original" leaves the image as it is
VARIANTS: dict[str, Variant] = {
    "original": lambda image, pixel_size_um: image,
    "yellow cast": _gains((1.0, 0.93, 0.72)),
    "blue cast": _gains((0.78, 0.9, 1.0)),
    "saturation 0.4x": _hsv(saturation=0.4),
    "saturation 0.7x": _hsv(saturation=0.7),
    "saturation 1.2x": _hsv(saturation=1.2),
    "hue +10°": _hsv(hue_deg=10.0),
    "hue -10°": _hsv(hue_deg=-10.0),
    "lighter stain 0.6x": _stain_strength(0.6),
    "JPEG quality 60": _jpeg(60),
    "blur 0.4 µm": _blur(0.4),
    # all at once, as another lab's camera might: lighter, paler, bluer, compressed
    "lighter+paler+blue+JPEG": _chain(
        _stain_strength(0.7), _hsv(saturation=0.6), _gains((0.85, 0.95, 1.0)), _jpeg(70)
    ),
}


def stain_variants(
    image: np.ndarray, *, pixel_size_um: float, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """``{variant name: varied (H, W, 3) uint8 RGB image}`` for the :data:`VARIANTS` named."""
    image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    return {n: VARIANTS[n](image, pixel_size_um) for n in (names or list(VARIANTS))}
