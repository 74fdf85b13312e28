"""Scan files as the registration steps read them: a cache of open files, field centres, hashes.

:class:`ScanCache` replaces per-process globals: open it with ``with``, hand it to the steps
that read frames, and every file it opened is closed on exit. Worker processes get one each
from :func:`registration.parallel.run_tasks`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np


class ScanCache:
    """Open scan files by path, each opened once, with per-file facts (the brightfield channel).

    A context manager: ``with ScanCache() as cache: cache.scan(path).image(i, ch)``; leaving
    the block closes every file. Not shared between processes: each worker holds its own.
    """

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}
        self._brightfield: dict[str, int] = {}

    def scan(self, path: str | Path) -> Any:
        """The open :class:`acquisition.scanfile.ScanFile` at ``path`` (opened on first use)."""
        from acquisition.scanfile import ScanFile

        key = str(path)
        if key not in self._open:
            self._open[key] = ScanFile(key)
        return self._open[key]

    def brightfield(self, path: str | Path) -> int:
        """The brightfield channel index of the scan at ``path`` (looked up once)."""
        key = str(path)
        if key not in self._brightfield:
            self._brightfield[key] = self.scan(key).brightfield_index()
        return self._brightfield[key]

    def close(self) -> None:
        """Close every open file; the cache can be used again afterwards."""
        files, self._open = list(self._open.values()), {}
        self._brightfield.clear()
        for f in files:
            f.close()

    def __enter__(self) -> ScanCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def field_centres(scan: Any, channel: int) -> np.ndarray:
    """Stage centre of each field: the ``channel`` frame's read-back position if recorded."""
    pos = scan.positions
    centres = np.stack([pos["x_um"], pos["y_um"]], axis=1).astype(np.float64)
    frames = scan.frames
    if len(frames):
        sel = frames["channel"] == channel
        for row in frames[sel]:
            x, y = float(row["stage_x_um"]), float(row["stage_y_um"])
            if math.isfinite(x) and math.isfinite(y):
                centres[int(row["position"])] = (x, y)
    return centres


def brightfield_centres(scan: Any) -> np.ndarray:
    """:func:`field_centres` of the scan's brightfield channel."""
    return field_centres(scan, scan.brightfield_index())


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
