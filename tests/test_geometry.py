"""acquisition.geometry: the one pixel ↔ stage convention and the camera orientation."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from acquisition.geometry import FieldGeometry, Orientation
from acquisition.scanfile import pixel_to_stage, stage_to_pixel


def test_pixel_to_stage_centre_corner_and_inverse():
    g = FieldGeometry(width=5, height=3, pixel_size_um=0.5)
    assert g.pixel_to_stage(2, 1, 100.0, -20.0) == (100.0, -20.0)  # the centre pixel
    x, y = g.pixel_to_stage(0, 0, 100.0, -20.0)
    assert (float(x), float(y)) == (99.0, -20.5)  # two pixels left, one up
    px = np.array([0.0, 1.25, 4.0])
    py = np.array([2.0, 0.5, 1.0])
    back = g.stage_to_pixel(*g.pixel_to_stage(px, py, 3.0, 4.0), 3.0, 4.0)
    np.testing.assert_allclose(back, (px, py), atol=1e-12)
    assert g.size_um == (2.5, 1.5)


def test_scanfile_wrappers_are_the_geometry():
    kw = dict(field_x_um=7.0, field_y_um=-3.0, width=640, height=400, pixel_size_um=0.345)
    g = FieldGeometry(640, 400, 0.345)
    xs, ys = np.array([0.0, 319.5, 639.0]), np.array([0.0, 199.5, 399.0])
    assert np.array_equal(pixel_to_stage(xs, ys, **kw), g.pixel_to_stage(xs, ys, 7.0, -3.0))
    assert np.array_equal(stage_to_pixel(xs, ys, **kw), g.stage_to_pixel(xs, ys, 7.0, -3.0))


@pytest.mark.parametrize(
    ("flip_x", "flip_y", "rotation"), list(itertools.product((0, 1), (0, 1), (0, 90, 180, 270)))
)
def test_orientation_round_trip_and_agrees_with_the_simulated_camera(flip_x, flip_y, rotation):
    from acquisition.simulator.camera_model import from_camera_orientation, to_camera_orientation

    camera = SimpleNamespace(flip_x=bool(flip_x), flip_y=bool(flip_y), rotation_deg=rotation)
    o = Orientation.of(camera)
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)  # (H, W, 3), stage-aligned
    raw = o.to_device(img)
    assert np.array_equal(o.to_stage(raw), img)
    assert raw.shape[:2] == ((6, 4) if rotation in (90, 270) else (4, 6))
    assert o.stage_size(raw.shape[1], raw.shape[0]) == (6, 4)
    # the simulator renders through its own copy of the convention: they must agree
    assert np.array_equal(to_camera_orientation(img, camera), raw)
    assert np.array_equal(from_camera_orientation(raw, camera), img)


def test_from_raw_swaps_a_turned_camera():
    camera = SimpleNamespace(flip_x=False, flip_y=True, rotation_deg=90)
    g = FieldGeometry.from_raw(400, 640, 0.5, camera)
    assert (g.width, g.height) == (640, 400) and g.orientation.flip_y
