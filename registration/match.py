"""The ``scope match`` pipeline: an unstained and a stained scan become a dataset of cells.

Phases (each parallel over fields with ``workers`` processes where it reads images):

1. **survey** — per field: both brightfield images; blank check; coarse match
   (:mod:`registration.coarse`); WBC detection in the stained image
   (:mod:`registration.segment`);
2. **fit** — one rigid slide transform from every field's coarse tiles; fields that disagree
   are ``outlier``, fields too weak to match are rescued (``weak``);
3. **fine** — per cell: SSIM search around the transform's prediction
   (:mod:`registration.fine`);
4. **refit** — the transform again from the fine matches (sub-pixel, many points); cells that
   disagree are flagged; cells seen in two overlapping fields are kept once; the default
   split is assigned by spatial blocks (:mod:`registration.splits`);
5. **extract** — per field: the full unstained stack is read once; each channel's offset to
   the brightfield image is measured; the PLS crops, the stained crops and the crop QC
   (:mod:`registration.qc`) are computed and spilled to a temporary folder;
6. **write** — PLS misalignment is decided over all fields, then the dataset is written
   through :class:`registration.dataset.DatasetWriter` (a temporary file renamed at the end)
   and ``NAME.cells.csv`` beside it. Any error leaves no output behind.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardware_profiles.errors import ScopeError
from registration.coarse import (
    DEFAULT_MARGIN_UM,
    CoarseMatch,
    FieldGeometry,
    RegistrationError,
    RigidTransform,
    SlideFit,
    coarse_match,
    fit_slide_transform,
    robust_fit_rigid,
    to_grey,
)
from registration.detection_report import detection_warnings, per_field_line
from registration.fine import FineMatchError, crop_origin, fine_match
from registration.mosaic import FieldMosaic
from registration.qc import QcOptions, channel_pairs, join_flags
from registration.segment import (
    WbcParams,
    background_colour,
    for_slide,
    segment_wbcs,
    slide_stain_of,
)
from registration.splits import DEFAULT_BLOCK_UM, DEFAULT_FRACTIONS, default_split

#: ``progress(phase, done, total)``: called as work advances.
Progress = Callable[[str, int, int], None]

#: A frame is blank when its grey levels spread less than this (DN, standard deviation).
BLANK_STD_DN = 1.0


class MatchError(ScopeError):
    """The two scans cannot be matched (they do not belong together, or hold no cells)."""


@dataclass(frozen=True)
class MatchOptions:
    """Every knob of :func:`match_scans` (defaults reproduce the thesis where it has one).

    Attributes
    ----------
    crop_size
        Side of the square crops, px (thesis: 64).
    search_px
        Half-width of the fine SSIM search, px (thesis: ±5).
    margin_um
        Coarse search margin, µm (thesis: 264 px at 0.293 µm/px); capped at 40 % of the frame.
    min_coarse_score, min_distinctness
        A field's own coarse match counts for the fit only above these.
    outlier_px
        A field whose own match sits farther than this from the slide transform is an outlier.
    dedup_um
        Detections closer than this on the slide (stained pass) are one cell.
    fractions, block_um, seed
        The default split: train/val/test fractions, spatial block size (µm), seed.
    workers
        Processes reading and matching fields in parallel.
    skip_blank
        Match around blank fields instead of stopping with an error.
    compression
        Lossless filter of the dataset's image arrays.
    wbc, qc
        Segmentation parameters and QC thresholds.
    """

    crop_size: int = 64
    search_px: int = 5
    margin_um: float = DEFAULT_MARGIN_UM
    min_coarse_score: float = 0.05
    min_distinctness: float = 0.15
    outlier_px: float = 5.0
    dedup_um: float = 5.0
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    block_um: float = DEFAULT_BLOCK_UM
    seed: int = 0
    workers: int = 1
    skip_blank: bool = False
    compression: str = "blosc2-lz4"
    wbc: WbcParams = field(default_factory=WbcParams)
    qc: QcOptions = field(default_factory=QcOptions)

    def validate(self) -> None:
        if self.crop_size < 16 or self.crop_size % 2:
            raise MatchError(f"crop_size must be an even number ≥ 16; got {self.crop_size}.")
        if not 1 <= self.search_px <= 32:
            raise MatchError(f"search_px must lie in [1, 32]; got {self.search_px}.")
        if self.workers < 1:
            raise MatchError(f"workers must be ≥ 1; got {self.workers}.")
        if self.dedup_um <= 0 or self.outlier_px <= 0:
            raise MatchError("dedup_um and outlier_px must be positive.")
        if not (math.isfinite(self.qc.min_ssim) and -1.0 <= self.qc.min_ssim <= 1.0):
            raise MatchError(f"--min-ssim must lie in [-1, 1], got {self.qc.min_ssim}")
        if not (math.isfinite(self.margin_um) and self.margin_um > 0):
            raise MatchError(f"--margin-um must be a positive number, got {self.margin_um}")
        self.wbc.validate()


@dataclass
class MatchSummary:
    """What :func:`match_scans` did."""

    dataset: Path
    cells_csv: Path
    slide: str
    n_fields: int
    n_blank: int
    field_status: dict[str, int]
    n_detected: int
    n_duplicates: int
    n_cells: int
    flag_counts: dict[str, int]
    median_ssim: float
    transform: RigidTransform
    fit_rms_px: float
    misaligned_channels: int
    seconds: float
    notes: list[str] = field(default_factory=list)


# -- the scan pair --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanPair:
    """What the workers need to know about the two scans (picklable)."""

    unstained: str
    stained: str
    slide: str
    pixel_size_um: float
    width: int
    height: int
    n_fields: int
    bf_unstained: int
    bf_stained: int
    centres_unstained: np.ndarray
    centres_stained: np.ndarray

    @property
    def geometry(self) -> FieldGeometry:
        return FieldGeometry(
            self.width,
            self.height,
            self.pixel_size_um,
            self.centres_stained,
            self.centres_unstained,
        )


def _field_centres(scan: Any, channel: int) -> np.ndarray:
    """Stage centre of each field: the brightfield frame's read-back position if recorded."""
    pos = scan.positions
    centres = np.stack([pos["x_um"], pos["y_um"]], axis=1).astype(np.float64)
    frames = scan.frames
    if len(frames):
        sel = frames["channel"] == channel
        for row in frames[sel]:
            x, y = float(row["stage_x_um"]), float(row["stage_y_um"])
            if math.isfinite(x) and math.isfinite(y):
                centres[int(row["position"])] = (x, y)
    return centres


def open_pair(unstained: str | Path, stained: str | Path) -> tuple[ScanPair, Any, Any]:
    """Open and check two scans; returns the pair description and both (open) scan files.

    Raises
    ------
    MatchError
        When the files are of the wrong pass, different slides, different positions, frame
        sizes or pixel sizes, or incomplete.
    """
    from acquisition.scanfile import ScanFile

    u_path, s_path = Path(unstained), Path(stained)
    if u_path.resolve() == s_path.resolve():
        raise MatchError(f"the unstained and stained scans are the same file: {u_path}")
    u = ScanFile(u_path)
    try:
        s = ScanFile(s_path)
    except BaseException:
        u.close()
        raise
    try:
        pair = _check_pair(u, s)
    except BaseException:
        u.close()
        s.close()
        raise
    return pair, u, s


def _check_pair(u: Any, s: Any) -> ScanPair:
    if u.pass_ != "unstained":
        hint = " (give the unstained scan first)" if u.pass_ == "stained" else ""
        raise MatchError(f"{u.path} is a {u.pass_!r} scan, not an unstained one{hint}")
    if s.pass_ != "stained":
        raise MatchError(f"{s.path} is a {s.pass_!r} scan, not a stained one")
    if u.slide != s.slide:
        raise MatchError(
            f"the scans are of different slides: {u.path.name} is slide {u.slide!r}, "
            f"{s.path.name} is slide {s.slide!r}"
        )
    for scan in (u, s):
        scan.verify()  # a done field whose file is missing or damaged: refuse, never black crops
        if not scan.complete:
            raise MatchError(
                f"{scan.path} is incomplete ({len(scan.done)} of {scan.n_positions} fields "
                "done); finish it with `scope scan ... --resume` first"
            )
    if u.n_positions != s.n_positions:
        raise MatchError(
            f"the scans image different positions: {u.n_positions} fields in {u.path.name}, "
            f"{s.n_positions} in {s.path.name}"
        )
    uxy = np.stack([u.positions["x_um"], u.positions["y_um"]], axis=1)
    sxy = np.stack([s.positions["x_um"], s.positions["y_um"]], axis=1)
    off = np.abs(uxy - sxy).max()
    if off > 1.0:
        raise MatchError(
            f"the scans image different positions (up to {off:.1f} µm apart); scan the "
            "stained pass at the unstained pass's positions"
        )
    if abs(u.pixel_size_um - s.pixel_size_um) > 1e-9:
        raise MatchError(
            f"the scans have different pixel sizes ({u.pixel_size_um} and {s.pixel_size_um} "
            "µm): both passes must use the scan objective"
        )
    if u.frame_shape != s.frame_shape:
        raise MatchError(
            f"the scans have different frame sizes ({u.frame_shape[1]}x{u.frame_shape[0]} and "
            f"{s.frame_shape[1]}x{s.frame_shape[0]})"
        )
    bf_u, bf_s = u.brightfield_index(), s.brightfield_index()
    h, w = u.frame_shape
    return ScanPair(
        unstained=str(u.path.resolve()),
        stained=str(s.path.resolve()),
        slide=u.slide,
        pixel_size_um=u.pixel_size_um,
        width=int(w),
        height=int(h),
        n_fields=u.n_positions,
        bf_unstained=bf_u,
        bf_stained=bf_s,
        centres_unstained=_field_centres(u, bf_u),
        centres_stained=_field_centres(s, bf_s),
    )


_OPEN: dict[str, Any] = {}


def _scan(path: str) -> Any:
    """A per-process cache of open scan files (workers open each file once)."""
    from acquisition.scanfile import ScanFile

    if path not in _OPEN:
        _OPEN[path] = ScanFile(path)
    return _OPEN[path]


def _close_cached() -> None:
    for f in _OPEN.values():
        f.close()
    _OPEN.clear()


# -- phase 1: survey ------------------------------------------------------------------------------
@dataclass
class FieldSurvey:
    index: int
    blank: str  # "", "unstained" or "stained"
    coarse: CoarseMatch | None
    centroids: np.ndarray  # (n, 2) stained px
    background_unstained: np.ndarray
    background_stained: np.ndarray


def _survey(args: tuple[ScanPair, int, MatchOptions]) -> FieldSurvey:
    pair, i, opt = args
    u = _scan(pair.unstained).image(i, pair.bf_unstained)
    s = _scan(pair.stained).image(i, pair.bf_stained)
    blank = "".join(
        name
        for name, img in (("unstained", u), ("stained", s))
        if float(to_grey(img)[::4, ::4].std()) < BLANK_STD_DN
    )
    bg_u, bg_s = background_colour(u), background_colour(s)
    if blank:
        return FieldSurvey(i, blank, None, np.zeros((0, 2)), bg_u, bg_s)
    cm = coarse_match(u, s, pixel_size_um=pair.pixel_size_um, margin_um=opt.margin_um)
    seg = segment_wbcs(s, pixel_size_um=pair.pixel_size_um, params=opt.wbc)
    return FieldSurvey(i, "", cm, seg.centroids, bg_u, bg_s)


# -- phase 3: fine --------------------------------------------------------------------------------
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


def _fine(args: tuple[ScanPair, int, np.ndarray, SlideFit, str, MatchOptions]) -> list[CellMatch]:
    pair, i, centroids, fit, status, opt = args
    if len(centroids) == 0:
        return []
    u = to_grey(_scan(pair.unstained).image(i, pair.bf_unstained))
    s = to_grey(_scan(pair.stained).image(i, pair.bf_stained))
    c = opt.crop_size
    mosaic = FieldMosaic(pair.centres_unstained, pair.width, pair.height, pair.pixel_size_um)
    mosaic_s = FieldMosaic(pair.centres_stained, pair.width, pair.height, pair.pixel_size_um)
    greys = _NeighbourImages(_scan(pair.unstained), i, pair.bf_unstained, u, grey=True)
    sgreys = _NeighbourImages(_scan(pair.stained), i, pair.bf_stained, s, grey=True)
    seeds = fit.predict(i, centroids)
    out = []
    for (sx, sy), (px, py) in zip(centroids, seeds, strict=True):
        flags: set[str] = set()
        if status == "outlier":
            flags.add("coarse_outlier")
        t_origin = crop_origin(sx, sy, c)
        target_outside = not mosaic_s.inside(i, *t_origin, c, c)
        ox = oy = 0
        try:
            fm = fine_match(u, s, (sx, sy), (px, py), crop_size=c, search_px=opt.search_px)
        except FineMatchError:
            # the stained crop or the search window leaves its frame: match in the stitched
            # neighbourhood (fields abut; the slide moved between the passes)
            fm = None
            tpatch, tfull = mosaic_s.cut(i, *t_origin, c, c, sgreys)
            side = c + 2 * opt.search_px + 4
            ox = int(np.floor(t_origin[0] + (px - sx) + 0.5)) - opt.search_px - 2
            oy = int(np.floor(t_origin[1] + (py - sy) + 0.5)) - opt.search_px - 2
            if tfull:
                patch, full = mosaic.cut(i, ox, oy, side, side, greys)
                if full:
                    fm = fine_match(
                        patch,
                        tpatch,
                        (sx - t_origin[0], sy - t_origin[1]),
                        (px - ox, py - oy),
                        crop_size=c,
                        search_px=opt.search_px,
                    )
        if fm is None:
            flags.add("near_edge")
            ix = int(np.floor(t_origin[0] + (px - sx) + 0.5))
            iy = int(np.floor(t_origin[1] + (py - sy) + 0.5))
            out.append(CellMatch(i, (sx, sy), (px, py), float("nan"), (ix, iy), t_origin, flags))
            continue
        if fm.on_border or not fm.ssim >= opt.qc.min_ssim:
            flags.add("low_ssim")
        x0, y0 = fm.crop_x + ox, fm.crop_y + oy
        outside = not mosaic.inside(i, x0, y0, c, c)
        if outside and not mosaic.covers(i, x0, y0, c, c):
            flags.add("near_edge")
        out.append(
            CellMatch(
                i,
                (sx, sy),
                (fm.x_px + ox, fm.y_px + oy),
                fm.ssim,
                (x0, y0),
                t_origin,
                flags,
                from_neighbours=outside and "near_edge" not in flags,
                target_from_neighbours=target_outside,
            )
        )
    return out


# -- phase 5: extract -----------------------------------------------------------------------------
@dataclass
class FieldCrops:
    index: int
    n_cells: int
    spill: str  # .npz with inputs (n, C, c, c, 3), targets (n, c, c, 3)
    offsets: np.ndarray  # (C, 2 candidates, 2)
    scores: np.ndarray  # (C,)
    pair_offsets: np.ndarray  # (P, 2) channel pairs (qc.channel_pairs)
    pair_scores: np.ndarray  # (P,)
    flags: list[set[str]]
    edge_ratios: np.ndarray  # (n,) nucleus outline in the input (qc.ghost_cells)
    speck_gaps: np.ndarray  # (n,) bluest speck on the cell (qc.blue_speck_cells)


def _cut(image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """``size x size`` crop with top-left ``(x0, y0)``, zero-padded outside the frame."""
    h, w = image.shape[:2]
    out = np.zeros((size, size, *image.shape[2:]), dtype=image.dtype)
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + size, w), min(y0 + size, h)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = image[ay0:ay1, ax0:ax1]
    return out


class _NeighbourImages:
    """``image_of(field)`` for :meth:`FieldMosaic.cut`: one channel, each field read once."""

    def __init__(
        self, scan: Any, home: int, channel: int, home_image: np.ndarray, *, grey: bool = False
    ) -> None:
        self.scan, self.channel, self.grey = scan, channel, grey
        self.images = {home: home_image}

    def __call__(self, j: int) -> np.ndarray:
        if j not in self.images:
            img = self.scan.image(j, self.channel)
            self.images[j] = to_grey(img) if self.grey else img
        return self.images[j]


def _extract(
    args: tuple[
        ScanPair, int, list[CellMatch], np.ndarray, np.ndarray, MatchOptions, str, np.ndarray
    ],
) -> FieldCrops:
    from registration.qc import (
        ChannelAligner,
        PairMeasurer,
        central_region,
        image_noise,
        one_pass_objects,
        saturated_fraction,
    )

    pair, i, cells, bg_u, bg_s, opt, spill_dir, kinds, ch_pairs = args
    uscan = _scan(pair.unstained)
    n_ch = len(kinds)
    c = opt.crop_size
    n = len(cells)
    inputs = np.zeros((n, n_ch, c, c, 3), dtype=np.uint8)
    offsets = np.full((n_ch, 2, 2), np.nan)
    scores = np.full(n_ch, np.nan)
    bf = uscan.image(i, pair.bf_unstained)
    mosaic = FieldMosaic(pair.centres_unstained, pair.width, pair.height, pair.pixel_size_um)
    aligner = ChannelAligner(bf, region_px=opt.qc.pls_region_px, search_px=opt.qc.pls_search_px)
    # every single-LED image is measured against the brightfield image and against its
    # neighbours (qc.channel_pairs)
    pairs = PairMeasurer(ch_pairs, search_px=opt.qc.pls_search_px)
    sub = central_region(bf[aligner.region].shape[:2], opt.qc.pair_region_px)
    for ch in range(n_ch):
        img = bf if ch == pair.bf_unstained else uscan.image(i, ch)
        if ch != pair.bf_unstained and kinds[ch] != "brightfield":
            grey = aligner.grey(img)  # blurred once, for both comparisons
            offsets[ch], scores[ch] = aligner.offset(img, str(kinds[ch]), grey=grey)
            if pairs.wants(ch):
                pairs.add(ch, grey[sub])
        image_of = _NeighbourImages(uscan, i, ch, img)
        for k, cm in enumerate(cells):
            x0, y0 = cm.input_origin
            if cm.from_neighbours:
                inputs[k, ch], _full = mosaic.cut(i, x0, y0, c, c, image_of)
            else:
                inputs[k, ch] = _cut(img, x0, y0, c)
    stained = _scan(pair.stained).image(i, pair.bf_stained)
    mosaic_s = FieldMosaic(pair.centres_stained, pair.width, pair.height, pair.pixel_size_um)
    stained_of = _NeighbourImages(_scan(pair.stained), i, pair.bf_stained, stained)
    targets = (
        np.stack(
            [
                mosaic_s.cut(i, *cm.target_origin, c, c, stained_of)[0]
                if cm.target_from_neighbours
                else _cut(stained, *cm.target_origin, c)
                for cm in cells
            ]
        )
        if n
        else (np.zeros((0, c, c, 3), np.uint8))
    )
    seg = segment_wbcs(stained, pixel_size_um=pair.pixel_size_um, params=opt.wbc)
    noise = image_noise(bf)
    flags = []
    ratios = np.full(n, np.nan)
    gaps = np.full(n, np.nan)
    for k, cm in enumerate(cells):
        f = set(cm.flags)
        if "near_edge" not in f:
            x0, y0 = cm.target_origin
            cells_crop = _cut(seg.cell_labels, x0, y0, c) > 0
            labels = _cut(seg.labels, x0, y0, c)
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
                options=opt.qc,
            )
            ratios[k], gaps[k] = found.edge_ratio, found.speck_gap
            if found.target_only:
                f.add("target_only_color")
            if found.input_only:
                f.add("input_only_object")
        if saturated_fraction(targets[k]) > opt.qc.max_saturated_fraction:
            f.add("saturated_target")
        flags.append(f)
    spill = os.path.join(spill_dir, f"field_{i:05d}.npz")
    np.savez(spill, inputs=inputs, targets=targets)
    return FieldCrops(
        i, n, spill, offsets, scores, pairs.offsets, pairs.scores, flags, ratios, gaps
    )


# -- orchestration --------------------------------------------------------------------------------
def _run(
    fn: Callable, tasks: list, workers: int, progress: Progress | None, phase: str
) -> Iterable:
    """Results of ``fn`` over ``tasks`` in order, in a process pool when ``workers > 1``."""
    total = len(tasks)
    if progress:
        progress(phase, 0, total)
    if workers <= 1 or total <= 1:
        for k, t in enumerate(tasks):
            yield fn(t)
            if progress:
                progress(phase, k + 1, total)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # fork where the platform has it (no HDF5 file is open in this process at this point, and
    # scripts need no __main__ guard); spawn elsewhere
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(
        max_workers=min(workers, total), mp_context=mp.get_context(method)
    ) as pool:
        for k, r in enumerate(pool.map(fn, tasks)):
            yield r
            if progress:
                progress(phase, k + 1, total)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cells_csv_path(dataset_path: str | Path) -> Path:
    """``NAME.cells.csv`` beside ``NAME.dataset.h5``."""
    p = Path(dataset_path)
    stem = p.name.removesuffix(".h5").removesuffix(".dataset")
    return p.with_name(stem + ".cells.csv")


def write_cells_csv(
    path: Path, slide: str, x_um: np.ndarray, y_um: np.ndarray, ids: Iterable[str]
) -> Path:
    """``cell_id,slide,x_um,y_um`` (stained-pass stage µm), written atomically.

    Written with the csv module, so a slide name holding a comma or a quote is quoted and
    reads back whole (:func:`acquisition.positions.read_cells_csv`).
    """
    import csv

    from acquisition.files import atomic_output

    with atomic_output(path) as tmp, Path(tmp).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["cell_id", "slide", "x_um", "y_um"])
        for cid, x, y in zip(ids, x_um, y_um, strict=True):
            out.writerow([cid, slide, f"{x:.3f}", f"{y:.3f}"])
    return Path(path)


def _dedup(
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
        return ("near_edge" not in cm.flags, -len(cm.flags), edge, ssim)

    keep = []
    for lab in np.unique(labels):
        members = np.flatnonzero(labels == lab)
        keep.append(max(members, key=quality))
    return np.sort(np.asarray(keep, dtype=np.int64))


def match_scans(
    unstained: str | Path,
    stained: str | Path,
    out: str | Path,
    *,
    options: MatchOptions | None = None,
    progress: Progress | None = None,
    software_version: str = "",
    force: bool = False,
) -> MatchSummary:
    """Register two scans of one slide and write ``out`` (a dataset) and its cells CSV.

    Parameters
    ----------
    unstained, stained
        ``<slide>.unstained.scan.h5`` and ``<slide>.stained.scan.h5``.
    out
        The dataset file to write (``NAME.dataset.h5``); ``NAME.cells.csv`` goes beside it.
    options
        :class:`MatchOptions`.
    progress
        Optional ``progress(phase, done, total)`` callback.

    force
        Replace an ``out`` written by another command (``scope match --highres``, a merge),
        and match even when the two scans do not look like one slide.

    Raises
    ------
    MatchError, RegistrationError, ScanFileError
        For scans that do not belong together, are incomplete, blank, hold no WBC or cannot
        be registered. Nothing is written then.
    """
    from acquisition.files import WriteLock, check_target, clean_stale, guard_output

    opt = options or MatchOptions()
    opt.validate()
    out = guard_output(Path(out))
    for p in (Path(unstained), Path(stained)):
        if p.exists() and out.exists() and out.resolve() == p.resolve():
            raise MatchError(f"--out {out} would overwrite an input scan")
    check_target(out, "scope-dataset", command="scope match", force=force)
    check_target(cells_csv_path(out), "cells-csv", command="scope match", force=force)
    clean_stale(out.parent)
    with WriteLock(out):
        try:
            return _match_scans(unstained, stained, out, opt, progress, software_version, force)
        except OSError as err:
            from acquisition.files import disk_full, is_disk_full

            if is_disk_full(err):
                raise disk_full(out, "nothing was written") from None
            raise


def _match_scans(
    unstained: str | Path,
    stained: str | Path,
    out: Path,
    opt: MatchOptions,
    progress: Progress | None,
    software_version: str,
    force: bool,
) -> MatchSummary:
    from acquisition.files import spill_folder
    from registration.dataset import DatasetWriter

    t0 = time.perf_counter()
    pair, u, s = open_pair(unstained, stained)
    try:
        channels = u.channels.copy()
        profile_json = str(u.attrs.get("profile", ""))
        simulated = bool(u.simulated or s.simulated)  # carried into the dataset's provenance
        hashes = {"unstained": _sha256(u.path), "stained": _sha256(s.path)}
    finally:
        u.close()
        s.close()
    notes: list[str] = []
    try:
        # 0. the slide's stain, from up to 12 stained fields: every field then uses the same
        # colour boxes (registration.segment.for_slide)
        picks = np.unique(np.linspace(0, pair.n_fields - 1, min(pair.n_fields, 12)).round())
        stain = slide_stain_of(
            (_scan(pair.stained).image(int(i), pair.bf_stained) for i in picks),
            pixel_size_um=pair.pixel_size_um,
            params=opt.wbc,
        )
        opt = replace(opt, wbc=for_slide(opt.wbc, stain))
        # 1. survey
        tasks = [(pair, i, opt) for i in range(pair.n_fields)]
        surveys = list(_run(_survey, tasks, opt.workers, progress, "survey"))
        blank = [sv for sv in surveys if sv.blank]
        if blank and not opt.skip_blank:
            sv = blank[0]
            which = pair.unstained if "unstained" in sv.blank else pair.stained
            raise MatchError(
                f"field {sv.index} of {Path(which).name} is blank (a uniform image): rescan "
                f"it, or pass --skip-blank to match the other fields ({len(blank)} blank)"
            )
        if len(blank) == pair.n_fields:
            raise MatchError("every field is blank; nothing to match")
        n_detected = int(sum(len(sv.centroids) for sv in surveys))
        counts = [len(sv.centroids) for sv in surveys if not sv.blank]
        notes += [per_field_line(counts), *detection_warnings(counts, stain)]
        if n_detected == 0:
            raise MatchError(
                f"no white blood cells found in the {pair.n_fields} fields of "
                f"{Path(pair.stained).name}: check the staining, or try the segmentation on "
                "one frame with `scope segment IMAGE --pixel-size-um P --overlay OUT.png`"
            )
        # 2. fit
        geometry = pair.geometry
        fit = fit_slide_transform(
            [sv.coarse for sv in surveys],
            geometry,
            min_score=opt.min_coarse_score,
            min_distinctness=opt.min_distinctness,
            outlier_px=opt.outlier_px,
        )
        # 3. fine
        tasks = [
            (pair, sv.index, sv.centroids, fit, str(fit.status[sv.index]), opt)
            for sv in surveys
            if not sv.blank and len(sv.centroids)
        ]
        cells = [cm for res in _run(_fine, tasks, opt.workers, progress, "fine") for cm in res]
        # 4. refit, flag disagreeing matches, dedup, split
        fit, cells = _refit(fit, cells, pair, opt)
        stained_stage = np.array(
            [
                geometry.to_stage(np.array(cm.stained_xy), pair.centres_stained[cm.field])
                for cm in cells
            ]
        ).reshape(-1, 2)
        notes += _same_slide_check(fit.status, cells, opt, pair, force)
        keep = _dedup(cells, stained_stage, pair, opt.dedup_um)
        n_dup = len(cells) - len(keep)
        cells = [cells[k] for k in keep]
        stained_stage = stained_stage[keep]
        unstained_stage = np.array(
            [
                geometry.to_stage(np.array(cm.unstained_xy), pair.centres_unstained[cm.field])
                for cm in cells
            ]
        ).reshape(-1, 2)
        # 5. extract
        by_field: dict[int, list[int]] = {}
        for k, cm in enumerate(cells):
            by_field.setdefault(cm.field, []).append(k)
        kinds = np.asarray(channels["kind"])
        ch_pairs = channel_pairs(channels)
        bgs = {sv.index: (sv.background_unstained, sv.background_stained) for sv in surveys}
        spill_dir = spill_folder(out)
        try:
            tasks = [
                (pair, f, [cells[k] for k in ks], *bgs[f], opt, spill_dir, kinds, ch_pairs)
                for f, ks in sorted(by_field.items())
            ]
            crops = list(_run(_extract, tasks, opt.workers, progress, "extract"))
            # 6. PLS misalignment over all fields, then write
            n_misaligned = _flag_misaligned(crops, channels, ch_pairs, opt)
            _flag_slide_outliers(crops, opt)
            for fc in crops:
                for k, fl in zip(by_field[fc.index], fc.flags, strict=True):
                    cells[k].flags = fl
            # the split once every flag is known: each split gets unflagged cells
            split = default_split(
                unstained_stage[:, 0],
                unstained_stage[:, 1],
                [pair.slide] * len(cells),
                crop_um=opt.crop_size * pair.pixel_size_um,
                block_um=opt.block_um,
                fractions=opt.fractions,
                seed=opt.seed,
                by="blocks",
                usable=[not cm.flags for cm in cells],
            )
            provenance = {
                "unstained": {"path": pair.unstained, "sha256_index": hashes["unstained"]},
                "stained": {"path": pair.stained, "sha256_index": hashes["stained"]},
                "options": asdict(opt),
                "slide_transform": {
                    "theta_deg": fit.transform.theta_deg,
                    "tx_um": fit.transform.tx,
                    "ty_um": fit.transform.ty,
                    "matrix": fit.transform.matrix.tolist(),
                    "rms_px": fit.rms_px,
                    "meaning": "stained-pass stage µm -> unstained-pass stage µm",
                },
                "field_status": [str(x) for x in fit.status],
                "software_version": software_version,
                "simulated": simulated,
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = DatasetWriter(
                out,
                channels=channels,
                crop_size=opt.crop_size,
                profile=profile_json or None,
                provenance=provenance,
                compression=opt.compression,
                software_version=software_version,
                written_by="scope match",
            )
            csv_path = cells_csv_path(out)
            order = _order(by_field, crops)
            # ids: the row index in this dataset; the CSV is renamed into place only after
            # the dataset commits, and removed if anything fails
            tmp_csv = write_cells_csv(
                csv_path.with_name(csv_path.name + f".tmp{os.getpid()}"),
                pair.slide,
                stained_stage[order, 0],
                stained_stage[order, 1],
                (str(k) for k in range(len(cells))),
            )
            types = _truth_types(pair, stained_stage) if simulated else None
            try:
                with writer:
                    if progress:
                        progress("write", 0, len(crops))
                    for n_done, fc in enumerate(crops, start=1):
                        with np.load(fc.spill) as data:
                            rows = [
                                _row(pair, cells[k], geometry, split[k], surveys)
                                for k in by_field[fc.index]
                            ]
                            if types is not None:
                                for row, k in zip(rows, by_field[fc.index], strict=True):
                                    row["type"] = types[k]
                            writer.add(data["inputs"], data["targets"], rows)
                        if progress:
                            progress("write", n_done, len(crops))
                os.replace(tmp_csv, csv_path)
            finally:
                tmp_csv.unlink(missing_ok=True)
        finally:
            shutil.rmtree(spill_dir, ignore_errors=True)
    finally:
        _close_cached()
    ordered = [cells[k] for k in order]
    counts: dict[str, int] = {}
    for cm in ordered:
        for f in cm.flags:
            counts[f] = counts.get(f, 0) + 1
    n_moved = sum(cm.from_neighbours for cm in ordered)
    if n_moved:
        notes.append(
            f"{n_moved} cells lay (partly) in a neighbouring unstained field after the slide "
            "moved; their inputs were cut from there"
        )
    ssims = [cm.ssim for cm in ordered if math.isfinite(cm.ssim)]
    status_counts = {k: int((fit.status == k).sum()) for k in ("inlier", "outlier", "weak")}
    return MatchSummary(
        dataset=out,
        cells_csv=csv_path,
        slide=pair.slide,
        n_fields=pair.n_fields,
        n_blank=len(blank),
        field_status=status_counts,
        n_detected=n_detected,
        n_duplicates=n_dup,
        n_cells=len(cells),
        flag_counts=counts,
        median_ssim=float(np.median(ssims)) if ssims else float("nan"),
        transform=fit.transform,
        fit_rms_px=fit.rms_px,
        misaligned_channels=n_misaligned,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def _truth_types(pair: ScanPair, stained_stage: np.ndarray) -> np.ndarray | None:
    """The simulator's WBC type of each matched cell (None when the scan has no truth)."""
    from registration.truth import truth_types

    try:
        return truth_types(
            {pair.slide: pair.stained},
            np.full(len(stained_stage), pair.slide),
            stained_stage[:, 0],
            stained_stage[:, 1],
        )
    except RegistrationError:
        return None


#: Fewer matched cells than this are too thin evidence to refuse a slide pair.
MIN_CELLS_FOR_SLIDE_CHECK = 5
#: Below this median SSIM (or --min-ssim, if higher) a pair whose fields mostly do not fit one
#: slide transform is taken for two slides. The fine search maximises SSIM, so even cells of
#: another slide reach about 0.28 (measured: a 4x4 simulated pair of two slides); true pairs
#: of the simulator reach 0.6.
SAME_SLIDE_MIN_SSIM = 0.4


def _same_slide_check(
    status: np.ndarray, cells: list[CellMatch], opt: MatchOptions, pair: ScanPair, force: bool
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


def _order(by_field: dict[int, list[int]], crops: list[FieldCrops]) -> list[int]:
    return [k for fc in crops for k in by_field[fc.index]]


def _refit(
    fit: SlideFit, cells: list[CellMatch], pair: ScanPair, opt: MatchOptions
) -> tuple[SlideFit, list[CellMatch]]:
    """The slide transform from the fine matches; flag matches that disagree with it."""
    g = pair.geometry
    good = [
        k
        for k, cm in enumerate(cells)
        if not cm.flags & {"near_edge", "low_ssim", "coarse_outlier"}
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
            cells[k].flags.add("low_ssim")
    return refit, cells


def _flag_misaligned(
    crops: list[FieldCrops], channels: np.ndarray, ch_pairs: np.ndarray, opt: MatchOptions
) -> int:
    from registration.qc import misaligned_channels, misaligned_pairs, same_direction_pairs

    if not crops:
        return 0
    offsets = np.stack([fc.offsets for fc in crops])
    scores = np.stack([fc.scores for fc in crops])
    tolerance = np.where(
        np.asarray(channels["kind"]) == "darkfield",
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
                f.add("pls_misaligned")
    return int(bad.sum())


def _flag_slide_outliers(crops: list[FieldCrops], opt: MatchOptions) -> None:
    """Slide-level one-pass checks: artifacts taken for cells, precipitate on cells."""
    from registration.qc import blue_speck_cells, ghost_cells

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
            f.add("target_only_color")


def _row(
    pair: ScanPair, cm: CellMatch, g: FieldGeometry, split: str, surveys: list[FieldSurvey]
) -> dict[str, Any]:
    su = g.to_stage(np.array(cm.unstained_xy), pair.centres_unstained[cm.field])
    ss = g.to_stage(np.array(cm.stained_xy), pair.centres_stained[cm.field])
    coarse = surveys[cm.field].coarse
    return {
        "slide": pair.slide,
        "position": cm.field,
        "x_px": cm.unstained_xy[0],
        "y_px": cm.unstained_xy[1],
        "stained_x_px": cm.stained_xy[0],
        "stained_y_px": cm.stained_xy[1],
        "x_um": su[0],
        "y_um": su[1],
        "stained_x_um": ss[0],
        "stained_y_um": ss[1],
        "coarse_score": coarse.score if coarse is not None else float("nan"),
        "ssim": cm.ssim,
        "has_highres": False,
        "highres_score": float("nan"),
        "highres_scale": float("nan"),
        "qc_flags": join_flags(cm.flags),
        "split": split,
    }
