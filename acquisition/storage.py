"""The scan's storage thread: compression and HDF5 writes off the acquisition thread.

The acquisition loop hands frames over a bounded queue, so memory stays flat whatever the
scan's size and a slow disk back-pressures the camera instead of filling RAM. Every change of
the scan file (new field, commit, failure) happens on this thread, in order.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from acquisition.scanfile import FieldWriter, ScanWriter


@dataclass
class StorageStats:
    frames: int = 0
    bytes_raw: int = 0
    fields_committed: int = 0


class StorageThread:
    """Consumes ``frame``/``commit``/``abandon``/``fail`` messages for a :class:`ScanWriter`."""

    #: How long the thread waits for a message before it checks whether the index is due.
    IDLE_S = 0.1

    def __init__(self, writer: ScanWriter, *, max_queued_frames: int = 8) -> None:
        self.writer = writer
        self.stats = StorageStats()
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_frames)
        self._open: dict[int, FieldWriter] = {}
        self._thread = threading.Thread(target=self._run, name="scope-storage", daemon=True)
        self._thread.start()

    # -- producer side (acquisition thread) --------------------------------------------------
    def _put(self, item: tuple) -> None:
        if self.error is not None:
            raise self.error
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.error is not None:
                    raise self.error from None
                if not self._thread.is_alive():
                    raise RuntimeError("the storage thread stopped unexpectedly") from None

    def frame(self, index: int, channel: int, image: np.ndarray, meta: dict[str, Any]) -> None:
        self._put(("frame", index, channel, image, meta))

    def commit(self, index: int, *, z_um: float) -> None:
        self._put(("commit", index, z_um))

    def abandon(self, index: int) -> None:
        self._put(("abandon", index))

    def fail(self, index: int) -> None:
        self._put(("fail", index))

    def close(self) -> None:
        """Finish every queued message, then stop. Re-raises a storage error."""
        if self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join()
        if self.error is not None:
            raise self.error

    # -- consumer side -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.IDLE_S)
            except queue.Empty:
                self._idle()
                continue
            kind = item[0]
            if kind == "stop":
                break
            if self.error is not None:
                continue  # drain: nothing more is written after a storage failure
            try:
                self._handle(item)
            except BaseException as err:
                self.error = err
                for fw in self._open.values():
                    fw.abandon()
                self._open.clear()
        for fw in self._open.values():  # fields never committed are not kept
            fw.abandon()
        self._open.clear()
        try:  # the final index rebuild, and the journal closed
            self.writer.close()
        except BaseException as err:
            if self.error is None:
                self.error = err

    def _idle(self) -> None:
        """No message for a while: bring the index up to date so plain readers see it."""
        if self.error is not None or not self.writer.index_due():
            return
        try:
            self.writer.write_index()
        except BaseException as err:
            self.error = err

    def _handle(self, item: tuple) -> None:
        kind, index = item[0], item[1]
        if kind == "frame":
            _, _, channel, image, meta = item
            fw = self._open.get(index)
            if fw is None:
                fw = self.writer.new_field(index, image.shape[:2])
                self._open[index] = fw
            fw.add(channel, image, meta)
            self.stats.frames += 1
            self.stats.bytes_raw += image.nbytes
        elif kind == "commit":
            fw = self._open.pop(index)
            self.writer.field_done(fw.commit(z_um=item[2]))
            self.stats.fields_committed += 1
        elif kind == "abandon":
            fw = self._open.pop(index, None)
            if fw is not None:
                fw.abandon()
        elif kind == "fail":
            fw = self._open.pop(index, None)
            if fw is not None:
                fw.abandon()
            self.writer.field_failed(index)
