"""Running one registration step over many fields, in worker processes when asked.

A step is a module-level function ``fn(cache, job)`` taking a :class:`~registration.scans.
ScanCache` and one job (a picklable dataclass). :func:`run_tasks` calls it in this process
with the caller's cache, or in a process pool where each worker opens its own cache, closed
when the worker exits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TypeVar

from registration.scans import ScanCache

J = TypeVar("J")
R = TypeVar("R")

#: ``progress(phase, done, total)``
Progress = Callable[[str, int, int], None]

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
    progress: Progress | None = None,
    phase: str = "",
) -> Iterator[R]:
    """Results of ``fn(cache, job)`` over ``jobs`` in order, in a process pool when
    ``workers > 1``; ``progress(phase, done, total)`` after each."""
    total = len(jobs)
    if progress:
        progress(phase, 0, total)
    if workers <= 1 or total <= 1:
        for k, job in enumerate(jobs):
            yield fn(cache, job)
            if progress:
                progress(phase, k + 1, total)
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
        for k, r in enumerate(pool.map(partial(_in_worker, fn), jobs)):
            yield r
            if progress:
                progress(phase, k + 1, total)


__all__ = ["Progress", "run_tasks"]
