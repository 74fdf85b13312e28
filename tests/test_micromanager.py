"""The Micro-Manager adapter's colour paths and orientation handling."""

from __future__ import annotations

import numpy as np
import pytest

from acquisition.micromanager import (
    CameraError,
    SnakeCaseCore,
    canonical_orientation,
    device_orientation,
    to_rgb,
)


def _rgb(h=4, w=5):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pack_bgra(rgb):
    """What raw MMCore and pycromanager deliver for an RGB camera: 32-bit BGRA words."""
    bgra = np.concatenate([rgb[..., ::-1], np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(bgra).view(np.uint32)[..., 0]


def test_rgb_frames_pass_through():
    rgb = _rgb()
    assert np.array_equal(to_rgb(rgb, 4, 5, 3), rgb)


def test_packed_bgra_2d_becomes_rgb():
    rgb = _rgb()
    assert np.array_equal(to_rgb(_pack_bgra(rgb), 4, 5, 4), rgb)


def test_packed_bgra_1d_from_pycromanager_becomes_rgb():
    rgb = _rgb()
    flat = _pack_bgra(rgb).ravel().view(np.int32)  # Java int[] arrives as int32
    assert np.array_equal(to_rgb(flat, 4, 5, 4), rgb)


def test_wrong_pixel_count_is_a_clear_error():
    with pytest.raises(CameraError, match="returned 7 pixels, expected 5x4=20"):
        to_rgb(np.zeros(7, np.uint32), 4, 5, 4)


def test_grey_is_replicated():
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = to_rgb(grey, 4, 5, 1)
    assert out.shape == (4, 5, 3) and np.array_equal(out[..., 1], grey)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize(("fx", "fy"), [(False, False), (True, False), (False, True)])
def test_orientation_round_trip(pls43, rotation, fx, fy):
    cam = pls43.camera.model_copy(update={"rotation_deg": rotation, "flip_x": fx, "flip_y": fy})
    rgb = _rgb(6, 9)
    assert np.array_equal(canonical_orientation(device_orientation(rgb, cam), cam), rgb)


def test_snake_case_view_maps_names():
    class Fake:
        def snap_image(self):
            return "snapped"

        def get_xy_stage_device(self):
            return "XY"

    view = SnakeCaseCore(Fake())
    assert view.snapImage() == "snapped"
    assert view.getXYStageDevice() == "XY"
