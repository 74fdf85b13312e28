"""rich renderings shared by the commands: the progress display and summary tables.

:class:`RichProgress` is the one rich implementation of the libraries' progress protocol
(:class:`acquisition.progress.Progress`); commands build one and pass it to the library call.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class RichProgress:
    """Named rich bars with a one-line detail, elapsed time and ETA, on stderr.

    Implements :class:`acquisition.progress.Progress`; use it as a context manager (or call
    :meth:`close`). Notes are printed above the bars, so they also reach a log file. With
    ``bars=False`` (a command's ``--quiet``) only the notes are printed.
    """

    def __init__(
        self, console: Console | None = None, *, bars: bool = True, transient: bool = False
    ) -> None:
        self.console = console if console is not None else stderr_console()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=transient,
        )
        self._tasks: dict[str, Any] = {}
        self._bars = bars
        self._closed = False
        if bars:
            self._progress.start()

    def start(
        self, key: str, total: int | None, *, label: str | None = None, done: int = 0
    ) -> None:
        if not self._bars:
            return
        description = label if label is not None else key
        if key in self._tasks:
            self._progress.reset(
                self._tasks[key], total=total, completed=done, description=description, info=""
            )
        else:
            self._tasks[key] = self._progress.add_task(
                description, total=total, completed=done, info=""
            )

    def advance(self, key: str, n: int = 1, *, info: str | None = None) -> None:
        if not self._bars:
            return
        if key not in self._tasks:
            self.start(key, None)
        fields = {} if info is None else {"info": info}
        self._progress.update(self._tasks[key], advance=n, **fields)

    def note(self, text: str, *, warning: bool = False) -> None:
        self.console.print(text, style="yellow" if warning else None, markup=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._bars:
                self._progress.stop()

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stderr_console() -> Console:
    """The console progress and notes go to (stderr, so stdout stays the command's output)."""
    return Console(stderr=True, highlight=False)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def scan_summary_table(summary) -> Table:
    table = Table(title=f"scan {summary.path.name}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    done = summary.done_before + summary.done_now
    table.add_row(
        "fields",
        f"{done} of {summary.n_fields} done"
        + (f" ({summary.done_before} before this run)" if summary.done_before else ""),
    )
    if summary.failed:
        table.add_row("failed", ", ".join(str(i) for i in summary.failed))
    if summary.frame_wh:
        table.add_row("frame", f"{summary.frame_wh[0]} x {summary.frame_wh[1]} RGB")
    table.add_row("images this run", str(summary.n_images))
    table.add_row("time", f"{summary.seconds:.1f} s")
    if summary.seconds > 0 and summary.bytes_raw:
        table.add_row("throughput", f"{summary.bytes_raw / summary.seconds / 1e6:.0f} MB/s raw")
    table.add_row("on disk", human_bytes(summary.bytes_on_disk))
    table.add_row(
        "status",
        "[green]complete[/]" if summary.complete else "[yellow]incomplete (--resume continues)[/]",
    )
    if getattr(summary, "simulated", False):
        table.add_row("data", "[yellow]SIMULATED (built-in simulator), not a real slide[/]")
    return table


def calibration_table(results) -> Table:
    table = Table(title="calibration")
    for col in ("channel", "kind", "exposure", "old ms", "new ms", "gain", "measured", "sat %"):
        table.add_column(col, justify="left" if col in ("channel", "kind", "exposure") else "right")
    for r in results:
        table.add_row(
            r.name,
            r.kind,
            r.exposure_level,
            f"{r.old_exposure_ms:g}",
            f"{r.exposure_ms:.3g}",
            f"{r.gain:.3g}",
            f"{r.measured:.1f}",
            f"{r.saturated_percent:.2f}",
        )
    return table
