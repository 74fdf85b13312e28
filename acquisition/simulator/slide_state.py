"""What is fixed per slide and per instrument before any frame is taken.

Per slide (``slide``, ``seed``): where the slide sits on the stage in each pass (a small rigid
move between passes), the focus offset of each pass, the surface tilt, the true highres
magnification, the slide's stain strength and the planted PLS shifts. Per instrument
(profile name and ``instrument_seed``): where each LED really is and how bright it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from acquisition.simulator.config import Faults, SimConfig
from acquisition.simulator.seeding import seeded_rng
from acquisition.vocabulary import PASSES, Pass
from hardware_profiles.schema import HardwareProfile, Led


@dataclass(frozen=True)
class SlideState:
    """One slide's placements (2x3 ``stage = A @ [sx, sy, 1]`` per pass, read-only), focus
    offsets per pass (µm), surface tilt (µm/µm along x and y), scan-over-highres pixel size
    ratio and stain scale (eosin, azure, complex)."""

    placements: dict[str, np.ndarray]
    focus_offset_um: dict[str, float]
    tilt: tuple[float, float]
    magnification_ratio: float
    stain_scale: tuple[float, float, float]

    @classmethod
    def draw(
        cls, profile: HardwareProfile, config: SimConfig, *, slide: str, seed: int
    ) -> SlideState:
        """The state of slide ``(slide, seed)`` under ``config`` on this instrument."""
        cfg = config
        u = seeded_rng(slide, seed, "placement").uniform(-1.0, 1.0, 16)
        rot, trans = math.radians(cfg.max_rotation_deg), cfg.max_translation_um
        hrot, htrans = math.radians(cfg.highres_rotation_deg), cfg.highres_translation_um
        theta_u, t_u = rot * u[0], trans * u[1:3]
        theta_s, t_s = theta_u + rot * u[3], t_u + trans * u[4:6]
        theta_h, t_h = theta_s + hrot * u[6], t_s + htrans * u[7:9]
        placements = {
            Pass.UNSTAINED: affine(theta_u, t_u),
            Pass.STAINED: affine(theta_s, t_s),
            Pass.HIGHRES: affine(theta_h, t_h),
        }
        for a in placements.values():
            a.setflags(write=False)
        hi = profile.highres_objective
        scan = profile.scan_objective
        nominal = scan.pixel_size_um / hi.pixel_size_um if hi is not None else 1.0
        ratio = nominal * (1.0 + cfg.magnification_error * u[9])
        z_offset = {p: cfg.focus_offset_um * u[10 + i] for i, p in enumerate(PASSES)}
        tilt_dir = math.pi * u[13]
        tilt = (
            cfg.surface_tilt_um_per_mm * 1e-3 * math.cos(tilt_dir),
            cfg.surface_tilt_um_per_mm * 1e-3 * math.sin(tilt_dir),
        )
        v = seeded_rng(slide, seed, "stain").uniform(-1.0, 1.0, 3)
        stain_scale = tuple(float((1.0 + cfg.stain_variation * x) * cfg.stain_strength) for x in v)
        return cls(placements, z_offset, tilt, ratio, stain_scale)


def true_leds(
    profile: HardwareProfile, config: SimConfig
) -> tuple[dict[int, Led], dict[int, float]]:
    """Where each LED really is and how bright it really is (fixed per instrument).

    Returns ``({id: Led}, {id: brightness factor})``: positions off by
    ``led_position_error_mm`` RMS per axis, brightness by ``U(±led_brightness_error)``.
    """
    rng = seeded_rng("instrument:" + profile.name, config.instrument_seed, "leds")
    leds, gains = {}, {}
    for led_id in sorted(profile.led_array.by_id):
        led = profile.led_array.by_id[led_id]
        dx, dy, dz = rng.normal(0.0, config.led_position_error_mm, 3)
        leds[led_id] = led.model_copy(
            update={"x_mm": led.x_mm + dx, "y_mm": led.y_mm + dy, "z_mm": max(led.z_mm + dz, 1.0)}
        )
        gains[led_id] = float(1.0 + config.led_brightness_error * rng.uniform(-1.0, 1.0))
    return leds, gains


def planted_pls_shift(
    slide: str, seed: int, faults: Faults, x_um: float, y_um: float, led: int
) -> tuple[float, float] | None:
    """The planted shift ``(dx, dy)`` (camera px) of LED ``led`` alone at the field centred on
    stage ``(x_um, y_um)``, if ``faults`` plant one there (keyed by the centre rounded to 1 µm).
    """
    if faults.pls_shift_probability <= 0:
        return None
    rng = seeded_rng(slide, seed, "pls-shift", round(float(x_um)), round(float(y_um)), int(led))
    hit, mag, ang = rng.random(3)
    if hit >= faults.pls_shift_probability:
        return None
    lo, hi = faults.pls_shift_px
    mag = lo + (hi - lo) * mag
    ang *= 2 * math.pi
    return (mag * math.cos(ang), mag * math.sin(ang))


def affine(theta: float, t: np.ndarray) -> np.ndarray:
    """The 2x3 rigid transform rotating by ``theta`` (radians) then moving by ``t``."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, float(t[0])], [s, c, float(t[1])]], dtype=np.float64)
