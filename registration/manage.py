"""``scope dataset {info, merge, split}``: describe, combine and re-split dataset files.

Every writer goes through :class:`registration.dataset.DatasetWriter` (temporary file renamed
at the end), so a failed merge or split leaves the existing files untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardware_profiles.errors import ScopeError
from registration.qc import FLAG_ORDER
from registration.splits import (
    DEFAULT_BLOCK_UM,
    DEFAULT_FRACTIONS,
    SPLITS,
    default_split,
    split_mode,
)


class DatasetOperationError(ScopeError):
    """Datasets cannot be merged or re-split as asked."""


def _flags(cells: np.ndarray) -> list[set[str]]:
    return [{f for f in str(s).split(",") if f} for s in cells["qc_flags"]]


class DatasetDescription(dict):
    """A dict (JSON-friendly) that rich prints as tables (:func:`render_description`)."""

    def __rich__(self) -> Any:
        return render_description(self)


def describe_dataset(path: str | Path) -> DatasetDescription:
    """What a dataset file holds: a JSON-friendly dict that rich prints as tables.

    Keys: ``path``, ``n_cells``, ``crop_size``, ``n_channels``, ``channels`` (names),
    ``input_shape``, ``slides`` (slide → cells), ``splits`` (split → cells), ``splits_clean``
    (unflagged cells per split), ``flags`` (flag → cells), ``n_flagged``, ``n_clean``,
    ``n_highres``, ``median_ssim``, ``median_highres_scale``, ``slide_transform``,
    ``software_version``.
    """
    from registration.dataset import Dataset

    with Dataset(path) as ds:
        cells = ds.cells
        flags = _flags(cells)
        counts = dict.fromkeys(FLAG_ORDER, 0)
        for fl in flags:
            for f in fl:
                counts[f] = counts.get(f, 0) + 1
        clean = np.array([not f for f in flags], dtype=bool)
        slides, n_per = np.unique(cells["slide"], return_counts=True)
        ssim = cells["ssim"][np.isfinite(cells["ssim"])]
        scale = cells["highres_scale"][cells["has_highres"] & np.isfinite(cells["highres_scale"])]
        prov = ds.provenance
        return DatasetDescription(
            {
                "path": str(ds.path),
                "n_cells": len(cells),
                "crop_size": ds.crop_size,
                "n_channels": len(ds.channels),
                "channels": [str(n) for n in ds.channels["name"]],
                "input_shape": list(ds.inputs.shape),
                "input_dtype": str(ds.inputs.dtype),
                "targets": [str(n) for n in ds.target_channels["name"]],
                "target_dtype": str(ds.targets.dtype),
                "slides": {str(s): int(n) for s, n in zip(slides, n_per, strict=True)},
                "splits": {s: int((cells["split"] == s).sum()) for s in SPLITS},
                "splits_clean": {s: int(((cells["split"] == s) & clean).sum()) for s in SPLITS},
                "flags": counts,
                "n_flagged": int((~clean).sum()),
                "n_clean": int(clean.sum()),
                "n_highres": int(cells["has_highres"].sum()),
                "median_ssim": float(np.median(ssim)) if len(ssim) else float("nan"),
                "median_highres_scale": float(np.median(scale)) if len(scale) else float("nan"),
                "slide_transform": prov.get("slide_transform"),
                "software_version": str(ds.attrs.get("software_version", "")),
            }
        )


def render_description(info: dict[str, Any]) -> Any:
    """A rich renderable (tables) of :func:`describe_dataset`'s dict."""
    from rich.console import Group
    from rich.table import Table

    head = Table(title=f"dataset {info['path']}", show_header=False)
    head.add_column("", style="bold")
    head.add_column("")
    head.add_row(
        "cells",
        f"{info['n_cells']} ({info['n_clean']} clean, "
        f"{info['n_flagged']} flagged, {info['n_highres']} with 100x)",
    )
    head.add_row(
        "inputs",
        " x ".join(str(x) for x in info["input_shape"]) + " " + info.get("input_dtype", "uint8"),
    )
    if "targets" in info:
        head.add_row("targets", ", ".join(info["targets"]) + " " + info["target_dtype"])
    head.add_row(
        "channels",
        f"{info['n_channels']}: "
        + ", ".join(info["channels"][:6])
        + (" ..." if info["n_channels"] > 6 else ""),
    )
    head.add_row("slides", ", ".join(f"{s} ({n})" for s, n in info["slides"].items()))
    head.add_row(
        "splits",
        ", ".join(f"{s} {info['splits'][s]} ({info['splits_clean'][s]} clean)" for s in SPLITS),
    )
    head.add_row("median SSIM", f"{info['median_ssim']:.3f}")
    if info["n_highres"]:
        head.add_row("100x scale", f"{info['median_highres_scale']:.4f}")
    t = info.get("slide_transform")
    if t:
        head.add_row(
            "slide moved",
            f"{t['theta_deg']:+.4f}°, ({t['tx_um']:+.2f}, "
            f"{t['ty_um']:+.2f}) µm (fit rms {t['rms_px']:.2f} px)",
        )
    flags = Table(title="QC flags (cells; a cell may carry several)")
    flags.add_column("flag")
    flags.add_column("cells", justify="right")
    for f, n in info["flags"].items():
        flags.add_row(f, str(n))
    return Group(head, flags)


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


def _copy(
    sources: Sequence[Path],
    out: Path,
    cells: np.ndarray,
    *,
    provenance: dict[str, Any],
    software_version: str,
    written_by: str,
    batch: int = 64,
) -> None:
    """Stream the image arrays of ``sources`` (in order) into ``out`` with new ``cells``."""
    from registration.dataset import Dataset, DatasetWriter, cell_rows

    rows = cell_rows(cells)
    opened = [Dataset(p) for p in sources]
    try:
        first = opened[0]
        writer = DatasetWriter(
            out,
            channels=first.channels,
            crop_size=first.crop_size,
            profile=first.attrs.get("profile") or None,
            provenance=provenance,
            software_version=software_version,
            written_by=written_by,
            **first.layout(),
        )
        with writer:
            start = 0
            for ds in opened:
                n = len(ds)
                for a in range(0, n, batch):
                    b = min(a + batch, n)
                    writer.add(
                        ds.inputs[a:b],
                        ds.targets[a:b],
                        rows[start + a : start + b],
                        targets_highres=ds.targets_highres[a:b],
                    )
                start += n
            for ds in opened:
                ds.close()
    finally:
        for ds in opened:
            ds.close()


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
    _copy(
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
    _copy(
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


def _grey_tiles(image: np.ndarray) -> list[np.ndarray]:
    """``(h, w, c)`` of any dtype → ``c`` grey ``(h, w, 3) uint8`` tiles, each by its own max."""
    out = []
    for ch in np.moveaxis(np.asarray(image, np.float64), -1, 0):
        top = max(float(ch.max()), 1.0)
        grey = np.round(ch / top * 255.0).astype(np.uint8)
        out.append(np.repeat(grey[..., None], 3, axis=-1))
    return out


def preview_grid(
    path: str | Path,
    out: str | Path,
    *,
    n: int = 24,
    seed: int = 0,
    include_flagged: bool = True,
) -> Path:
    """Save a PNG grid: per cell, input brightfield | stained target | 100x target.

    A red frame marks flagged cells, with the first flag written under it. ``n`` cells are
    drawn at random (seeded), flagged ones included unless ``include_flagged`` is false.
    """
    import cv2

    from registration.dataset import Dataset

    with Dataset(path) as ds:
        cells = ds.cells
        if len(cells) == 0:
            raise DatasetOperationError(f"{path} holds no cells to show")
        flags = _flags(cells)
        pool = np.arange(len(cells)) if include_flagged else np.flatnonzero([not f for f in flags])
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
        bf = int(np.flatnonzero(ds.channels["kind"] == "brightfield")[0])
        c = ds.crop_size
        scale = max(1, 96 // c)
        tiles = []
        rgb = ds.rgb_stain_target and ds.input_components == 3
        for k in pick:
            if rgb:
                row = [
                    ds.inputs[k, bf],
                    ds.targets[k],
                    ds.targets_highres[k]
                    if cells["has_highres"][k]
                    else np.full((c, c, 3), 40, np.uint8),
                ]
            else:  # mono inputs or k target channels: one grey tile per channel
                row = _grey_tiles(ds.inputs[k, bf]) + _grey_tiles(ds.targets[k])
            tile = np.concatenate(
                [np.pad(r, ((1, 1), (1, 1), (0, 0)), constant_values=255) for r in row], axis=1
            )
            tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            label = np.full((14, tile.shape[1], 3), 255, np.uint8)
            text = f"#{k} " + (sorted(flags[k])[0] if flags[k] else f"ssim {cells['ssim'][k]:.2f}")
            cv2.putText(
                label,
                text,
                (2, 11),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (200, 0, 0) if flags[k] else (0, 0, 0),
                1,
            )
            tile = np.concatenate([tile, label], axis=0)
            if flags[k]:
                cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), (220, 0, 0), 2)
            tiles.append(np.pad(tile, ((3, 3), (3, 3), (0, 0)), constant_values=255))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate(
        [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)], axis=0
    )
    from acquisition.files import check_target, guard_output, write_image

    out = guard_output(out, option="--grid")
    check_target(out, "image", command="scope dataset info", option="--grid")
    return write_image(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def description_json(path: str | Path) -> str:
    return json.dumps(describe_dataset(path), indent=2, default=float)
