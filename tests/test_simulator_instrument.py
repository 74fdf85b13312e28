"""The simulated instrument's own errors: measured, fixed per instrument, independent of slide."""

from __future__ import annotations

import numpy as np
import pytest

import hardware_profiles
from acquisition.simulator.config import SimConfig
from acquisition.simulator.microscope import SimulatedMicroscope

PROFILE = hardware_profiles.load("pls43")
BF = dict.fromkeys(PROFILE.stack[0].leds, 255)


def _rate(config: SimConfig, slide: str = "inst", leds=None, size=(480, 300)) -> np.ndarray:
    m = SimulatedMicroscope(PROFILE, slide=slide, seed=0, config=config)
    return m._electron_rate("unstained", 0.0, 0.0, 0.0, leds or BF, *size)


def test_vignetting_darkens_the_corners_of_a_full_frame():
    flat = SimConfig(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.0)
    vig = SimConfig(vignetting=0.3, dust_spots=0, fixed_pattern_noise=0.0)
    size = (PROFILE.camera.sensor_width_px // 4, PROFILE.camera.sensor_height_px // 4)
    ratio = _rate(vig, size=size).sum(2) / _rate(flat, size=size).sum(2)
    h, w = ratio.shape
    centre = ratio[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].mean()
    corner = ratio[:5, :5].mean()
    # a quarter-size centre crop of the sensor: its corners sit at a quarter of the radius
    assert centre == pytest.approx(1.0, abs=0.01)
    assert corner == pytest.approx(1 - 0.3 / 16, abs=0.01)


def test_fixed_pattern_noise_is_the_same_on_every_slide():
    cfg = SimConfig(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.02)
    ref = SimConfig(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.0)
    a = _rate(cfg, "a") / np.maximum(_rate(ref, "a"), 1e-6)
    b = _rate(cfg, "b") / np.maximum(_rate(ref, "b"), 1e-6)
    assert np.std(a) == pytest.approx(0.02, rel=0.15)
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_led_brightness_and_position_errors_belong_to_the_instrument():
    led = {20: 255}
    one = SimConfig(instrument_seed=1)
    other = SimConfig(instrument_seed=2)
    exact = SimConfig(led_brightness_error=0.0, led_position_error_mm=0.0)
    m1 = SimulatedMicroscope(PROFILE, slide="x", seed=0, config=one)
    m1b = SimulatedMicroscope(PROFILE, slide="y", seed=5, config=one)
    m2 = SimulatedMicroscope(PROFILE, slide="x", seed=0, config=other)
    m0 = SimulatedMicroscope(PROFILE, slide="x", seed=0, config=exact)
    # the same instrument whatever the slide; another instrument differs
    assert m1._led_gain == m1b._led_gain and m1._led_gain != m2._led_gain
    gains = np.array(list(m1._led_gain.values()))
    assert np.all(np.abs(gains - 1) <= 0.15) and gains.std() > 0.05
    moved = [
        np.hypot(
            m1._true_leds[i].x_mm - m0._true_leds[i].x_mm,
            m1._true_leds[i].y_mm - m0._true_leds[i].y_mm,
        )
        for i in m0._true_leds
    ]
    assert 0.2 < np.sqrt(np.mean(np.square(moved)) / 2) < 0.45  # 0.3 mm RMS per axis
    # a single LED's brightfield image follows its true brightness
    r1 = m1._electron_rate("unstained", 0.0, 0.0, 0.0, led, 64, 64).mean()
    r0 = m0._electron_rate("unstained", 0.0, 0.0, 0.0, led, 64, 64).mean()
    assert r1 / r0 == pytest.approx(m1._led_gain[20], rel=0.05)


def test_colour_crosstalk_mixes_neighbouring_channels():
    clean = SimConfig(camera_crosstalk=0.0, vignetting=0.0, dust_spots=0, fixed_pattern_noise=0)
    mixed = SimConfig(camera_crosstalk=0.1, vignetting=0.0, dust_spots=0, fixed_pattern_noise=0)
    m_c = SimulatedMicroscope(PROFILE, slide="xt", seed=0, config=clean)
    m_m = SimulatedMicroscope(PROFILE, slide="xt", seed=0, config=mixed)
    pls = {20: 255}
    a = m_c._electron_rate("stained", 0.0, 0.0, 0.0, pls, 96, 96)
    b = m_m._electron_rate("stained", 0.0, 0.0, 0.0, pls, 96, 96)
    expected = 0.9 * a[..., 0] + 0.1 * a[..., 1]
    np.testing.assert_allclose(b[..., 0], expected, rtol=1e-4, atol=1e-3)


def test_the_removed_legacy_model_is_one_clear_error(tmp_path):
    from acquisition.simulator.config import SimulatorError
    from acquisition.simulator.options import SimConfigError, load_sim_options

    assert SimConfig().model == "dry-mass"
    with pytest.raises(SimulatorError, match="'legacy' was removed; delete the model key"):
        SimConfig(model="legacy")
    path = tmp_path / "old.yaml"
    path.write_text("model: legacy\nwbc_per_field: 8\n", encoding="utf-8")
    with pytest.raises(SimConfigError) as err:
        load_sim_options(path)
    assert len(str(err.value).splitlines()) == 1 and "was removed" in str(err.value)
    path.write_text("model: dry-mass\nwbc_per_field: 8\n", encoding="utf-8")
    assert load_sim_options(path)["config"] == SimConfig(wbc_per_field=8)
