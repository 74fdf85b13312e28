"""White-cell types of a dataset's cells: the optional ``type`` column of the cells table.

``scope match`` copies the simulator's truth type into it; a lab adds its own with
``scope dataset label DATASET CSV``, the CSV holding ``row,type`` (``row``: the dataset row, as
in ``scope evaluate``'s ``cells.csv``; ``cell_id`` of ``NAME.cells.csv`` is accepted too).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acquisition.vocabulary import CELL_TYPES
from registration.dataset import DatasetError


def with_type_column(cells: np.ndarray, types: np.ndarray | None = None) -> np.ndarray:
    """``cells`` with a ``type`` column (kept, or ``types``, or all "")."""
    names = list(cells.dtype.names or ())
    if types is None:
        types = cells["type"] if "type" in names else np.full(len(cells), "")
    types = np.asarray([str(t) for t in types])
    width = max(1, max((len(t) for t in types), default=1))
    fields = [(n, cells.dtype.fields[n][0]) for n in names if n != "type"]
    out = np.empty(len(cells), dtype=[*fields, ("type", f"U{width}")])
    for n, _ in fields:
        out[n] = cells[n]
    out["type"] = types
    return out


def read_labels(path: str | Path, n_cells: int) -> dict[int, str]:
    """Row → type from a ``row,type`` CSV, checked against the dataset's size and the types."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"label file {str(path)!r} does not exist")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        head = [h.strip().lower() for h in (reader.fieldnames or [])]
        key = "row" if "row" in head else "cell_id" if "cell_id" in head else None
        if key is None or "type" not in head:
            raise DatasetError(
                f"{path} needs the columns row,type (row: the dataset row, as in scope "
                f"evaluate's cells.csv); it has {', '.join(head) or 'none'}"
            )
        out: dict[int, str] = {}
        for line, rec in enumerate(reader, start=2):
            rec = {k.strip().lower(): (v or "").strip() for k, v in rec.items() if k}
            try:
                row = int(rec[key])
            except ValueError:
                what = f"{path} line {line}: {key} {rec[key]!r}"
                raise DatasetError(f"{what} is not a number") from None
            if not 0 <= row < n_cells:
                raise DatasetError(
                    f"{path} line {line}: row {row} is outside the dataset's 0–{n_cells - 1}"
                )
            t = rec["type"].lower()
            if t and t not in CELL_TYPES:
                raise DatasetError(
                    f"{path} line {line}: unknown type {rec['type']!r}; use one of "
                    f"{', '.join(CELL_TYPES)} (or leave it empty)"
                )
            out[row] = t
    return out


@dataclass(frozen=True)
class LabelSummary:
    path: Path
    labelled: int
    counts: dict[str, int]


def label_dataset(path: str | Path, labels_csv: str | Path) -> LabelSummary:
    """Write the types of ``labels_csv`` into the dataset's ``type`` column (in place, atomically).

    Rows the CSV does not name keep their type.
    """
    from acquisition.files import WriteLock
    from registration.dataset import Dataset
    from registration.dataset_copy import copy_with_cells
    from registration.manage import written_by_of

    path = Path(path)
    with Dataset(path) as ds:
        cells = with_type_column(ds.cells)
        provenance = ds.provenance
        version = str(ds.attrs.get("software_version", ""))
    labels = read_labels(labels_csv, len(cells))
    types = np.asarray(cells["type"], dtype=object)
    for row, t in labels.items():
        types[row] = t
    cells = with_type_column(cells, types)
    with WriteLock(path):
        copy_with_cells(
            [path],
            path,
            cells,
            provenance=provenance,
            software_version=version,
            written_by=written_by_of(path),
        )
    kinds, n = np.unique([t for t in cells["type"] if t], return_counts=True)
    return LabelSummary(path, int(sum(n)), {str(k): int(c) for k, c in zip(kinds, n, strict=True)})
