"""WBC detection, morphology: the mask operations the per-cell segmentation is built from
(disks, speck removal, hole filling, grey reconstruction, joining nucleus fragments, splitting
touching cells, merging boxes). Pure image operations on ``uint8``/``bool`` masks, in pixels."""

from __future__ import annotations

import numpy as np


def disk(radius_px: float) -> np.ndarray:
    import cv2

    r = max(round(radius_px), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def extent_px(points: np.ndarray) -> float:
    """Largest distance between two of ``points`` (``(n, 2)``), via the convex hull."""
    import cv2

    if len(points) < 2:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    d = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def join_fragments(
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
        if extent_px(merged) > max_extent_px:
            continue
        parent[rb] = ra
        members_of[ra] = members_of[ra] + members_of.pop(rb)
    return np.array([find(i) for i in range(n + 1)])


def split_touching(
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
    dome = dist - reconstruct(dist - prominence_px, dist)
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


def reconstruct(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
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


def drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without its 8-connected components smaller than ``min_px`` pixels."""
    import cv2

    _, lab, stats, _ = cv2.connectedComponentsWithStats(
        mask if mask.dtype == np.uint8 else mask.view(np.uint8), connectivity=8
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[lab]


def holes(mask: np.ndarray) -> np.ndarray:
    """``bool`` background pixels of ``mask`` (``uint8`` 0/1) that cannot reach its border
    (4-connected, as :func:`scipy.ndimage.binary_fill_holes`)."""
    import cv2

    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), dtype=np.uint8)
    outside[1:-1, 1:-1] = mask
    ff = np.zeros((h + 4, w + 4), dtype=np.uint8)
    cv2.floodFill(outside, ff, (0, 0), 2, flags=4)
    return outside[1:-1, 1:-1] == 0


def merge_boxes(boxes: list[list[int]]) -> list[list[int]]:
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


def ndi_find_objects(labels: np.ndarray) -> list[tuple[int, tuple[slice, slice]]]:
    """``(label, bounding slices)`` of every non-zero label of ``labels``."""
    from scipy import ndimage as ndi

    return [(i + 1, sl) for i, sl in enumerate(ndi.find_objects(labels)) if sl is not None]
