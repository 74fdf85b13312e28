"""When a scan file's index is rebuilt: after every field while that is cheap, else paced.

A rebuild rewrites the whole index (:meth:`acquisition.scanwriter.ScanWriter.write_index`), so
its cost grows with the scan; the journal already makes every finished field durable, and the
index only has to keep plain readers (``scope info``, a viewer) close behind the scan.
:class:`IndexSchedule` keeps the bookkeeping flat however many fields a scan has.
"""

from __future__ import annotations

import time


class IndexSchedule:
    """Decides whether the index of a scan of ``n_fields`` fields is due for a rebuild.

    Call :meth:`changed` when a field finishes or fails, :meth:`due` to ask, and
    :meth:`rebuilt` after each rebuild with how long it took.
    """

    #: Scans of at most this many fields are indexed after every field (a rebuild costs a few
    #: ms there), and so is any scan whose last rebuild took less than CHEAP_REBUILD_S ...
    SMALL_SCAN_FIELDS = 256
    CHEAP_REBUILD_S = 0.02
    #: ... a costlier one once the fields finished since the last rebuild have "paid" for it
    #: at this many seconds each (bookkeeping stays flat however many fields the scan has) ...
    REBUILD_BUDGET_S = 0.005
    #: ... and at least this long after the last one (an fsync stalled by a busy disk costs
    #: up to a second whatever the index's size: fewer rebuilds, fewer stalls) ...
    MIN_INTERVAL_S = 0.25
    #: ... or once the oldest unindexed field is this old (plain readers lag at most ~this),
    #: provided the storage thread spent at most a third of its time since on rebuilds
    #: (a disk so slow that a rebuild takes seconds stretches the lag rather than the scan).
    MAX_LAG_S = 0.8

    def __init__(self, n_fields: int) -> None:
        self.n_fields = n_fields
        self.dirty = False  # a field finished or failed since the last rebuild
        self.unindexed = 0  # fields finished since the index was last rebuilt
        self.unindexed_since = 0.0  # when the oldest of them finished (monotonic)
        self.last_rebuild_s = 0.0  # how long the last index rebuild took
        self.last_rebuild_end = 0.0  # when it ended (monotonic)

    def changed(self) -> None:
        """A field finished or failed: the index no longer says so."""
        if not self.dirty:
            self.unindexed_since = time.monotonic()
        self.dirty = True
        self.unindexed += 1

    def due(self) -> bool:
        """Whether the index should be rebuilt now (cost paid for, or a field waits too long)."""
        if not self.dirty:
            return False
        if self.n_fields <= self.SMALL_SCAN_FIELDS:
            return True
        if self.last_rebuild_s <= self.CHEAP_REBUILD_S:
            return True
        now = time.monotonic()
        if (
            self.unindexed * self.REBUILD_BUDGET_S >= self.last_rebuild_s
            and now - self.last_rebuild_end >= self.MIN_INTERVAL_S
        ):
            return True
        return (
            now - self.unindexed_since >= self.MAX_LAG_S
            and now - self.last_rebuild_end >= 2 * self.last_rebuild_s
        )

    def rebuilt(self, seconds: float) -> None:
        """The index was rebuilt (taking ``seconds``) and holds every field again."""
        self.dirty = False
        self.unindexed = 0
        self.last_rebuild_s = seconds
        self.last_rebuild_end = time.monotonic()


__all__ = ["IndexSchedule"]
