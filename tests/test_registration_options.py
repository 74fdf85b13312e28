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
