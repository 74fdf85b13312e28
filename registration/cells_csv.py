"""``NAME.cells.csv``: where ``scope match`` found each cell, for the 100x rescan.

Read back by :func:`acquisition.positions.read_cells_csv` (``scope scan --pass highres
--cells``), which sits in acquisition since the scan reads it; the layout is in
docs/formats.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


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
