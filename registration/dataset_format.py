"""The dataset file's format: its name and version, the cells and target-channel tables.

The layout itself is described in :mod:`registration.dataset` (and docs/formats.md);
:class:`registration.dataset_writer.DatasetWriter` writes it, :class:`registration.dataset.
Dataset` reads it. Splits and QC flags are the shared words of :mod:`acquisition.vocabulary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from acquisition.tables import decode, to_records
from hardware_profiles.errors import ScopeError

FORMAT = "scope-dataset"
FORMAT_VERSION = 2
DTYPES = (np.uint8, np.uint16)

CELL_FIELDS = [
    ("slide", str),
    ("position", np.int64),
    ("x_px", np.float64),
    ("y_px", np.float64),
    ("stained_x_px", np.float64),
    ("stained_y_px", np.float64),
    ("x_um", np.float64),
    ("y_um", np.float64),
    ("stained_x_um", np.float64),
    ("stained_y_um", np.float64),
    ("coarse_score", np.float64),
    ("ssim", np.float64),
    ("has_highres", np.bool_),
    ("highres_score", np.float64),
    ("highres_scale", np.float64),
    ("qc_flags", str),
    ("split", str),
]
CELL_COLUMNS = [name for name, _ in CELL_FIELDS]
#: One row per target channel: ``kind`` is ``stain`` (an RGB component of a stained image)
#: or ``fluorescence``; ``wavelength_nm`` is the emission band centre (NaN for stains).
TARGET_CHANNEL_FIELDS = [
    ("name", str),
    ("kind", str),
    ("illumination", str),
    ("wavelength_nm", np.float64),
]
#: The targets of every format-1 file and of ``scope match``: a stained RGB crop.
RGB_STAIN = [
    {"name": c, "kind": "stain", "illumination": "brightfield", "wavelength_nm": math.nan}
    for c in ("R", "G", "B")
]
#: Optional column: the white-cell type ("" unknown) — copied from simulator truth by
#: ``scope match``, or added by ``scope dataset label``. Written when any cell has one.
TYPE_FIELD = ("type", str)


def cell_fields(
    rows: Sequence[Mapping[str, Any]], extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """:data:`CELL_FIELDS`, ``type`` when any row carries a non-empty one, then ``extra``."""
    typed = any(str(r.get("type", "") or "") for r in rows)
    base = [*CELL_FIELDS, TYPE_FIELD] if typed else list(CELL_FIELDS)
    return base + [f for f in extra if f[0] not in {n for n, _ in base}]


def target_records(channels: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
    """A target channel table (rows or structured array) as a structured array."""
    if isinstance(channels, np.ndarray):
        rows = [{n: channels[n][i] for n in channels.dtype.names} for i in range(len(channels))]
    else:
        rows = [dict(r) for r in channels]
    for r in rows:
        r.setdefault("kind", "fluorescence")
        r.setdefault("illumination", "")
        r.setdefault("wavelength_nm", math.nan)
    return decode(to_records(rows, TARGET_CHANNEL_FIELDS))


class DatasetError(ScopeError):
    """A dataset file is missing, malformed or incompatible with a request."""


def cell_rows(table: np.ndarray) -> list[dict[str, Any]]:
    return [{n: table[n][i] for n in table.dtype.names} for i in range(len(table))]


def empty_cells() -> np.ndarray:
    return decode(to_records([], CELL_FIELDS))
