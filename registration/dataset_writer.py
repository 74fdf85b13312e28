"""Writing a dataset file: :class:`DatasetWriter` appends cells to a temporary file and
renames it into place (:mod:`registration.dataset` describes the layout).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for every writer)
import numpy as np

from acquisition.tables import DEFAULT_COMPRESSION, compression_options, to_records, write_table
from hardware_profiles import HardwareProfile
from registration.dataset_format import (
    CELL_COLUMNS,
    CELL_FIELDS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    RGB_STAIN,
    DatasetError,
    cell_fields,
    cell_rows,
    target_records,
)


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
        input_components: int = 3,
        target_channels: Sequence[Mapping[str, Any]] | np.ndarray | None = None,
        input_dtype: Any = np.uint8,
        target_dtype: Any = np.uint8,
        label_fields: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """``input_components`` is ``c_in`` (3 RGB, 1 mono); ``target_channels`` the target
        channel table (default :data:`RGB_STAIN`); ``label_fields`` extra cell columns (e.g.
        an imported dataset's own class labels), filled from the rows given to :meth:`add`."""
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
        self.target_channels = target_records(
            RGB_STAIN if target_channels is None else target_channels
        )
        self.input_dtype = np.dtype(input_dtype)
        self.target_dtype = np.dtype(target_dtype)
        for what, dt in (("input", self.input_dtype), ("target", self.target_dtype)):
            if dt not in DTYPES:
                raise DatasetError(f"{what} dtype must be uint8 or uint16, not {dt}")
        self.c_in = int(input_components)
        self.c_out = len(self.target_channels)
        if self.c_in < 1 or self.c_out < 1:
            raise DatasetError("a dataset needs at least one input component and target channel")
        self.label_fields = list(label_fields)
        n_ch = len(self.channels)
        c = self.crop_size
        ci, co = self.c_in, self.c_out
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
        write_table(self._f, "target_channels", self.target_channels)
        opts = compression_options(compression)

        def images(name: str, cell_shape: tuple[int, ...], dtype: np.dtype) -> h5py.Dataset:
            """An extensible array of one chunk per cell."""
            return self._f.create_dataset(
                name,
                shape=(0, *cell_shape),
                maxshape=(None, *cell_shape),
                dtype=dtype,
                chunks=(1, *cell_shape),
                **opts,
            )

        self._inputs = images("inputs", (n_ch, c, c, ci), self.input_dtype)
        self._targets = images("targets", (c, c, co), self.target_dtype)
        self._highres = images("targets_highres", (c, c, co), self.target_dtype)
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
        """Append ``n`` cells: ``inputs (n, C, h, w, c_in)``, ``targets (n, h, w, c_out)``."""
        rows = cell_rows(cells) if isinstance(cells, np.ndarray) else [dict(r) for r in cells]
        n = len(rows)
        c = self.crop_size
        inputs = np.asarray(inputs)
        targets = np.asarray(targets)
        want_in = (n, len(self.channels), c, c, self.c_in)
        if inputs.shape != want_in or inputs.dtype != self.input_dtype:
            raise DatasetError(
                f"inputs must be {want_in} {self.input_dtype}, got {inputs.shape} {inputs.dtype}"
            )
        want_t = (n, c, c, self.c_out)
        if targets.shape != want_t or targets.dtype != self.target_dtype:
            raise DatasetError(
                f"targets must be {want_t} {self.target_dtype}, got {targets.shape} {targets.dtype}"
            )
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
            fields = cell_fields(self._cells, self.label_fields)
            defaults = {n: ("" if t is str else -1) for n, t in fields[len(CELL_FIELDS) :]}
            for row in self._cells:
                for name, value in defaults.items():
                    row.setdefault(name, value)
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
