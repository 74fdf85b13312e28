"""The Micro-Manager adapter: an RGB camera through a real UniMMCore, packed BGRA, orientation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from pymmcore_plus.experimental.unicore import SimpleCameraDevice

from acquisition.micromanager import (
    CameraError,
    MicroManagerRig,
    SnakeCaseCore,
    canonical_orientation,
    device_orientation,
    to_rgb,
)


def _rgb(h=4, w=5):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


class PatternCamera(SimpleCameraDevice):
    """An RGB camera as pymmcore-plus loads it: delivers ``PATTERN`` as the device sees it."""

    frame: np.ndarray  # (H, W, 3) uint8, in the camera's own (raw) orientation

    def get_exposure(self) -> float:
        return 10.0

    def set_exposure(self, exposure: float) -> None:
        pass

    def sensor_shape(self) -> tuple[int, int, int]:
        return self.frame.shape

    def dtype(self):
        return np.uint8

    def snap(self, buffer: np.ndarray):
        buffer[:] = self.frame
        return {}


def _rig(camera, raw_frame):
    """A MicroManagerRig on a real UniMMCore whose camera delivers ``raw_frame``."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    device = PatternCamera()
    device.frame = raw_frame
    mm_path = Path(tempfile.gettempdir()) / "scope-empty-mm"
    mm_path.mkdir(exist_ok=True)
    core = UniMMCore(mm_path=str(mm_path))
    core.loadPyDevice("Camera", device)
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    return MicroManagerRig(core, camera=camera)


@pytest.mark.parametrize(("rotation", "flip_x"), [(0, False), (90, True), (270, False)])
def test_rgb_camera_through_unimmcore_arrives_stage_aligned(pls43, rotation, flip_x):
    cam = pls43.camera.model_copy(update={"rotation_deg": rotation, "flip_x": flip_x})
    stage = _rgb(6, 9)  # what the slide looks like, x right and y down
    raw = np.ascontiguousarray(np.rot90(stage[:, ::-1] if flip_x else stage, rotation // 90))
    rig = _rig(cam, raw)
    assert rig.frame_size == (9, 6)
    assert np.array_equal(rig.snap(), stage)


# Raw MMCore (and pycromanager's Java int[]) deliver an RGB camera's pixel as one 32-bit word
# holding the bytes B, G, R, A in memory order (pymmcore-plus's CMMCorePlus.fixImage reads them
# the same way). On a little-endian machine the word 0xFF112233 is bytes 33 22 11 FF: RGB
# (0x11, 0x22, 0x33).
WORD = 0xFF112233


def test_one_packed_bgra_word_is_the_documented_rgb():
    assert to_rgb(np.array([[WORD]], np.uint32), 1, 1, 4).tolist() == [[[0x11, 0x22, 0x33]]]
    flat = np.array([WORD], np.uint32).view(np.int32)  # Java int[] arrives as int32
    assert to_rgb(flat, 1, 1, 4).tolist() == [[[0x11, 0x22, 0x33]]]


def test_packed_frames_match_pymmcore_plus_reading():
    from pymmcore_plus import CMMCorePlus

    words = np.random.default_rng(2).integers(0, 2**32, (4, 5), dtype=np.uint32)
    theirs = CMMCorePlus.fixImage(None, words, 4)  # the library's own BGRA → RGB
    assert np.array_equal(to_rgb(words, 4, 5, 4), theirs)
    assert np.array_equal(to_rgb(words.ravel().view(np.int32), 4, 5, 4), theirs)


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
