"""``scope dataset {merge, split}``: combine dataset files and assign splits afresh.

Both write through :func:`registration.dataset_copy.copy_with_cells` (a temporary file renamed
at the end, in the source's layout), so a failed merge or split leaves the existing files
untouched. ``scope dataset info`` is :mod:`registration.dataset_info`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.vocabulary import SPLITS
from hardware_profiles.errors import ScopeError
from registration.dataset_copy import copy_with_cells
from registration.splits import (
    DEFAULT_BLOCK_UM,
    DEFAULT_FRACTIONS,
    default_split,
    split_mode,
)


class DatasetOperationError(ScopeError):
    """Datasets cannot be merged or re-split as asked."""


def _check_same_channels(
    paths: Sequence[Path], tables: Sequence[np.ndarray], crops: Sequence[int]
) -> None:
    ref = [str(n) for n in tables[0]["name"]]
    for p, t, c in zip(paths[1:], tables[1:], crops[1:], strict=True):
        names = [str(n) for n in t["name"]]
        if names != ref:
            missing = [n for n in ref if n not in names]
            extra = [n for n in names if n not in ref]
            what = (
                f"lacks {missing[:4]}{'...' if len(missing) > 4 else ''}"
                if missing
                else f"has extra {extra[:4]}"
                if extra
                else "orders them differently"
            )
            raise DatasetOperationError(
                f"{p} does not have the channels of {paths[0]}: it {what} "
                f"({len(names)} vs {len(ref)} channels); merge datasets of the same stack"
            )
        if c != crops[0]:
            raise DatasetOperationError(
                f"{p} has {c}x{c} crops, {paths[0]} {crops[0]}x{crops[0]}; merge datasets of "
                "one crop size"
            )


@dataclass
class SplitSummary:
    path: Path
    by: str
    counts: dict[str, int]
    n_slides: int


def _split_for(
    cells: np.ndarray,
    crop_um: float,
    *,
    fractions: Sequence[float],
    seed: int,
    by: str,
    block_um: float,
) -> tuple[np.ndarray, str]:
    mode = split_mode(cells["slide"], by)
    usable = np.array([not str(f).strip() for f in cells["qc_flags"]], bool)
    split = default_split(
        cells["x_um"],
        cells["y_um"],
        cells["slide"],
        crop_um=crop_um,
        block_um=block_um,
        fractions=fractions,
        seed=seed,
        by=mode,
        usable=usable,
    )
    return split, mode


def merge_datasets(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    by: str = "auto",
    block_um: float = DEFAULT_BLOCK_UM,
    software_version: str = "",
    force: bool = False,
) -> SplitSummary:
    """Concatenate datasets (same channels and crop size) and assign splits afresh.

    With ≥ 5 slides the split is by slide (``by="auto"``), else by spatial blocks. An
    existing ``out`` is replaced only when it is a dataset this command wrote (or ``force``).
    """
    from acquisition.files import WriteLock, check_target, guard_output

    paths = [Path(p) for p in paths]
    out = Path(out)
    if len(paths) < 1:
        raise DatasetOperationError("give at least one dataset to merge")
    if out.resolve() in [p.resolve() for p in paths if p.exists()]:
        raise DatasetOperationError(f"--out {out} is one of the inputs; choose a new file")
    guard_output(out)
    check_target(out, "scope-dataset", command="scope dataset merge", force=force)
    with WriteLock(out):
        return _merge(paths, out, fractions, seed, by, block_um, software_version)


def _merge(paths, out, fractions, seed, by, block_um, software_version) -> SplitSummary:
    from registration.dataset import Dataset, empty_cells

    tables, crops, cells_list, provs, pixel = [], [], [], [], []
    for p in paths:
        with Dataset(p) as ds:
            tables.append(ds.channels)
            crops.append(ds.crop_size)
            cells_list.append(ds.cells)
            provs.append({"path": str(p.resolve()), **ds.provenance})
            pixel.append(_pixel_size(ds))
    _check_same_channels(paths, tables, crops)
    if any("type" in (c.dtype.names or ()) for c in cells_list):
        from registration.labels import with_type_column

        cells_list = [with_type_column(c) for c in cells_list]
    cells = np.concatenate(cells_list) if cells_list else empty_cells()
    dup = _duplicate_slides(paths, cells_list)
    if dup:
        raise DatasetOperationError(dup)
    crop_um = crops[0] * (pixel[0] or 0.293)
    split, mode = _split_for(
        cells, crop_um, fractions=fractions, seed=seed, by=by, block_um=block_um
    )
    cells = cells.copy()
    cells["split"] = split if len(split) else cells["split"]
    provenance = {
        "merged_from": provs,
        "split": {"by": mode, "fractions": list(fractions), "seed": seed, "block_um": block_um},
    }
    copy_with_cells(
        paths,
        out,
        cells,
        provenance=provenance,
        software_version=software_version,
        written_by="scope dataset merge",
    )
    return SplitSummary(
        out, mode, {s: int((cells["split"] == s).sum()) for s in SPLITS}, len(set(cells["slide"]))
    )


def written_by_of(path: Path) -> str:
    """In-place re-splits keep the file's author; a copy is the split command's own."""
    from acquisition.files import written_by

    return written_by(path) or "scope dataset split"


def _duplicate_slides(paths: Sequence[Path], cells_list: Sequence[np.ndarray]) -> str:
    seen: dict[str, Path] = {}
    for p, cells in zip(paths, cells_list, strict=True):
        for s in {str(x) for x in cells["slide"]}:
            if s in seen:
                return (
                    f"slide {s!r} is in both {seen[s]} and {p}; merging it twice would put "
                    "the same cells in two splits"
                )
            seen[s] = p
    return ""


def _pixel_size(ds: Any) -> float | None:
    prof = ds.profile
    return prof.scan_objective.pixel_size_um if prof is not None else None


def resplit_dataset(
    path: str | Path,
    *,
    out: str | Path | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    by: str = "auto",
    block_um: float = DEFAULT_BLOCK_UM,
    software_version: str = "",
    force: bool = False,
) -> SplitSummary:
    """Assign train/val/test again (in place by default, atomically).

    With ``out``, an existing file is replaced only when it is a dataset this command
    wrote (or ``force``).
    """
    from acquisition.files import WriteLock, check_target, guard_output
    from registration.dataset import Dataset

    path = Path(path)
    out = Path(out) if out is not None else path
    Dataset(path).close()  # the input must be a dataset before anything else is checked
    if out.resolve() != path.resolve():
        guard_output(out)
        check_target(out, "scope-dataset", command="scope dataset split", force=force)
    with WriteLock(out):
        return _resplit(path, out, fractions, seed, by, block_um, software_version)


def _resplit(path, out, fractions, seed, by, block_um, software_version) -> SplitSummary:
    from registration.dataset import Dataset

    with Dataset(path) as ds:
        cells = ds.cells.copy()
        crop_um = ds.crop_size * (_pixel_size(ds) or 0.293)
        provenance = ds.provenance
        version = software_version or str(ds.attrs.get("software_version", ""))
    split, mode = _split_for(
        cells, crop_um, fractions=fractions, seed=seed, by=by, block_um=block_um
    )
    if len(cells):
        cells["split"] = split
    provenance = dict(provenance)
    provenance["split"] = {
        "by": mode,
        "fractions": list(fractions),
        "seed": seed,
        "block_um": block_um,
    }
    copy_with_cells(
        [path],
        out,
        cells,
        provenance=provenance,
        software_version=version,
        written_by=written_by_of(path)
        if out.resolve() == path.resolve()
        else "scope dataset split",
    )
    return SplitSummary(
        out, mode, {s: int((cells["split"] == s).sum()) for s in SPLITS}, len(set(cells["slide"]))
    )
