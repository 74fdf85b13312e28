"""The libraries' progress protocol and the CLI's rich implementation of it."""

from __future__ import annotations

import io

from rich.console import Console

from acquisition.progress import NO_PROGRESS, NullProgress, Progress, or_null
from scope.progress import RichProgress


def test_null_progress_is_the_default_and_does_nothing():
    assert isinstance(NO_PROGRESS, Progress) and isinstance(NO_PROGRESS, NullProgress)
    assert or_null(None) is NO_PROGRESS
    mine = NullProgress()
    assert or_null(mine) is mine
    NO_PROGRESS.start("x", 3, label="x", done=1)
    NO_PROGRESS.advance("x", 2, info="i")
    NO_PROGRESS.note("n", warning=True)
    NO_PROGRESS.close()


def _console(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=False, width=120, highlight=False)


def test_rich_progress_draws_bars_and_prints_notes():
    buf = io.StringIO()
    with RichProgress(_console(buf)) as p:
        assert isinstance(p, Progress)
        p.start("fields", 4, label="staining fields")
        p.advance("fields", 3, info="12 MB/s")
        p.start("fields", 2, label="again")  # restarts the bar
        p.advance("fields")
        p.advance("other")  # a bar never started appears with an unknown total
        p.note("[not markup] field 3 failed", warning=True)
        tasks = {t.description: t for t in p._progress.tasks}
        assert tasks["again"].total == 2 and tasks["again"].completed == 1
        assert tasks["other"].total is None and tasks["other"].completed == 1
    out = buf.getvalue()
    assert "[not markup] field 3 failed" in out
    assert "again" in out  # the final state is drawn when the display closes


def test_quiet_rich_progress_prints_only_notes():
    buf = io.StringIO()
    with RichProgress(_console(buf), bars=False) as p:
        p.start("fields", 4, label="staining fields")
        p.advance("fields", 4)
        p.note("note: something")
    assert buf.getvalue() == "note: something\n"
