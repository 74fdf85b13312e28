"""WBC detection, cells: the coarse candidate search and the full-resolution cells of one
region (steps 3–8 of :mod:`registration.segment`: closing, joining, cell body, splitting,
size limits and each cell's own nucleus outline)."""

from __future__ import annotations

import numpy as np

from registration.wbc_morphology import (
    disk,
    holes,
    join_fragments,
    ndi_find_objects,
    split_touching,
)
from registration.wbc_params import WbcParams


def candidate_boxes(
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
        (nuc_frac > 0).view(np.uint8), cv2.MORPH_CLOSE, disk(p.closing_um / cpx)
    )
    reach = (
        cv2.distanceTransform(1 - nucleus, cv2.DIST_L2, cv2.DIST_MASK_5)
        <= p.max_cell_radius_um / cpx + 1
    )
    cell = cv2.morphologyEx(
        nucleus | (body_any & reach).view(np.uint8), cv2.MORPH_CLOSE, disk(p.closing_um / cpx)
    )
    # fragments within joining distance of each other belong to one candidate (the lobes of
    # a neutrophil), so that its box holds every fragment the fine pass may join to it
    linked = cell | cv2.dilate(nucleus, disk(p.join_um / cpx + 0.5))
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


def refine_nucleus(nuc: np.ndarray, cell: np.ndarray, score: np.ndarray) -> np.ndarray:
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


def cells_in_region(
    raw: np.ndarray, body: np.ndarray, px: float, p: WbcParams, score: np.ndarray | None = None
) -> list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """The cells of one region: ``(bounding slices in the region, cell mask, nucleus mask)``."""
    import cv2
    from scipy import ndimage as ndi

    px2 = px * px
    nucleus = cv2.morphologyEx(
        raw.astype(np.uint8), cv2.MORPH_CLOSE, disk(p.closing_um / px)
    ).astype(bool)
    n, comp = cv2.connectedComponents(nucleus.astype(np.uint8), connectivity=8)
    mapping = join_fragments(
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
    opened_body = cv2.morphologyEx(body.astype(np.uint8), cv2.MORPH_OPEN, disk(0.4 / px))
    reach = (
        cv2.distanceTransform((~nucleus).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
        <= p.max_cell_radius_um / px
    )
    cell = (cell.astype(bool) | (opened_body.astype(bool) & reach)).astype(np.uint8)
    cell = cv2.morphologyEx(cell, cv2.MORPH_CLOSE, disk(p.closing_um / px))
    n_cells, cell_comp = cv2.connectedComponents(cell, connectivity=8)
    # bodies that grew from no nucleus are not cells
    has_nucleus = np.zeros(n_cells, dtype=bool)
    has_nucleus[np.unique(cell_comp[nucleus])] = True
    has_nucleus[0] = False
    min_nuc = p.min_nucleus_area_um2 / px2
    min_px = p.min_cell_area_um2 / px2
    # every piece of a cell holds at most the cell's nucleus pixels: a cell with fewer than
    # min_nuc of them yields nothing (most bodies are red cells touching a purple speck)
    nuc_count = np.bincount(cell_comp[nucleus], minlength=n_cells)
    candidate = has_nucleus & (nuc_count >= min_nuc)
    # holes are filled once for the region; only the cells bordering a hole are refilled one
    # by one (a cell's own holes are holes of the region, and border one of its pixels)
    with_hole = np.zeros(n_cells, dtype=bool)
    region_holes = holes(cell)
    if region_holes.any():
        ring = cv2.dilate(region_holes.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        with_hole[np.unique(cell_comp[ring & ~region_holes])] = True
    out = []
    for lab, sl in ndi_find_objects(np.where(candidate[cell_comp], cell_comp, 0)):
        obj = cell_comp[sl] == lab
        if with_hole[lab]:
            obj = ndi.binary_fill_holes(obj)
        pieces = (
            split_touching(
                obj,
                prominence_px=p.split_prominence_um / px,
                core_radius_px=p.split_core_radius_um / px,
            )
            if obj.sum() >= 2 * min_px
            else [obj]
        )
        for piece in pieces:
            kept = _size_checked(piece, nucleus[sl], None if score is None else score[sl], px, p)
            if kept is not None:
                out.append((sl, *kept))
    return out


def _size_checked(
    piece: np.ndarray, nucleus: np.ndarray, score: np.ndarray | None, px: float, p: WbcParams
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(cell mask, nucleus mask)`` of one cell (``piece``, in its region's box) that passes
    the size rules, before and after its own nucleus outline (``score`` given); else None."""
    import cv2

    px2 = px * px
    min_nuc = p.min_nucleus_area_um2 / px2
    min_px, max_px = p.min_cell_area_um2 / px2, p.max_cell_area_um2 / px2
    alone_px = p.min_nucleus_alone_um2 / px2
    area = float(piece.sum())
    nuc = nucleus & piece
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
        return None
    if score is not None:
        nuc = refine_nucleus(nuc, piece, score)
        # the same rule for the refined nucleus: dye specks on a red cell pass the colour
        # box as a nucleus-sized blob but shrink to specks once each cell is thresholded
        refined_px = float(nuc.sum())
        if refined_px < min_nuc or (area < min_px and refined_px < alone_px):
            return None
    return piece, nuc
