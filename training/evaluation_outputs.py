"""The files ``scope evaluate`` writes: the Table-4.2 row, per-cell CSVs and the cell grids.

:func:`training.evaluation.evaluate` computes the metrics; this module only lays them out
(``table.md``, ``cells.csv``, ``worst_100.csv``, ``best_8.png``, ``worst_8.png``,
``hallucinations_8.png``), each written atomically.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.files import atomic_output
from training.clinical import mask_overlay
from training.data import to_uint8_image
from training.morphology import compare
from training.samples import cell_grid, write_image

N_GRID = 8
N_WORST = 100
_HEADERS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "mae": "MAE", "vgg": "VGG", "fourier": "Fourier"}
#: dataset columns copied into every per-cell row
CELL_COLUMNS = (
    "slide",
    "position",
    "x_um",
    "y_um",
    "stained_x_um",
    "stained_y_um",
    "x_px",
    "y_px",
    "qc_flags",
)


def table_md(name: str, mean: dict[str, float]) -> str:
    """``| model | SSIM | PSNR (dB) | MAE | VGG | Fourier |`` with one row (n/a where absent)."""
    cols = ["ssim", "psnr", "mae", "vgg", "fourier"]
    head = "| model | " + " | ".join(_HEADERS[c] for c in cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"

    def cell(c: str) -> str:
        v = mean.get(c)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        return f"{v:.2f}" if c == "psnr" else f"{v:.4f}"

    return "\n".join([head, sep, f"| {name} | " + " | ".join(cell(c) for c in cols) + " |", ""])


def write_cells_csv(
    path: Path,
    cells: np.ndarray,
    rows: np.ndarray,
    per_cell: dict[str, np.ndarray],
    names: list[str],
    *,
    order: np.ndarray | None = None,
    extra: dict[str, list[str]] | None = None,
) -> None:
    """One row per evaluated cell (``order``: these positions ranked, with a ``rank`` column)."""
    extra = extra or {}
    idx = np.arange(len(rows)) if order is None else order
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        head = ["row", *CELL_COLUMNS, *names, *extra]
        w.writerow(["rank", *head] if order is not None else head)
        for rank, i in enumerate(idx, start=1):
            r = int(rows[i])
            values = [cells[m][r] for m in CELL_COLUMNS]
            metrics = [f"{per_cell[m][i]:.6g}" for m in names]
            prefix = [rank, r] if order is not None else [r]
            w.writerow([*prefix, *values, *metrics, *(extra[k][i] for k in extra)])


def grid_rows(spec: Any, stack: Any, pred: Any, target: Any) -> list[np.ndarray]:
    """Picture rows (reference, prediction, target; k grey pairs for k channels)."""
    from training.channels import grid_rows as rows_of

    bf, c = spec.brightfield_position, spec.input_components
    ref_scale = None if spec.input_scale is None else spec.input_scale[bf * c : (bf + 1) * c]
    return rows_of(
        stack[:, bf].cpu().numpy(),
        to_uint8_image(pred),
        target.cpu().numpy(),
        rgb_target=spec.rgb_target,
        reference_scale=ref_scale,
        target_scale=spec.target_scale,
    )


def _picked(source: Any, picks: np.ndarray) -> tuple[Any, Any, np.ndarray]:
    """``(stack, target, sel)`` of dataset positions ``picks``; ``[sel]`` restores their order."""
    sorted_picks = np.sort(picks)
    stack, target, _r = next(source.iterate([sorted_picks]))
    return stack, target, np.searchsorted(sorted_picks, picks)  # batches come sorted


def write_grids(
    out_dir: Path,
    *,
    spec: Any,
    source: Any,
    predict: Callable[[Any], Any],
    order: np.ndarray,
    hallucinated: np.ndarray,
) -> None:
    """``best_8.png`` / ``worst_8.png`` (``order``: best first) and ``hallucinations_8.png``.

    ``predict`` maps a stack batch to the generator's float predictions; ``hallucinated``
    lists the positions whose virtual nuclei differ most from the target's (none: the grid
    is removed).
    """
    for name, picks in (("best_8.png", order[:N_GRID]), ("worst_8.png", order[::-1][:N_GRID])):
        stack, target, sel = _picked(source, picks)
        grid = cell_grid([r[sel] for r in grid_rows(spec, stack, predict(stack), target)])
        with atomic_output(out_dir / name, keep_suffix=True) as tmp:
            write_image(tmp, grid)
    hall_png = out_dir / "hallucinations_8.png"
    hall_png.unlink(missing_ok=True)
    bad = hallucinated[:N_GRID]
    if not len(bad):
        return
    stack, target, sel = _picked(source, bad)
    pred_u8 = to_uint8_image(predict(stack))[sel]
    tgt_u8 = target.cpu().numpy()[sel]
    bf = stack[:, spec.brightfield_position].cpu().numpy()[sel]
    overlays = []
    for p_img, t_img in zip(pred_u8, tgt_u8, strict=True):
        a = compare(p_img, t_img)
        overlays.append(mask_overlay(t_img, a.virtual.nucleus, a.target.nucleus))
    grid = cell_grid([bf, pred_u8, tgt_u8, np.stack(overlays)])
    with atomic_output(hall_png, keep_suffix=True) as tmp:
        write_image(tmp, grid)
