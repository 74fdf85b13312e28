"""The match and 100x option models: ranges refused with the option named; the CLI agrees."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from registration.highres import HighresOptions
from registration.match import MatchOptions
from registration.qc import QcOptions


@pytest.mark.parametrize(
    ("field", "value"),
    [("crop_size", 15), ("crop_size", 63), ("search_px", 0), ("workers", 0), ("margin_um", 0.0)],
)
def test_match_options_refuse_values_out_of_range(field, value):
    with pytest.raises(ValidationError, match=field):
        MatchOptions(**{field: value})


def test_highres_options_refuse_values_out_of_range():
    with pytest.raises(ValidationError, match="min_score"):
        HighresOptions(min_score=2.0)
    assert HighresOptions().model_dump()["laplacian_ksize"] == 7


def test_cli_defaults_are_the_models_defaults():
    from scope.commands.match import match

    params = inspect.signature(match).parameters
    for name in ("crop_size", "search_px", "margin_um", "seed", "block_um", "workers"):
        assert params[name].default == MatchOptions.model_fields[name].default, name
    assert params["min_ssim"].default == QcOptions().min_ssim
    assert params["skip_blank"].default == MatchOptions().skip_blank


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_ssim", 1.5), ("min_ssim", -2.0), ("max_saturated_fraction", 2.0), ("pls_search_px", 0)],
)
def test_qc_options_refuse_values_out_of_range(field, value):
    with pytest.raises(ValidationError, match=field):
        QcOptions(**{field: value})


def test_cli_ranges_are_the_models_ranges():
    """`scope match` refuses what the models refuse, naming the option, before any work."""
    from typer.testing import CliRunner

    from scope.cli import app

    runner = CliRunner()
    for argv, option in (
        (["--min-ssim", "1.5"], "--min-ssim"),
        (["--search-px", "33"], "--search-px"),
        (["--margin-um", "0.5"], "--margin-um"),
        (["-j", "0"], "--workers"),
    ):
        result = runner.invoke(app, ["match", "a.scan.h5", "b.scan.h5", *argv])
        assert result.exit_code == 2, (argv, result.output)
        assert option in result.output, (argv, result.output)


def test_registration_reports_through_the_progress_protocol(tmp_path):
    """run_tasks opens one labelled bar per phase and advances it once per job."""
    from acquisition.progress import Progress
    from registration.parallel import PHASE_LABELS, run_tasks
    from registration.scans import ScanCache

    class Recorder:
        def __init__(self):
            self.calls = []

        def start(self, key, total, *, label=None, done=0):
            self.calls.append(("start", key, total, label))

        def advance(self, key, n=1, *, info=None):
            self.calls.append(("advance", key, n))

        def note(self, text, *, warning=False):
            self.calls.append(("note", text))

        def close(self):
            pass

    for workers in (1, 2):  # in this process, and in a pool
        rec = Recorder()
        assert isinstance(rec, Progress)
        with ScanCache() as cache:
            out = list(
                run_tasks(
                    _square, [1, 2, 3], cache=cache, workers=workers, progress=rec, phase="fine"
                )
            )
        assert out == [1, 4, 9]
        start = ("start", "fine", 3, PHASE_LABELS["fine"])
        assert rec.calls == [start] + [("advance", "fine", 1)] * 3


def _square(cache, job):
    return job * job
