"""Phase 5 of ``scope match``: each field's crops cut, its channels measured, its crops checked.

:func:`extract_field` runs in a worker on one :class:`ExtractJob` and spills the field's
input stacks and targets to a ``.npz`` (the dataset is written from the spills once every
field's flags are known); :func:`cut` is the zero-padded crop every step uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from acquisition.vocabulary import ChannelKind, QcFlag
from registration.cell_match import CellMatch
from registration.channel_alignment import ChannelAligner, central_region
from registration.crop_checks import image_noise, one_pass_objects, saturated_fraction
from registration.mosaic import FieldMosaic, NeighbourImages
from registration.neighbour_pairs import PairMeasurer
from registration.qc_options import QcOptions
from registration.scan_pair import ScanPair
from registration.scans import ScanCache
from registration.segment import WbcParams, segment_wbcs


@dataclass
class FieldCrops:
    index: int
    n_cells: int
    spill: str  # .npz with inputs (n, C, c, c, 3), targets (n, c, c, 3)
    offsets: np.ndarray  # (C, 2 candidates, 2)
    scores: np.ndarray  # (C,)
    pair_offsets: np.ndarray  # (P, 2) channel pairs (neighbour_pairs.channel_pairs)
    pair_scores: np.ndarray  # (P,)
    flags: list[set[str]]
    edge_ratios: np.ndarray  # (n,) nucleus outline in the input (crop_checks.ghost_cells)
    speck_gaps: np.ndarray  # (n,) bluest speck on the cell (crop_checks.blue_speck_cells)


def cut(image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """``size x size`` crop with top-left ``(x0, y0)``, zero-padded outside the frame."""
    h, w = image.shape[:2]
    out = np.zeros((size, size, *image.shape[2:]), dtype=image.dtype)
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + size, w), min(y0 + size, h)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = image[ay0:ay1, ax0:ax1]
    return out


@dataclass(frozen=True)
class ExtractJob:
    """One field's crops: its matched cells and what the crop QC needs."""

    pair: ScanPair
    field: int
    cells: list[CellMatch]
    background_unstained: np.ndarray
    background_stained: np.ndarray
    crop_size: int
    wbc: WbcParams
    qc: QcOptions
    spill_dir: str
    kinds: np.ndarray  # (C,) channel kinds
    channel_pairs: np.ndarray  # (P, 2) neighbour_pairs.channel_pairs


def extract_field(cache: ScanCache, job: ExtractJob) -> FieldCrops:
    """Cut one field's input stacks and targets, measure its channels, flag its crops.

    The crops are spilled to ``job.spill_dir`` (the full unstained stack is read once);
    :class:`FieldCrops` carries the spill's path and the per-field measurements.
    """
    pair, i, cells = job.pair, job.field, job.cells
    bg_u, bg_s, kinds, ch_pairs = (
        job.background_unstained,
        job.background_stained,
        job.kinds,
        job.channel_pairs,
    )
    uscan = cache.scan(pair.unstained)
    n_ch = len(kinds)
    c = job.crop_size
    n = len(cells)
    inputs = np.zeros((n, n_ch, c, c, 3), dtype=np.uint8)
    offsets = np.full((n_ch, 2, 2), np.nan)
    scores = np.full(n_ch, np.nan)
    bf = uscan.image(i, pair.bf_unstained)
    mosaic = FieldMosaic(pair.centres_unstained, pair.width, pair.height, pair.pixel_size_um)
    aligner = ChannelAligner(bf, region_px=job.qc.pls_region_px, search_px=job.qc.pls_search_px)
    # every single-LED image is measured against the brightfield image and against its
    # neighbours (neighbour_pairs.channel_pairs)
    pairs = PairMeasurer(ch_pairs, search_px=job.qc.pls_search_px)
    sub = central_region(bf[aligner.region].shape[:2], job.qc.pair_region_px)
    for ch in range(n_ch):
        img = bf if ch == pair.bf_unstained else uscan.image(i, ch)
        if ch != pair.bf_unstained and kinds[ch] != ChannelKind.BRIGHTFIELD:
            grey = aligner.grey(img)  # blurred once, for both comparisons
            offsets[ch], scores[ch] = aligner.offset(img, str(kinds[ch]), grey=grey)
            if pairs.wants(ch):
                pairs.add(ch, grey[sub])
        image_of = NeighbourImages(uscan, i, ch, img)
        for k, cm in enumerate(cells):
            x0, y0 = cm.input_origin
            if cm.from_neighbours:
                inputs[k, ch], _full = mosaic.cut(i, x0, y0, c, c, image_of)
            else:
                inputs[k, ch] = cut(img, x0, y0, c)
    stained = cache.scan(pair.stained).image(i, pair.bf_stained)
    mosaic_s = FieldMosaic(pair.centres_stained, pair.width, pair.height, pair.pixel_size_um)
    stained_of = NeighbourImages(cache.scan(pair.stained), i, pair.bf_stained, stained)
    targets = (
        np.stack(
            [
                mosaic_s.cut(i, *cm.target_origin, c, c, stained_of)[0]
                if cm.target_from_neighbours
                else cut(stained, *cm.target_origin, c)
                for cm in cells
            ]
        )
        if n
        else (np.zeros((0, c, c, 3), np.uint8))
    )
    seg = segment_wbcs(stained, pixel_size_um=pair.pixel_size_um, params=job.wbc)
    noise = image_noise(bf)
    flags = []
    ratios = np.full(n, np.nan)
    gaps = np.full(n, np.nan)
    for k, cm in enumerate(cells):
        f = set(cm.flags)
        if QcFlag.NEAR_EDGE not in f:
            x0, y0 = cm.target_origin
            cells_crop = cut(seg.cell_labels, x0, y0, c) > 0
            labels = cut(seg.labels, x0, y0, c)
            cx, cy = (round(v) for v in cm.stained_xy)
            own = int(
                seg.cell_labels[min(max(cy, 0), pair.height - 1), min(max(cx, 0), pair.width - 1)]
            )
            found = one_pass_objects(
                targets[k],
                inputs[k, pair.bf_unstained],
                cells_crop,
                labels > 0,
                own_nucleus=(labels == own) if own else None,
                target_background=bg_s,
                input_background=bg_u,
                input_noise=noise,
                pixel_size_um=pair.pixel_size_um,
                options=job.qc,
            )
            ratios[k], gaps[k] = found.edge_ratio, found.speck_gap
            if found.target_only:
                f.add(QcFlag.TARGET_ONLY_COLOR)
            if found.input_only:
                f.add(QcFlag.INPUT_ONLY_OBJECT)
        if saturated_fraction(targets[k]) > job.qc.max_saturated_fraction:
            f.add(QcFlag.SATURATED_TARGET)
        flags.append(f)
    spill = os.path.join(job.spill_dir, f"field_{i:05d}.npz")
    np.savez(spill, inputs=inputs, targets=targets)
    return FieldCrops(
        i, n, spill, offsets, scores, pairs.offsets, pairs.scores, flags, ratios, gaps
    )
