"""The dataset file: ``<name>.dataset.h5`` — matched cell crops for training.

Written by ``scope match``, extended by ``scope match --highres``, merged and re-split by
``scope dataset``. Always written to a temporary file and renamed into place, so a failed or
interrupted run never leaves a half-written dataset (DESIGN.md "Files").

- ``inputs``: ``(N, n_channels, h, w, 3) uint8`` PLS crops, one chunk per cell;
- ``targets``: ``(N, h, w, 3) uint8`` stained 20x crops;
- ``targets_highres``: ``(N, h, w, 3) uint8`` from the 100x rescan (zeros where
  ``cells.has_highres`` is false);
- ``cells``: one row per cell (:data:`CELL_FIELDS`);
- ``channels``: the scan's channel table; attrs: ``format``, ``format_version``,
  ``crop_size``, ``profile`` (JSON), ``provenance`` (JSON), ``software_version``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for every reader)
import numpy as np

from acquisition.tables import (
    DEFAULT_COMPRESSION,
    compression_options,
    decode,
    read_table,
    to_records,
    write_table,
)
from hardware_profiles import HardwareProfile
from hardware_profiles.errors import ScopeError
from hardware_profiles.loader import parse as parse_profile

FORMAT = "scope-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
QC_FLAGS = (
    "pls_misaligned",
    "low_ssim",
    "target_only_color",
    "input_only_object",
    "saturated_target",
    "coarse_outlier",
    "near_edge",
)

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
#: Optional column: the white-cell type ("" unknown) — copied from simulator truth by
#: ``scope match``, or added by ``scope dataset label``. Written when any cell has one.
TYPE_FIELD = ("type", str)


def cell_fields(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """:data:`CELL_FIELDS`, plus ``type`` when any row carries a non-empty one."""
    typed = any(str(r.get("type", "") or "") for r in rows)
    return [*CELL_FIELDS, TYPE_FIELD] if typed else list(CELL_FIELDS)


class DatasetError(ScopeError):
    """A dataset file is missing, malformed or incompatible with a request."""


def cell_rows(table: np.ndarray) -> list[dict[str, Any]]:
    return [{n: table[n][i] for n in table.dtype.names} for i in range(len(table))]


def empty_cells() -> np.ndarray:
    return decode(to_records([], CELL_FIELDS))


class DatasetWriter:
    """Append matched cells, then :meth:`commit` renames the temporary file into place.

    Use as a context manager: leaving the block with an exception removes the temporary file
    and leaves any existing dataset at ``path`` untouched.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        channels: np.ndarray | Sequence[Mapping[str, Any]],
        crop_size: int = 64,
        profile: HardwareProfile | str | None = None,
        provenance: Mapping[str, Any] | None = None,
        compression: str = DEFAULT_COMPRESSION,
        software_version: str = "",
        overwrite: bool = True,
        written_by: str = "",
    ) -> None:
        from acquisition.files import clean_stale, temp_path

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DatasetError(f"{self.path} already exists")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(self.path.parent)
        self.tmp = temp_path(self.path)
        self.crop_size = int(crop_size)
        from registration.dataset_channels import channel_records

        self.channels = channel_records(channels)
        n_ch = len(self.channels)
        c = self.crop_size
        self._f = h5py.File(self.tmp, "w")
        self._f.attrs["format"] = FORMAT
        self._f.attrs["format_version"] = FORMAT_VERSION
        self._f.attrs["crop_size"] = c
        if profile is not None:
            self._f.attrs["profile"] = (
                profile if isinstance(profile, str) else profile.model_dump_json()
            )
        self._f.attrs["provenance"] = json.dumps(dict(provenance or {}), default=str)
        self._f.attrs["software_version"] = software_version
        self._f.attrs["written_by"] = written_by
        write_table(self._f, "channels", self.channels)
        opts = compression_options(compression)
        self._inputs = self._f.create_dataset(
            "inputs",
            shape=(0, n_ch, c, c, 3),
            maxshape=(None, n_ch, c, c, 3),
            dtype=np.uint8,
            chunks=(1, n_ch, c, c, 3),
            **opts,
        )
        self._targets = self._f.create_dataset(
            "targets",
            shape=(0, c, c, 3),
            maxshape=(None, c, c, 3),
            dtype=np.uint8,
            chunks=(1, c, c, 3),
            **opts,
        )
        self._highres = self._f.create_dataset(
            "targets_highres",
            shape=(0, c, c, 3),
            maxshape=(None, c, c, 3),
            dtype=np.uint8,
            chunks=(1, c, c, 3),
            **opts,
        )
        self._cells: list[dict[str, Any]] = []
        self._closed = False

    def _failed(self, err: BaseException) -> None:
        """A write met a full disk: HDF5 must never touch this file again (it would crash)."""
        from acquisition.files import is_disk_full, quarantine

        if is_disk_full(err) and not self._closed:
            quarantine(self._f, self._inputs, self._targets, self._highres)
            self._closed = True

    def __len__(self) -> int:
        return len(self._cells)

    def add(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        cells: Sequence[Mapping[str, Any]] | np.ndarray,
        targets_highres: np.ndarray | None = None,
    ) -> None:
        """Append ``n`` cells: ``inputs (n, C, h, w, 3)``, ``targets (n, h, w, 3)`` uint8."""
        rows = cell_rows(cells) if isinstance(cells, np.ndarray) else [dict(r) for r in cells]
        n = len(rows)
        c = self.crop_size
        inputs = np.asarray(inputs)
        targets = np.asarray(targets)
        if inputs.shape != (n, len(self.channels), c, c, 3) or inputs.dtype != np.uint8:
            raise DatasetError(
                f"inputs must be ({n}, {len(self.channels)}, {c}, {c}, 3) uint8, "
                f"got {inputs.shape} {inputs.dtype}"
            )
        if targets.shape != (n, c, c, 3) or targets.dtype != np.uint8:
            raise DatasetError(f"targets must be ({n}, {c}, {c}, 3) uint8, got {targets.shape}")
        if targets_highres is None:
            targets_highres = np.zeros_like(targets)
        for row in rows:
            missing = [k for k in CELL_COLUMNS if k not in row]
            if missing:
                raise DatasetError(f"cell row lacks columns {missing}")
        from acquisition.files import guard_space

        guard_space(self.path, inputs.nbytes + 2 * targets.nbytes)
        start = len(self._cells)
        try:
            for ds, arr in (
                (self._inputs, inputs),
                (self._targets, targets),
                (self._highres, targets_highres),
            ):
                ds.resize(start + n, axis=0)
                ds[start : start + n] = arr
        except BaseException as err:
            self._failed(err)
            raise
        self._cells.extend(rows)

    def commit(self) -> Path:
        """Write the cells table, close and rename into place."""
        from acquisition.files import commit_temp

        try:
            fields = cell_fields(self._cells)
            if len(fields) > len(CELL_FIELDS):
                for row in self._cells:
                    row.setdefault("type", "")
            write_table(self._f, "cells", to_records(self._cells, fields))
            self._f.attrs["n_cells"] = len(self._cells)
            self._f.close()
        except BaseException as err:
            self._failed(err)
            raise
        self._closed = True
        commit_temp(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            if not self._closed:
                try:
                    self._f.close()
                except BaseException as err:
                    # a close that flushes onto a full disk: quarantine, never touch again
                    self._failed(err)
                    if not self._closed:
                        raise
                self._closed = True
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        from acquisition.files import disk_full, is_disk_full

        if exc_type is not None:
            self.abort()
            if isinstance(exc, BaseException) and is_disk_full(exc):
                raise disk_full(self.path, "existing files are untouched") from None
        elif not self._closed:
            try:
                self.commit()
            except BaseException as err:
                self.abort()
                if is_disk_full(err):
                    raise disk_full(self.path, "existing files are untouched") from None
                raise


class Dataset:
    """Read-only view of a dataset file. Arrays stay on disk (h5py datasets)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"dataset file {str(self.path)!r} does not exist")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as err:
            from acquisition.files import hdf5_open_problem

            raise DatasetError(hdf5_open_problem(self.path, err, "scope dataset")) from None
        fmt = self._f.attrs.get("format")
        if fmt != FORMAT:
            self._f.close()
            what = "a scan file" if fmt == "scope-scan" else f"format {fmt!r}"
            raise DatasetError(f"{self.path} is not a scope dataset ({what}, expected {FORMAT!r})")
        try:
            self._open_parts()
        except BaseException:
            self._f.close()
            raise

    def _open_parts(self) -> None:
        from acquisition.scanfile import ScanFileError, check_version

        try:
            check_version(self._f.attrs, self.path, FORMAT_VERSION)
        except ScanFileError as err:
            raise DatasetError(str(err)) from None
        for name in ("channels", "cells", "inputs", "targets", "targets_highres"):
            if name not in self._f:
                raise DatasetError(
                    f"{self.path} is damaged: no {name!r} table (restore it from a copy, or "
                    "run scope match again)"
                )
        if "crop_size" not in self._f.attrs:
            raise DatasetError(f"{self.path} is damaged: no 'crop_size' attribute")
        self.attrs = dict(self._f.attrs)
        try:
            self.channels = read_table(self._f, "channels")
            self.cells = read_table(self._f, "cells")
        except (KeyError, ValueError, OSError) as err:
            raise DatasetError(f"{self.path} is damaged ({err})") from None
        missing = [c for c in CELL_COLUMNS if c not in (self.cells.dtype.names or ())]
        if missing:
            raise DatasetError(f"{self.path} is damaged: its cells table lacks {missing[:4]}")
        self.inputs: h5py.Dataset = self._f["inputs"]
        self.targets: h5py.Dataset = self._f["targets"]
        self.targets_highres: h5py.Dataset = self._f["targets_highres"]
        n = len(self.cells)
        if any(len(d) != n for d in (self.inputs, self.targets, self.targets_highres)):
            raise DatasetError(
                f"{self.path} is damaged: {n} cells but {len(self.inputs)} input crops"
            )

    def __len__(self) -> int:
        return len(self.cells)

    @property
    def crop_size(self) -> int:
        return int(self.attrs["crop_size"])

    @property
    def profile(self) -> HardwareProfile | None:
        if "profile" not in self.attrs:
            return None
        return parse_profile(json.loads(self.attrs["profile"]), repr(str(self.path)))

    @property
    def provenance(self) -> dict[str, Any]:
        return json.loads(self.attrs.get("provenance", "{}"))

    def flags(self) -> list[list[str]]:
        return [[f for f in s.split(",") if f] for s in self.cells["qc_flags"]]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(path: str | Path) -> Dataset:
    return Dataset(path)
