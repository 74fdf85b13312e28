"""`scope demo` reports its steps through the progress protocol (fast; no pipeline run)."""

from __future__ import annotations

import pytest

from acquisition.progress import NullProgress
from scope.demo import Demo, DemoError


class Notes(NullProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str, *, warning: bool = False) -> None:
        self.lines.append(text)


def test_steps_are_numbered_timed_notes(tmp_path):
    notes = Notes()
    demo = Demo(tmp_path / "out", slides=1, quick=True, progress=notes)
    assert demo._timed("first", lambda: 42) == 42
    assert demo._timed("second", lambda: None) is None
    assert [s.name for s in demo.result.steps] == ["first", "second"]
    assert notes.lines[0].startswith("── step 1/15: first (0:00 so far)")
    assert notes.lines[1].startswith("✓ first (") and notes.lines[1].endswith(" s)")
    assert notes.lines[2].startswith("── step 2/15: second")


def test_a_failing_command_names_its_step(tmp_path, capsys):
    notes = Notes()
    demo = Demo(tmp_path / "out", slides=1, quick=True, progress=notes)
    with pytest.raises(DemoError, match=r"^step 'bad' failed \(exit 2\); its message is above$"):
        demo._cli("bad", ["no-such-command"])
    assert notes.lines[1] == "$ scope no-such-command"
    assert demo.result.steps == []
