"""The scan file: ``<slide>.<pass>.scan.h5``, crash-safe and resumable.

Layout: docs/formats.md. A scan survives ``kill -9`` at any moment because nothing a
reader opens is ever written in place:

- each field is written to ``<slide>.<pass>.fields/field_NNNNN.h5.partial``, flushed, fsynced
  and renamed to ``field_NNNNN.h5`` only when all its images are on disk;
- each finished field appends one line to ``<slide>.<pass>.fields/journal.jsonl``
  (:mod:`acquisition.scanjournal`), so the per-field cost does not grow with the scan;
- the scan file itself is an index rewritten atomically (temp file + ``os.replace``) when a
  rebuild is due (about every half second at most, less often when rebuilds are costly
  relative to the fields, and always on close): attributes, the ``channels``/``positions``/
  ``frames`` tables, ``truth``, and ``images``, an external link to ``images.h5`` in the
  fields folder: a virtual dataset mapping every position to its field file, written once
  (relative paths, resolved next to it). Pending fields read as zeros;
  ``positions.status`` says which are done and ``positions.file_bytes`` the size of each
  done field's file (a cheap integrity check).

HDF5's SWMR mode does not give this: a killed SWMR writer leaves a file that plain readers
cannot open (docs/formats.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for every reader)
import numpy as np

from acquisition.geometry import FieldGeometry
from acquisition.scan_layout import (
    CHANNEL_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    FRAME_FIELDS,
    IMAGES_NAME,
    MAX_STAGE_UM,
    POSITION_FIELDS,
    TRUTH_CELL_FIELDS,
    TRUTH_FAULT_FIELDS,
    ScanFileError,
    check_positions,
    check_version,
    fields_dir,
    read_field_file,
    require_contents,
    scan_path,
)
from acquisition.scanjournal import quick_field_state
from acquisition.tables import read_table
from acquisition.vocabulary import PASSES, ChannelKind
from hardware_profiles import HardwareProfile
from hardware_profiles.loader import parse as parse_profile


def simulated_note(path: str | Path) -> str | None:
    """A one-line warning when the scan file (or a dataset made from one) holds simulated
    data, else None. Scans record ``simulated`` and ``backend`` at the root; datasets record
    ``simulated`` in their provenance."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except OSError:
        return None
    simulated = bool(attrs.get("simulated", False)) or attrs.get("backend") == "sim"
    if not simulated and "provenance" in attrs:
        try:
            simulated = bool(json.loads(attrs["provenance"]).get("simulated", False))
        except (ValueError, AttributeError):
            pass
    if not simulated:
        return None
    return f"note: {Path(path).name} holds SIMULATED data (scope's simulator), not a real slide"


class ScanFile:
    """Read-only view of a scan file (opens with plain h5py; pending fields read as zeros)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ScanFileError(f"scan file {str(self.path)!r} does not exist")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as err:
            from acquisition.files import hdf5_open_problem

            raise ScanFileError(hdf5_open_problem(self.path, err, "scope scan file")) from None
        fmt = self._f.attrs.get("format")
        if fmt != FORMAT:
            self._f.close()
            raise ScanFileError(
                f"{self.path} is not a scope scan file (format {fmt!r}, expected {FORMAT!r})"
            )
        try:
            check_version(self._f.attrs, self.path, FORMAT_VERSION)
            require_contents(
                self._f,
                self.path,
                ("channels", "positions", "frames"),
                ("slide", "pass", "pixel_size_um", "profile"),
            )
            self.attrs = dict(self._f.attrs)
            self.channels = read_table(self._f, "channels")
            self.positions = read_table(self._f, "positions")
            self.frames = self._f["frames"][()]
            for col in ("status", "x_um", "y_um", "z_um"):
                if col not in (self.positions.dtype.names or ()):
                    raise ScanFileError(
                        f"{self.path} is damaged: its 'positions' table has no {col!r} column"
                    )
        except ScanFileError:
            self._f.close()
            raise
        except (KeyError, OSError, ValueError) as err:
            self._f.close()
            raise ScanFileError(f"{self.path} is damaged ({err}); restore it or rescan") from None
        self._field_state: dict[int, str] | None = None
        self._images: h5py.Dataset | None = None

    @property
    def simulated(self) -> bool:
        """Whether the scan was made by the simulator (``--backend sim``)."""
        return bool(self.attrs.get("simulated", False)) or self.attrs.get("backend") == "sim"

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ScanFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def slide(self) -> str:
        return str(self.attrs["slide"])

    @property
    def pass_(self) -> str:
        return str(self.attrs["pass"])

    @property
    def pixel_size_um(self) -> float:
        return float(self.attrs["pixel_size_um"])

    @property
    def profile(self) -> HardwareProfile:
        try:
            data = json.loads(self.attrs["profile"])
        except (KeyError, ValueError, TypeError):
            raise ScanFileError(
                f"{self.path} is damaged: its 'profile' attribute is not valid JSON"
            ) from None
        return parse_profile(data, repr(str(self.path)))

    def field_state(self) -> dict[int, str]:
        """Every ``done`` field whose file is not readable: index → ``missing``/``damaged``.

        A field file whose size differs from the one recorded when it was committed, or that
        lacks the HDF5 signature, is damaged; this needs no HDF5 open, so it stays fast at
        thousands of fields.
        """
        if self._field_state is None:
            folder = fields_dir(self.path)
            n_ch = len(self.channels)
            sizes = (
                self.positions["file_bytes"]
                if "file_bytes" in (self.positions.dtype.names or ())
                else np.zeros(self.n_positions, dtype=np.int64)
            )
            state = {}
            folder_s = str(folder)
            for i in map(int, self.done):
                path = f"{folder_s}/field_{i:05d}.h5"
                # a size recorded at commit: a stat and the signature tell truncated/replaced
                # files; scans without one (older scope) open every field file
                state[i] = (
                    quick_field_state(path, int(sizes[i]))
                    if sizes[i] > 0
                    else read_field_file(Path(path), n_ch)
                )
            self._field_state = {i: s for i, s in state.items() if s != "ok"}
        return self._field_state

    def integrity_problem(self) -> str:
        """'' when every done field is readable, else one line naming them and the fix."""
        bad = self.field_state()
        if not bad:
            return ""
        parts = []
        for what in ("missing", "damaged"):
            idx = sorted(i for i, s in bad.items() if s == what)
            if idx:
                more = f" and {len(idx) - 8} more" if len(idx) > 8 else ""
                numbers = ", ".join(map(str, idx[:8]))
                parts.append(f"field{'s' if len(idx) > 1 else ''} {numbers}{more} {what}")
        return (
            f"{self.path}: {'; '.join(parts)} (their files in {fields_dir(self.path).name}/); "
            f"run the same scope scan command with --resume to image them again"
        )

    def verify(self) -> None:
        """Raise :class:`ScanFileError` when a done field's file is missing or damaged."""
        problem = self.integrity_problem()
        if problem:
            raise ScanFileError(problem)

    @property
    def n_positions(self) -> int:
        return len(self.positions)

    @property
    def done(self) -> np.ndarray:
        return np.flatnonzero(self.positions["status"] == "done")

    @property
    def complete(self) -> bool:
        """Every field done and its file readable."""
        return bool(len(self.done) == self.n_positions) and not self.field_state()

    @property
    def images(self) -> h5py.Dataset:
        """``(n_positions, n_channels, H, W, 3) uint8`` (virtual; pending fields are zeros).

        Opened once per file: each lookup follows the external link and parses one mapping
        per field (~13 ms at 3,000 fields), which per frame read made reading every field
        quadratic in the field count.
        """
        if self._images is None:
            if "images" not in self._f:
                raise ScanFileError(f"{self.path} holds no images yet (no field finished)")
            self._images = self._f["images"]
        return self._images

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the stored frames."""
        return tuple(self.images.shape[2:4])

    @property
    def geometry(self) -> FieldGeometry:
        """Every field's frame geometry (stored frames are stage-aligned)."""
        h, w = self.frame_shape
        return FieldGeometry(w, h, self.pixel_size_um)

    def image(self, position: int, channel: int | str = 0) -> np.ndarray:
        """One ``(H, W, 3) uint8`` frame; ``channel`` by index or name."""
        if isinstance(channel, str):
            names = list(self.channels["name"])
            if channel not in names:
                raise ScanFileError(f"{self.path} has no channel {channel!r}")
            channel = names.index(channel)
        if self.positions["status"][position] != "done":
            raise ScanFileError(f"{self.path}: field {position} was not acquired")
        return self.images[position, channel]

    def stack(self, position: int) -> np.ndarray:
        """``(n_channels, H, W, 3) uint8`` — every channel of one field."""
        if self.positions["status"][position] != "done":
            raise ScanFileError(f"{self.path}: field {position} was not acquired")
        return self.images[position]

    def brightfield_index(self) -> int:
        idx = np.flatnonzero(self.channels["kind"] == ChannelKind.BRIGHTFIELD)
        if len(idx) == 0:
            raise ScanFileError(f"{self.path} has no brightfield channel")
        return int(idx[0])

    def truth(self) -> dict[str, Any] | None:
        """The simulator's ground truth, or None for real scans."""
        if "truth" not in self._f:
            return None
        g = self._f["truth"]
        out: dict[str, Any] = {
            "slide_to_stage": np.asarray(g.attrs["slide_to_stage"]),
            "magnification_ratio": float(g.attrs["magnification_ratio"])
            if "magnification_ratio" in g.attrs
            else None,
            "cells": read_table(g, "cells"),
            "faults": read_table(g, "faults"),
            "attrs": {
                k: v
                for k, v in g.attrs.items()
                if k not in ("slide_to_stage", "magnification_ratio")
            },
        }
        return out


def pixel_to_stage(
    x_px: np.ndarray | float,
    y_px: np.ndarray | float,
    *,
    field_x_um: float,
    field_y_um: float,
    width: int,
    height: int,
    pixel_size_um: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y) of a W x H frame → stage µm (:meth:`FieldGeometry.pixel_to_stage`)."""
    geometry = FieldGeometry(width, height, pixel_size_um)
    return geometry.pixel_to_stage(x_px, y_px, field_x_um, field_y_um)


def stage_to_pixel(
    x_um: np.ndarray | float,
    y_um: np.ndarray | float,
    *,
    field_x_um: float,
    field_y_um: float,
    width: int,
    height: int,
    pixel_size_um: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pixel_to_stage` (:meth:`FieldGeometry.stage_to_pixel`)."""
    geometry = FieldGeometry(width, height, pixel_size_um)
    return geometry.stage_to_pixel(x_um, y_um, field_x_um, field_y_um)


# the writer and the layout live beside this reader; their names stay importable from here
from acquisition.scanwriter import FieldData, FieldWriter, ScanWriter  # noqa: E402

__all__ = [
    "CHANNEL_FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "FRAME_FIELDS",
    "IMAGES_NAME",
    "MAX_STAGE_UM",
    "PASSES",
    "POSITION_FIELDS",
    "TRUTH_CELL_FIELDS",
    "TRUTH_FAULT_FIELDS",
    "FieldData",
    "FieldWriter",
    "ScanFile",
    "ScanFileError",
    "ScanWriter",
    "check_positions",
    "check_version",
    "fields_dir",
    "pixel_to_stage",
    "read_field_file",
    "scan_path",
    "simulated_note",
    "stage_to_pixel",
]
