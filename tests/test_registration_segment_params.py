"""WBC detection parameters: one pydantic model (ranges, defaults, help) that the library, the
split modules and the CLI (`scope segment`, `scope match`) all take their values from."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from registration.segment import (
    DEFAULT_PARAMS,
    PARAM_NAMES,
    SegmentationError,
    WbcParams,
    make_params,
    segment_wbcs,
)
from registration.wbc_params import PARAM_FIELDS
from scope.cli import main


def test_every_parameter_has_help_and_a_range():
    for name in PARAM_NAMES:
        field = PARAM_FIELDS[name]
        assert field.description, name
        if field.annotation is float:
            bounds = {type(m).__name__ for m in field.metadata}
            assert bounds & {"Ge", "Gt"} and "Le" in bounds, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"saturation_min": 300}, r"saturation_min: Input should be less than or equal to 255"),
        ({"min_dye_fraction": -0.1}, r"min_dye_fraction: Input should be greater than or equal"),
        ({"max_cell_radius_um": 0}, r"max_cell_radius_um: Input should be greater than 0"),
        ({"hue_min": 150, "hue_max": 120}, r"parameters: hue ranges must satisfy"),
    ],
)
def test_out_of_range_is_one_line_naming_the_parameter(kwargs, message):
    with pytest.raises(SegmentationError, match=message) as err:
        make_params(**kwargs)
    assert "\n" not in str(err.value)


def test_the_model_copies_records_and_pickles_like_a_dataclass():
    p = make_params(saturation_min=70)
    assert p.saturation_min == 70.0 and DEFAULT_PARAMS.saturation_min == 90.0
    assert dataclasses.asdict(p)["saturation_min"] == 70.0
    assert pickle.loads(pickle.dumps(p)) == p  # worker processes receive it
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.saturation_min = 10  # type: ignore[misc]
    with pytest.raises(ValueError, match="min_cell_area_um2"):
        dataclasses.replace(p, min_cell_area_um2=500.0)  # replace validates too
    assert isinstance(make_params(), WbcParams)


def _image(tmp_path):
    import cv2

    img = np.full((200, 200, 3), 235, np.uint8)
    yy, xx = np.mgrid[:200, :200]
    img[(xx - 120) ** 2 + (yy - 80) ** 2 < 20**2] = (200, 190, 230)
    img[(xx - 120) ** 2 + (yy - 80) ** 2 < 10**2] = (110, 60, 160)
    path = tmp_path / "cell.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return img, path


def test_scope_segment_takes_typed_detection_options_from_the_model(tmp_path, capsys):
    img, path = _image(tmp_path)
    base = ["segment", str(path), "--pixel-size-um", "0.3"]
    csv_a, csv_b = tmp_path / "a.csv", tmp_path / "b.csv"
    # a fixed saturation scale and a nucleus box above the nucleus's saturation (S ≈ 160)
    typed = ["--saturation-min", "250", "--saturation-scale", "1"]
    assert main([*base, *typed, "--csv", str(csv_a)]) == 0
    assert (
        main([*base, "-p", "saturation_min=250", "-p", "saturation_scale=1", "--csv", str(csv_b)])
        == 0
    )
    assert csv_a.read_text() == csv_b.read_text()
    assert len(csv_a.read_text().splitlines()) == 1  # the header only: no cell
    assert len(segment_wbcs(img, pixel_size_um=0.3).centroids) == 1  # found by default
    capsys.readouterr()
    # the range comes from the model: a usage error
    assert main([*base, "--min-dye-fraction", "2"]) == 2
    assert "--min-dye-fraction" in capsys.readouterr().err
    # the same parameter twice, with different values: one line
    assert main([*base, "--saturation-min", "70", "-p", "saturation_min=80"]) == 1
    err = capsys.readouterr().err.strip()
    assert "saturation_min is given twice" in err and len(err.splitlines()) == 1
    assert main([*base, "-p", "adapt=maybe"]) == 1
    assert "is not true or false" in capsys.readouterr().err
    assert main([*base, "-p", "max_cell_radius_um=-1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "max_cell_radius_um: Input should be greater than 0" in err


def test_cli_options_carry_the_models_defaults_and_ranges():
    import inspect
    import typing

    from scope.commands.match import match
    from scope.commands.segment import DETECTION_NAMES, segment

    for command in (segment, match):
        params = inspect.signature(command).parameters
        for name in DETECTION_NAMES:
            field = PARAM_FIELDS[name]
            option = typing.get_args(params[name].annotation)[1]
            assert params[name].default is None  # not given: the model's default applies
            assert f"(default {field.default})" in option.help
            le = next(m.le for m in field.metadata if type(m).__name__ == "Le")
            assert option.max == le
