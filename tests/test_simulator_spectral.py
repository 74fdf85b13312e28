"""The spectral instrument: LED spectra, camera sensitivities, white balance, darkfield colour."""

from __future__ import annotations

import numpy as np
import pytest

import hardware_profiles
from acquisition.simulator import spectra
from acquisition.simulator.camera_model import from_camera_orientation
from acquisition.simulator.config import SimConfig, SimulatorError
from acquisition.simulator.microscope import SimulatedMicroscope

PROFILE = hardware_profiles.load("pls43")
BF = PROFILE.stack[0]
#: The former model: three monochromatic lines, a 6 % crosstalk matrix, point LEDs.
LINES = dict(spectral_samples=0, camera_crosstalk=0.06, led_size_mm=0.0)


def _fwhm(colour: str) -> float:
    lam = np.arange(380.0, 781.0, 0.1)
    e = spectra.emission(colour, lam)
    above = lam[e >= e.max() / 2]
    return float(above[-1] - above[0])


def test_white_led_is_broadband_and_dies_are_narrow():
    white = spectra.spectral_samples("white", 8)
    assert len(set(white.wavelengths_nm)) >= 8
    assert min(white.wavelengths_nm) < 460 and max(white.wavelengths_nm) > 590
    for die in ("red", "green", "blue"):
        assert 19.5 <= _fwhm(die) <= 30.5
        smp = spectra.spectral_samples(die, 8)
        assert len(smp.wavelengths_nm) == 3
        assert np.ptp(smp.wavelengths_nm) < 30.0
    assert len(spectra.spectral_samples("rgb", 8).wavelengths_nm) == 9


def test_white_balance_makes_the_instruments_white_read_one_per_channel():
    for colour in ("white", "rgb"):
        np.testing.assert_allclose(spectra.spectral_samples(colour, 8).weights.sum(0), 1, atol=1e-6)
    dies = sum(spectra.spectral_samples(d, 8).weights.sum(0) for d in ("red", "green", "blue"))
    np.testing.assert_allclose(dies, 1.0, atol=1e-6)


def test_crosstalk_comes_from_overlapping_sensitivities():
    red = spectra.spectral_samples("red", 8).weights.sum(0)
    green = spectra.spectral_samples("green", 8).weights.sum(0)
    blue = spectra.spectral_samples("blue", 8).weights.sum(0)
    assert red[0] > 0.6 and 0.02 < red[1] < 0.15 and red[2] < 0.01
    assert green[1] > 0.6 and green[0] > 0.1 and green[2] > 0.1
    assert blue[2] > 0.6 and 0.05 < blue[1] < 0.3
    q = spectra.camera_sensitivity(np.array([450.0, 535.0, 600.0]))
    assert np.argmax(q[0]) == 2 and np.argmax(q[1]) == 1 and np.argmax(q[2]) == 0


@pytest.mark.slow  # renders full frames spectrally
def test_brightfield_glass_keeps_its_grey_level():
    """The shipped exposures stay valid: glass reads within 3 % of the monochromatic model."""
    levels = []
    for cfg in (SimConfig(**LINES), SimConfig()):
        m = SimulatedMicroscope(PROFILE, slide="bg", seed=0, config=cfg)
        (frame,) = m.render_stack(  # the brightfield channel as set, in focus
            pass_="unstained", x_um=0.0, y_um=0.0, width=320, height=240, channels=[BF]
        )
        masks = m.masks(pass_="unstained", x_um=0.0, y_um=0.0, width=320, height=240)
        glass = ~(masks["rbc"] | masks["wbc"])
        levels.append(np.median(frame[glass], axis=0))
    lines, spectral = levels
    assert lines.min() > 195
    np.testing.assert_allclose(spectral, lines, rtol=0.03)


def _darkfield_chroma_spread(config: SimConfig, led: int) -> float:
    """RMS spread of the chromaticity of the brighter half of white-cell darkfield pixels."""
    m = SimulatedMicroscope(PROFILE, slide="hue", seed=3, config=config)
    w, h = 400, 300
    rate = m._electron_rate("unstained", 0.0, 0.0, 0.0, {led: 255}, w, h)
    masks = m.masks(pass_="unstained", x_um=0.0, y_um=0.0, width=w, height=h)
    wbc = from_camera_orientation(masks["wbc"], PROFILE.camera)
    total = rate.sum(2)
    assert wbc.sum() > 500
    sel = wbc & (total > np.median(total[wbc]))
    chroma = rate[sel] / total[sel, None]
    return float(np.sqrt(((chroma - chroma.mean(0)) ** 2).sum(1).mean()))


@pytest.mark.slow  # renders full darkfield frames spectrally
def test_broadband_darkfield_is_no_per_cell_rainbow():
    """Three lines scatter each colour to another angle: cells break into rainbow speckle.
    A white LED's spectrum averages it: a smaller chromaticity spread of the camera's raw
    channels (measured: 0.20 -> 0.13 at 30°; the colour correction, which lines do not get,
    then amplifies colour differences about 1.5x)."""
    lines = _darkfield_chroma_spread(SimConfig(wbc_per_field=40, **LINES), 22)
    raw = SimConfig(wbc_per_field=40, colour_correction=False)
    white = _darkfield_chroma_spread(raw, 22)
    assert white < 0.75 * lines


def test_spectral_samples_is_checked():
    with pytest.raises(SimulatorError, match="spectral_samples"):
        SimConfig(spectral_samples=2.5)
    with pytest.raises(SimulatorError, match="led_size_mm"):
        SimConfig(led_size_mm=-1)


@pytest.mark.slow  # renders full darkfield frames spectrally
def test_oblique_path_correction_brightens_high_angle_darkfield_only():
    """The tilted ray's longer path through the layer (+38 % phase at 57°) scatters more
    light into high-angle darkfield (measured: 1.80x the energy at 57°); a 6° LED's image
    hardly changes (1.000x)."""
    fast = dict(spectral_samples=3, wbc_per_field=20)
    ratios = {}
    for led in (0, 10, 34):  # 6°, 57°, 57°
        energy = []
        for oblique in (False, True):
            cfg = SimConfig(oblique_correction=oblique, **fast)
            m = SimulatedMicroscope(PROFILE, slide="oblique", seed=1, config=cfg)
            energy.append(m._electron_rate("unstained", 0.0, 0.0, 0.0, {led: 255}, 320, 240).sum())
        ratios[led] = energy[1] / energy[0]
    assert ratios[0] == pytest.approx(1.0, abs=0.03)
    # weak scatterers would scale by the phase factor squared, 1.38² = 1.91 (measured 1.80)
    assert 1.5 < ratios[10] < 2.0 and 1.5 < ratios[34] < 2.0
