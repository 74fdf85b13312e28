"""The null test with a positive control, on a small linear probe (acquisition.simulator.probe).

With ``nucleus_to_cytoplasm = 1`` and ``stain_phase_coupling = 0`` nothing in the unstained
phase says where the stain goes, so the multi-angle stack must not predict the stain better
than brightfield beyond the run-to-run noise. With the defaults (the nucleus 1.2x denser than
the cytoplasm, half the sub-µm texture where the stain is) it must, else the test could not
tell anything. The probe predicts the stain's absorbance (the stained pass without phase)
and both probes know each cell's shape, so only information about the stain counts.
"""

from __future__ import annotations

import numpy as np
import pytest

import hardware_profiles
from acquisition.simulator.config import SimConfig
from acquisition.simulator.probe import render_cells, stain_gain

#: two probes on 16 cells rendered through the whole spectral stack —
#: `make test-fast` leaves it out, `make test` (CI) runs it
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def profile():
    return hardware_profiles.load("pls43")


def _gain(profile, **knobs) -> np.ndarray:
    # 3 wavelengths per white LED (the documented faster setting): the null test is about
    # where information sits, not about the spectrum
    cfg = SimConfig(spectral_samples=3, **knobs)
    crops = render_cells(profile, cfg, slide="null", seed=3, n_cells=16, crop=40)
    return stain_gain(crops, splits=3, components=6)["gain"]


def test_null_config_gives_no_gain_and_the_positive_control_does(profile):
    null = _gain(profile, nucleus_to_cytoplasm=1.0, stain_phase_coupling=0.0)
    control = _gain(profile)  # the defaults: nucleus_to_cytoplasm 1.2, stain_phase_coupling 0.5
    noise = max(float(null.std()), float(control.std()), 0.01)
    # the null: no gain beyond the run-to-run noise
    assert null.mean() < 2 * noise, (null, control)
    # the positive control: a gain over the null beyond the noise, same probe and cells
    assert control.mean() > null.mean() + 2 * noise, (null, control)
