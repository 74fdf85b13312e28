"""HDF5 compound tables with variable-length UTF-8 strings, and lossless compression choices.

Every scope file stores tables as compound datasets, one row per record. These helpers turn
lists of dicts into structured arrays with h5py string fields and back into numpy arrays with
``str`` fields, so callers never see bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import hdf5plugin
import numpy as np

STR = h5py.string_dtype("utf-8")

#: Lossless filters for image datasets. Noisy 8-bit frames compress only ~1.3x whatever the
#: filter (measured on this project's frames); Blosc2-LZ4 with bit shuffle is the fastest
#: that still compresses.
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "blosc2-lz4": dict(
        hdf5plugin.Blosc2(cname="lz4", clevel=5, filters=hdf5plugin.Blosc2.BITSHUFFLE)
    ),
    "zstd": dict(hdf5plugin.Zstd(clevel=3)),
    "lz4": dict(hdf5plugin.LZ4()),
    "gzip": {"compression": "gzip", "compression_opts": 1},
    "none": {},
}
DEFAULT_COMPRESSION = "blosc2-lz4"


def compression_options(name: str) -> dict[str, Any]:
    """Keyword arguments for ``create_dataset`` for a named lossless filter."""
    from hardware_profiles.errors import ScopeError

    if name not in COMPRESSIONS:
        raise ScopeError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    return dict(COMPRESSIONS[name])


def h5_dtype(fields: Sequence[tuple[str, Any]]) -> np.dtype:
    """A compound dtype where ``str`` fields become variable-length UTF-8 strings."""
    return np.dtype([(name, STR if t is str else t) for name, t in fields])


def to_records(rows: Sequence[Mapping[str, Any]], fields: Sequence[tuple[str, Any]]) -> np.ndarray:
    """Rows (dicts) → structured array with the h5py dtype of ``fields``."""
    dtype = h5_dtype(fields)
    out = np.empty(len(rows), dtype=dtype)
    for name, t in fields:
        values = [row[name] for row in rows]
        if t is str:
            arr = np.empty(len(rows), dtype=object)
            arr[:] = [str(v) for v in values]
            out[name] = arr
        else:
            out[name] = np.asarray(values, dtype=t) if rows else np.empty(0, dtype=t)
    return out


def decode(table: np.ndarray) -> np.ndarray:
    """A structured array read from HDF5 with its string fields as numpy ``str`` columns."""
    if table.dtype.names is None:
        return table
    fields = []
    columns = {}
    for name in table.dtype.names:
        col = table[name]
        if col.dtype.kind == "O" or h5py.check_string_dtype(table.dtype.fields[name][0]):
            vals = [v.decode() if isinstance(v, bytes) else str(v) for v in col]
            width = max((len(v) for v in vals), default=1) or 1
            columns[name] = np.array(vals, dtype=f"U{width}")
            fields.append((name, columns[name].dtype))
        else:
            columns[name] = col
            fields.append((name, col.dtype))
    out = np.empty(len(table), dtype=fields)
    for name in table.dtype.names:
        out[name] = columns[name]
    return out


def encode(table: np.ndarray) -> np.ndarray:
    """A structured array with ``str`` columns → the h5py dtype (vlen UTF-8 strings)."""
    fields = []
    for name in table.dtype.names:
        dt = table.dtype.fields[name][0]
        fields.append((name, str if dt.kind in "UO" else dt))
    rows = [{n: table[n][i] for n in table.dtype.names} for i in range(len(table))]
    return to_records(rows, fields)


def read_table(group: h5py.Group, name: str) -> np.ndarray:
    """Read a compound table as a structured array with ``str`` columns."""
    return decode(group[name][()])


def write_table(group: h5py.Group, name: str, table: np.ndarray) -> h5py.Dataset:
    """Write a structured array (``str`` or vlen columns) as a compound dataset."""
    if name in group:
        del group[name]
    needs_encoding = any(table.dtype.fields[n][0].kind == "U" for n in table.dtype.names)
    data = encode(table) if needs_encoding else table
    return group.create_dataset(name, data=data, maxshape=(None,))
