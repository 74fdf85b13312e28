"""White-blood-cell detection in stained smears by colour (thesis §3.1.3, App. A.1).

Romanowsky-type stains (May-Grünwald Giemsa, Wright, the simulator's) colour WBC nuclei a
distinct blue-purple that red cells, platelets' surroundings and the background lack. The
detector:

1. white-balances the image on its own background (so a yellowish lamp or a bluish stain
   batch does not move the thresholds), smooths it on a physical scale;
2. converts RGB → HSV (OpenCV scale: H 0–180, S and V 0–255) and keeps the pixels inside a
   purple box (hue range, minimum saturation, maximum value);
3. closes the mask with a disk (µm) to reconnect a nucleus split by the threshold;
4. joins fragments lying within ``join_um`` of each other when the joined object still fits
   inside one nucleus (``max_nucleus_extent_um``): the lobes of one neutrophil become one cell,
   the nuclei of two neighbouring cells do not;
5. splits an object holding two round nuclei pressed together (two distance-transform peaks
   each standing ``split_prominence_um`` above the neck between them);
6. keeps objects whose nucleus area lies within ``[min_area_um2, max_area_um2]`` and returns
   their centroids.

Every size is physical and converted with ``pixel_size_um``, so the same defaults work at 20x,
100x or on another lab's camera. ``docs/registration.md`` shows how to fit the colour box to
another stain.
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

    The defaults fit Romanowsky-type stains after white balance: nuclei have hue 120–165
    (blue-purple to purple), saturation ≥ 70 and value ≤ 215; pink red cells (hue ≳ 160 with
    low saturation) and the background fall outside.
    """

    hue_min: float = 118.0
    hue_max: float = 166.0
    saturation_min: float = 70.0
    value_max: float = 215.0
    white_balance: bool = True
    smooth_um: float = 0.25
    closing_um: float = 0.8
    join_um: float = 1.5
    max_nucleus_extent_um: float = 14.0
    split_prominence_um: float = 1.0
    min_area_um2: float = 10.0
    max_area_um2: float = 220.0
    min_fragment_area_um2: float = 0.8

    def validate(self) -> None:
        if not 0 <= self.hue_min < self.hue_max <= 180:
            raise SegmentationError(
                f"the hue range must satisfy 0 ≤ hue_min < hue_max ≤ 180 (OpenCV scale); got "
                f"[{self.hue_min}, {self.hue_max}]."
            )
        if not 0 <= self.saturation_min <= 255 or not 0 <= self.value_max <= 255:
            raise SegmentationError(
                f"saturation_min and value_max must lie in [0, 255]; got {self.saturation_min} "
                f"and {self.value_max}."
            )
        sizes = {
            "smooth_um": self.smooth_um, "closing_um": self.closing_um, "join_um": self.join_um,
            "split_prominence_um": self.split_prominence_um,
            "min_fragment_area_um2": self.min_fragment_area_um2,
        }
        for name, value in sizes.items():
            if value < 0:
                raise SegmentationError(f"{name} must be ≥ 0; got {value}.")
        if not 0 < self.min_area_um2 < self.max_area_um2:
            raise SegmentationError(
                f"the area limits must satisfy 0 < min_area_um2 < max_area_um2; got "
                f"{self.min_area_um2} and {self.max_area_um2}."
            )
        if self.max_nucleus_extent_um <= 0:
            raise SegmentationError(
                f"max_nucleus_extent_um must be > 0; got {self.max_nucleus_extent_um}."
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
        ``(N, 2) float64`` WBC centroids ``(x, y)`` in pixels.
    labels
        ``(H, W) int32`` label image, 0 = background, ``i + 1`` = the nucleus of WBC ``i``.
    areas_um2
        ``(N,) float64`` nucleus areas in µm².
    mask
        ``(H, W) bool`` the raw colour mask (before closing and size limits).
    """

    centroids: np.ndarray
    labels: np.ndarray
    areas_um2: np.ndarray
    mask: np.ndarray


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise SegmentationError(
            f"find_wbcs expects an (H, W, 3) RGB image; got an array of shape {image.shape}."
        )
    if image.dtype != np.uint8:
        raise SegmentationError(
            f"find_wbcs expects a uint8 RGB image; got dtype {image.dtype}."
        )
    if min(image.shape[:2]) < 8:
        raise SegmentationError(f"the image is too small to segment: {image.shape[1]}x"
                                f"{image.shape[0]} pixels.")
    return image


def background_colour(image: np.ndarray) -> np.ndarray:
    """The smear's background (empty glass) colour: ``(3,) float32`` RGB.

    The median colour of the brightest quarter of pixels (by HSV value): in a smear the glass
    between cells is the brightest large population whatever the stain.
    """
    flat = image.reshape(-1, 3)
    step = max(1, flat.shape[0] // 200_000)  # a subsample is plenty for a median
    sample = flat[::step].astype(np.float32)
    value = sample.max(axis=1)
    bright = sample[value >= np.percentile(value, 75)]
    return np.maximum(np.median(bright, axis=0), 1.0)


def colour_mask(image: np.ndarray, *, pixel_size_um: float, params: WbcParams) -> np.ndarray:
    """The purple-pixel mask: ``(H, W) bool``."""
    import cv2

    img = image
    if params.white_balance:
        bg = background_colour(image)
        # map the background to a light neutral grey (235), as in a well-exposed smear
        gain = (235.0 / bg).astype(np.float32)
        img = np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    sigma = params.smooth_um / pixel_size_um
    if sigma >= 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (
        (h >= params.hue_min) & (h <= params.hue_max)
        & (s >= params.saturation_min) & (v <= params.value_max)
    )


def _disk(radius_px: float) -> np.ndarray:
    import cv2

    r = max(int(round(radius_px)), 0)
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
    import cv2
    from scipy.spatial import cKDTree

    parent = np.arange(n + 1)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n < 2 or join_px <= 0:
        return parent
    contours: dict[int, np.ndarray] = {}
    for lab in range(1, n + 1):
        ys, xs = np.nonzero(labels == lab)
        contours[lab] = np.stack([xs, ys], axis=1)
    # candidate pairs: boundary gap below 2 * join_px
    dilated = cv2.dilate((labels > 0).astype(np.uint8), _disk(join_px))
    n_groups, groups = cv2.connectedComponents(dilated, connectivity=8)
    pairs: list[tuple[float, int, int]] = []
    for g in range(1, n_groups):
        members = np.unique(labels[(groups == g) & (labels > 0)])
        if len(members) < 2:
            continue
        trees = {m: cKDTree(contours[m]) for m in members}
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                gap, _ = trees[a].query(contours[b], k=1, distance_upper_bound=2 * join_px + 2)
                gap = float(np.min(gap))
                if np.isfinite(gap) and gap <= 2 * join_px + 1:
                    pairs.append((gap, int(a), int(b)))
    pairs.sort()
    members_of = {lab: [lab] for lab in range(1, n + 1)}
    for _, a, b in pairs:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        points = np.concatenate([contours[m] for m in members_of[ra] + members_of[rb]])
        if _extent_px(points) > max_extent_px:
            continue
        parent[rb] = ra
        members_of[ra] = members_of[ra] + members_of.pop(rb)
    return np.array([find(i) for i in range(n + 1)])


def _split_touching(
    obj: np.ndarray, raw: np.ndarray, *, prominence_px: float, min_area_px: float
) -> list[np.ndarray]:
    """Split one object (``bool`` crop) into round nuclei pressed together, if any."""
    import cv2
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    core = ndi.binary_fill_holes(raw & obj)
    dist = cv2.distanceTransform(core.astype(np.uint8), cv2.DIST_L2, 5)
    if dist.max() < 2 * prominence_px:
        return [obj]
    peaks = h_maxima(dist, prominence_px)
    n_peaks, markers = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    if n_peaks - 1 < 2:
        return [obj]
    parts_lab = watershed(-dist, markers, mask=obj)
    parts = [parts_lab == k for k in range(1, n_peaks)]
    if sum(p.sum() >= min_area_px for p in parts) < 2:
        return [obj]
    return [p for p in parts if p.any()]


def segment_wbcs(
    image: np.ndarray, *, pixel_size_um: float, params: WbcParams | None = None, **overrides: Any
) -> Segmentation:
    """Segment WBC nuclei in a stained smear image; see :func:`find_wbcs`.

    Returns the centroids together with the label image, nucleus areas and raw colour mask
    (for overlays, QC and the segmentation benchmark).
    """
    import cv2

    image = _check_image(image)
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise SegmentationError(f"pixel_size_um must be a positive number; got {pixel_size_um}.")
    p = make_params(params, **overrides)
    px2 = pixel_size_um**2
    raw = colour_mask(image, pixel_size_um=pixel_size_um, params=p)
    # drop specks (noise, platelet granules) before closing so they cannot bridge nuclei
    n_raw, raw_lab, stats, _ = cv2.connectedComponentsWithStats(raw.astype(np.uint8), 8)
    keep = stats[:, cv2.CC_STAT_AREA] >= p.min_fragment_area_um2 / px2
    keep[0] = False
    raw = keep[raw_lab]
    closed = cv2.morphologyEx(
        raw.astype(np.uint8), cv2.MORPH_CLOSE, _disk(p.closing_um / pixel_size_um)
    ).astype(bool)
    n, comp = cv2.connectedComponents(closed.astype(np.uint8), connectivity=8)
    n -= 1
    # fragments too small to be a nucleus part are candidates only for joining
    mapping = _join_fragments(
        comp, n, join_px=p.join_um / pixel_size_um,
        max_extent_px=p.max_nucleus_extent_um / pixel_size_um,
    )
    grouped = mapping[comp]
    labels = np.zeros(image.shape[:2], dtype=np.int32)
    centroids: list[tuple[float, float]] = []
    areas: list[float] = []
    min_px = p.min_area_um2 / px2
    max_px = p.max_area_um2 / px2
    objects = ndi_find_objects(grouped)
    for lab, sl in objects:
        obj = grouped[sl] == lab
        pieces = _split_touching(
            obj, raw[sl], prominence_px=p.split_prominence_um / pixel_size_um, min_area_px=min_px
        ) if obj.sum() >= 2 * min_px else [obj]
        for piece in pieces:
            area = float(piece.sum())
            if not min_px <= area <= max_px:
                continue
            ys, xs = np.nonzero(piece)
            labels[sl][piece] = len(centroids) + 1
            centroids.append((xs.mean() + sl[1].start, ys.mean() + sl[0].start))
            areas.append(area * px2)
    cent = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    return Segmentation(cent, labels, np.asarray(areas, dtype=np.float64), raw)


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
        Overrides of :class:`WbcParams`: ``hue_min``, ``hue_max``, ``saturation_min``,
        ``value_max`` (OpenCV HSV scale), ``white_balance``, ``smooth_um``, ``closing_um``,
        ``join_um``, ``max_nucleus_extent_um``, ``split_prominence_um``, ``min_area_um2``,
        ``max_area_um2``, ``min_fragment_area_um2``.

    Returns
    -------
    numpy.ndarray
        ``(N, 2) float64`` WBC (nucleus) centroids as ``(x, y)`` pixels, in label order
        (top to bottom by first pixel).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((200, 200, 3), 235, np.uint8)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> img[(xx - 120) ** 2 + (yy - 80) ** 2 < 15**2] = (120, 60, 150)
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
        c = (int(round(x)), int(round(y)))
        cv2.drawMarker(out, c, (255, 255, 0), cv2.MARKER_CROSS, 6 * scale, scale)
        cv2.putText(out, str(i), (c[0] + 4 * scale, c[1] - 4 * scale),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 255, 0), scale)
    return out
