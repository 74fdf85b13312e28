"""100x matching on known geometry: position, magnification ratio, area-averaged targets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from registration.highres import (
    HighresMatch,
    chroma_channel,
    enhance_highres,
    grey_channel,
    match_highres,
    resample_target,
)
from registration.highres_images import laplacian_gain


def _field(shape=(400, 640), seed=0):
    """A smear-like RGB field: dark discs (cells) on a light background, smooth edges."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = np.full((h, w), 220.0)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(160):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 14)
        img[np.hypot(xx - cx, yy - cy) < r] = rng.uniform(120, 170)
    img = ndi.gaussian_filter(img, 1.2)
    rgb = np.stack([img * 1.02, img * 0.8, img * 0.95], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _highres_of(field, cx, cy, ratio, size=(800, 1280)):
    """The field seen at `ratio`x finer sampling, frame centred on field pixel (cx, cy)."""
    hh, wh = size
    m = np.array(
        [[1 / ratio, 0, cx - (wh - 1) / 2 / ratio], [0, 1 / ratio, cy - (hh - 1) / 2 / ratio]]
    )
    return cv2.warpAffine(
        field,
        m,
        (wh, hh),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )


@pytest.mark.parametrize(("cx", "cy", "ratio"), [(320.3, 200.7, 5.03), (250.8, 180.2, 4.96)])
def test_position_and_magnification_ratio_are_recovered(cx, cy, ratio):
    field = _field()
    hr = _highres_of(field, cx, cy, ratio)
    m = match_highres(
        grey_channel(field), hr, (cx + 6.0, cy - 4.0), pixel_size_um=0.293, nominal_ratio=5.0
    )
    assert m.ok, m.reason
    assert (m.x, m.y) == pytest.approx((cx, cy), abs=0.1)
    assert m.measured_ratio == pytest.approx(ratio, rel=0.001)
    # with the ratio given, positions are still refined
    fixed = match_highres(
        grey_channel(field),
        hr,
        (cx + 3.0, cy + 2.0),
        pixel_size_um=0.293,
        nominal_ratio=5.0,
        ratio=ratio,
    )
    assert (fixed.x, fixed.y) == pytest.approx((cx, cy), abs=0.1)


def test_a_frame_near_the_field_edge_is_matched_off_centre():
    field = _field(seed=2)
    hr = _highres_of(field, 70.4, 200.2, 5.0)
    m = match_highres(
        grey_channel(field), hr, (72.0, 199.0), pixel_size_um=0.293, nominal_ratio=5.0
    )
    assert m.ok and (m.x, m.y) == pytest.approx((70.4, 200.2), abs=0.25)


def test_a_frame_of_another_place_is_not_usable():
    field, elsewhere = _field(seed=3), _field(seed=8)
    m = match_highres(
        grey_channel(field),
        _highres_of(elsewhere, 320.0, 200.0, 5.0),
        (320.0, 200.0),
        pixel_size_um=0.293,
        nominal_ratio=5.0,
    )
    assert not m.ok and m.reason


def test_targets_are_area_averages_on_the_20x_grid():
    rng = np.random.default_rng(4)
    hr = rng.integers(0, 256, (400, 640, 3)).astype(np.uint8)
    # ratio 5 with the 20x grid aligned to 5x5 blocks of the 100x frame
    match = HighresMatch(x=100.0, y=60.0, ratio=5.0, measured_ratio=5.0, score=1.0, ok=True)
    origin = (90, 50)
    target = resample_target(hr, match, origin, 16)
    # 20x pixel (90, 50) is centred on 100x (269.5, 149.5): its footprint [267, 272] x
    # [147, 152] weighs the end pixels by half (pixel centres on integers)
    weights = np.array([0.5, 1, 1, 1, 1, 0.5]) / 5
    want = np.zeros((16, 16, 3))
    for i in range(16):
        for j in range(16):
            block = hr[147 + 5 * i : 153 + 5 * i, 267 + 5 * j : 273 + 5 * j].astype(np.float64)
            want[i, j] = np.einsum("i,j,ijc->c", weights, weights, block)
    assert np.abs(target - want).max() <= 0.51
    assert resample_target(hr, match, (0, 0), 64) is None  # leaves the 100x frame


def test_log_subtraction_has_unit_laplacian_gain_and_darkens_edges():
    n = 41
    yy, xx = np.mgrid[:n, :n].astype(np.float32) - n // 2
    q = 0.5 * (xx * xx + yy * yy)
    lap = cv2.Laplacian(q, cv2.CV_32F, ksize=7)[n // 2, n // 2] / laplacian_gain(7)
    assert lap == pytest.approx(2.0, rel=1e-4)
    disc = np.full((101, 101, 3), 230, np.uint8)
    cv2.circle(disc, (50, 50), 25, (150, 150, 150), -1)
    enh = enhance_highres(disc)
    assert enh.dtype == np.float32
    # unsharp: a dark band just inside the disc's edge, a light one just outside
    assert enh[50, 73] < enh[50, 50] - 0.05
    assert enh[50, 78] > enh[50, 95] + 0.05


def _rimmed_pair(ratio, seed=3, size=(400, 640)):
    """A 20x field whose cells wear colourless dark rims (phase relief seen by a dry objective)
    and a big cell at the centre of the 100x frame, plus that frame without the rims."""
    rng = np.random.default_rng(seed)
    h, w = size
    k = 2  # the sample is drawn 2x finer than the 20x grid
    yy, xx = np.mgrid[: h * k, : w * k] / k
    absorb = np.zeros((h * k, w * k))
    rim = np.zeros_like(absorb)
    cells = [(w / 2, h / 2, 22.0)] + [
        (rng.uniform(0, w), rng.uniform(0, h), rng.uniform(9, 13)) for _ in range(220)
    ]
    for cx, cy, r in cells:
        d = np.hypot(xx - cx, yy - cy)
        absorb[d < r] = rng.uniform(0.5, 0.8)
        rim[(d >= r - 1.5) & (d < r + 1.0)] = 0.35
    # stain/haemoglobin: absorbs green 3x more than red; rims: the same loss in every colour
    od = np.stack([absorb * 0.3, absorb, absorb * 0.6], axis=-1)
    fine = 230.0 * np.exp(-od)
    coarse = fine * np.exp(-rim)[..., None]
    field = cv2.resize(ndi.gaussian_filter(coarse, (1.2 * k, 1.2 * k, 0)), (w, h), cv2.INTER_AREA)
    sharp = np.clip(fine, 0, 255).astype(np.uint8)  # 2x finer than the 20x grid
    # the 100x frame (centred on the big cell) from the rim-free sample
    hr = _highres_of(sharp, (w * 2 - 1) / 2, (h * 2 - 1) / 2, ratio / 2)
    return np.clip(field, 0, 255).astype(np.uint8), hr


def test_ratio_is_measured_on_colour_without_the_imaged_cell():
    """Colourless rims seen only at 20x and a big centred cell do not bias the ratio.

    (The simulator's dry-mass slide, where grey matching was 1-3 % low, is checked in
    test_registration_pipeline.py.)
    """
    field, hr = _rimmed_pair(5.03)
    c = ((field.shape[1] - 1) / 2, (field.shape[0] - 1) / 2)
    m = match_highres(field, hr, (c[0] + 4.0, c[1] - 3.0), pixel_size_um=0.293, nominal_ratio=5.0)
    assert m.ok, m.reason
    assert m.measured_ratio == pytest.approx(5.03, rel=0.003)


def test_chroma_ignores_colourless_losses():
    field = _field()
    dimmed = (field * 0.6).astype(np.uint8)
    a, b = chroma_channel(field), chroma_channel(dimmed)
    assert np.abs(a - b)[field.min(-1) > 60].max() < 0.05
