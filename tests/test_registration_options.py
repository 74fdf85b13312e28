"""The match and 100x option models: ranges refused with the option named; the CLI agrees."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from registration.highres_options import HighresOptions
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


def test_highres_cli_options_come_from_the_model():
    from typer.testing import CliRunner

    from scope.cli import app
    from scope.commands.match import HIGHRES_FLAGS, match

    params = inspect.signature(match).parameters
    text = " ".join(CliRunner().invoke(app, ["match", "--help"], terminal_width=200).output.split())
    for name, flag in HIGHRES_FLAGS.items():
        assert params[name].default is None  # not given: the model's default applies
        assert flag in text, flag
        assert f"(default {HighresOptions.model_fields[name].default})" in text, name
    assert "--highres-param" in text


@pytest.mark.parametrize(
    ("argv", "must"),
    [
        (["--highres-search-um", "0"], "--highres-search-um: Input should be greater than 0"),
        (["--highres-param", "refine_px=2.5"], "'refine_px=2.5': '2.5' is not an integer"),
        (["--highres-param", "scale_step=0"], "--highres-param scale_step: Input should be"),
        (["--highres-param", "rims=1"], "expected NAME=VALUE with NAME one of search_um"),
        (["--highres-param", "gaussian_ksize=8"], "gaussian_ksize: a kernel size must be odd"),
        (
            ["--highres-min-score", "0.5", "--highres-param", "min_score=0.6"],
            "min_score is given twice (--highres-min-score and --highres-param)",
        ),
    ],
)
def test_highres_options_are_refused_in_one_line(argv, must, capsys, tmp_path):
    """Checked before any file is read: the dataset and scan need not exist."""
    from scope.cli import main

    hr = ["--highres", str(tmp_path / "s.highres.scan.h5"), str(tmp_path / "s.dataset.h5")]
    assert main(["match", *hr, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and must in err, err


def test_highres_options_need_highres(capsys):
    from scope.cli import main

    assert main(["match", "a.scan.h5", "b.scan.h5", "--highres-min-score", "0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--highres-min-score applies to scope match --highres only" in err, err
    # a range the CLI knows from the model is refused by the option parser itself
    assert main(["match", "--highres", "h.scan.h5", "d.h5", "--highres-min-score", "2"]) == 2
    assert "--highres-min-score" in capsys.readouterr().err


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
