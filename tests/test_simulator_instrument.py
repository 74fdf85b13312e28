"""The simulated instrument's own errors: measured, fixed per instrument, independent of slide."""

from __future__ import annotations

import numpy as np
import pytest

import hardware_profiles
from acquisition.simulator.camera_model import from_camera_orientation
from acquisition.simulator.config import SimConfig
from acquisition.simulator.microscope import SimulatedMicroscope

PROFILE = hardware_profiles.load("pls43")
#: Tests not about the spectrum sample each white LED at 3 wavelengths instead of 8 (the
#: documented faster setting, docs/simulator.md "Performance").
FAST = {"spectral_samples": 3}
BF = dict.fromkeys(PROFILE.stack[0].leds, 255)


def _rate(config: SimConfig, slide: str = "inst", leds=None, size=(480, 300)) -> np.ndarray:
    m = SimulatedMicroscope(PROFILE, slide=slide, seed=0, config=config)
    return m._electron_rate("unstained", 0.0, 0.0, 0.0, leds or BF, *size)


@pytest.mark.slow  # renders a full sensor frame
def test_vignetting_darkens_the_corners_of_a_full_frame():
    flat = SimConfig(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.0, **FAST)
    vig = SimConfig(vignetting=0.3, dust_spots=0, fixed_pattern_noise=0.0, **FAST)
    size = (PROFILE.camera.sensor_width_px // 4, PROFILE.camera.sensor_height_px // 4)
    ratio = _rate(vig, size=size).sum(2) / _rate(flat, size=size).sum(2)
    h, w = ratio.shape
    centre = ratio[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].mean()
    corner = ratio[:5, :5].mean()
    # a quarter-size centre crop of the sensor: its corners sit at a quarter of the radius
    assert centre == pytest.approx(1.0, abs=0.01)
    assert corner == pytest.approx(1 - 0.3 / 16, abs=0.01)


@pytest.mark.slow  # renders full frames on several slides
def test_fixed_pattern_noise_is_the_same_on_every_slide():
    cfg = SimConfig(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.02, **FAST)
    ref = SimConfig(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.0, **FAST)
    a = _rate(cfg, "a") / np.maximum(_rate(ref, "a"), 1e-6)
    b = _rate(cfg, "b") / np.maximum(_rate(ref, "b"), 1e-6)
    assert np.std(a) == pytest.approx(0.02, rel=0.15)
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_led_brightness_and_position_errors_belong_to_the_instrument():
    led = {20: 255}
    one = SimConfig(instrument_seed=1, **FAST)
    other = SimConfig(instrument_seed=2, **FAST)
    exact = SimConfig(led_brightness_error=0.0, led_position_error_mm=0.0, **FAST)
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
    clean = SimConfig(
        camera_crosstalk=0.0, vignetting=0.0, dust_spots=0, fixed_pattern_noise=0, **FAST
    )
    mixed = SimConfig(
        camera_crosstalk=0.1, vignetting=0.0, dust_spots=0, fixed_pattern_noise=0, **FAST
    )
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


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("serial: {drop_probability: 1.5}", "serial.drop_probability: input should be less"),
        ("serial: {drop_prob: 0.1}", "serial.drop_prob is not a setting"),
        ("devices: {stage_error_um: -2}", "devices.stage_error_um: input should be greater"),
        ("devices: {camera_timeout: 0.1}", "devices.camera_timeout is not a setting"),
        ("devices: [1, 2]", "devices must be a mapping of settings"),
    ],
)
def test_sim_config_fault_sections_are_checked_by_their_models(tmp_path, yaml_text, expected):
    from acquisition.simulator.options import SimConfigError, load_sim_options

    path = tmp_path / "faults.yaml"
    path.write_text(yaml_text + "\n", encoding="utf-8")
    with pytest.raises(SimConfigError) as err:
        load_sim_options(path)
    assert len(str(err.value).splitlines()) == 1
    assert str(err.value).startswith(f"{path}: {expected}")


def test_sim_config_fault_sections_build_the_same_models_as_code(tmp_path):
    from acquisition.simulator.devices import DeviceFaults
    from acquisition.simulator.firmware import SerialFaults
    from acquisition.simulator.options import load_sim_options

    path = tmp_path / "faults.yaml"
    path.write_text(
        "serial: {drop_probability: 0.01, reply_delay_s: 0.2, seed: 4}\n"
        "devices: {stage_error_um: 2.0, stage_reports_truth: false}\n"
        "serial_faults_are_not_top_level: 1\n",
        encoding="utf-8",
    )
    with pytest.raises(Exception, match="serial_faults_are_not_top_level is not a setting"):
        load_sim_options(path)
    path.write_text(path.read_text().splitlines()[0] + "\n" + "devices:\n", encoding="utf-8")
    opts = load_sim_options(path)
    assert opts["serial_faults"] == SerialFaults(drop_probability=0.01, reply_delay_s=0.2, seed=4)
    assert opts["device_faults"] == DeviceFaults()  # an empty section: every fault off


def _edge_led_profile(sin_centre: float):
    """pls43 with LED 5 moved so its light reaches the frame centre at sine ``sin_centre``
    (along x), 20 mm below the sample."""
    z = 20.0
    x = -sin_centre * z / np.sqrt(1 - sin_centre**2)
    data = PROFILE.model_dump()
    for led in data["led_array"]["leds"]:
        if led["id"] == 5:
            led.update(x_mm=x, y_mm=0.0, z_mm=z)
    return type(PROFILE).model_validate(data)


def test_illumination_angle_varies_across_the_field_by_the_geometrys_amount():
    """An LED whose light meets the frame centre just outside the objective's NA: a point
    source 20 mm away lights the left quarter of a 1600 px frame (0.12 mm from the axis) at
    a sine 0.005 smaller, inside the NA: brightfield glass there, dark glass on the right.
    With one angle for the whole frame, the glass is dark everywhere."""
    from acquisition.simulator import optics

    na = PROFILE.scan_objective.na
    profile = _edge_led_profile(na + 0.001)
    exact = dict(led_position_error_mm=0.0, led_size_mm=0.0, spectral_samples=3)
    # a sparse smear: glass far from cells (near the pupil's edge, cells ring far)
    exact.update(rbc_coverage=0.0, wbc_per_field=0.0, platelets_per_field=0.0)
    exact.update(smudge_per_field=0.0, dirt_per_field=0.0)
    w, h = 1600, 96
    p = PROFILE.scan_objective.pixel_size_um
    led = profile.led_array.by_id[5]
    left = optics.point_direction(led.x_mm, led.y_mm, led.z_mm, -w / 4 * p * 1e-3, 0.0)
    right = optics.point_direction(led.x_mm, led.y_mm, led.z_mm, w / 4 * p * 1e-3, 0.0)
    assert np.hypot(*left) < na < np.hypot(*right)
    # d(sine)/du = (1 - sine²) / r for a shift u along the LED's azimuth
    r = np.hypot(led.x_mm, led.z_mm)
    assert np.hypot(*right) - np.hypot(*left) == pytest.approx(
        (1 - na**2) * (w / 2 * p * 1e-3) / r, rel=0.02
    )
    images = {}
    for tiles in (1, 2):
        cfg = SimConfig(field_angle_tiles=tiles, field_angle_step=0.001, **exact)
        m = SimulatedMicroscope(profile, slide="edge", seed=0, config=cfg)
        assert m._angle_tiles(w, h, p)[0] == tiles
        images[tiles] = m._led_image("unstained", 0.0, 0.0, 0.0, 5, w, h, None).sum(2) / 3
        masks = m.masks(pass_="unstained", x_um=0.0, y_um=0.0, width=w, height=h)
    glass = from_camera_orientation(~(masks["rbc"] | masks["wbc"]), PROFILE.camera)
    q = w // 4
    left_glass, right_glass = glass[:, :q], glass[:, -q:]
    one, two = images[1], images[2]
    l1, r1 = np.median(one[:, :q][left_glass]), np.median(one[:, -q:][right_glass])
    l2, r2 = np.median(two[:, :q][left_glass]), np.median(two[:, -q:][right_glass])
    assert 0.7 < l1 / r1 < 1.4  # one angle: both sides alike (scattered light only)
    assert l2 > 0.8 and l2 > 3 * r2  # the left sees the direct beam


def test_tile_cross_fades_sum_to_one():
    from acquisition.simulator.rendering import tile_spans as _tile_spans

    for n, tiles in ((800, 2), (1201, 3)):
        total = np.zeros(n)
        for a, b, w in _tile_spans(n, tiles):
            total[a:b] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_bayer_frame_demosaics_close_to_the_full_colour_frame_on_glass():
    kw = dict(vignetting=0.0, dust_spots=0, fixed_pattern_noise=0.0, **FAST)
    bf = PROFILE.stack[0]
    frames = []
    for bayer in (False, True):
        m = SimulatedMicroscope(PROFILE, slide="bayer", seed=0, config=SimConfig(bayer=bayer, **kw))
        (frame,) = m.render_stack(  # the brightfield channel as set, in focus
            pass_="unstained", x_um=0.0, y_um=0.0, width=320, height=240, channels=[bf]
        )
        frames.append(frame)
        masks = m.masks(pass_="unstained", x_um=0.0, y_um=0.0, width=320, height=240)
    full, bayer = frames
    assert bayer.shape == full.shape == (240, 320, 3) and bayer.dtype == np.uint8
    from scipy import ndimage

    glass = ndimage.binary_erosion(~(masks["rbc"] | masks["wbc"]), iterations=4)
    assert glass.sum() > 2000
    diff = np.abs(bayer[glass].astype(float).mean(0) - full[glass].astype(float).mean(0))
    assert np.all(diff < 2.0), diff
    # each pixel records one colour: the demosaiced frame is not the full-colour one
    assert np.abs(bayer.astype(int) - full.astype(int)).mean() > 0.5
