"""Slide-level checks of ``scope match``: judged over every field of the slide at once.

- :func:`same_slide_check` — refuse a pair whose fit says "two different slides";
- :func:`refit_cells` — the slide transform again from the fine matches; cells that disagree
  with it are flagged ``fine_residual``;
- :func:`dedup_cells` — one cell per cluster of detections seen in overlapping fields;
- :func:`flag_misaligned` — PLS channels that moved (``pls_misaligned``);
- :func:`flag_slide_outliers` — artifacts taken for cells, precipitate on cells
  (``target_only_color``).

``opt`` is the run's :class:`registration.match.MatchOptions`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.vocabulary import ChannelKind, QcFlag
from registration.cell_match import CellMatch
from registration.channel_alignment import misaligned_channels
from registration.crop_checks import blue_speck_cells, ghost_cells
from registration.crops import FieldCrops
from registration.neighbour_pairs import misaligned_pairs, same_direction_pairs
from registration.rigid import robust_fit_rigid
from registration.scan_pair import MatchError, ScanPair
from registration.slide_fit import SlideFit


def dedup_cells(
    cells: list[CellMatch], stage_xy: np.ndarray, pair: ScanPair, radius_um: float
) -> np.ndarray:
    """Indices of the cells to keep: one per cluster of detections within ``radius_um``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(cells)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(stage_xy).query_pairs(radius_um, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)

    def quality(k: int) -> tuple:
        cm = cells[k]
        x, y = cm.stained_xy
        edge = min(x, y, pair.width - 1 - x, pair.height - 1 - y)
        ssim = cm.ssim if math.isfinite(cm.ssim) else -2.0
        return (QcFlag.NEAR_EDGE not in cm.flags, -len(cm.flags), edge, ssim)

    # group the members of each cluster with one stable sort (ascending index within a
    # cluster, so ties keep the first detection): linear in the cells after the sort
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.diff(labels[order], prepend=-1))
    keep = [max(members, key=quality) for members in np.split(order, starts[1:])]
    return np.sort(np.asarray(keep, dtype=np.int64))


#: Fewer matched cells than this are too thin evidence to refuse a slide pair.
MIN_CELLS_FOR_SLIDE_CHECK = 5
#: Below this median SSIM (or --min-ssim, if higher) a pair whose fields mostly do not fit one
#: slide transform is taken for two slides. The fine search maximises SSIM, so even cells of
#: another slide reach about 0.28 (measured: a 4x4 simulated pair of two slides); true pairs
#: of the simulator reach 0.6.
SAME_SLIDE_MIN_SSIM = 0.4


def same_slide_check(
    status: np.ndarray, cells: list[CellMatch], opt: Any, pair: ScanPair, force: bool
) -> list[str]:
    """Refuse a pair whose fit says "not one slide": few inlier fields and poor SSIM.

    Returns warnings (for a thin sample, or when ``force`` overrides the refusal).
    """
    status = np.asarray(status)
    inliers = float(np.mean(status == "inlier")) if len(status) else 0.0
    ssims = [cm.ssim for cm in cells if math.isfinite(cm.ssim)]
    med = float(np.median(ssims)) if ssims else float("nan")
    threshold = max(opt.qc.min_ssim, SAME_SLIDE_MIN_SSIM)
    implausible = inliers < 0.5 and not (med >= threshold)
    if not implausible:
        return []
    what = (
        f"only {inliers:.0%} of the fields fit one slide transform and the median SSIM of the "
        f"matched cells is {med:.2f} (below {threshold:g})"
    )
    if len(cells) < MIN_CELLS_FOR_SLIDE_CHECK:
        return [
            f"warning: {what}, but {len(cells)} cells are too few to judge: check the scans are "
            "of one slide"
        ]
    if force:
        return [f"warning: {what}: matched anyway (--force)"]
    raise MatchError(
        f"{Path(pair.unstained).name} and {Path(pair.stained).name} may not be the same "
        f"physical slide: {what}; rescan, or pass --force to match anyway"
    )


def refit_cells(
    fit: SlideFit, cells: list[CellMatch], pair: ScanPair, opt: Any
) -> tuple[SlideFit, list[CellMatch]]:
    """The slide transform from the fine matches; flag matches that disagree with it."""
    g = pair.geometry
    good = [
        k
        for k, cm in enumerate(cells)
        if not cm.flags & {QcFlag.NEAR_EDGE, QcFlag.LOW_SSIM, QcFlag.COARSE_OUTLIER}
    ]
    if len(good) < 3:
        return fit, cells
    src = np.array(
        [
            g.to_stage(np.array(cells[k].stained_xy), g.stained_centres_um[cells[k].field])
            for k in good
        ]
    ).reshape(-1, 2)
    dst = np.array(
        [
            g.to_stage(np.array(cells[k].unstained_xy), g.unstained_centres_um[cells[k].field])
            for k in good
        ]
    ).reshape(-1, 2)
    w = np.array([max(cells[k].ssim, 1e-3) for k in good])
    tol = opt.qc.max_fine_residual_px * pair.pixel_size_um
    transform, inl, res = robust_fit_rigid(src, dst, w, min_threshold=tol)
    refit = SlideFit(
        transform,
        g,
        fit.status,
        fit.residual_px,
        fit.correction_px,
        float(np.sqrt(np.mean((res[inl] / pair.pixel_size_um) ** 2))),
        int(inl.sum()),
    )
    for k, r in zip(good, res, strict=True):
        if r > tol:
            cells[k].flags.add(QcFlag.FINE_RESIDUAL)
    return refit, cells


def flag_misaligned(
    crops: list[FieldCrops], channels: np.ndarray, ch_pairs: np.ndarray, opt: Any
) -> int:
    if not crops:
        return 0
    offsets = np.stack([fc.offsets for fc in crops])
    scores = np.stack([fc.scores for fc in crops])
    tolerance = np.where(
        np.asarray(channels["kind"]) == ChannelKind.DARKFIELD,
        opt.qc.darkfield_tolerance_px,
        opt.qc.pls_tolerance_px,
    )
    bad = misaligned_channels(
        offsets,
        scores,
        channels["theta_deg"],
        channels["phi_deg"],
        tolerance_px=tolerance,
        tolerance_single_px=opt.qc.pls_tolerance_single_px,
        min_score=opt.qc.pls_min_score,
    )
    # channels with trusted neighbours are judged by them; the others against brightfield
    by_pairs, judged = misaligned_pairs(
        np.stack([fc.pair_offsets for fc in crops]),
        np.stack([fc.pair_scores for fc in crops]),
        ch_pairs,
        len(channels),
        tolerance_px=opt.qc.pair_tolerance_px,
        min_score=opt.qc.pair_min_score,
        max_tolerance_px=opt.qc.pair_max_tolerance_px,
        same_direction=same_direction_pairs(channels, ch_pairs),
    )
    bad = np.where(judged[None, :], by_pairs, bad)
    for fc, row in zip(crops, bad, strict=True):
        if row.any():
            for f in fc.flags:
                f.add(QcFlag.PLS_MISALIGNED)
    return int(bad.sum())


def flag_slide_outliers(crops: list[FieldCrops], opt: Any) -> None:
    """Slide-level one-pass checks: artifacts taken for cells, precipitate on cells."""
    if not crops:
        return
    ghost = ghost_cells(
        np.concatenate([fc.edge_ratios for fc in crops]),
        fraction=opt.qc.ghost_fraction,
        floor=opt.qc.ghost_floor,
    )
    specks = blue_speck_cells(
        np.concatenate([fc.speck_gaps for fc in crops]),
        floor=opt.qc.speck_gap_floor,
        spread=opt.qc.speck_gap_spread,
    )
    flags = [f for fc in crops for f in fc.flags]
    for f, g, sp in zip(flags, ghost, specks, strict=True):
        if g or sp:
            f.add(QcFlag.TARGET_ONLY_COLOR)
