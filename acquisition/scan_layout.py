"""The scan file's layout: names, table fields, paths and the checks every reader and writer
shares (docs/formats.md). :mod:`acquisition.scanwriter` writes scans, :mod:`acquisition.scanfile`
reads them.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition.tables import h5_dtype
from acquisition.vocabulary import PASSES
from hardware_profiles.errors import ScopeError

FORMAT = "scope-scan"
#: The virtual dataset over every field file, in the fields folder (the index links to it).
IMAGES_NAME = "images.h5"
FORMAT_VERSION = 1

CHANNEL_FIELDS = [
    ("name", str),
    ("leds", str),
    ("kind", str),
    ("exposure_level", str),
    ("theta_deg", np.float64),
    ("phi_deg", np.float64),
    ("exposure_ms", np.float64),
    ("gain", np.float64),
    ("brightness", np.int32),
]
POSITION_FIELDS = [
    ("x_um", np.float64),
    ("y_um", np.float64),
    ("z_um", np.float64),
    ("status", str),
    ("acquired_at", str),
    ("file_bytes", np.int64),
]
FRAME_FIELDS = [
    ("position", np.int64),
    ("channel", np.int32),
    ("exposure_ms", np.float64),
    ("gain", np.float64),
    ("stage_x_um", np.float64),
    ("stage_y_um", np.float64),
    ("stage_z_um", np.float64),
    ("time", np.float64),
]
#: The ``frames`` table's row type (all numeric: rows concatenate as raw bytes).
FRAME_DTYPE = h5_dtype(FRAME_FIELDS)
TRUTH_CELL_FIELDS = [
    ("id", np.int64),
    ("type", str),
    ("x_um", np.float64),
    ("y_um", np.float64),
    ("radius_um", np.float64),
    ("pass", str),
]
TRUTH_FAULT_FIELDS = [
    ("kind", str),
    ("x_um", np.float64),
    ("y_um", np.float64),
    ("leds", str),
    ("dx_px", np.float64),
    ("dy_px", np.float64),
]


class ScanFileError(ScopeError):
    """A scan file is missing, of another kind, incomplete, or does not match a request."""


def scan_path(out_dir: str | Path, slide: str, pass_: str) -> Path:
    """``DIR/<slide>.<pass>.scan.h5``."""
    if pass_ not in PASSES:
        raise ScanFileError(f"unknown pass {pass_!r}; choose one of {', '.join(PASSES)}")
    return Path(out_dir) / f"{slide}.{pass_}.scan.h5"


def fields_dir(path: str | Path) -> Path:
    """The folder of per-field files beside a scan file."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".scan.h5") + ".fields")


def field_name(index: int) -> str:
    """The file name of field ``index`` in the fields folder."""
    return f"field_{index:05d}.h5"


def now_iso() -> str:
    """Now, UTC, to the second (ISO 8601): what the tables record."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


#: Stage positions beyond this (µm, any axis) cannot be on a slide holder.
MAX_STAGE_UM = 100_000.0


def check_positions(positions: np.ndarray, *, source: str = "positions") -> np.ndarray:
    """Field centres must be finite and within ±100 mm of the stage origin."""
    positions = np.asarray(positions, dtype=np.float64)
    bad = ~np.isfinite(positions).all(axis=1) if positions.ndim == 2 else np.array([True])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScanFileError(f"{source}: field {i} has a position that is not a finite number")
    far = np.abs(positions).max(axis=1) > MAX_STAGE_UM
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise ScanFileError(
            f"{source}: field {i} at {positions[i].tolist()} µm lies beyond the stage's "
            f"±{MAX_STAGE_UM:.0f} µm; positions are stage micrometres"
        )
    return positions


def require_contents(
    f: h5py.File, path: Path, tables: tuple[str, ...], attrs: tuple[str, ...]
) -> None:
    """A damaged-file error naming the first table or attribute ``f`` lacks."""
    for name in tables:
        if name not in f:
            raise ScanFileError(
                f"{path} is damaged: no {name!r} table (restore it from a copy, or rescan)"
            )
    for name in attrs:
        if name not in f.attrs:
            raise ScanFileError(
                f"{path} is damaged: no {name!r} attribute (restore it from a copy, or rescan)"
            )


def check_version(attrs: Any, path: Path, current: int) -> None:
    """Refuse files written by a newer scope (their layout may differ)."""
    try:
        version = int(attrs.get("format_version", 0))
    except (TypeError, ValueError):
        raise ScanFileError(f"{path} is damaged: format_version is not a number") from None
    if version > current:
        by = attrs.get("software_version", "") or "a newer scope"
        raise ScanFileError(
            f"{path} was written by scope {by} (format version {version}; this scope reads "
            f"up to {current}); upgrade scope to read it"
        )
    if version < 1:
        raise ScanFileError(f"{path} is damaged: format_version {version} is not valid")


def fsync_path(path: Path) -> None:
    """Flush a file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to the disk, where the platform allows."""
    try:
        fsync_path(path)
    except OSError:  # directories cannot be fsynced on every platform
        pass


def read_field_file(path: Path, n_channels: int | None = None) -> str:
    """``"ok"``, ``"missing"`` or ``"damaged"`` for one field file (opens it, checks shapes)."""
    if not path.is_file():
        return "missing"
    try:
        with h5py.File(path, "r") as h:
            shape = h["images"].shape
            h["frames"].shape  # noqa: B018  (must exist)
            float(h.attrs["z_um"])
    except (OSError, KeyError, ValueError, TypeError):
        return "damaged"
    if len(shape) != 4 or (n_channels is not None and shape[0] != n_channels):
        return "damaged"
    return "ok"
