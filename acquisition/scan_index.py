"""The scan file's index and its images file, written in HDF5.

The index (``<slide>.<pass>.scan.h5``) holds the attributes, the ``channels``, ``positions``
and ``frames`` tables, the simulator's ``truth`` when there is one, and an external link to
``<fields>/images.h5``, a virtual dataset mapping every position to its field file. The
writer (:class:`acquisition.scanwriter.ScanWriter`) decides when to rebuild the index and
replaces it atomically; these functions write the HDF5 pieces. The layout is in
:mod:`acquisition.scan_layout` and docs/formats.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition.scan_layout import (
    CHANNEL_FIELDS,
    IMAGES_NAME,
    TRUTH_CELL_FIELDS,
    TRUTH_FAULT_FIELDS,
    field_name,
    fsync_path,
)
from acquisition.tables import to_records, write_table


def write_index_file(path: Path, fill: Callable[[h5py.File], None]) -> None:
    """Create ``path`` and ``fill`` it; a full disk quarantines the file (HDF5 never
    touches it again) before the error goes on."""
    from acquisition.files import close_h5, is_disk_full, quarantine

    f = h5py.File(path, "w")
    try:
        fill(f)
    except BaseException as err:
        if is_disk_full(err):
            quarantine(f)
        else:
            f.close()
        raise
    close_h5(f)


def fill_index(
    f: h5py.File,
    attrs: dict[str, Any],
    channels: list[dict[str, Any]],
    rows: np.ndarray,
    frames: np.ndarray,
    *,
    images: str | None,
    truth: dict[str, Any] | None,
) -> None:
    """Write the index into the open file ``f``; ``images``: the images file relative to it."""
    for k, v in attrs.items():
        f.attrs[k] = v
    write_table(f, "channels", to_records(channels, CHANNEL_FIELDS))
    f.create_dataset("positions", data=rows, maxshape=(None,))
    f.create_dataset("frames", data=frames, maxshape=(None,))
    if images is not None:
        f["images"] = h5py.ExternalLink(images, "/images")
    if truth is not None:
        write_truth(f, truth)


def ensure_images_file(fields_dir: Path, shape: tuple[int, ...]) -> None:
    """Write ``<fields>/images.h5``: the virtual dataset over every field, of ``shape``.

    It maps each position to its field file whether or not it exists yet (HDF5 reads a
    missing source as the fill value, zeros), so it never changes while the scan runs
    and the index only links to it: a rebuild then costs no per-field HDF5 mapping.
    A resumed scan's file that already maps this shape is kept.
    """
    path = fields_dir / IMAGES_NAME
    if images_file_maps(path, shape):  # a resumed scan's: already right
        return
    tmp = path.with_name(f"{IMAGES_NAME}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as g:
            write_images_vds(g, shape, [(i, field_name(i)) for i in range(shape[0])])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(tmp)
    os.replace(tmp, path)


def images_file_maps(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` holds the virtual ``images`` of this shape, one mapping per field."""
    try:
        with h5py.File(path, "r") as g:
            ds = g["images"]
            return (
                ds.shape == shape
                and ds.is_virtual
                and ds.id.get_create_plist().get_virtual_count() == shape[0]
            )
    except (OSError, KeyError, ValueError):
        return False


def write_images_vds(f: h5py.File, shape: tuple[int, ...], sources: list) -> None:
    """``images``: a virtual dataset mapping field ``i`` to ``images`` of its own file.

    ``sources`` lists ``(i, relative path)``. HDF5's low-level calls directly: h5py's
    ``VirtualLayout`` spends ~0.1 ms of Python per mapping, which adds up at 10,000 fields.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.VIRTUAL)
    dcpl.set_fill_value(np.array([0], dtype=np.uint8))
    vspace = h5py.h5s.create_simple(shape)
    src = h5py.h5s.create_simple(shape[1:])
    count = (1, *shape[1:])
    for i, rel in sources:
        vspace.select_hyperslab((i, 0, 0, 0, 0), count)
        dcpl.set_virtual(vspace, rel.encode(), b"images", src)
    tid = h5py.h5t.py_create(np.dtype(np.uint8), logical=1)
    h5py.h5d.create(f.id, b"images", tid, h5py.h5s.create_simple(shape), dcpl=dcpl).close()


def write_truth(f: h5py.File, truth: dict[str, Any]) -> None:
    g = f.create_group("truth")
    g.attrs["slide_to_stage"] = np.asarray(truth["slide_to_stage"], dtype=np.float64)
    if truth.get("magnification_ratio") is not None:
        g.attrs["magnification_ratio"] = float(truth["magnification_ratio"])
    for key, fields in (("cells", TRUTH_CELL_FIELDS), ("faults", TRUTH_FAULT_FIELDS)):
        table = truth.get(key)
        if table is None:
            table = np.empty(0, dtype=[(n, "U1" if t is str else t) for n, t in fields])
        rows = [{n: table[n][i] for n, _ in fields} for i in range(len(table))]
        write_table(g, key, to_records(rows, fields))
    for k, v in (truth.get("attrs") or {}).items():
        g.attrs[k] = v


__all__ = [
    "ensure_images_file",
    "fill_index",
    "images_file_maps",
    "write_images_vds",
    "write_index_file",
    "write_truth",
]
