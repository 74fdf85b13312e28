"""Phase 3 of ``scope match``: every detected cell's fine match, field by field.

:func:`match_field_cells` runs in a worker (:func:`registration.parallel.run_tasks`) on one
:class:`FineJob`; each cell becomes a :class:`CellMatch` with its positions in both passes,
its crop origins and its QC flags so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acquisition.vocabulary import QcFlag
from registration.coarse import to_grey
from registration.fine import FineMatchError, crop_origin, fine_match
from registration.mosaic import FieldMosaic, NeighbourImages
from registration.scan_pair import ScanPair
from registration.scans import ScanCache
from registration.slide_fit import SlideFit


@dataclass
class CellMatch:
    field: int
    stained_xy: tuple[float, float]
    unstained_xy: tuple[float, float]
    ssim: float
    input_origin: tuple[int, int]
    target_origin: tuple[int, int]
    flags: set[str]
    #: the input crop was cut (partly) from neighbouring unstained fields
    from_neighbours: bool = False
    #: the target crop was cut (partly) from neighbouring stained fields
    target_from_neighbours: bool = False


@dataclass(frozen=True)
class FineJob:
    """One field's fine matching: its detections and where the slide fit puts them."""

    pair: ScanPair
    field: int
    centroids: np.ndarray  # (n, 2) stained px
    fit: SlideFit
    status: str  # the field's coarse status: "inlier", "outlier" or "weak"
    crop_size: int
    search_px: int
    min_ssim: float


def match_field_cells(cache: ScanCache, job: FineJob) -> list[CellMatch]:
    """Fine-match every detection of one field (:func:`registration.fine.fine_match`).

    A crop or search window that leaves the frame is matched in the stitched neighbourhood
    of abutting fields; a cell that cannot be matched there either is flagged ``near_edge``.
    """
    pair, i, centroids, fit, status = job.pair, job.field, job.centroids, job.fit, job.status
    if len(centroids) == 0:
        return []
    u = to_grey(cache.scan(pair.unstained).image(i, pair.bf_unstained))
    s = to_grey(cache.scan(pair.stained).image(i, pair.bf_stained))
    c = job.crop_size
    search_px = job.search_px
    mosaic = FieldMosaic(pair.centres_unstained, pair.width, pair.height, pair.pixel_size_um)
    mosaic_s = FieldMosaic(pair.centres_stained, pair.width, pair.height, pair.pixel_size_um)
    greys = NeighbourImages(cache.scan(pair.unstained), i, pair.bf_unstained, u, grey=True)
    sgreys = NeighbourImages(cache.scan(pair.stained), i, pair.bf_stained, s, grey=True)
    seeds = fit.predict(i, centroids)
    out = []
    for (sx, sy), (px, py) in zip(centroids, seeds, strict=True):
        flags: set[str] = set()
        if status == "outlier":
            flags.add(QcFlag.COARSE_OUTLIER)
        t_origin = crop_origin(sx, sy, c)
        target_outside = not mosaic_s.inside(i, *t_origin, c, c)
        ox = oy = 0
        try:
            fm = fine_match(u, s, (sx, sy), (px, py), crop_size=c, search_px=search_px)
        except FineMatchError:
            # the stained crop or the search window leaves its frame: match in the stitched
            # neighbourhood (fields abut; the slide moved between the passes)
            fm = None
            tpatch, tfull = mosaic_s.cut(i, *t_origin, c, c, sgreys)
            side = c + 2 * search_px + 4
            ox = int(np.floor(t_origin[0] + (px - sx) + 0.5)) - search_px - 2
            oy = int(np.floor(t_origin[1] + (py - sy) + 0.5)) - search_px - 2
            if tfull:
                patch, full = mosaic.cut(i, ox, oy, side, side, greys)
                if full:
                    fm = fine_match(
                        patch,
                        tpatch,
                        (sx - t_origin[0], sy - t_origin[1]),
                        (px - ox, py - oy),
                        crop_size=c,
                        search_px=search_px,
                    )
        if fm is None:
            flags.add(QcFlag.NEAR_EDGE)
            ix = int(np.floor(t_origin[0] + (px - sx) + 0.5))
            iy = int(np.floor(t_origin[1] + (py - sy) + 0.5))
            out.append(CellMatch(i, (sx, sy), (px, py), float("nan"), (ix, iy), t_origin, flags))
            continue
        if fm.on_border or not fm.ssim >= job.min_ssim:
            flags.add(QcFlag.LOW_SSIM)
        x0, y0 = fm.crop_x + ox, fm.crop_y + oy
        outside = not mosaic.inside(i, x0, y0, c, c)
        if outside and not mosaic.covers(i, x0, y0, c, c):
            flags.add(QcFlag.NEAR_EDGE)
        out.append(
            CellMatch(
                i,
                (sx, sy),
                (fm.x_px + ox, fm.y_px + oy),
                fm.ssim,
                (x0, y0),
                t_origin,
                flags,
                from_neighbours=outside and QcFlag.NEAR_EDGE not in flags,
                target_from_neighbours=target_outside,
            )
        )
    return out


def stage_xy(pair: ScanPair, cells: list[CellMatch], *, stained: bool) -> np.ndarray:
    """``(n, 2)`` stage µm of the cells in the stained (or the unstained) pass."""
    g = pair.geometry
    if stained:
        return np.array(
            [g.to_stage(np.array(cm.stained_xy), pair.centres_stained[cm.field]) for cm in cells]
        ).reshape(-1, 2)
    return np.array(
        [g.to_stage(np.array(cm.unstained_xy), pair.centres_unstained[cm.field]) for cm in cells]
    ).reshape(-1, 2)
