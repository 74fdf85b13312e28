"""Running one registration step over many fields, in worker processes when asked.

A step is a module-level function ``fn(cache, job)`` taking a :class:`~registration.scans.
ScanCache` and one job (a picklable dataclass). :func:`run_tasks` calls it in this process
with the caller's cache, or in a process pool where each worker opens its own cache, closed
when the worker exits. It reports through the libraries' progress protocol
(:class:`acquisition.progress.Progress`): one bar per phase, advanced per job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TypeVar

from acquisition.progress import NO_PROGRESS, Progress
from registration.scans import ScanCache

J = TypeVar("J")
R = TypeVar("R")

#: What a progress display shows for each phase of ``scope match`` (and ``--highres``).
PHASE_LABELS = {
    "survey": "coarse match + WBC detection",
    "fine": "fine match (SSIM)",
    "extract": "crops + QC",
    "write": "writing dataset",
    "scale": "100x: magnification",
    "targets": "100x: targets",
}

#: this worker process's cache (set by :func:`_start_worker`; never used in the parent)
_worker_cache: ScanCache | None = None


def _start_worker() -> None:
    from multiprocessing.util import Finalize

    global _worker_cache
    _worker_cache = ScanCache()
    Finalize(_worker_cache, _worker_cache.close, exitpriority=10)


def _in_worker(fn: Callable[[ScanCache, J], R], job: J) -> R:
    assert _worker_cache is not None, "run_tasks starts every worker with a cache"
    return fn(_worker_cache, job)


def run_tasks(
    fn: Callable[[ScanCache, J], R],
    jobs: Sequence[J],
    *,
    cache: ScanCache,
    workers: int = 1,
    progress: Progress = NO_PROGRESS,
    phase: str = "",
) -> Iterator[R]:
    """Results of ``fn(cache, job)`` over ``jobs`` in order, in a process pool when
    ``workers > 1``; bar ``phase`` of ``progress`` advances after each."""
    total = len(jobs)
    start_phase(progress, phase, total)
    if workers <= 1 or total <= 1:
        for job in jobs:
            yield fn(cache, job)
            progress.advance(phase)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # fork where the platform has it (scripts need no __main__ guard; each worker opens its
    # own files rather than using the parent's); spawn elsewhere
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(
        max_workers=min(workers, total),
        mp_context=mp.get_context(method),
        initializer=_start_worker,
    ) as pool:
        for r in pool.map(partial(_in_worker, fn), jobs):
            yield r
            progress.advance(phase)


def start_phase(progress: Progress, phase: str, total: int) -> None:
    """Open bar ``phase`` (labelled from :data:`PHASE_LABELS`) at 0 of ``total``."""
    progress.start(phase, total, label=PHASE_LABELS.get(phase, phase))


__all__ = ["PHASE_LABELS", "Progress", "run_tasks", "start_phase"]
