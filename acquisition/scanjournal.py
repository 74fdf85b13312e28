"""The scan journal: an append-only record of finished fields beside the field files.

``<slide>.<pass>.fields/journal.jsonl`` holds one JSON line per finished field, appended right
after the field file is fsynced and renamed into place::

    {"field": 12, "z_um": 1.5, "acquired_at": "...", "file_bytes": 52311, "frames": "<base64>"}

``frames`` is the field's ``frames`` table (one row per image: position, channel, exposure,
gain, stage x/y/z, time), the raw little-endian bytes of its numeric columns in base64, so
that reading 10,000 lines takes a fraction of a second.

It makes the bookkeeping of a scan flat in its field count: a finished field costs one short
append, and the scan index (the ``.scan.h5`` readers open) is rebuilt from memory only now and
then (see :class:`acquisition.scanfile.ScanWriter`). ``--resume`` reads it instead of opening
every field file.

The journal is never the only witness of a field: the field file is. A line lost in a crash
(the append had not reached the disk) only means ``--resume`` opens that one field file to
adopt it; a torn last line is skipped; a line whose field file is gone or has another size
is ignored (the field is imaged again). So it needs no fsync of its own.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

JOURNAL_NAME = "journal.jsonl"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def journal_path(fields_dir: Path) -> Path:
    return Path(fields_dir) / JOURNAL_NAME


def read_journal(fields_dir: Path, frame_dtype: np.dtype) -> dict[int, dict[str, Any]]:
    """Field index → its latest journal entry (``frames`` decoded to ``frame_dtype`` rows);
    torn or foreign lines are skipped."""
    path = journal_path(fields_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    entries: dict[int, dict[str, Any]] = {}
    for line in data.splitlines():
        try:
            entry = json.loads(line)
            i = int(entry["field"])
            entry["z_um"] = float(entry["z_um"])
            entry["file_bytes"] = int(entry["file_bytes"])
            str(entry["acquired_at"])
            entry["frames"] = np.frombuffer(
                base64.b64decode(entry["frames"], validate=True), dtype=frame_dtype
            )
        except (ValueError, TypeError, KeyError):
            continue  # a line torn by a crash, or not ours
        entries[i] = entry
    return entries


class Journal:
    """Appends one line per finished field (``O_APPEND``: a line is never interleaved)."""

    def __init__(self, fields_dir: Path) -> None:
        self.path = journal_path(fields_dir)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(
        self, field: int, *, z_um: float, acquired_at: str, file_bytes: int, frames: np.ndarray
    ) -> None:
        if self._fd is None:
            raise RuntimeError("the scan journal is closed")
        entry = {
            "field": int(field),
            "z_um": float(z_um),
            "acquired_at": acquired_at,
            "file_bytes": int(file_bytes),
            "frames": base64.b64encode(np.ascontiguousarray(frames).tobytes()).decode(),
        }
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):  # a short write (full disk): the torn line is skipped on read
            raise OSError(28, "No space left on device", str(self.path))

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def quick_field_state(path: str | Path, file_bytes: int) -> str:
    """``ok``/``missing``/``damaged`` from a stat and the HDF5 signature, without opening HDF5.

    A field file is written once and renamed into place, so a file of another size than the
    one recorded when it was committed (truncated, replaced) or without the HDF5 signature
    is damaged.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "damaged"
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, len(HDF5_SIGNATURE))
    except OSError:
        return "damaged"
    finally:
        os.close(fd)
    if size != file_bytes or head != HDF5_SIGNATURE:
        return "damaged"
    return "ok"
