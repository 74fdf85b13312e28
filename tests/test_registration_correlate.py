"""The shared correlator: parabola vertex and height, template match with sub-pixel peak."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from registration.correlate import (
    centred_window,
    match_peak,
    parabola_height,
    parabola_offsets,
    parabola_vertex,
)


def test_parabola_vertex_and_height_of_a_known_parabola():
    # f(t) = 5 - (t - 0.3)^2 sampled at -1, 0, 1: vertex at 0.3, height 5
    a, b, c = (5 - (t - 0.3) ** 2 for t in (-1, 0, 1))
    assert parabola_vertex(a, b, c) == pytest.approx(0.3)
    assert parabola_vertex(1.0, 1.0, 1.0) == 0.0  # flat: no maximum
    assert parabola_vertex(0.0, 1.0, 1.5) == 0.5  # clipped to the sample spacing
    yy, xx = np.mgrid[:5, :5]
    s = 5 - (xx - 2.3) ** 2 - (yy - 1.8) ** 2
    assert parabola_offsets(s, 2, 2) == pytest.approx((0.3, -0.2))
    assert parabola_height(5 - (xx - 2.3) ** 2, 2, 2) == pytest.approx(5.0)
    assert 4.87 < parabola_height(s, 2, 2) <= 5.0
    assert parabola_offsets(s, 0, 2)[1] == 0.0  # on the border: no offset along y


def test_match_peak_finds_a_cut_out_template():
    rng = np.random.default_rng(1)
    image = ndi.gaussian_filter(rng.normal(size=(80, 90)), 2).astype(np.float32)
    p = match_peak(image, image[20:50, 31:71])
    assert (p.iy, p.ix) == (20, 31)
    assert (p.x, p.y) == pytest.approx((31, 20), abs=0.05)
    assert p.score == pytest.approx(1.0, abs=1e-5)
    assert not p.on_border
    assert match_peak(image, image[0:30, 31:71]).on_border


def test_centred_window_is_none_when_the_search_leaves_the_image():
    assert centred_window((100, 100), (21, 11), (50.0, 50.0), 5) == (35, 40)
    assert centred_window((100, 100), (21, 11), (12.0, 50.0), 5) is None
