"""Copying datasets into a new file with a new cells table: merge, re-split, labels, 100x.

Every rewrite of a dataset goes through :func:`copy_with_cells`, so each keeps the source's
layout and is atomic (a temporary file renamed into place).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from registration.dataset import Dataset, DatasetWriter, cell_rows


def copy_with_cells(
    sources: Sequence[Path],
    out: Path,
    cells: np.ndarray,
    *,
    provenance: dict[str, Any],
    software_version: str,
    written_by: str,
    highres_targets: Mapping[int, np.ndarray] | None = None,
    batch: int = 64,
) -> None:
    """Stream the image arrays of ``sources`` (in order) into ``out`` with new ``cells``.

    ``out`` is written through :class:`DatasetWriter` (a temporary file renamed at the end) in
    the first source's layout (:meth:`Dataset.layout`: components, dtypes, target channels,
    label columns, compression). ``highres_targets`` replaces the 100x targets of the rows
    it names (rows count over all sources).
    """
    rows = cell_rows(cells)
    replace = highres_targets or {}
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
                    highres = np.asarray(ds.targets_highres[a:b])
                    for k in range(start + a, start + b):
                        if k in replace:
                            highres[k - start - a] = replace[k]
                    writer.add(
                        ds.inputs[a:b],
                        ds.targets[a:b],
                        rows[start + a : start + b],
                        targets_highres=highres,
                    )
                start += n
            for ds in opened:
                ds.close()
    finally:
        for ds in opened:
            ds.close()
