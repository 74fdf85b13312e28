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
about ``coarse_um`` per pixel (:func:`registration.wbc_cells.candidate_boxes`), which keeps
every cell the full resolution pass finds.

Every size is physical and converted with ``pixel_size_um``, so the same defaults work at 20x,
100x or on another lab's camera; the colours adapt to the stain. ``docs/registration.md``
shows how a lab checks detection on its own slides.

The steps live in small modules; this one holds the entry points:
:mod:`registration.wbc_params` (:class:`WbcParams`, the pydantic parameter model),
:mod:`registration.wbc_colour` (steps 1–2: white balance, stain, colour boxes and masks),
:mod:`registration.wbc_cells` (the candidate search and steps 3–8 per region),
:mod:`registration.wbc_morphology` (the mask operations they use) and
:mod:`registration.wbc_dye` (the contrast and dye rules, steps 8–9).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from registration.wbc_cells import candidate_boxes, cells_in_region
from registration.wbc_colour import (
    adapted_boxes,
    background_colour,
    check_image,
    colour_maps_u8,
    colour_masks,
    hsv_image,
    measure_stain,
    top_stands_out,
)
from registration.wbc_dye import enough_dye, nucleus_dye, pixel_dye, stands_out
from registration.wbc_morphology import drop_small, merge_boxes, ndi_find_objects
from registration.wbc_params import (
    DEFAULT_PARAMS,
    PARAM_NAMES,
    SegmentationError,
    WbcParams,
    make_params,
)

__all__ = [
    "DEFAULT_PARAMS",
    "PARAM_NAMES",
    "Segmentation",
    "SegmentationError",
    "WbcParams",
    "adapted_boxes",
    "background_colour",
    "colour_masks",
    "find_wbcs",
    "for_slide",
    "hsv_image",
    "make_params",
    "measure_stain",
    "ndi_find_objects",
    "nucleus_dye",
    "overlay",
    "segment_wbcs",
    "slide_stain_of",
]


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

    image = check_image(image)
    if not np.isfinite(pixel_size_um) or pixel_size_um <= 0:
        raise SegmentationError(f"pixel_size_um must be a positive number; got {pixel_size_um}.")
    p = make_params(params, **overrides)
    px = float(pixel_size_um)
    px2 = px * px
    raw, body, balanced, hsv = colour_maps_u8(image, pixel_size_um=px, params=p, stain=stain)
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
        for x0, y0, x1, y1 in candidate_boxes(raw, body, px, p)
    ]
    cell_boxes: list[tuple[slice, slice]] = []
    for x0, y0, x1, y1 in merge_boxes(boxes):
        sl = (slice(y0, y1), slice(x0, x1))
        # nucleus score (S + 255 − V) / 2: saturated and dark
        score = cv2.addWeighted(hsv[sl][..., 1], 0.5, 255 - hsv[sl][..., 2], 0.5, 0.0)
        # drop specks (noise, stray dye) before closing so they cannot bridge nuclei
        nuc_mask = drop_small(raw[sl], p.min_fragment_area_um2 / px2)
        for (ys_, xs_), cell, nuc in cells_in_region(nuc_mask, body[sl] > 0, px, p, score):
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
            dye[k - 1] = pixel_dye(balanced[box][nuc]).sum() * px2
    keep_cells = stands_out(nuc_sat, cell_labels, balanced, hsv, px, p)
    keep_cells &= enough_dye(dye, p)
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
    if params.top_fraction > 0 and top_stands_out(stain, params):
        k = min(k, params.top_fraction * stain.top_saturation / params.saturation_min)
    return dataclasses.replace(params, saturation_scale=float(np.clip(k, 0.05, 5.0)))
