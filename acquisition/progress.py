"""The one progress protocol of the libraries.

Library code (acquisition, registration, training) reports progress through a
:class:`Progress` and never draws anything itself; the CLI passes its rich implementation
(``scope.progress.RichProgress``) and everyone else gets :data:`NO_PROGRESS`, which does
nothing. A progress has named bars: ``start`` (re)opens one with a total, ``advance`` moves it
and may replace its one-line ``info`` (a loss, a rate), ``note`` prints a line above the bars
(also where no terminal draws the bars, e.g. a log file), ``close`` ends the display.

    def work(items, progress: Progress = NO_PROGRESS):
        progress.start("items", len(items), label="processing")
        for item in items:
            ...
            progress.advance("items")
        progress.note("all done")

It lives at the bottom of the dependency chain so every stage can use it.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["NO_PROGRESS", "NullProgress", "Progress", "Throughput", "or_null"]


@runtime_checkable
class Progress(Protocol):
    """Where library code reports how far it got; see the module docstring."""

    def start(
        self, key: str, total: int | None, *, label: str | None = None, done: int = 0
    ) -> None:
        """Open bar ``key`` (or restart it if open) at ``done`` of ``total`` (None: unknown).

        ``label`` is what the display shows (default: ``key``).
        """

    def advance(self, key: str, n: int = 1, *, info: str | None = None) -> None:
        """Move bar ``key`` on by ``n``; ``info`` (if given) replaces its one-line detail."""

    def note(self, text: str, *, warning: bool = False) -> None:
        """Print one line of plain text above the bars (``warning``: something went wrong)."""

    def close(self) -> None:
        """End the display; no call follows."""


class NullProgress:
    """A :class:`Progress` that shows nothing (the libraries' default)."""

    def start(
        self, key: str, total: int | None, *, label: str | None = None, done: int = 0
    ) -> None:
        pass

    def advance(self, key: str, n: int = 1, *, info: str | None = None) -> None:
        pass

    def note(self, text: str, *, warning: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


#: The shared do-nothing progress.
NO_PROGRESS: Progress = NullProgress()


def or_null(progress: Progress | None) -> Progress:
    """``progress``, or :data:`NO_PROGRESS` for None (for ``progress=None`` parameters)."""
    return NO_PROGRESS if progress is None else progress


class Throughput:
    """MB/s of bytes handled since it was made (a bar's ``info``: scan frames, export)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.nbytes = 0

    def add(self, nbytes: int) -> str:
        """Count ``nbytes`` more; the rate so far, e.g. ``"85 MB/s"``."""
        self.nbytes += nbytes
        seconds = max(time.perf_counter() - self.t0, 1e-6)
        return f"{self.nbytes / seconds / 1e6:.0f} MB/s"
