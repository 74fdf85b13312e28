"""The dataset file: ``<name>.dataset.h5`` — matched cell crops for training.

Written by ``scope match``, extended by ``scope match --highres``, merged and re-split by
``scope dataset``. Always written to a temporary file and renamed into place, so a failed or
interrupted run never leaves a half-written dataset (docs/formats.md).

- ``inputs``: ``(N, n_channels, h, w, c_in)`` crops, one chunk per cell (``c_in`` 3 for
  RGB cameras, 1 for monochrome ones);
- ``targets``: ``(N, h, w, c_out)`` targets: 3 for a stained RGB crop, ``k`` for ``k``
  fluorescence channels;
- ``targets_highres``: like ``targets``, from the 100x rescan (zeros where
  ``cells.has_highres`` is false);
- ``cells``: one row per cell (:data:`CELL_FIELDS`, plus optional label columns);
- ``channels``: the input channel table (LED metadata, :data:`INPUT_CHANNEL_FIELDS`);
- ``target_channels``: one row per target channel (:data:`TARGET_CHANNEL_FIELDS`);
- attrs: ``format``, ``format_version``, ``crop_size``, ``profile`` (JSON), ``provenance``
  (JSON), ``software_version``.

Inputs and targets are ``uint8`` or ``uint16`` (each its own dtype). Format version 1 (RGB
``uint8`` inputs and stain targets, no ``target_channels`` table) still reads: it is the
version-2 layout with ``c_in = c_out = 3`` and :data:`RGB_STAIN` targets.
"""

from __future__ import annotations

import json
import math
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
FORMAT_VERSION = 2
DTYPES = (np.uint8, np.uint16)
SPLITS = ("train", "val", "test")
QC_FLAGS = (
    "pls_misaligned",
    "low_ssim",
    "fine_residual",
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
        self._inputs = self._f.create_dataset(
            "inputs",
            shape=(0, n_ch, c, c, ci),
            maxshape=(None, n_ch, c, c, ci),
            dtype=self.input_dtype,
            chunks=(1, n_ch, c, c, ci),
            **opts,
        )
        self._targets = self._f.create_dataset(
            "targets",
            shape=(0, c, c, co),
            maxshape=(None, c, c, co),
            dtype=self.target_dtype,
            chunks=(1, c, c, co),
            **opts,
        )
        self._highres = self._f.create_dataset(
            "targets_highres",
            shape=(0, c, c, co),
            maxshape=(None, c, c, co),
            dtype=self.target_dtype,
            chunks=(1, c, c, co),
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
        if "target_channels" in self._f:
            self.target_channels = read_table(self._f, "target_channels")
        else:  # format 1: stained RGB targets
            self.target_channels = target_records(RGB_STAIN)
        if self.inputs.ndim != 5 or self.targets.ndim != 4:
            raise DatasetError(
                f"{self.path} is damaged: inputs {self.inputs.shape}, targets "
                f"{self.targets.shape} (expected (N, n, h, w, c) and (N, h, w, c))"
            )
        if self.targets.shape[-1] != len(self.target_channels):
            raise DatasetError(
                f"{self.path} is damaged: {self.targets.shape[-1]} target channels but "
                f"{len(self.target_channels)} rows in its target_channels table"
            )
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
    def input_components(self) -> int:
        """``c_in``: 3 for RGB inputs, 1 for monochrome."""
        return int(self.inputs.shape[-1])

    @property
    def target_names(self) -> list[str]:
        return [str(n) for n in self.target_channels["name"]]

    @property
    def rgb_stain_target(self) -> bool:
        """Whether the targets are a stained RGB image (perceptual loss, colour clinics)."""
        kinds = [str(k) for k in self.target_channels["kind"]]
        return kinds == ["stain"] * 3 and self.targets.dtype == np.uint8

    def layout(self) -> dict[str, Any]:
        """Keyword arguments that make a :class:`DatasetWriter` write this file's layout."""
        extra = [
            (n, self.cells.dtype[n].type if self.cells.dtype[n].kind != "U" else str)
            for n in (self.cells.dtype.names or ())
            if n not in CELL_COLUMNS and n != TYPE_FIELD[0]
        ]
        return {
            "input_components": self.input_components,
            "target_channels": self.target_channels,
            "input_dtype": self.inputs.dtype,
            "target_dtype": self.targets.dtype,
            "label_fields": extra,
        }

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
