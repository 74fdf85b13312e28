"""White-blood-cell detection in stained smears by colour (thesis §3.1.3, App. A.1).

Romanowsky-type stains (May-Grünwald Giemsa, Wright, the simulator's) colour WBC nuclei a
distinct blue-purple that red cells and the background lack, and most WBC cytoplasm a paler
lilac or blue. The detector:

1. white-balances the image on its own background (a yellowish lamp or a bluish stain batch
   does not move the thresholds) and smooths it on a physical scale;
2. converts RGB → HSV (OpenCV scale: H 0–180, S and V 0–255), measures the image's stain
   (:mod:`registration.stain_colour`: how saturated its pale and its strongest blue-purple
   pixels are) — or takes the slide's (:func:`for_slide`) — scales the boxes' saturation
   limits to it, and keeps the **nucleus** pixels inside a purple box (hue range, minimum
   saturation, maximum value; darker magenta too), dropping specks;
3. closes the nucleus mask with a disk (µm) to reconnect a nucleus split by the threshold;
4. joins nucleus fragments lying within ``2 · join_um`` of each other while the joined group
   still fits inside one nucleus (``max_nucleus_extent_um``): the lobes of one neutrophil
   become one cell, the nuclei of two neighbouring cells do not;
5. grows each nucleus into its **cell body**: the paler purple/blue pixels (a looser box)
   connected to it, at most ``max_cell_radius_um`` away;
6. splits a body holding two round cells pressed together (two distance-transform cores of
   at least ``split_core_radius_um``, each standing ``split_prominence_um`` above the neck);
7. keeps cells with a nucleus of at least ``min_nucleus_area_um2``, no larger than
   ``max_cell_area_um2``, and either a body of at least ``min_cell_area_um2`` or a nucleus of
   at least ``min_nucleus_alone_um2`` (eosinophil bodies are red granules, not lilac) —
   platelets and stain specks are smaller than both;
8. outlines each cell's nucleus by the cell's own Otsu threshold (saturated and dark), drops
   nuclei hardly more saturated than the other stain of their hue (purplish red cells),
9. drops nuclei holding under ``min_dye_fraction`` of the slide's (or image's) median dye
   content (:func:`nucleus_dye`: stain precipitate is a scatter of specks with little dye; a
   nucleus holds a cell's DNA), and returns the cells' centroids.

Steps 3–9 run at full resolution only in boxes around candidates found on a coarse grid of
about ``coarse_um`` per pixel (:func:`_candidates`), which keeps every cell the full
resolution pass finds.

Every size is physical and converted with ``pixel_size_um``, so the same defaults work at 20x,
100x or on another lab's camera; the colours adapt to the stain. ``docs/registration.md``
shows how a lab checks detection on its own slides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware_profiles.errors import ScopeError


class SegmentationError(ScopeError, ValueError):
    """An image or a segmentation parameter is unusable."""


@dataclass(frozen=True)
class WbcParams:
    """Parameters of :func:`find_wbcs` (sizes in µm and µm², colours on OpenCV's HSV scale).

    The boxes are those of a reference Romanowsky stain after white balance: nuclei have hue
    105–155 (blue to purple), saturation ≥ 90 and value ≤ 215 (or hue up to 12 past 155 when
    value ≤ ``dark_value_max``); the cell body (cytoplasm) hue 100–152 and saturation ≥ 28.
    With ``adapt`` the saturation limits scale with the image's (or, with
    ``saturation_scale``, the slide's) stain: see :func:`adapted_boxes`,
    :mod:`registration.stain_colour` and ``docs/registration.md``.
    """

    hue_min: float = 105.0
    hue_max: float = 155.0
    saturation_min: float = 90.0
    value_max: float = 215.0
    dark_hue_extra: float = 12.0
    dark_value_max: float = 165.0
    body_hue_min: float = 100.0
    body_hue_max: float = 152.0
    body_saturation_min: float = 28.0
    body_value_max: float = 245.0
    white_balance: bool = True
    adapt: bool = True
    saturation_scale: float = 0.0
    reference_saturation: float = 35.0
    top_fraction: float = 0.6
    top_contrast: float = 2.0
    max_saturation_scale: float = 1.3
    nucleus_hue: float = 0.0
    smooth_um: float = 0.3
    closing_um: float = 0.8
    join_um: float = 1.5
    max_nucleus_extent_um: float = 14.0
    max_cell_radius_um: float = 9.0
    rim_um: float = 2.5
    split_prominence_um: float = 1.0
    split_core_radius_um: float = 3.0
    min_fragment_area_um2: float = 0.5
    min_nucleus_area_um2: float = 2.0
    min_nucleus_alone_um2: float = 10.0
    min_cell_area_um2: float = 45.0
    min_nucleus_contrast: float = 1.35
    max_cell_area_um2: float = 450.0
    coarse_um: float = 0.6
    min_dye_fraction: float = 0.25
    nucleus_dye_um2: float = 0.0

    def validate(self) -> None:
        for lo, hi, what in (
            (self.hue_min, self.hue_max, "hue_min < hue_max"),
            (self.body_hue_min, self.body_hue_max, "body_hue_min < body_hue_max"),
        ):
            if not 0 <= lo < hi <= 180:
                raise SegmentationError(
                    f"hue ranges must satisfy 0 ≤ {what} ≤ 180 (OpenCV scale); got [{lo}, {hi}]."
                )
        if not 0 <= self.saturation_scale <= 5:
            raise SegmentationError(
                f"saturation_scale must lie in [0, 5] (0: measure it on each image); "
                f"got {self.saturation_scale}."
            )
        if not 0 <= self.nucleus_hue <= 180:
            raise SegmentationError(
                f"nucleus_hue must lie in [0, 180] (OpenCV scale; 0: measure it on each image); "
                f"got {self.nucleus_hue}."
            )
        if not 0 <= self.dark_hue_extra <= 30:
            raise SegmentationError(
                f"dark_hue_extra must lie in [0, 30]; got {self.dark_hue_extra}."
            )
        for name in (
            "saturation_min",
            "value_max",
            "dark_value_max",
            "body_saturation_min",
            "body_value_max",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 255:
                raise SegmentationError(f"{name} must lie in [0, 255]; got {value}.")
        for name in (
            "smooth_um",
            "closing_um",
            "join_um",
            "split_prominence_um",
            "min_fragment_area_um2",
            "min_nucleus_area_um2",
            "min_nucleus_alone_um2",
            "min_nucleus_contrast",
            "top_fraction",
            "top_contrast",
            "max_saturation_scale",
            "coarse_um",
            "min_dye_fraction",
            "nucleus_dye_um2",
        ):
            value = getattr(self, name)
            if not value >= 0:
                raise SegmentationError(f"{name} must be ≥ 0; got {value}.")
        for name in (
            "max_nucleus_extent_um",
            "max_cell_radius_um",
            "rim_um",
            "reference_saturation",
            "split_core_radius_um",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise SegmentationError(f"{name} must be > 0; got {value}.")
        if not 0 < self.min_cell_area_um2 < self.max_cell_area_um2:
            raise SegmentationError(
                f"the cell area limits must satisfy 0 < min_cell_area_um2 < max_cell_area_um2; "
                f"got {self.min_cell_area_um2} and {self.max_cell_area_um2}."
            )


DEFAULT_PARAMS = WbcParams()
PARAM_NAMES = tuple(f.name for f in dataclasses.fields(WbcParams))


def make_params(params: WbcParams | None = None, **overrides: Any) -> WbcParams:
    """``params`` (or the defaults) with keyword overrides, validated."""
    base = params or DEFAULT_PARAMS
    unknown = sorted(set(overrides) - set(PARAM_NAMES))
    if unknown:
        raise SegmentationError(
            f"unknown WBC segmentation parameter(s) {unknown}; known: {', '.join(PARAM_NAMES)}."
        )
    out = dataclasses.replace(base, **overrides) if overrides else base
    out.validate()
    return out


@dataclass(frozen=True)
class Segmentation:
    """What :func:`segment_wbcs` found.

    Attributes
    ----------
    centroids
        ``(N, 2) float64`` WBC (cell body) centroids ``(x, y)`` in pixels.
    labels
        ``(H, W) int32`` nucleus labels: 0 = none, ``i + 1`` = the nucleus of WBC ``i``.
    cell_labels
        ``(H, W) int32`` cell labels (nucleus and body) in the same numbering.
    areas_um2
        ``(N,) float64`` cell areas, µm².
    nucleus_areas_um2
        ``(N,) float64`` nucleus areas, µm².
    mask
        ``(H, W) bool`` the raw nucleus colour mask (before closing and size limits).
    dye_um2
        ``(N,) float64`` each nucleus's dye content (:func:`nucleus_dye`), µm².
    """

    centroids: np.ndarray
    labels: np.ndarray
    cell_labels: np.ndarray
    areas_um2: np.ndarray
    nucleus_areas_um2: np.ndarray
    mask: np.ndarray
    dye_um2: np.ndarray


def _check_image(image: np.ndarray) -> np.ndarray:
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
    return _balanced_hsv(image, pixel_size_um=pixel_size_um, params=params)[1]


def _balanced_hsv(
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
    balanced, hsv = _balanced_hsv(_check_image(image), pixel_size_um=pixel_size_um, params=p)
    return _stain_of(balanced, hsv, p)


def _stain_of(balanced: np.ndarray, hsv: np.ndarray, p: WbcParams):
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


def _top_stands_out(stain, params: WbcParams) -> bool:
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
        if stain is not None and params.top_fraction > 0 and _top_stands_out(stain, params):
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
    maps = _colour_maps(image, pixel_size_um=pixel_size_um, params=params, stain=stain)
    return maps[0], maps[1]


def _colour_maps(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams, stain=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nucleus and body masks (``bool``), the white-balanced image and its HSV."""
    nucleus, body, balanced, hsv = _colour_maps_u8(
        image, pixel_size_um=pixel_size_um, params=params, stain=stain
    )
    return nucleus > 0, body > 0, balanced, hsv


def _colour_maps_u8(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams, stain=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nucleus and body masks (``uint8``, 0 or 255), the white-balanced image and its HSV."""
    import cv2

    balanced, hsv = _balanced_hsv(image, pixel_size_um=pixel_size_um, params=params)
    if params.adapt and stain is None and not params.saturation_scale:
        stain = _stain_of(balanced, hsv, params)
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


def _disk(radius_px: float) -> np.ndarray:
    import cv2

    r = max(round(radius_px), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _extent_px(points: np.ndarray) -> float:
    """Largest distance between two of ``points`` (``(n, 2)``), via the convex hull."""
    import cv2

    if len(points) < 2:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    d = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def _join_fragments(
    labels: np.ndarray, n: int, *, join_px: float, max_extent_px: float
) -> np.ndarray:
    """Merge components closer than ``2 * join_px`` while the merged extent stays small.

    Returns a mapping ``(n + 1,)`` from component label to group label (0 stays 0).
    """
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    parent = np.arange(n + 1)
    if n < 2 or join_px <= 0:
        return parent

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    slices = ndi.find_objects(labels)
    boxes = np.array([(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop) for sl in slices])
    reach = 2 * join_px + 1
    # candidate pairs: bounding boxes closer than the joining distance
    gap_x = np.maximum(boxes[None, :, 0] - boxes[:, None, 2], boxes[:, None, 0] - boxes[None, :, 2])
    gap_y = np.maximum(boxes[None, :, 1] - boxes[:, None, 3], boxes[:, None, 1] - boxes[None, :, 3])
    near = np.triu((gap_x <= reach) & (gap_y <= reach), k=1)
    if not near.any():
        return parent
    points: dict[int, np.ndarray] = {}

    def pts(i: int) -> np.ndarray:
        if i not in points:
            sl = slices[i]
            ys, xs = np.nonzero(labels[sl] == i + 1)
            points[i] = np.stack([xs + sl[1].start, ys + sl[0].start], axis=1)
        return points[i]

    pairs: list[tuple[float, int, int]] = []
    for i, j in zip(*np.nonzero(near), strict=True):
        gap, _ = cKDTree(pts(i)).query(pts(j), k=1, distance_upper_bound=reach + 1)
        g = float(np.min(gap))
        if np.isfinite(g) and g <= reach:
            pairs.append((g, int(i) + 1, int(j) + 1))
    pairs.sort()
    members_of = {lab: [lab] for lab in range(1, n + 1)}
    for _, a, b in pairs:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        merged = np.concatenate([pts(m - 1) for m in members_of[ra] + members_of[rb]])
        if _extent_px(merged) > max_extent_px:
            continue
        parent[rb] = ra
        members_of[ra] = members_of[ra] + members_of.pop(rb)
    return np.array([find(i) for i in range(n + 1)])


def _split_touching(
    obj: np.ndarray, *, prominence_px: float, core_radius_px: float
) -> list[np.ndarray]:
    """Split one cell mask (``bool`` crop) into round cells pressed together, if any."""
    import cv2

    dist = cv2.distanceTransform(
        np.pad(obj, 1).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )[1:-1, 1:-1]
    if dist.max() < core_radius_px:
        return [obj]
    # round cores: domes of the distance map at least core_radius_px deep that stand
    # prominence_px above the neck joining them; a dome is one marker however many equal
    # maxima its ridge has
    dome = dist - _reconstruct(dist - prominence_px, dist)
    n_domes, domes = cv2.connectedComponents((dome > 1e-3).astype(np.uint8), connectivity=8)
    markers = np.zeros(dist.shape, dtype=np.int32)
    n_markers = 0
    for k in range(1, n_domes):
        inside = domes == k
        if dome[inside].max() >= prominence_px - 1e-3 and dist[inside].max() >= core_radius_px:
            n_markers += 1
            markers[inside] = n_markers
    if n_markers < 2:
        return [obj]
    from skimage.segmentation import watershed

    parts = watershed(-dist, markers, mask=obj)
    return [parts == k for k in range(1, n_markers + 1)]


def _reconstruct(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey-level reconstruction by dilation of ``seed`` under ``mask`` (8-connected, as
    ``skimage.morphology.reconstruction``): repeated 3x3 dilations clipped to ``mask`` until
    nothing changes (a few dozen on a cell crop, far cheaper than the sorted-queue method)."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    cur = np.minimum(seed, mask).astype(np.float32)
    mask = mask.astype(np.float32)
    while True:
        nxt = cur
        for _ in range(4):
            nxt = np.minimum(cv2.dilate(nxt, kernel), mask)
        if np.array_equal(nxt, cur):
            return nxt
        cur = nxt


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without its 8-connected components smaller than ``min_px`` pixels."""
    import cv2

    _, lab, stats, _ = cv2.connectedComponentsWithStats(
        mask if mask.dtype == np.uint8 else mask.view(np.uint8), connectivity=8
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[lab]


def _candidates(
    raw: np.ndarray, body: np.ndarray, px: float, p: WbcParams
) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` pixel boxes of the objects that may be white cells.

    ``raw`` and ``body`` are the nucleus and body colour masks (``uint8``, 0 or 255).

    Found on a coarse grid of about ``coarse_um`` per pixel (a cell is still 15 or more
    pixels across there): the nucleus mask with specks, its cell bodies within reach, and
    half of every size limit, so that the coarse search keeps every cell the full-resolution
    pass can find and drops what cannot be one (platelets and specks without a body, red
    cells without a nucleus-coloured part). At or below ``2 · px`` every nucleus fragment of
    ``min_nucleus_area_um2`` is a candidate.
    """
    import cv2

    f = int(p.coarse_um // px) if p.coarse_um > 0 else 1
    if f < 2:
        _, _, stats, _ = cv2.connectedComponentsWithStats(raw, connectivity=8)
        big = stats[1:, cv2.CC_STAT_AREA] >= p.min_nucleus_area_um2 / (px * px)
        r = int(np.ceil(p.max_cell_radius_um / px))  # a body reaches this far from its nucleus
        return [(x - r, y - r, x + bw + r, y + bh + r) for x, y, bw, bh in stats[1:, :4][big]]
    h, w = raw.shape
    hs, ws = -(-h // f), -(-w // f)

    def pooled(mask: np.ndarray) -> np.ndarray:  # mean of each f x f block, 0..255
        if hs * f > h or ws * f > w:
            mask = cv2.copyMakeBorder(mask, 0, hs * f - h, 0, ws * f - w, cv2.BORDER_CONSTANT)
        return cv2.resize(mask, (ws, hs), interpolation=cv2.INTER_AREA)

    # the fraction of each coarse pixel that is nucleus (area pooling: areas stay exact) and
    # whether any of it is cell body
    nuc_frac = pooled(raw).astype(np.float32) / 255.0
    body_any = pooled(body) > 0
    cpx = px * f
    nucleus = cv2.morphologyEx(
        (nuc_frac > 0).view(np.uint8), cv2.MORPH_CLOSE, _disk(p.closing_um / cpx)
    )
    reach = (
        cv2.distanceTransform(1 - nucleus, cv2.DIST_L2, cv2.DIST_MASK_5)
        <= p.max_cell_radius_um / cpx + 1
    )
    cell = cv2.morphologyEx(
        nucleus | (body_any & reach).view(np.uint8), cv2.MORPH_CLOSE, _disk(p.closing_um / cpx)
    )
    # fragments within joining distance of each other belong to one candidate (the lobes of
    # a neutrophil), so that its box holds every fragment the fine pass may join to it
    linked = cell | cv2.dilate(nucleus, _disk(p.join_um / cpx + 0.5))
    n, comp, stats, _ = cv2.connectedComponentsWithStats(linked, connectivity=8)
    inside = nuc_frac > 0
    nuc_um2 = np.bincount(comp[inside], weights=nuc_frac[inside], minlength=n) * cpx * cpx
    area_um2 = np.bincount(comp[cell > 0], minlength=n) * cpx * cpx
    ok = (nuc_um2 >= 0.5 * p.min_nucleus_area_um2) & (
        (area_um2 >= 0.5 * p.min_cell_area_um2) | (nuc_um2 >= 0.5 * p.min_nucleus_alone_um2)
    )
    ok[0] = False
    return [
        (x * f, y * f, min((x + bw) * f, w), min((y + bh) * f, h))
        for x, y, bw, bh in stats[:, :4][ok]
    ]


def _holes(mask: np.ndarray) -> np.ndarray:
    """``bool`` background pixels of ``mask`` (``uint8`` 0/1) that cannot reach its border
    (4-connected, as :func:`scipy.ndimage.binary_fill_holes`)."""
    import cv2

    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), dtype=np.uint8)
    outside[1:-1, 1:-1] = mask
    ff = np.zeros((h + 4, w + 4), dtype=np.uint8)
    cv2.floodFill(outside, ff, (0, 0), 2, flags=4)
    return outside[1:-1, 1:-1] == 0


def _merge_boxes(boxes: list[list[int]]) -> list[list[int]]:
    """Merge overlapping ``[x0, y0, x1, y1]`` boxes until none overlap."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        out: list[list[int]] = []
        for b in boxes:
            for o in out:
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    o[0], o[1] = min(o[0], b[0]), min(o[1], b[1])
                    o[2], o[3] = max(o[2], b[2]), max(o[3], b[3])
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _refine_nucleus(nuc: np.ndarray, cell: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The nucleus of one cell: its colour-box pixels above the cell's own Otsu threshold.

    The colour box is loose on purpose (it adapts to pale stains); within a cell the
    nucleus is the darker, more saturated of two populations, whatever the stain's strength.
    The box's nucleus is kept when the split leaves too little of it (a cell that is nearly
    all nucleus has no second population).
    """
    import cv2

    vals = score[cell]
    if vals.size < 16 or int(vals.max()) - int(vals.min()) < 8:
        return nuc
    t, _ = cv2.threshold(vals.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    refined = nuc & (score > t)
    return refined if refined.sum() >= 0.4 * nuc.sum() else nuc


def _cells_in_region(
    raw: np.ndarray, body: np.ndarray, px: float, p: WbcParams, score: np.ndarray | None = None
) -> list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """The cells of one region: ``(bounding slices in the region, cell mask, nucleus mask)``."""
    import cv2
    from scipy import ndimage as ndi

    px2 = px * px
    nucleus = cv2.morphologyEx(
        raw.astype(np.uint8), cv2.MORPH_CLOSE, _disk(p.closing_um / px)
    ).astype(bool)
    n, comp = cv2.connectedComponents(nucleus.astype(np.uint8), connectivity=8)
    mapping = _join_fragments(
        comp, n - 1, join_px=p.join_um / px, max_extent_px=p.max_nucleus_extent_um / px
    )
    # a cell = its nucleus fragments, the hull bridging joined fragments, and the paler body
    # around them (never farther than max_cell_radius_um from the nucleus)
    cell = nucleus.astype(np.uint8)
    boxes = None
    for g in np.unique(mapping[1:]):
        members = np.flatnonzero(mapping == g)
        members = members[members > 0]
        if len(members) > 1:
            if boxes is None:
                boxes = ndi.find_objects(comp)
            # look only inside the members' joint bounding box, not the whole region
            y0 = min(boxes[m - 1][0].start for m in members)
            y1 = max(boxes[m - 1][0].stop for m in members)
            x0 = min(boxes[m - 1][1].start for m in members)
            x1 = max(boxes[m - 1][1].stop for m in members)
            ys, xs = np.nonzero(np.isin(comp[y0:y1, x0:x1], members))
            hull = cv2.convexHull(np.stack([xs + x0, ys + y0], axis=1).astype(np.int32))
            cv2.fillConvexPoly(cell, hull, 1)
    opened_body = cv2.morphologyEx(body.astype(np.uint8), cv2.MORPH_OPEN, _disk(0.4 / px))
    reach = (
        cv2.distanceTransform((~nucleus).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
        <= p.max_cell_radius_um / px
    )
    cell = (cell.astype(bool) | (opened_body.astype(bool) & reach)).astype(np.uint8)
    cell = cv2.morphologyEx(cell, cv2.MORPH_CLOSE, _disk(p.closing_um / px))
    n_cells, cell_comp = cv2.connectedComponents(cell, connectivity=8)
    # bodies that grew from no nucleus are not cells
    has_nucleus = np.zeros(n_cells, dtype=bool)
    has_nucleus[np.unique(cell_comp[nucleus])] = True
    has_nucleus[0] = False
    min_nuc = p.min_nucleus_area_um2 / px2
    min_px, max_px = p.min_cell_area_um2 / px2, p.max_cell_area_um2 / px2
    alone_px = p.min_nucleus_alone_um2 / px2
    # every piece of a cell holds at most the cell's nucleus pixels: a cell with fewer than
    # min_nuc of them yields nothing (most bodies are red cells touching a purple speck)
    nuc_count = np.bincount(cell_comp[nucleus], minlength=n_cells)
    candidate = has_nucleus & (nuc_count >= min_nuc)
    # holes are filled once for the region; only the cells bordering a hole are refilled one
    # by one (a cell's own holes are holes of the region, and border one of its pixels)
    with_hole = np.zeros(n_cells, dtype=bool)
    holes = _holes(cell)
    if holes.any():
        ring = cv2.dilate(holes.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        with_hole[np.unique(cell_comp[ring & ~holes])] = True
    out = []
    for lab, sl in ndi_find_objects(np.where(candidate[cell_comp], cell_comp, 0)):
        obj = cell_comp[sl] == lab
        if with_hole[lab]:
            obj = ndi.binary_fill_holes(obj)
        pieces = (
            _split_touching(
                obj,
                prominence_px=p.split_prominence_um / px,
                core_radius_px=p.split_core_radius_um / px,
            )
            if obj.sum() >= 2 * min_px
            else [obj]
        )
        nuc_crop = nucleus[sl]
        for piece in pieces:
            area = float(piece.sum())
            nuc = nuc_crop & piece
            nuc_px = float(nuc.sum())
            if area > max_px and nuc_px >= min_nuc:
                # a body that ran into touching red cells of the same lilac: keep the part
                # near the nucleus (a cytoplasm rim), not the whole blob
                near = (
                    cv2.distanceTransform((~nuc).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
                    <= p.rim_um / px
                )
                piece = piece & near
                area = float(piece.sum())
            # a cell needs a nucleus and either a visible body or a nucleus larger than any
            # platelet (eosinophil bodies are red granules, neutrophil bodies may be pale)
            if area > max_px or nuc_px < min_nuc or (area < min_px and nuc_px < alone_px):
                continue
            if score is not None:
                nuc = _refine_nucleus(nuc, piece, score[sl])
                # the same rule for the refined nucleus: dye specks on a red cell pass the colour
                # box as a nucleus-sized blob but shrink to specks once each cell is thresholded
                refined_px = float(nuc.sum())
                if refined_px < min_nuc or (area < min_px and refined_px < alone_px):
                    continue
            out.append((sl, piece, nuc))
    return out


def segment_wbcs(
    image: np.ndarray,
    *,
    pixel_size_um: float,
    params: WbcParams | None = None,
    stain=None,
    **overrides: Any,
) -> Segmentation:
    """Segment WBCs (nucleus and cell body) in a stained smear image; see :func:`find_wbcs`.

    Returns the centroids together with nucleus and cell label images, areas and the raw
    nucleus colour mask (for overlays, QC and the segmentation benchmark).
    """
    import cv2

    image = _check_image(image)
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise SegmentationError(f"pixel_size_um must be a positive number; got {pixel_size_um}.")
    p = make_params(params, **overrides)
    px = float(pixel_size_um)
    px2 = px * px
    raw, body, balanced, hsv = _colour_maps_u8(image, pixel_size_um=px, params=p, stain=stain)
    h, w = raw.shape
    labels = np.zeros((h, w), dtype=np.int32)
    cell_labels = np.zeros((h, w), dtype=np.int32)
    centroids: list[tuple[float, float]] = []
    areas: list[float] = []
    nuc_areas: list[float] = []
    # WBCs are sparse: work only in boxes around the candidate cells, grown by the reach of a
    # cell body and merged where they overlap
    grow = int(np.ceil((2 * p.closing_um + p.join_um) / px)) + 2
    boxes = [
        [max(x0 - grow, 0), max(y0 - grow, 0), min(x1 + grow, w), min(y1 + grow, h)]
        for x0, y0, x1, y1 in _candidates(raw, body, px, p)
    ]
    cell_boxes: list[tuple[slice, slice]] = []
    for x0, y0, x1, y1 in _merge_boxes(boxes):
        sl = (slice(y0, y1), slice(x0, x1))
        # nucleus score (S + 255 − V) / 2: saturated and dark
        score = cv2.addWeighted(hsv[sl][..., 1], 0.5, 255 - hsv[sl][..., 2], 0.5, 0.0)
        # drop specks (noise, stray dye) before closing so they cannot bridge nuclei
        nuc_mask = _drop_small(raw[sl], p.min_fragment_area_um2 / px2)
        for (ys_, xs_), cell, nuc in _cells_in_region(nuc_mask, body[sl] > 0, px, p, score):
            ys, xs = np.nonzero(cell)
            k = len(centroids) + 1
            oy, ox = y0 + ys_.start, x0 + xs_.start
            box = (slice(oy, oy + cell.shape[0]), slice(ox, ox + cell.shape[1]))
            cell_labels[box][cell] = k
            labels[box][nuc] = k
            centroids.append((xs.mean() + ox, ys.mean() + oy))
            areas.append(float(cell.sum()) * px2)
            nuc_areas.append(float(nuc.sum()) * px2)
            cell_boxes.append(box)
    # each nucleus's median saturation and dye, read inside its own box
    nuc_sat = np.zeros(len(cell_boxes))
    dye = np.zeros(len(cell_boxes))
    for k, box in enumerate(cell_boxes, start=1):
        nuc = labels[box] == k
        if nuc.any():
            nuc_sat[k - 1] = np.median(hsv[box][..., 1][nuc])
            dye[k - 1] = _dye(balanced[box][nuc]).sum() * px2
    keep_cells = _stand_out(nuc_sat, cell_labels, balanced, hsv, px, p)
    keep_cells &= _enough_dye(dye, p)
    if not keep_cells.all():
        new_k = np.zeros(len(keep_cells) + 1, dtype=np.int32)
        new_k[1:][keep_cells] = np.arange(1, int(keep_cells.sum()) + 1)
        # renumber inside each cell's box (new numbers never exceed old ones)
        for k, box in enumerate(cell_boxes, start=1):
            for lab in (labels[box], cell_labels[box]):
                lab[lab == k] = new_k[k]
        centroids = [c for c, k in zip(centroids, keep_cells, strict=True) if k]
        areas = [a for a, k in zip(areas, keep_cells, strict=True) if k]
        nuc_areas = [a for a, k in zip(nuc_areas, keep_cells, strict=True) if k]
        dye = dye[keep_cells]
    return Segmentation(
        np.asarray(centroids, dtype=np.float64).reshape(-1, 2),
        labels,
        cell_labels,
        np.asarray(areas, dtype=np.float64),
        np.asarray(nuc_areas, dtype=np.float64),
        raw > 0,
        dye,
    )


def nucleus_dye(labels: np.ndarray, balanced: np.ndarray, px: float) -> np.ndarray:
    """``(N,)`` dye content of each labelled nucleus: its optical density against the glass,
    summed over R, G and B and integrated over its area (µm²; ``balanced`` is white-balanced
    so that the glass reads :data:`registration.stain_colour.GLASS_LEVEL`).

    A nucleus holds a cell's DNA, and with it a fairly constant amount of the DNA-binding
    dye; stain precipitate is a scatter of dye specks whose total is several times smaller.
    The ratio to the slide's typical nucleus does not depend on how strongly it is stained.
    """
    n = int(labels.max())
    inside = labels > 0
    od = _dye(balanced[inside])
    return np.bincount(labels[inside], weights=od, minlength=n + 1)[1:] * px * px


def _dye(rgb: np.ndarray) -> np.ndarray:
    """``(n,)`` optical density (log10, summed over R, G, B) of white-balanced ``(n, 3)``
    pixels against the glass."""
    from registration.stain_colour import GLASS_LEVEL

    v = np.maximum(rgb.astype(np.float32), 1.0)
    return np.log10(GLASS_LEVEL**3 / (v[:, 0] * v[:, 1] * v[:, 2]))


def _enough_dye(dye: np.ndarray, p: WbcParams) -> np.ndarray:
    """``(N,) bool``: nuclei holding at least ``min_dye_fraction`` of the reference dye
    content (``nucleus_dye_um2``, or the median over the image's cells when it has at least
    three; with neither, all are kept)."""
    ref = p.nucleus_dye_um2 or (float(np.median(dye)) if dye.size >= 3 else 0.0)
    if p.min_dye_fraction <= 0 or ref <= 0:
        return np.ones(dye.size, dtype=bool)
    return dye >= p.min_dye_fraction * ref


def _stand_out(
    nuc_sat: np.ndarray,
    cell_labels: np.ndarray,
    balanced: np.ndarray,
    hsv: np.ndarray,
    px: float,
    p: WbcParams,
) -> np.ndarray:
    """``(N,) bool``: cells whose nucleus (median saturation ``nuc_sat``) is clearly more
    saturated than the other stain.

    A nucleus is the most saturated thing on a smear; a red cell that a purplish stain
    pushed into the nucleus box is barely more saturated than the other red cells. The
    median saturation of the nucleus must reach ``min_nucleus_contrast`` times that of the
    stained pixels of the nucleus box's hues away from every detected cell (when enough of
    them are left to tell).
    """
    import cv2

    from registration.stain_colour import stained_mask

    n = len(nuc_sat)
    keep = np.ones(n, dtype=bool)
    if n == 0 or p.min_nucleus_contrast <= 0:
        return keep
    step = max(1, round(np.sqrt(cell_labels.size / 120_000)))
    sub = (slice(None, None, step), slice(None, None, step))
    r = max(1, round(2.0 / px / step))
    near = cv2.dilate((cell_labels[sub] > 0).astype(np.uint8), _disk(r)) > 0
    hue = hsv[..., 0][sub]
    # the stain that competes with nuclei: stained pixels of the nucleus box's hues
    other = stained_mask(balanced[sub]) & ~near & (hue >= p.hue_min) & (hue <= p.hue_max)
    if other.sum() < max(200 // step**2, 50):
        return keep
    sat = hsv[..., 1]
    typical = float(np.median(sat[sub][other]))
    keep[:] = nuc_sat >= p.min_nucleus_contrast * max(typical, 1.0)
    return keep


def ndi_find_objects(labels: np.ndarray) -> list[tuple[int, tuple[slice, slice]]]:
    """``(label, bounding slices)`` of every non-zero label of ``labels``."""
    from scipy import ndimage as ndi

    return [(i + 1, sl) for i, sl in enumerate(ndi.find_objects(labels)) if sl is not None]


def find_wbcs(image: np.ndarray, *, pixel_size_um: float, **params: Any) -> np.ndarray:
    """Find white blood cells in a stained smear image by colour.

    Parameters
    ----------
    image
        ``(H, W, 3) uint8`` RGB image of a Romanowsky-type stained smear, any magnification.
    pixel_size_um
        Size of one pixel at the sample (µm); every size parameter is physical.
    **params
        Overrides of :class:`WbcParams`: the nucleus colour box ``hue_min``, ``hue_max``,
        ``saturation_min``, ``value_max`` (and ``dark_hue_extra``, ``dark_value_max``) and
        the cell-body box ``body_hue_min``, ``body_hue_max``, ``body_saturation_min``,
        ``body_value_max`` (OpenCV HSV scale, for the reference stain); the adaptation
        ``adapt``, ``saturation_scale`` (0: measure on the image), ``reference_saturation``,
        ``max_saturation_scale``, ``top_fraction``, ``top_contrast``, ``nucleus_hue``,
        ``min_nucleus_contrast``; ``white_balance``, ``smooth_um``, ``closing_um``,
        ``join_um``, ``max_nucleus_extent_um``, ``max_cell_radius_um``, ``rim_um``,
        ``split_prominence_um``, ``split_core_radius_um``, ``min_fragment_area_um2``,
        ``min_nucleus_area_um2``, ``min_nucleus_alone_um2``, ``min_cell_area_um2``,
        ``max_cell_area_um2``; the dye rule ``min_dye_fraction``, ``nucleus_dye_um2``; the
        coarse candidate search ``coarse_um`` (0: every nucleus fragment is a candidate).

    Returns
    -------
    numpy.ndarray
        ``(N, 2) float64`` WBC centroids (of nucleus and body) as ``(x, y)`` pixels, roughly
        top to bottom.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((200, 200, 3), 235, np.uint8)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img[(xx - 120) ** 2 + (yy - 80) ** 2 < 20**2] = (200, 190, 230)  # lilac body
    >>> img[(xx - 120) ** 2 + (yy - 80) ** 2 < 10**2] = (110, 60, 160)  # purple nucleus
    >>> find_wbcs(img, pixel_size_um=0.3).round(1)
    array([[120.,  80.]])
    """
    return segment_wbcs(image, pixel_size_um=pixel_size_um, **params).centroids


def overlay(image: np.ndarray, seg: Segmentation) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB copy of ``image`` with nucleus outlines and numbered centroids."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    scale = max(1, round(min(image.shape[:2]) / 400))
    for i, (x, y) in enumerate(seg.centroids):
        mask = (seg.labels == i + 1).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (0, 255, 0), scale)
        c = (round(x), round(y))
        cv2.drawMarker(out, c, (255, 255, 0), cv2.MARKER_CROSS, 6 * scale, scale)
        cv2.putText(
            out,
            str(i),
            (c[0] + 4 * scale, c[1] - 4 * scale),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * scale,
            (255, 255, 0),
            scale,
        )
    return out


def slide_stain_of(
    images, *, pixel_size_um: float, params: WbcParams | None = None
):  # -> registration.stain_colour.StainStats
    """The stain of a slide from some of its stained fields (an iterable of RGB images),
    with the median dye content of the white cells found on them (the reference of the
    dye rule for every field, :func:`for_slide`)."""
    from registration.stain_colour import slide_stain

    p = params or DEFAULT_PARAMS
    want_dye = p.min_dye_fraction > 0 and not p.nucleus_dye_um2
    stats, dyes = [], []
    for img in images:
        stats.append(measure_stain(img, pixel_size_um=pixel_size_um, params=p))
        if want_dye:
            seg = segment_wbcs(
                img, pixel_size_um=pixel_size_um, params=dataclasses.replace(p, min_dye_fraction=0)
            )
            dyes.append(seg.dye_um2)
    slide = slide_stain(stats)
    found = np.concatenate(dyes) if dyes else np.zeros(0)
    if found.size >= 3:
        slide = dataclasses.replace(slide, nucleus_dye=float(np.median(found)))
    return slide


def for_slide(params: WbcParams, stain) -> WbcParams:
    """``params`` with the slide's saturation scale fixed (every field then uses the same
    colour boxes: a field without a white cell cannot talk itself into one).

    The scale is left alone when adaptation is off, a scale is already given, or the stain
    is unknown. The slide's median nucleus dye (when measured) becomes ``nucleus_dye_um2``
    unless one is given: every field then drops precipitate against the same reference,
    fields with fewer than three cells too.
    """
    dye = getattr(stain, "nucleus_dye", float("nan"))
    if params.min_dye_fraction > 0 and not params.nucleus_dye_um2 and np.isfinite(dye):
        params = dataclasses.replace(params, nucleus_dye_um2=float(dye))
    if not params.adapt or params.saturation_scale or not np.isfinite(stain.saturation):
        return params
    k = stain.saturation_scale(params.reference_saturation, hi=params.max_saturation_scale)
    if params.top_fraction > 0 and _top_stands_out(stain, params):
        k = min(k, params.top_fraction * stain.top_saturation / params.saturation_min)
    return dataclasses.replace(params, saturation_scale=float(np.clip(k, 0.05, 5.0)))
