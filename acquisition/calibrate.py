"""``scope calibrate``: per-channel exposure and gain, automated.

The thesis set every LED's exposure by hand, judging the histogram: the most detail with the
fewest pixels at 255 in any of R, G, B. Here, on a reference field:

- brightfield, pls and low-exposure darkfield images: the brightest 0.1 % of pixels (the
  99.9th percentile of max(R, G, B)) is brought to a target level (default 235 of 255), so
  the range is used and almost nothing saturates;
- high-exposure darkfield images: a chosen share of pixels (default 2 %) reaches 255 — the
  burned background scatterers of the thesis's "high" exposures.

Camera response is linear below saturation, so each channel is measured at an unsaturated
exposure and extrapolated, then checked. Where the exposure would exceed
``max_exposure_ms``, gain makes up the difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from acquisition.progress import NO_PROGRESS, Progress
from acquisition.vocabulary import ChannelKind
from hardware_profiles import Channel, HardwareProfile
from hardware_profiles.errors import ScopeError

#: The progress bar of channels calibrated.
CHANNELS_BAR = "channels"


class CalibrationError(ScopeError):
    """A channel cannot reach its target (too dark even at the longest exposure and gain)."""


@dataclass(frozen=True)
class CalibrationTargets:
    level: float = 235.0
    percentile: float = 99.9
    high_saturation_percent: float = 2.0
    max_exposure_ms: float = 2000.0
    min_exposure_ms: float = 0.05


@dataclass
class ChannelCalibration:
    name: str
    kind: str
    exposure_level: str
    old_exposure_ms: float
    exposure_ms: float
    gain: float
    measured: float  # value at the target percentile in the final image
    saturated_percent: float


def _stats(image: np.ndarray, percentile: float) -> tuple[float, float]:
    peak = image.max(axis=2)
    return float(np.percentile(peak, percentile)), float((peak >= 255).mean() * 100.0)


def _round3(x: float) -> float:
    return float(f"{x:.3g}")


def black_level(rig, profile: HardwareProfile) -> float:
    """The camera's dark offset (DN): median of max(R, G, B) with every LED off."""
    rig.leds.clear()
    rig.mm.set_gain(profile.camera.neutral_gain)
    rig.mm.set_exposure(1.0)
    return float(np.median(rig.mm.snap().max(axis=2)))


def calibrate_channel(
    rig,
    channel: Channel,
    *,
    targets: CalibrationTargets,
    profile: HardwareProfile,
    black: float = 0.0,
) -> ChannelCalibration:
    """Find exposure (ms) and gain for one channel on the field under the objective.

    ``black`` is the camera's dark offset (:func:`black_level`): the linear response is
    extrapolated from it, not from zero.
    """
    cam = profile.camera
    high = channel.kind == ChannelKind.DARKFIELD and channel.exposure_level == "high"
    q = 100.0 - targets.high_saturation_percent if high else targets.percentile
    goal = 255.0 if high else targets.level
    gain = cam.neutral_gain
    rig.leds.light(channel.leds, channel.brightness)
    try:
        rig.mm.set_gain(gain)
        exposure = min(channel.exposure_ms / max(channel.gain, 1e-9), targets.max_exposure_ms)
        exposure = max(exposure, targets.min_exposure_ms)
        longest = targets.max_exposure_ms * cam.gain_max / cam.neutral_gain
        value = sat = 0.0
        for _ in range(16):
            rig.mm.set_gain(gain)
            rig.mm.set_exposure(exposure)
            value, sat = _stats(rig.mm.snap(), q)
            effective = exposure * gain / cam.neutral_gain
            if value >= 250.0:  # saturated at the percentile: no information, back off
                exposure, gain = _split(effective / 4, targets, cam)
                continue
            if value < 8.0:  # lost in the noise: go brighter
                if effective >= longest:
                    break
                exposure, gain = _split(min(effective * 16, longest), targets, cam)
                continue
            wanted = effective * (goal - black) / max(value - black, 1e-6)
            if wanted > longest * 1.0001:
                raise CalibrationError(
                    f"channel {channel.name!r} stays too dark: it would need "
                    f"{wanted:.0f} ms at neutral gain, more than {targets.max_exposure_ms:g} ms "
                    f"at the camera's maximum gain {cam.gain_max:g}"
                )
            done = high or abs(value - goal) <= 0.01 * goal
            exposure, gain = _split(wanted, targets, cam)
            if done:
                break
        else:
            raise CalibrationError(f"channel {channel.name!r} did not converge")
        if value < 8.0:
            raise CalibrationError(
                f"channel {channel.name!r} shows no signal even at {targets.max_exposure_ms:g} "
                f"ms and gain {cam.gain_max:g}: is the LED lit and the slide in focus?"
            )
        exposure = _round3(exposure)
        gain = _round3(gain)
        rig.mm.set_gain(gain)
        rig.mm.set_exposure(exposure)
        value, sat = _stats(rig.mm.snap(), q)
    finally:
        rig.leds.clear()
    return ChannelCalibration(
        name=channel.name,
        kind=channel.kind,
        exposure_level=channel.exposure_level,
        old_exposure_ms=channel.exposure_ms,
        exposure_ms=exposure,
        gain=gain,
        measured=value,
        saturated_percent=sat,
    )


def _split(effective_ms: float, targets: CalibrationTargets, cam) -> tuple[float, float]:
    """Neutral-gain-equivalent exposure → (exposure, gain), preferring exposure to gain."""
    effective_ms = max(effective_ms, targets.min_exposure_ms)
    if effective_ms <= targets.max_exposure_ms:
        return effective_ms, cam.neutral_gain
    gain = min(cam.gain_max, cam.neutral_gain * effective_ms / targets.max_exposure_ms)
    return effective_ms * cam.neutral_gain / gain, gain


def calibrate_profile(
    rig,
    profile: HardwareProfile,
    *,
    targets: CalibrationTargets | None = None,
    only: Iterable[str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> tuple[HardwareProfile, list[ChannelCalibration]]:
    """Calibrate the profile's channels (or those named in ``only``) → new profile, results.

    ``progress`` gets a bar of channels and a note per channel calibrated.
    """
    targets = targets or CalibrationTargets()
    wanted = set(only) if only is not None else None
    black = black_level(rig, profile)
    n_todo = sum(1 for ch in profile.stack if wanted is None or ch.name in wanted)
    progress.start(CHANNELS_BAR, n_todo)
    results: list[ChannelCalibration] = []
    stack = []
    for ch in profile.stack:
        if wanted is not None and ch.name not in wanted:
            stack.append(ch)
            continue
        res = calibrate_channel(rig, ch, targets=targets, profile=profile, black=black)
        results.append(res)
        progress.note(f"  {res.name}: {res.exposure_ms:.3g} ms, gain {res.gain:.3g}")
        progress.advance(CHANNELS_BAR)
        stack.append(ch.model_copy(update={"exposure_ms": res.exposure_ms, "gain": res.gain}))
    return profile.with_stack(stack), results
