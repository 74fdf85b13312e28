"""``scope match --highres``: 100x targets added to the cells of a dataset.

:func:`add_highres` finds the dataset's cells that a highres scan imaged, matches each 100x
frame on its 20x stained field (:func:`registration.highres.match_highres`, twice: once to
measure the slide's magnification ratio, once at that ratio to cut the targets) and rewrites
the dataset with them (:func:`rewrite_dataset`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from acquisition.progress import Progress, or_null
from acquisition.vocabulary import Pass
from registration.highres import (
    HighresError,
    HighresMatch,
    HighresOptions,
    match_highres,
    resample_target,
)
from registration.parallel import run_tasks
from registration.scans import ScanCache, brightfield_centres, sha256_file


@dataclass
class HighresSummary:
    """What :func:`add_highres` did."""

    dataset: Path
    n_cells: int  # cells of the slide in the dataset
    n_imaged: int  # of them, imaged by the highres scan
    n_matched: int  # with a usable 100x target
    ratio: float  # magnification ratio used (median of the cells' measurements)
    ratio_spread: float  # robust spread (MAD·1.4826) of the per-cell ratios
    nominal_ratio: float
    median_score: float
    reasons: dict[str, int]
    seconds: float
    #: row -> (highres frame index, x, y): stained-frame pixel of each matched frame's centre
    placements: dict[int, tuple[int, float, float]] = field(default_factory=dict, repr=False)


class _Shot(NamedTuple):
    """One imaged cell: its dataset row, its 100x frame, where the frame's centre should sit
    on the stained field (px) and the top-left of the cell's 20x crop."""

    row: int
    frame: int
    expected_x: float
    expected_y: float
    crop_x: int
    crop_y: int


@dataclass(frozen=True)
class _ScanFacts:
    """What the 100x step needs of one scan, read once with the file closed again."""

    path: str
    slide: str
    pixel_size_um: float
    frame_hw: tuple[int, int]
    centres: np.ndarray  # (n, 2) stage µm of the brightfield frames

    @classmethod
    def of(cls, scan: Any) -> _ScanFacts:
        """The facts of an open :class:`acquisition.scanfile.ScanFile`."""
        centres = brightfield_centres(scan)
        return cls(
            str(scan.path.resolve()), scan.slide, scan.pixel_size_um, scan.frame_shape, centres
        )


@dataclass(frozen=True)
class _Job:
    """One stained field's imaged cells, matched at ``ratio`` (None: measure it)."""

    stained: str
    highres: str
    field: int
    items: tuple[_Shot, ...]
    pixel_size_um: float
    nominal_ratio: float
    crop_size: int
    ratio: float | None
    options: HighresOptions


def _highres_job(cache: ScanCache, job: _Job) -> list[tuple[int, HighresMatch, np.ndarray | None]]:
    stained = cache.scan(job.stained).image(job.field, cache.brightfield(job.stained))
    hr_scan = cache.scan(job.highres)
    out = []
    for shot in job.items:
        hr = hr_scan.image(shot.frame, cache.brightfield(job.highres))
        m = match_highres(
            stained,
            hr,
            (shot.expected_x, shot.expected_y),
            pixel_size_um=job.pixel_size_um,
            nominal_ratio=job.nominal_ratio,
            ratio=job.ratio,
            options=job.options,
        )
        target = None
        if job.ratio is not None and m.ok:
            target = resample_target(hr, m, (shot.crop_x, shot.crop_y), job.crop_size)
        out.append((shot.row, m, target))
    return out


def add_highres(
    dataset: str | Path,
    highres: str | Path,
    *,
    out: str | Path | None = None,
    stained: str | Path | None = None,
    options: HighresOptions | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    software_version: str = "",
    force: bool = False,
) -> HighresSummary:
    """Add 100x targets to the cells of ``dataset`` that ``highres`` imaged.

    Parameters
    ----------
    dataset
        A dataset written by ``scope match``.
    highres
        ``<slide>.highres.scan.h5``: one 100x frame per cell, taken at the positions of the
        dataset's ``cells.csv`` (stained-pass stage µm).
    out
        Where to write the result; default: replace ``dataset`` (atomically).
    stained
        The stained scan the dataset was matched from; default: the path its provenance
        records.
    options
        :class:`HighresOptions`.
    workers
        Processes matching fields' cells in parallel.
    progress
        Where the two phases report (:class:`acquisition.progress.Progress`).

    Raises
    ------
    HighresError
        For a scan of another pass or slide, an incomplete scan, a missing stained scan, or
        a scan that imaged none of the dataset's cells. Nothing is written then.
    """
    from registration.dataset import Dataset

    opt = options or HighresOptions()
    t0 = time.perf_counter()
    dataset = Path(dataset)
    out = Path(out) if out is not None else dataset
    if out.resolve() != dataset.resolve():
        from acquisition.files import check_target, guard_output

        guard_output(out)
        check_target(out, "scope-dataset", command="scope match --highres", force=force)
    with Dataset(dataset) as ds:
        cells = ds.cells.copy()
        provenance = ds.provenance
        crop = ds.crop_size
    hr = _highres_facts(highres)
    hr_hash = sha256_file(hr.path)
    slide = hr.slide
    rows = np.flatnonzero(cells["slide"] == slide)
    if len(rows) == 0:
        raise HighresError(
            f"the highres scan is of slide {slide!r}; the dataset holds slides "
            f"{sorted(set(cells['slide']))}"
        )
    st = _stained_facts(stained, provenance, dataset, slide)
    p20 = st.pixel_size_um
    nominal = p20 / hr.pixel_size_um
    by_field, n_imaged = _shots_by_field(cells, rows, hr, st, crop)
    if not n_imaged:
        raise HighresError(
            f"{highres} imaged none of the dataset's {len(rows)} cells of slide {slide!r} "
            "(positions differ by more than 1 µm): was it scanned from this dataset's cells.csv?"
        )
    st_path, hr_path = st.path, hr.path

    def jobs(ratio: float | None) -> list[_Job]:
        return [
            _Job(st_path, hr_path, f, tuple(items), p20, nominal, crop, ratio, opt)
            for f, items in sorted(by_field.items())
        ]

    with ScanCache() as cache:
        run = partial(run_tasks, cache=cache, workers=workers, progress=or_null(progress))
        measured = [r for res in run(_highres_job, jobs(None), phase="scale") for r in res]
        ratios = np.array(
            [m.measured_ratio for _, m, _ in measured if m.ok and math.isfinite(m.measured_ratio)]
        )
        ratio = float(np.median(ratios)) if len(ratios) else nominal
        spread = float(1.4826 * np.median(np.abs(ratios - ratio))) if len(ratios) else float("nan")
        per_cell = {row: m.measured_ratio for row, m, _ in measured}
        final = [r for res in run(_highres_job, jobs(ratio), phase="targets") for r in res]
    hr_index = {shot.row: shot.frame for shots in by_field.values() for shot in shots}
    new_cells, targets, scores, reasons, placements = _results(cells, final, per_cell, hr_index)
    provenance = dict(provenance)
    provenance[Pass.HIGHRES] = {
        "path": hr_path,
        "sha256_index": hr_hash,
        Pass.STAINED: st_path,
        "ratio": ratio,
        "ratio_spread": spread,
        "nominal_ratio": nominal,
        "options": opt.model_dump(),
        "software_version": software_version,
    }
    from acquisition.files import WriteLock

    with WriteLock(out):
        rewrite_dataset(dataset, out, new_cells, targets, provenance, software_version)
    good = [scores[r] for r in targets]
    return HighresSummary(
        dataset=out,
        n_cells=len(rows),
        n_imaged=n_imaged,
        n_matched=len(targets),
        ratio=ratio,
        ratio_spread=spread,
        nominal_ratio=nominal,
        median_score=float(np.median(good)) if good else float("nan"),
        reasons=reasons,
        seconds=time.perf_counter() - t0,
        placements=placements,
    )


def _results(
    cells: np.ndarray,
    final: list[tuple[int, HighresMatch, np.ndarray | None]],
    per_cell: dict[int, float],
    hr_index: dict[int, int],
) -> tuple[np.ndarray, dict, dict, dict[str, int], dict]:
    """The cells table with the 100x columns filled in, and what the summary reports:
    ``(cells, targets by row, scores by row, reasons for no target, placements by row)``."""
    targets: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    reasons: dict[str, int] = {}
    placements: dict[int, tuple[int, float, float]] = {}
    for row, m, target in final:
        scores[row] = m.score
        placements[row] = (hr_index[row], m.x, m.y)
        if m.ok and target is not None:
            targets[row] = target
        else:
            why = m.reason or "footprint leaves the 100x frame"
            reasons[why] = reasons.get(why, 0) + 1
    new_cells = cells.copy()
    for row in scores:
        new_cells["highres_score"][row] = scores[row]
        # the cell's own ratio only where its 100x target is used
        new_cells["highres_scale"][row] = per_cell[row] if row in targets else float("nan")
        new_cells["has_highres"][row] = row in targets
    return new_cells, targets, scores, reasons, placements


def _highres_facts(highres: str | Path) -> _ScanFacts:
    """The highres scan's facts; refuses a scan of another pass or an incomplete one."""
    from acquisition.scanfile import ScanFile

    with ScanFile(highres) as hr:
        if hr.pass_ != Pass.HIGHRES:
            raise HighresError(f"{hr.path} is a {hr.pass_!r} scan, not a highres one")
        hr.verify()
        if not hr.complete:
            raise HighresError(
                f"{hr.path} is incomplete ({len(hr.done)} of {hr.n_positions} cells imaged); "
                "finish it with `scope scan ... --resume` first"
            )
        return _ScanFacts.of(hr)


def _stained_facts(
    stained: str | Path | None, provenance: dict[str, Any], dataset: Path, slide: str
) -> _ScanFacts:
    """The stained scan's facts (``stained``, or the one the dataset's provenance records)."""
    from acquisition.scanfile import ScanFile

    if stained is None:
        stained = (provenance.get(Pass.STAINED) or {}).get("path")
        if not stained:
            raise HighresError(
                f"{dataset} does not record its stained scan (a merged dataset?); pass it "
                "with --stained"
            )
    stained = Path(stained)
    if not stained.is_file():
        raise HighresError(
            f"the stained scan {stained} is not there any more; pass its new place with --stained"
        )
    with ScanFile(stained) as st:
        if st.pass_ != Pass.STAINED or st.slide != slide:
            raise HighresError(
                f"{stained} is slide {st.slide!r} pass {st.pass_!r}; expected the stained scan "
                f"of slide {slide!r}"
            )
        return _ScanFacts.of(st)


def _shots_by_field(
    cells: np.ndarray, rows: np.ndarray, hr: _ScanFacts, st: _ScanFacts, crop: int
) -> tuple[dict[int, list[_Shot]], int]:
    """The imaged cells of ``rows`` grouped by stained field, and how many there are.

    Each highres frame was taken at one cell's stained-pass stage position: a cell is imaged
    when a frame's centre lies within 1 µm of it.
    """
    from scipy.spatial import cKDTree

    from registration.fine import crop_origin

    cell_xy = np.stack([cells["stained_x_um"][rows], cells["stained_y_um"][rows]], axis=1)
    dist, nearest = cKDTree(hr.centres).query(cell_xy, k=1)
    imaged = dist <= 1.0
    h20, w20 = st.frame_hw
    by_field: dict[int, list[_Shot]] = {}
    for k, j, ok in zip(rows, nearest, imaged, strict=True):
        if not ok:
            continue
        f = int(cells["position"][k])
        ex, ey = (hr.centres[j] - st.centres[f]) / st.pixel_size_um + [(w20 - 1) / 2, (h20 - 1) / 2]
        ox, oy = crop_origin(float(cells["stained_x_px"][k]), float(cells["stained_y_px"][k]), crop)
        by_field.setdefault(f, []).append(_Shot(int(k), int(j), float(ex), float(ey), ox, oy))
    return by_field, int(imaged.sum())


def rewrite_dataset(
    src: Path,
    out: Path,
    cells: np.ndarray,
    highres_targets: dict[int, np.ndarray],
    provenance: dict[str, Any],
    software_version: str,
) -> None:
    """Copy ``src`` to ``out`` (temporary file + rename, in ``src``'s layout) with new cells
    and 100x targets."""
    from registration.dataset import Dataset
    from registration.dataset_copy import copy_with_cells

    if not software_version:
        with Dataset(src) as ds:
            software_version = str(ds.attrs.get("software_version", ""))
    copy_with_cells(
        [src],
        out,
        cells,
        provenance=provenance,
        software_version=software_version,
        written_by="scope match --highres",
        highres_targets=highres_targets,
    )
