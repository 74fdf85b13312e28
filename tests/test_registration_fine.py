"""Fine matching: SSIM identical to scikit-image's, sub-pixel recovery of known shifts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import structural_similarity

from registration.correlate import parabola_peak
from registration.fine import FineMatchError, crop_origin, fine_match, ssim_surface


def _texture(shape, seed=0):
    """A smooth random texture with blob-like structure (8-bit range)."""
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.normal(size=shape), 2.5)
    img = (img - img.min()) / (img.max() - img.min())
    return (40 + 180 * img).astype(np.float64)


def test_ssim_surface_equals_scikit_image_at_every_offset():
    ref = np.round(_texture((74, 74), seed=1)).astype(np.uint8)
    tpl = np.round(_texture((64, 64), seed=2) * 0.5 + ref[4:68, 7:71] * 0.5).astype(np.uint8)
    surface = ssim_surface(ref, tpl)
    assert surface.shape == (11, 11)
    for dy in range(11):
        for dx in range(11):
            want = structural_similarity(
                ref[dy : dy + 64, dx : dx + 64], tpl, win_size=7, data_range=255
            )
            assert surface[dy, dx] == pytest.approx(want, abs=1e-5)
    assert np.unravel_index(np.argmax(surface), surface.shape) == (4, 7)


def test_parabola_peak_finds_the_vertex():
    yy, xx = np.mgrid[:11, :11]
    surface = -((xx - 6.3) ** 2) - 2 * (yy - 3.8) ** 2
    iy, ix, ox, oy = parabola_peak(surface)
    assert (ix + ox, iy + oy) == pytest.approx((6.3, 3.8), abs=1e-9)


@pytest.mark.parametrize("shift", [(2.3, -1.6), (-4.4, 3.7), (0.5, 0.5)])
def test_fine_match_recovers_sub_pixel_shifts(shift):
    base = _texture((300, 300), seed=3)
    # the unstained frame shows the stained content moved by `shift`
    moved = ndi.shift(base, (shift[1], shift[0]), order=3, mode="nearest")
    stained_xy = (150.0, 140.0)
    m = fine_match(moved, base, stained_xy, stained_xy, crop_size=64, search_px=5)
    assert (m.x_px - stained_xy[0], m.y_px - stained_xy[1]) == pytest.approx(shift, abs=0.15)
    assert m.ssim > 0.95 and not m.on_border
    ox, oy = crop_origin(*stained_xy, 64)
    assert (m.crop_x - ox, m.crop_y - oy) == (round(shift[0]), round(shift[1]))


def test_a_match_beyond_the_window_lands_on_its_border():
    base = _texture((300, 300), seed=4)
    moved = ndi.shift(base, (0, 9.0), order=1, mode="nearest")
    m = fine_match(moved, base, (150.0, 150.0), (150.0, 150.0), search_px=5)
    assert m.on_border


def test_crops_leaving_the_frame_are_refused():
    img = _texture((200, 200))
    with pytest.raises(FineMatchError, match="leaves the stained frame"):
        fine_match(img, img, (10.0, 100.0), (10.0, 100.0))
    with pytest.raises(FineMatchError, match="leaves the unstained frame"):
        fine_match(img, img, (100.0, 100.0), (195.0, 100.0))


@pytest.mark.parametrize("xy", [(100.0, 50.0), (100.6, 50.4), (33.2, 90.9)])
def test_crop_origin_centres_the_crop(xy):
    ox, oy = crop_origin(*xy, 64)
    assert abs(ox + 31.5 - xy[0]) <= 0.5 and abs(oy + 31.5 - xy[1]) <= 0.5
