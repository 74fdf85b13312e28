"""WBC detection, colour: white balance, the stain measured on the image, the adapted colour
boxes and the nucleus and cell-body masks (steps 1–4 of :mod:`registration.segment`)."""

from __future__ import annotations

import numpy as np

from registration.wbc_params import DEFAULT_PARAMS, SegmentationError, WbcParams


def check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise SegmentationError(
            f"find_wbcs expects an (H, W, 3) RGB image; got an array of shape {image.shape}."
        )
    if image.dtype != np.uint8:
        raise SegmentationError(f"find_wbcs expects a uint8 RGB image; got dtype {image.dtype}.")
    if min(image.shape[:2]) < 8:
        raise SegmentationError(
            f"the image is too small to segment: {image.shape[1]}x{image.shape[0]} pixels."
        )
    return image


def background_colour(image: np.ndarray) -> np.ndarray:
    """The smear's background (empty glass) colour: ``(3,) float32`` RGB.

    The median colour of the brightest 15 % of pixels by their darkest channel: the glass
    between cells transmits every colour, while stained cells (even pale pink red cells)
    absorb at least one.
    """
    flat = image.reshape(-1, 3)
    step = max(1, flat.shape[0] // 50_000)  # a subsample is plenty for a median
    sample = flat[::step].astype(np.float32)
    lightness = sample.min(axis=1)
    bright = sample[lightness >= np.percentile(lightness, 85)]
    return np.maximum(np.median(bright, axis=0), 1.0)


def hsv_image(image: np.ndarray, *, pixel_size_um: float, params: WbcParams) -> np.ndarray:
    """White-balanced, smoothed ``(H, W, 3) uint8`` HSV image (OpenCV scale)."""
    return balanced_hsv(image, pixel_size_um=pixel_size_um, params=params)[1]


def balanced_hsv(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams
) -> tuple[np.ndarray, np.ndarray]:
    """The white-balanced, smoothed RGB image and its HSV (OpenCV scale), ``uint8`` each."""
    import cv2

    from registration.stain_colour import white_balance_lut

    img = image
    if params.white_balance:
        # map the background to a light neutral grey (235), as in a well-exposed smear
        img = cv2.LUT(np.ascontiguousarray(image), white_balance_lut(background_colour(image)))
    sigma = params.smooth_um / pixel_size_um
    if sigma >= 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return img, cv2.cvtColor(img, cv2.COLOR_RGB2HSV)


def measure_stain(image: np.ndarray, *, pixel_size_um: float, params: WbcParams | None = None):
    """:class:`registration.stain_colour.StainStats` of one stained image (after white balance)."""
    p = params or DEFAULT_PARAMS
    balanced, hsv = balanced_hsv(check_image(image), pixel_size_um=pixel_size_um, params=p)
    return stain_of(balanced, hsv, p)


def stain_of(balanced: np.ndarray, hsv: np.ndarray, p: WbcParams):
    from registration.stain_colour import measure_stain_hsv, stained_mask

    step = max(1, round(np.sqrt(balanced.shape[0] * balanced.shape[1] / 60_000)))
    sub = (slice(None, None, step), slice(None, None, step))
    return measure_stain_hsv(
        hsv[sub],
        stained_mask(balanced[sub]),
        nucleus_saturation=p.saturation_min,
        nucleus_value=p.value_max,
        reference=p.reference_saturation,
        min_pixels=max(50 // step**2, 12),
    )


def top_stands_out(stain, params: WbcParams) -> bool:
    """Whether the image's most saturated blue-purple pixels stand well above its typical
    stain (nuclei, not merely the darkest red cells)."""
    top, typical = stain.top_saturation, stain.saturation
    return bool(np.isfinite(top) and np.isfinite(typical) and top >= params.top_contrast * typical)


def adapted_boxes(params: WbcParams, stain=None) -> dict[str, float]:
    """The colour boxes used on an image whose stain is ``stain`` (a ``StainStats``).

    Saturation limits scale with the stain's saturation scale; ``params.saturation_scale``
    (when non-zero) fixes it instead. Hue ranges stay (the box is wide: blue to purple)
    unless ``params.nucleus_hue`` names the stain's nucleus hue, which they then follow
    (at most ±12). The nucleus hue is measured but not followed by itself: on a field
    without a white cell the darkest, most saturated pixels are red cells, and following
    them would turn red cells into white ones. ``adapt=False`` keeps the boxes as given.
    """
    from registration.stain_colour import REFERENCE_NUCLEUS_HUE

    k, dh, top = 1.0, 0.0, np.inf
    if params.adapt:
        if stain is not None and params.top_fraction > 0 and top_stands_out(stain, params):
            top = params.top_fraction * stain.top_saturation
        k = params.saturation_scale or (
            stain.saturation_scale(params.reference_saturation, hi=params.max_saturation_scale)
            if stain is not None
            else 1.0
        )
        if params.nucleus_hue:
            dh = float(np.clip(params.nucleus_hue - REFERENCE_NUCLEUS_HUE, -12.0, 12.0))
    return {
        "hue_min": max(params.hue_min + dh, 0.0),
        "hue_max": min(params.hue_max + dh, 180.0),
        "saturation_min": min(params.saturation_min * k, top),
        "value_max": params.value_max,
        "dark_hue_max": min(params.hue_max + params.dark_hue_extra + dh, 180.0),
        "dark_value_max": params.dark_value_max,
        "body_hue_min": max(params.body_hue_min + dh, 0.0),
        "body_hue_max": min(params.body_hue_max + dh, 180.0),
        "body_saturation_min": params.body_saturation_min * k,
        "body_value_max": params.body_value_max,
    }


def colour_masks(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams, stain=None
) -> tuple[np.ndarray, np.ndarray]:
    """The nucleus and cell-body colour masks, ``(H, W) bool`` each.

    ``stain`` (a :class:`registration.stain_colour.StainStats`, e.g. a slide's) sets how the
    boxes adapt; without it the image's own stain is measured.
    """
    maps = colour_maps(image, pixel_size_um=pixel_size_um, params=params, stain=stain)
    return maps[0], maps[1]


def colour_maps(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams, stain=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nucleus and body masks (``bool``), the white-balanced image and its HSV."""
    nucleus, body, balanced, hsv = colour_maps_u8(
        image, pixel_size_um=pixel_size_um, params=params, stain=stain
    )
    return nucleus > 0, body > 0, balanced, hsv


def colour_maps_u8(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams, stain=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nucleus and body masks (``uint8``, 0 or 255), the white-balanced image and its HSV."""
    import cv2

    balanced, hsv = balanced_hsv(image, pixel_size_um=pixel_size_um, params=params)
    if params.adapt and stain is None and not params.saturation_scale:
        stain = stain_of(balanced, hsv, params)
    b = adapted_boxes(params, stain)

    def box(h_lo: float, h_hi: float, s_lo: float, v_hi: float) -> np.ndarray:
        lo = np.array([np.ceil(h_lo), np.ceil(s_lo), 0], dtype=np.uint8)
        hi = np.array([np.floor(h_hi), 255, np.floor(v_hi)], dtype=np.uint8)
        return cv2.inRange(hsv, lo, hi)

    nucleus = box(b["hue_min"], b["hue_max"], b["saturation_min"], b["value_max"])
    if b["dark_hue_max"] > b["hue_max"]:
        # dark magenta-purple nuclei (a redder stain): red cells share the hue, never the
        # darkness
        nucleus |= box(b["hue_max"], b["dark_hue_max"], b["saturation_min"], b["dark_value_max"])
    body = box(b["body_hue_min"], b["body_hue_max"], b["body_saturation_min"], b["body_value_max"])
    return nucleus, body, balanced, hsv
