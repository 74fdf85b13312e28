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
   disagree are flagged ``fine_residual``; cells seen in two overlapping fields are kept
   once; the default split is assigned by spatial blocks (:mod:`registration.splits`);
5. **extract** — per field: the full unstained stack is read once; each channel's offset to
   the brightfield image is measured; the PLS crops, the stained crops and the crop QC
   (:mod:`registration.qc`) are computed and spilled to a temporary folder;
6. **write** — PLS misalignment is decided over all fields, then the dataset is written
   through :class:`registration.dataset.DatasetWriter` (a temporary file renamed at the end)
   and ``NAME.cells.csv`` beside it. Any error leaves no output behind.

Each phase lives in its own module (:mod:`registration.survey`, :mod:`registration.cell_match`,
:mod:`registration.slide_qc`, :mod:`registration.crops`) and runs over the fields through
:func:`registration.parallel.run_tasks`; this module holds the options and the phases' order.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.progress import Progress, or_null
from acquisition.vocabulary import Pass
from registration.cell_match import CellMatch, FineJob, match_field_cells, stage_xy
from registration.cells_csv import cells_csv_path, write_cells_csv
from registration.crops import ExtractJob, extract_field
from registration.detection_report import detection_warnings, per_field_line
from registration.match_options import MatchOptions
from registration.match_output import MatchOutput, write_dataset
from registration.neighbour_pairs import channel_pairs
from registration.parallel import run_tasks
from registration.rigid import RigidTransform
from registration.scan_pair import MatchError, ScanPair, open_pair
from registration.scans import ScanCache, sha256_file
from registration.segment import for_slide, slide_stain_of
from registration.slide_fit import SlideFit, fit_slide_transform
from registration.slide_qc import (
    dedup_cells,
    flag_misaligned,
    flag_slide_outliers,
    refit_cells,
    same_slide_check,
)
from registration.survey import FieldSurvey, SurveyJob, survey_field

__all__ = [
    "CellMatch",
    "MatchError",
    "MatchOptions",
    "MatchSummary",
    "ScanPair",
    "cells_csv_path",
    "match_scans",
    "open_pair",
    "write_cells_csv",
]


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
        Where the phases report (:class:`acquisition.progress.Progress`; one bar per phase).

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
            return _match_scans(
                unstained, stained, out, opt, or_null(progress), software_version, force
            )
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
    progress: Progress,
    software_version: str,
    force: bool,
) -> MatchSummary:
    t0 = time.perf_counter()
    pair, u, s = open_pair(unstained, stained)
    try:
        channels = u.channels.copy()
        profile_json = str(u.attrs.get("profile", ""))
        simulated = bool(u.simulated or s.simulated)  # carried into the dataset's provenance
        hashes = {Pass.UNSTAINED: sha256_file(u.path), Pass.STAINED: sha256_file(s.path)}
    finally:
        u.close()
        s.close()
    with ScanCache() as cache:
        run = partial(run_tasks, cache=cache, workers=opt.workers, progress=progress)
        # 0. the slide's stain, from up to 12 stained fields: every field then uses the same
        # colour boxes (registration.segment.for_slide)
        picks = np.unique(np.linspace(0, pair.n_fields - 1, min(pair.n_fields, 12)).round())
        stain = slide_stain_of(
            (cache.scan(pair.stained).image(int(i), pair.bf_stained) for i in picks),
            pixel_size_um=pair.pixel_size_um,
            params=opt.wbc,
        )
        opt = opt.model_copy(update={"wbc": for_slide(opt.wbc, stain)})
        # 1. survey
        jobs = [SurveyJob(pair, i, opt.margin_um, opt.wbc) for i in range(pair.n_fields)]
        surveys = list(run(survey_field, jobs, phase="survey"))
        n_blank, notes = _check_surveys(surveys, pair, opt, stain)
        # 2. fit
        fit = fit_slide_transform(
            [sv.coarse for sv in surveys],
            pair.geometry,
            min_score=opt.min_coarse_score,
            min_distinctness=opt.min_distinctness,
            outlier_px=opt.outlier_px,
        )
        # 3. fine
        jobs = [
            FineJob(
                pair,
                sv.index,
                sv.centroids,
                fit,
                str(fit.status[sv.index]),
                opt.crop_size,
                opt.search_px,
                opt.qc.min_ssim,
            )
            for sv in surveys
            if not sv.blank and len(sv.centroids)
        ]
        cells = [cm for res in run(match_field_cells, jobs, phase="fine") for cm in res]
        # 4. refit, flag disagreeing matches, dedup
        fit, cells = refit_cells(fit, cells, pair, opt)
        notes += same_slide_check(fit.status, cells, opt, pair, force)
        stained_stage = stage_xy(pair, cells, stained=True)
        n_found = len(cells)
        keep = dedup_cells(cells, stained_stage, pair, opt.dedup_um)
        cells, stained_stage = [cells[k] for k in keep], stained_stage[keep]
        # 5. extract, 6. slide-level flags, the split and the write
        order, n_misaligned = _extract_and_write(
            run,
            progress,
            pair,
            cells,
            stained_stage,
            surveys,
            MatchOutput(out, channels, profile_json, simulated, hashes, software_version),
            fit,
            opt,
        )
    ordered = [cells[k] for k in order]
    return _summary(pair, out, ordered, surveys, fit, (n_blank, n_found, n_misaligned), notes, t0)


def _check_surveys(
    surveys: list[FieldSurvey], pair: ScanPair, opt: MatchOptions, stain: Any
) -> tuple[int, list[str]]:
    """Refuse blank fields (unless ``--skip-blank``) and slides without cells.

    Returns ``(number of blank fields, notes on the detections)``.
    """
    blank = [sv for sv in surveys if sv.blank]
    if blank and not opt.skip_blank:
        sv = blank[0]
        which = pair.unstained if Pass.UNSTAINED in sv.blank else pair.stained
        raise MatchError(
            f"field {sv.index} of {Path(which).name} is blank (a uniform image): rescan "
            f"it, or pass --skip-blank to match the other fields ({len(blank)} blank)"
        )
    if len(blank) == pair.n_fields:
        raise MatchError("every field is blank; nothing to match")
    counts = [len(sv.centroids) for sv in surveys if not sv.blank]
    if sum(counts) == 0:
        raise MatchError(
            f"no white blood cells found in the {pair.n_fields} fields of "
            f"{Path(pair.stained).name}: check the staining, or try the segmentation on "
            "one frame with `scope segment IMAGE --pixel-size-um P --overlay OUT.png`"
        )
    return len(blank), [per_field_line(counts), *detection_warnings(counts, stain)]


def _extract_and_write(
    run: Callable,
    progress: Progress,
    pair: ScanPair,
    cells: list[CellMatch],
    stained_stage: np.ndarray,
    surveys: list[FieldSurvey],
    output: MatchOutput,
    fit: SlideFit,
    opt: MatchOptions,
) -> tuple[list[int], int]:
    """Cut every field's crops, flag them slide-wide, write the dataset and the cells CSV.

    Sets each cell's final flags; returns the dataset's row order (indices into ``cells``)
    and the number of misaligned channel images.
    """
    from acquisition.files import spill_folder

    by_field: dict[int, list[int]] = {}
    for k, cm in enumerate(cells):
        by_field.setdefault(cm.field, []).append(k)
    channels = output.channels
    kinds = np.asarray(channels["kind"])
    ch_pairs = channel_pairs(channels)
    spill_dir = spill_folder(output.path)
    try:
        jobs = [
            ExtractJob(
                pair,
                f,
                [cells[k] for k in ks],
                surveys[f].background_unstained,
                surveys[f].background_stained,
                opt.crop_size,
                opt.wbc,
                opt.qc,
                spill_dir,
                kinds,
                ch_pairs,
            )
            for f, ks in sorted(by_field.items())
        ]
        crops = list(run(extract_field, jobs, phase="extract"))
        # 6. PLS misalignment and the one-pass checks over all fields, then write
        n_misaligned = flag_misaligned(crops, channels, ch_pairs, opt)
        flag_slide_outliers(crops, opt)
        for fc in crops:
            for k, fl in zip(by_field[fc.index], fc.flags, strict=True):
                cells[k].flags = fl
        order = [k for fc in crops for k in by_field[fc.index]]
        write_dataset(
            progress, pair, cells, stained_stage, surveys, crops, by_field, order, output, fit, opt
        )
        return order, n_misaligned
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def _summary(
    pair: ScanPair,
    out: Path,
    ordered: list[CellMatch],
    surveys: list[FieldSurvey],
    fit: SlideFit,
    counted: tuple[int, int, int],
    notes: list[str],
    t0: float,
) -> MatchSummary:
    n_blank, n_found, n_misaligned = counted  # blank fields, cells before dedup, misaligned
    counts: dict[str, int] = {}
    for cm in ordered:
        for f in cm.flags:
            counts[str(f)] = counts.get(str(f), 0) + 1
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
        cells_csv=cells_csv_path(out),
        slide=pair.slide,
        n_fields=pair.n_fields,
        n_blank=n_blank,
        field_status=status_counts,
        n_detected=int(sum(len(sv.centroids) for sv in surveys)),
        n_duplicates=n_found - len(ordered),
        n_cells=len(ordered),
        flag_counts=counts,
        median_ssim=float(np.median(ssims)) if ssims else float("nan"),
        transform=fit.transform,
        fit_rms_px=fit.rms_px,
        misaligned_channels=n_misaligned,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )
