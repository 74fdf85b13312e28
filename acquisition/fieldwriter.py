"""One field of a scan being written: its images to a ``.partial`` file, renamed on commit.

:class:`FieldWriter` is made by :meth:`acquisition.scanwriter.ScanWriter.new_field` and
driven by the storage thread; :class:`FieldData` is what a committed field holds, recorded
in the journal and the index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for every reader)
import numpy as np

from acquisition.scan_layout import (
    FRAME_FIELDS,
    ScanFileError,
    field_name,
    fsync_dir,
    fsync_path,
    now_iso,
)
from acquisition.tables import compression_options, to_records

if TYPE_CHECKING:
    from acquisition.scanwriter import ScanWriter


@dataclass(frozen=True)
class FieldData:
    """What a finished field file holds."""

    index: int
    z_um: float
    acquired_at: str
    frames: np.ndarray  # FRAME_FIELDS rows
    file_bytes: int = 0  # size of the committed field file (a cheap integrity check)


class FieldWriter:
    """Writes one field's images to a ``.partial`` file; :meth:`commit` makes it durable.

    Frames arrive one channel at a time (``add``). The writer is used from a single thread
    (the scan's storage thread), so HDF5 compression never runs on the acquisition thread.
    """

    def __init__(self, scan: ScanWriter, index: int, shape_hw: tuple[int, int]) -> None:
        self._scan = scan
        self.index = index
        self.final_path = scan.fields_dir / field_name(index)
        self.partial_path = self.final_path.with_suffix(".h5.partial")
        n_channels = len(scan.channels)
        h, w = shape_hw
        self._file = h5py.File(self.partial_path, "w")
        self._images = self._file.create_dataset(
            "images",
            shape=(n_channels, h, w, 3),
            dtype=np.uint8,
            chunks=(1, h, w, 3),
            **compression_options(scan.compression),
        )
        self._frames: list[dict[str, Any]] = []
        self._written: set[int] = set()
        self._broken = False  # a write met a full disk: HDF5 must not touch the file again

    def _failed(self, err: BaseException) -> None:
        from acquisition.files import is_disk_full, quarantine

        if is_disk_full(err) and not self._broken:
            self._broken = True
            quarantine(self._file, self._images)

    def add(self, channel: int, image: np.ndarray, frame: dict[str, Any]) -> None:
        """Store the image of stack channel ``channel`` with its ``frames`` row."""
        expected = self._images.shape[1:]
        if image.shape != expected or image.dtype != np.uint8:
            raise ScanFileError(
                f"field {self.index} channel {channel}: image {image.shape} {image.dtype} does "
                f"not match the scan's frame shape {expected} uint8"
            )
        try:
            self._images[channel] = image
        except BaseException as err:
            self._failed(err)
            raise
        self._written.add(channel)
        self._frames.append({"position": self.index, "channel": channel, **frame})

    def commit(self, *, z_um: float) -> FieldData:
        """Close, fsync and rename the field file into place. Returns what it holds."""
        missing = sorted(set(range(len(self._scan.channels))) - self._written)
        if missing:
            raise ScanFileError(f"field {self.index}: channels {missing} were never stored")
        acquired_at = now_iso()
        frames = to_records(self._frames, FRAME_FIELDS)
        try:
            self._file.create_dataset("frames", data=frames)
            self._file.attrs["z_um"] = z_um
            self._file.attrs["acquired_at"] = acquired_at
            self._file.close()
        except BaseException as err:
            self._failed(err)
            self.abandon()
            raise
        fsync_path(self.partial_path)
        size = self.partial_path.stat().st_size
        os.replace(self.partial_path, self.final_path)
        fsync_dir(self.final_path.parent)
        return FieldData(self.index, z_um, acquired_at, frames, size)

    def abandon(self) -> None:
        """Drop an unfinished field (Ctrl-C mid-field, a camera error): nothing is kept."""
        try:
            if not self._broken:
                self._file.close()
        except BaseException as err:
            self._failed(err)
            if not self._broken:
                raise
        finally:
            self.partial_path.unlink(missing_ok=True)


__all__ = ["FieldData", "FieldWriter"]
