"""Hardware profiles: schema validation, geometry, presets from profiles and tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

import hardware_profiles as hp
from hardware_profiles.loader import dump

EXPECTED_PLS43 = {
    "full": 74,
    "full-nohe": 44,
    "le36": 44,
    "le36-nohe": 29,
    "le18": 14,
    "le8": 4,
    "brightfield": 1,
}


def test_shipped_profiles_load():
    assert set(hp.list_profiles()) >= {"pls43", "grid9x9"}
    for name in hp.list_profiles():
        assert hp.load(name).name == name


def test_pls43_matches_the_thesis_instrument(pls43):
    leds = pls43.led_array.leds
    assert len(leds) == 43
    thetas = np.array([led.theta_deg for led in leds])
    assert (thetas <= 8.0 + 0.05).sum() == 3
    assert thetas.max() == pytest.approx(57.0, abs=0.5)
    obj = pls43.scan_objective
    assert (obj.magnification, obj.na, obj.pixel_size_um) == (20, 0.4, 0.293)
    assert pls43.highres_objective.pixel_size_um == 0.0586
    dark = [obj.is_darkfield(t) for t in thetas]
    assert sum(dark) == 30  # 6 per arm
    # 2 brightfield LEDs per arm at <= 18 degrees, 3 of the 6 darkfield ones <= 36 degrees
    assert sum(1 for t in thetas if 8.5 < t <= 18.05) == 10
    assert sum(1 for t, d in zip(thetas, dark, strict=True) if d and t <= 36.05) == 15
    assert (pls43.camera.sensor_width_px, pls43.camera.sensor_height_px) == (1920, 1200)
    assert not (pls43.camera.flip_x or pls43.camera.flip_y)
    bf = pls43.stack[0]
    assert bf.kind == "brightfield" and len(bf.leds) == 13
    for ch in pls43.stack:
        if ch.kind in ("brightfield", "pls"):
            assert ch.gain == 1.0


def test_nothing_is_darkfield_under_oil(pls43):
    oil = pls43.highres_objective
    assert not any(oil.is_darkfield(led.theta_deg) for led in pls43.led_array.leds)


def test_theta_phi_derived_from_position():
    led = hp.Led(id=0, x_mm=0.0, y_mm=10.0, z_mm=10.0)
    assert led.theta_deg == pytest.approx(45.0)
    assert led.phi_deg == pytest.approx(90.0)


@pytest.mark.parametrize(("preset", "count"), EXPECTED_PLS43.items())
def test_preset_counts_from_profile(pls43, preset, count):
    keep = hp.select_channels(pls43.channel_table(), preset)
    assert len(keep) == count
    assert pls43.channel_table()[keep[0]]["kind"] == "brightfield"


@pytest.mark.parametrize(("preset", "count"), EXPECTED_PLS43.items())
def test_preset_counts_from_a_structured_channel_table(pls43, preset, count):
    """The same function on a table read back from a file (structured array, str columns)."""
    from acquisition.scanfile import CHANNEL_FIELDS
    from acquisition.tables import decode, to_records

    table = decode(to_records(pls43.channel_table(), CHANNEL_FIELDS))
    assert len(hp.select_channels(table, preset)) == count


def test_grid_profile_is_general(grid9x9):
    t = grid9x9.channel_table()
    assert len(grid9x9.led_array.leds) == 81
    assert len(hp.select_channels(t, "brightfield")) == 1
    assert len(hp.select_channels(t, "full")) == len(t)


def test_unknown_preset_is_a_clear_error(pls43):
    with pytest.raises(hp.PresetError, match="unknown stack preset 'le99'"):
        hp.select_channels(pls43.channel_table(), "le99")


def _pls43_data(pls43) -> dict:
    return pls43.model_dump(mode="json")


def test_unknown_key_is_rejected(pls43, tmp_path):
    data = _pls43_data(pls43)
    data["camera"]["exposure_offset"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(hp.ProfileError, match=r"camera.exposure_offset: Extra inputs"):
        hp.load(path)


def test_pls_channel_on_a_darkfield_led_is_rejected(pls43, tmp_path):
    data = _pls43_data(pls43)
    dark_led = next(led for led in pls43.led_array.leds if led.theta_deg > 30)
    data["stack"][1]["leds"] = [dark_led.id]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(hp.ProfileError, match="is 'pls' but LED .* is darkfield"):
        hp.load(path)


def test_duplicate_led_ids_are_rejected(pls43, tmp_path):
    data = _pls43_data(pls43)
    data["led_array"]["leds"][1]["id"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(hp.ProfileError, match=r"LED ids must be unique; repeated: \[0\]"):
        hp.load(path)


def test_gain_outside_camera_range_is_rejected(pls43, tmp_path):
    data = _pls43_data(pls43)
    data["stack"][-1]["gain"] = 99.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(hp.ProfileError, match="gain 99.0 lies outside"):
        hp.load(path)


def test_unknown_profile_name_lists_shipped_ones():
    with pytest.raises(hp.ProfileError, match="unknown profile 'nope'; shipped profiles: .*pls43"):
        hp.load("nope")


def test_unreadable_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(hp.ProfileError, match="cannot read profile"):
        hp.load(path)


def test_dump_round_trip(pls43, tmp_path):
    path = dump(pls43, tmp_path / "copy.yaml")
    again = hp.load(path)
    assert again == pls43
    assert not math.isnan(again.channel_table()[1]["theta_deg"])
