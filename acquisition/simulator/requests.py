"""Checks of what is asked of the simulated microscope: the pass, the LEDs, the camera settings.

Each raises :class:`~acquisition.simulator.config.SimulatorError` with one line naming the
bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from acquisition.geometry import FieldGeometry
from acquisition.simulator.config import SimulatorError
from acquisition.vocabulary import PASSES, Pass
from hardware_profiles.schema import Camera, HardwareProfile


def check_pass(profile: HardwareProfile, pass_: str) -> None:
    """Raise unless the instrument ``profile`` describes can image ``pass_``."""
    if pass_ not in PASSES:
        raise SimulatorError(f"unknown pass {pass_!r}; expected one of {', '.join(PASSES)}.")
    if pass_ == Pass.HIGHRES and profile.highres_objective is None:
        raise SimulatorError(
            f"profile {profile.name!r} has no highres objective, so it cannot image "
            "the highres pass."
        )


def check_leds(profile: HardwareProfile, leds: Mapping[int, int]) -> dict[int, int]:
    """The lit LEDs of ``leds`` (id -> brightness > 0); raise on an unknown id or level."""
    known = profile.led_array.by_id
    max_b = profile.led_array.max_brightness
    lit = {}
    for led, value in leds.items():
        if led not in known:
            raise SimulatorError(
                f"LED {led} is not on the {profile.name!r} array (ids 0..{max(known)})."
            )
        if not 0 <= value <= max_b:
            raise SimulatorError(
                f"LED {led} brightness must be between 0 and {max_b}; got {value!r}."
            )
        if value > 0:
            lit[int(led)] = int(value)
    return lit


def check_camera(
    camera: Camera, *, exposure_ms: float, gain: float, width: int, height: int
) -> None:
    """Raise on camera settings ``camera`` cannot take (frame sizes 8..16384 pixels)."""
    if not exposure_ms > 0 or not math.isfinite(exposure_ms):
        raise SimulatorError(f"exposure must be a positive number of ms; got {exposure_ms!r}.")
    if not camera.gain_min <= gain <= camera.gain_max:
        raise SimulatorError(
            f"gain must be between {camera.gain_min} and {camera.gain_max} for camera "
            f"{camera.name!r}; got {gain!r}."
        )
    for name, value in (("width", width), ("height", height)):
        if int(value) != value or not 8 <= value <= 16384:
            raise SimulatorError(f"frame {name} must be 8..16384 pixels; got {value!r}.")


def check_frame(
    profile: HardwareProfile, pass_: str, width: int, height: int, pixel_size_um: float
) -> FieldGeometry:
    """Check ``pass_`` and a raw ``width x height`` frame size; the stage-aligned geometry of
    such a frame with pixels of ``pixel_size_um``."""
    check_pass(profile, pass_)
    cam = profile.camera
    check_camera(cam, exposure_ms=1.0, gain=cam.neutral_gain, width=width, height=height)
    return FieldGeometry.from_raw(width, height, pixel_size_um, cam)
