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
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for every reader)
import numpy as np

from acquisition.tables import COMPRESSIONS, DEFAULT_COMPRESSION, read_table
from hardware_profiles import HardwareProfile
from hardware_profiles.loader import parse as parse_profile
from registration.dataset_format import (
    CELL_COLUMNS,
    CELL_FIELDS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    RGB_STAIN,
    TARGET_CHANNEL_FIELDS,
    TYPE_FIELD,
    DatasetError,
    cell_fields,
    cell_rows,
    empty_cells,
    target_records,
)
from registration.dataset_writer import DatasetWriter

__all__ = [
    "CELL_COLUMNS",
    "CELL_FIELDS",
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "RGB_STAIN",
    "TARGET_CHANNEL_FIELDS",
    "TYPE_FIELD",
    "Dataset",
    "DatasetError",
    "DatasetWriter",
    "cell_fields",
    "cell_rows",
    "compression_name",
    "empty_cells",
    "target_records",
]


def compression_name(array: h5py.Dataset) -> str:
    """The name (:data:`acquisition.tables.COMPRESSIONS`) of the filter ``array`` was written
    with; the default for a filter scope does not write."""
    plist = array.id.get_create_plist()
    used = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    for name, options in COMPRESSIONS.items():
        code = options.get("compression")
        want = set() if code is None else {h5py.h5z.FILTER_DEFLATE if code == "gzip" else code}
        if used == want or (want and want <= used):
            return name
    return DEFAULT_COMPRESSION


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
        """Keyword arguments that make a :class:`DatasetWriter` write this file's layout
        (components, target channels, dtypes, label columns and compression)."""
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
            "compression": compression_name(self.inputs),
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
