"""Camera and stages through a Micro-Manager core — one small adapter, three backends.

The adapter speaks the MMCore API. It accepts

- a pymmcore-plus core (``CMMCorePlus`` or ``UniMMCore``, camelCase methods; colour frames
  come back as ``(H, W, 3)`` RGB when the camera is a Python device, or when pymmcore-plus
  fixes them), and
- pycromanager's ``Core()`` attached to a running Micro-Manager (the same methods in
  snake_case; colour frames arrive as 1-D arrays of 32-bit packed BGRA).

Whatever the core delivers, :meth:`MicroManagerRig.snap` returns ``(H, W, 3) uint8`` RGB in
the profile's canonical orientation (camera flip/rotation undone), exposure in ms, positions
in µm.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from acquisition.geometry import Orientation
from hardware_profiles import Camera
from hardware_profiles.errors import ScopeError


class CameraError(ScopeError):
    """The camera or a stage failed, or cannot do what the profile asks."""


def _snake(name: str) -> str:
    """pycromanager's (pyjavaz's) rule: ``getXYStageDevice`` → ``get_xy_stage_device``."""
    s1 = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", s1).lower()


class SnakeCaseCore:
    """A camelCase view of a snake_case core (pycromanager's ``Core``).

    pycromanager exposes MMCore's methods as ``snap_image``, ``get_image``... This view lets
    the rest of the adapter call ``snapImage``/``getImage`` on either kind of core.
    """

    def __init__(self, core: Any) -> None:
        self._core = core

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._core, _snake(name))


def to_rgb(img: np.ndarray, height: int, width: int, n_components: int) -> np.ndarray:
    """Any frame a core returns → ``(H, W, 3) uint8`` RGB.

    Handles ``(H, W, 3)`` RGB (pymmcore-plus), ``(H, W, 4)`` BGRA bytes, ``(H, W)`` or 1-D
    32-bit packed BGRA (raw MMCore, pycromanager), and 8-bit grey (replicated to RGB).
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[..., [2, 1, 0]], dtype=np.uint8)
    if img.ndim == 1:
        if img.size != height * width:
            raise CameraError(
                f"camera returned {img.size} pixels, expected {width}x{height}={width * height}"
            )
        img = img.reshape(height, width)
    if img.dtype.itemsize == 4 and n_components == 4:
        bgra = np.ascontiguousarray(img).view(np.uint8).reshape(*img.shape, 4)
        return np.ascontiguousarray(bgra[..., [2, 1, 0]])
    if img.ndim == 2 and n_components == 1:
        if img.dtype != np.uint8:
            raise CameraError(
                f"camera delivers {img.dtype} monochrome frames; scope expects 8-bit RGB"
            )
        return np.repeat(img[..., None], 3, axis=2)
    raise CameraError(f"cannot interpret a camera frame of shape {img.shape} {img.dtype}")


def canonical_orientation(img: np.ndarray, camera: Camera) -> np.ndarray:
    """Undo the camera's declared flip/rotation so x is right and y is down on the stage."""
    return Orientation.of(camera).to_stage(img)


def device_orientation(img: np.ndarray, camera: Camera) -> np.ndarray:
    """What a camera with the declared flip/rotation delivers (inverse of the above)."""
    return Orientation.of(camera).to_device(img)


@dataclass
class StageReading:
    x_um: float
    y_um: float
    z_um: float


class MicroManagerRig:
    """Camera, XY stage and focus drive of one Micro-Manager core.

    Parameters
    ----------
    core
        A pymmcore-plus core, or pycromanager's ``Core()`` (detected by its snake_case API).
    camera
        The profile's camera section: gain property, flips, neutral gain.
    snap_retries
        How often a failed snap is retried before :class:`CameraError`.
    """

    def __init__(self, core: Any, *, camera: Camera, snap_retries: int = 3) -> None:
        self.raw_core = core
        self.core = SnakeCaseCore(core) if hasattr(core, "snap_image") else core
        self.camera = camera
        self.snap_retries = snap_retries
        self._gain_supported: bool | None = None
        self._exposure_ms: float | None = None
        self._gain: float | None = None
        try:
            self.camera_label = str(self.core.getCameraDevice())
        except Exception as err:
            raise CameraError(f"Micro-Manager core has no usable camera: {err}") from None
        if not self.camera_label:
            raise CameraError("the Micro-Manager configuration defines no camera device")
        self.xy_label = str(self.core.getXYStageDevice())
        self.z_label = str(self.core.getFocusDevice())
        try:
            self.core.setAutoShutter(False)
        except Exception:  # not every core exposes it; the LED array is driven explicitly
            pass

    # -- camera -------------------------------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        """``(width, height)`` of frames in the canonical orientation."""
        w = int(self.core.getImageWidth())
        h = int(self.core.getImageHeight())
        return Orientation.of(self.camera).stage_size(w, h)

    def set_exposure(self, exposure_ms: float) -> float:
        """Set the exposure (ms) if it changed; return what the camera reports."""
        if self._exposure_ms is None or abs(self._exposure_ms - exposure_ms) > 1e-9:
            self.core.setExposure(float(exposure_ms))
            self._exposure_ms = float(self.core.getExposure())
        return self._exposure_ms

    def set_gain(self, gain: float) -> float:
        """Set the gain through the profile's camera property.

        A camera without that property is accepted while the neutral gain is requested.
        """
        if self._gain is not None and abs(self._gain - gain) < 1e-12:
            return self._gain
        prop = self.camera.gain_property
        if self._gain_supported is None:
            self._gain_supported = bool(prop) and bool(
                self.core.hasProperty(self.camera_label, prop)
            )
        if not self._gain_supported:
            if abs(gain - self.camera.neutral_gain) > 1e-9:
                raise CameraError(
                    f"camera {self.camera_label!r} has no gain property {prop!r}, but the "
                    f"stack asks for gain {gain:g} (neutral is {self.camera.neutral_gain:g})"
                )
            self._gain = gain
            return gain
        self.core.setProperty(self.camera_label, prop, float(gain))
        self._gain = float(self.core.getProperty(self.camera_label, prop))
        return self._gain

    def snap(self) -> np.ndarray:
        """Snap one frame → ``(H, W, 3) uint8`` RGB, canonical orientation."""
        last: Exception | None = None
        for _attempt in range(self.snap_retries + 1):
            try:
                self.core.snapImage()
                img = self.core.getImage()
                break
            except Exception as err:  # camera timeouts surface as RuntimeError from MMCore
                last = err
        else:
            raise CameraError(
                f"camera {self.camera_label!r} failed {self.snap_retries + 1} snaps in a row: "
                f"{last}"
            )
        h = int(self.core.getImageHeight())
        w = int(self.core.getImageWidth())
        n = int(self.core.getNumberOfComponents())
        return canonical_orientation(to_rgb(img, h, w, n), self.camera)

    # -- stages -------------------------------------------------------------------------------
    def move_xy(self, x_um: float, y_um: float) -> None:
        if not self.xy_label:
            raise CameraError("the Micro-Manager configuration defines no XY stage")
        self.core.setXYPosition(float(x_um), float(y_um))

    def move_z(self, z_um: float) -> None:
        if not self.z_label:
            raise CameraError("the Micro-Manager configuration defines no focus (Z) stage")
        self.core.setPosition(float(z_um))

    def wait_for_stages(self, timeout_s: float = 30.0) -> None:
        end = time.monotonic() + timeout_s
        for label in (self.xy_label, self.z_label):
            if not label:
                continue
            while self.core.deviceBusy(label):
                if time.monotonic() > end:
                    raise CameraError(f"stage {label!r} still busy after {timeout_s:g} s")
                time.sleep(0.001)

    def read_stage(self) -> StageReading:
        x = float(self.core.getXPosition()) if self.xy_label else float("nan")
        y = float(self.core.getYPosition()) if self.xy_label else float("nan")
        z = float(self.core.getPosition()) if self.z_label else float("nan")
        return StageReading(x, y, z)

    def close(self) -> None:
        for name in ("unloadAllDevices",):
            fn = getattr(self.raw_core, name, None) or getattr(self.raw_core, _snake(name), None)
            if fn is not None and not hasattr(self.raw_core, "snap_image"):
                try:
                    fn()
                except Exception:
                    pass
