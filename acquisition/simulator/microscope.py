"""The simulated LED-array microscope: a virtual slide seen through the profile's optics.

:class:`SimulatedMicroscope` renders what the camera sees at a stage position with some LEDs
lit (:meth:`~SimulatedMicroscope.render`), and knows the truth behind it: where the slide sits
in each pass, the best focus, the ideal exposure of a channel, every cell and every planted
fault. Physics: docs/simulator.md and the modules beside this one (:mod:`.smear` what is on the
slide, :mod:`.sample` how it absorbs and delays light, :mod:`.optics` how each LED images it,
:mod:`.camera_model` how the camera digitises it).

Conventions (docs/formats.md): stage positions in µm; pixel ``(x, y)`` of a ``W x H``
stage-aligned frame taken at stage ``(X, Y)`` with pixel size ``p`` sits at stage
``(X + (x - (W-1)/2)·p, Y + (y - (H-1)/2)·p)``; each pass places the slide with
``stage = R(θ)·slide + t``. Frames and masks are returned in the orientation the camera
delivers (the profile's ``flip_x``/``flip_y``/``rotation_deg`` applied;
:func:`~acquisition.simulator.camera_model.from_camera_orientation` undoes it).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from acquisition.simulator import camera_model, optics, sample, smear, spectra
from acquisition.simulator.cells import MAX_OBJECT_EXTENT_UM
from acquisition.simulator.config import SimConfig, SimulatorError
from acquisition.simulator.rendering import FieldRenderer
from acquisition.simulator.sample import Raster
from acquisition.simulator.smear import SmearObjects, seeded_rng
from acquisition.vocabulary import PASSES  # re-exported: the simulator's passes
from hardware_profiles.schema import HardwareProfile, Objective

CELLS_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("type", "U10"),
        ("x_um", "f8"),
        ("y_um", "f8"),
        ("radius_um", "f8"),
        ("pass", "U10"),
    ]
)
FAULTS_DTYPE = np.dtype(
    [
        ("kind", "U16"),
        ("x_um", "f8"),
        ("y_um", "f8"),
        ("leds", "U64"),
        ("dx_px", "f8"),
        ("dy_px", "f8"),
    ]
)


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class SimulatedMicroscope(FieldRenderer):
    """A virtual blood smear under the LED-array microscope described by ``profile``.

    Parameters
    ----------
    profile
        The instrument: objectives, camera, LED positions.
    slide, seed
        Identify the virtual slide. Its content and its placements in every pass depend only
        on this pair, so every pass, process and call order sees the same sample.
    config
        Slide, pass, camera and fault settings (:class:`SimConfig`; defaults if omitted).
    """

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        slide: str = "slide",
        seed: int = 0,
        config: SimConfig | None = None,
    ) -> None:
        self.profile = profile
        self.slide = str(slide)
        self.seed = int(seed)
        self.config = config if config is not None else SimConfig()
        cam = profile.camera
        scan = profile.scan_objective
        field_area = cam.sensor_width_px * cam.sensor_height_px * scan.pixel_size_um**2
        self.smear = smear.VirtualSmear(
            slide=self.slide, seed=self.seed, config=self.config, field_area_um2=field_area
        )
        self._leds = profile.led_array.by_id
        self._true_leds, self._led_gain = _true_leds(profile, self.config)
        self._samples = {
            colour: self._spectral_samples(colour)
            for colour in sorted({led.color for led in self._true_leds.values()})
        }
        self._wavelengths = tuple(
            sorted({lam for smp in self._samples.values() for lam in smp.wavelengths_nm})
        )
        self._max_sin = max(
            math.hypot(*optics.led_direction(led)) for led in self._true_leds.values()
        ) + self.config.led_size_mm / min(led.z_mm for led in self._true_leds.values())
        self._flats: dict[tuple[int, int], np.ndarray] = {}
        self._workers = _workers()
        self._lock = threading.RLock()
        self._spectra: OrderedDict[tuple, tuple] = OrderedDict()
        self._intensities: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._intensity_bytes = 0
        self._draw_slide_state()

    # ------------------------------------------------------------------ slide state
    def _draw_slide_state(self) -> None:
        cfg = self.config
        u = seeded_rng(self.slide, self.seed, "placement").uniform(-1.0, 1.0, 16)
        rot, trans = math.radians(cfg.max_rotation_deg), cfg.max_translation_um
        hrot, htrans = math.radians(cfg.highres_rotation_deg), cfg.highres_translation_um
        theta_u, t_u = rot * u[0], trans * u[1:3]
        theta_s, t_s = theta_u + rot * u[3], t_u + trans * u[4:6]
        theta_h, t_h = theta_s + hrot * u[6], t_s + htrans * u[7:9]
        self._placements = {
            "unstained": _affine(theta_u, t_u),
            "stained": _affine(theta_s, t_s),
            "highres": _affine(theta_h, t_h),
        }
        for a in self._placements.values():
            a.setflags(write=False)
        hi = self.profile.highres_objective
        scan = self.profile.scan_objective
        nominal = scan.pixel_size_um / hi.pixel_size_um if hi is not None else 1.0
        self._ratio = nominal * (1.0 + cfg.magnification_error * u[9])
        self._z_offset = {p: cfg.focus_offset_um * u[10 + i] for i, p in enumerate(PASSES)}
        tilt_dir = math.pi * u[13]
        self._tilt = (
            cfg.surface_tilt_um_per_mm * 1e-3 * math.cos(tilt_dir),
            cfg.surface_tilt_um_per_mm * 1e-3 * math.sin(tilt_dir),
        )
        v = seeded_rng(self.slide, self.seed, "stain").uniform(-1.0, 1.0, 3)
        self._stain_scale = tuple(
            float((1.0 + cfg.stain_variation * x) * cfg.stain_strength) for x in v
        )

    def _spectral_samples(self, colour: str) -> spectra.SpectralSamples:
        cfg = self.config
        if cfg.spectral_samples == 0:
            return spectra.line_samples(colour, tuple(cfg.wavelengths_nm))
        return spectra.spectral_samples(colour, int(cfg.spectral_samples))

    def _check_pass(self, pass_: str) -> None:
        if pass_ not in PASSES:
            raise SimulatorError(f"unknown pass {pass_!r}; expected one of {', '.join(PASSES)}.")
        if pass_ == "highres" and self.profile.highres_objective is None:
            raise SimulatorError(
                f"profile {self.profile.name!r} has no highres objective, so it cannot image "
                "the highres pass."
            )

    def _geometry(self, pass_: str):
        return sample.PassGeometry(
            placement=self._placements[pass_],
            stained=pass_ != "unstained",
            phase_factor=self.config.highres_phase_factor if pass_ == "highres" else 1.0,
            stain_scale=self._stain_scale,
            kappa=self.config.kappa_um3_per_pg,
            nucleus_to_cytoplasm=self.config.nucleus_to_cytoplasm,
            coupling=self.config.stain_phase_coupling,
            texture_scale=self.config.texture_scale,
            background_stain=self.config.background_stain,
        )

    # ------------------------------------------------------------------ public geometry
    def placement(self, pass_: str) -> np.ndarray:
        """Where the slide sits in ``pass_``: 2x3 float64 ``A``, ``stage = A @ [sx, sy, 1]`` µm."""
        self._check_pass(pass_)
        return self._placements[pass_].copy()

    def objective(self, pass_: str) -> Objective:
        """The objective that images ``pass_``: the scan objective, or the highres one."""
        self._check_pass(pass_)
        if pass_ == "highres":
            return self.profile.highres_objective
        return self.profile.scan_objective

    def pixel_size_um(self, pass_: str) -> float:
        """True camera pixel size at the sample in ``pass_``, µm.

        The scan objective's is the profile's; the highres one's is the scan pixel size over
        the true magnification ratio (the profile's highres value is only nominal).
        """
        self._check_pass(pass_)
        scan = self.profile.scan_objective.pixel_size_um
        return scan / self._ratio if pass_ == "highres" else scan

    def magnification_ratio(self) -> float:
        """Scan pixel size over the true highres pixel size (near 5 for ``pls43``)."""
        return float(self._ratio)

    def staining_moves(self, ids, x_um, y_um) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dx, dy, lost)`` per object: how staining moved each cell (slide µm) from its
        unstained slide position ``(x_um, y_um)``, and which it washed off. Its position in
        the stained and highres passes is the unstained one plus ``(dx, dy)``; ``truth``
        already lists each pass's own positions."""
        ids = np.asarray(ids, dtype=np.int64)
        return self.smear.pass_offsets(ids, x_um, y_um)

    def focus_z_um(self, pass_: str, x_um: float, y_um: float) -> float:
        """Stage Z (µm) of best focus at stage position ``(x_um, y_um)`` in ``pass_``.

        The slide surface is a gentle tilted plane with a slight paraboloid sag about the slide
        origin; each pass adds its own offset (the slide re-seated, another objective).
        """
        self._check_pass(pass_)
        sx, sy = self._to_slide(pass_, np.float64(x_um), np.float64(y_um))
        cfg = self.config
        height = self._tilt[0] * sx + self._tilt[1] * sy
        height += cfg.surface_curvature_um * (sx * sx + sy * sy) * 1e-6
        return float(self._z_offset[pass_] + height)

    def pls_shift_px(self, x_um: float, y_um: float, led: int) -> tuple[float, float] | None:
        """The planted shift ``(dx, dy)`` (camera px) of LED ``led`` alone at this field, if any.

        Applies to the unstained pass only. Image content moves by ``(+dx, +dy)`` in the
        stage-aligned frame against brightfield. Keyed by the field centre rounded to 1 µm.
        """
        faults = self.config.faults
        if faults.pls_shift_probability <= 0:
            return None
        rng = seeded_rng(
            self.slide, self.seed, "pls-shift", round(float(x_um)), round(float(y_um)), int(led)
        )
        hit, mag, ang = rng.random(3)
        if hit >= faults.pls_shift_probability:
            return None
        lo, hi = faults.pls_shift_px
        mag = lo + (hi - lo) * mag
        ang *= 2 * math.pi
        return (mag * math.cos(ang), mag * math.sin(ang))

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        *,
        pass_: str,
        x_um: float,
        y_um: float,
        z_um: float,
        leds: Mapping[int, int],
        exposure_ms: float,
        gain: float,
        width: int,
        height: int,
    ) -> np.ndarray:
        """The ``(height, width, 3)`` uint8 RGB frame the camera takes.

        Parameters
        ----------
        pass_
            ``unstained``, ``stained`` or ``highres``.
        x_um, y_um, z_um
            Stage position, µm; the defocus is ``z_um - focus_z_um(pass_, x_um, y_um)``.
        leds
            LED id -> brightness (0..max_brightness); several LEDs add incoherently, none
            gives a dark frame (read noise only).
        exposure_ms, gain
            Camera exposure (ms) and analogue gain.
        width, height
            Frame size as delivered (raw orientation), pixels.

        Deterministic: the same arguments give the same frame in every process.
        """
        self._check_pass(pass_)
        lit = self._check_leds(leds)
        self._check_camera(exposure_ms=exposure_ms, gain=gain, width=width, height=height)
        cfg = self.config
        wc, hc = camera_model.stage_aligned_size(width, height, self.profile.camera)
        with self._lock:
            if lit:
                dz = float(z_um) - self.focus_z_um(pass_, x_um, y_um)
                electrons = self._electron_rate(
                    pass_, x_um, y_um, dz, lit, wc, hc, exposure_ms=exposure_ms
                )
            else:
                electrons = np.zeros((hc, wc, 3), np.float32)
        key = camera_model.frame_key(
            self.slide,
            self.seed,
            str(pass_),  # a Pass member and its string give the same noise
            float(x_um),
            float(y_um),
            float(z_um),
            tuple(sorted((int(k), int(v)) for k, v in leds.items())),
            float(exposure_ms),
            float(gain),
            int(width),
            int(height),
        )
        expose = dict(
            gain=gain,
            full_well_e=cfg.full_well_e,
            read_noise_e=cfg.read_noise_e,
            black_level_dn=cfg.black_level_dn,
            key=key,
        )
        if cfg.bayer:
            raw = camera_model.to_camera_orientation(electrons, self.profile.camera)
            mosaic = camera_model.expose(camera_model.bayer_mosaic(raw), **expose)
            return camera_model.demosaic(mosaic)
        frame = camera_model.expose(electrons, **expose)
        return camera_model.to_camera_orientation(frame, self.profile.camera)

    def render_stack(
        self,
        *,
        pass_: str,
        x_um: float,
        y_um: float,
        width: int,
        height: int,
        channels: Sequence | None = None,
        exposures_ms: Mapping[str, float] | None = None,
        brightness: int | None = None,
        gain: float | None = None,
        z_um: float | None = None,
    ) -> np.ndarray:
        """The ``(C, height, width, 3)`` uint8 frames of a channel stack at one stage position.

        ``channels`` are profile stack channels (default: the whole ``profile.stack``), each
        rendered with its own LEDs, brightness, exposure and gain unless ``brightness``,
        ``gain`` (for every channel) or ``exposures_ms`` (by channel name) say otherwise.
        ``z_um`` defaults to the best focus of ``pass_`` at ``(x_um, y_um)``.
        """
        chans = list(self.profile.stack if channels is None else channels)
        z = self.focus_z_um(pass_, x_um, y_um) if z_um is None else float(z_um)
        return np.stack(
            [
                self.render(
                    pass_=pass_,
                    x_um=x_um,
                    y_um=y_um,
                    z_um=z,
                    leds=dict.fromkeys(ch.leds, brightness or ch.brightness),
                    exposure_ms=(ch.exposure_ms if exposures_ms is None else exposures_ms[ch.name]),
                    gain=ch.gain if gain is None else gain,
                    width=width,
                    height=height,
                )
                for ch in chans
            ]
        )

    def ideal_exposure_ms(
        self,
        *,
        pass_: str,
        x_um: float,
        y_um: float,
        leds: Mapping[int, int],
        gain: float,
        level: float,
        percentile: float,
        width: int,
        height: int,
        z_um: float | None = None,
    ) -> float:
        """Exposure (ms) putting ``percentile`` of the noiseless max-over-RGB DN at ``level``.

        The field is in focus, or at stage Z ``z_um`` when given (a red cell focuses a
        single LED's light, so its highlights change by about 10 % per 0.5 µm of defocus).
        ``level`` is in 0..255 units and is reached by the noiseless,
        unsaturated signal (plus black level): e.g. ``percentile=99.9, level=235`` for a
        brightfield channel, ``percentile=100 - p, level=255`` for ``p`` % burned pixels.
        """
        self._check_pass(pass_)
        lit = self._check_leds(leds)
        self._check_camera(exposure_ms=1.0, gain=gain, width=width, height=height)
        if not 0.0 <= percentile <= 100.0:
            raise SimulatorError(f"percentile must be between 0 and 100; got {percentile!r}.")
        black = self.config.black_level_dn
        if not black < level:
            raise SimulatorError(
                f"level must exceed the camera's black level {black} DN; got {level!r}."
            )
        if not lit:
            raise SimulatorError("no LED is lit, so no exposure reaches any level.")
        wc, hc = camera_model.stage_aligned_size(width, height, self.profile.camera)
        with self._lock:
            dz = 0.0 if z_um is None else float(z_um) - self.focus_z_um(pass_, x_um, y_um)
            rate = self._electron_rate(pass_, x_um, y_um, dz, lit, wc, hc)
        dn_per_ms = rate.max(axis=2) * np.float32(255.0 / self.config.full_well_e * gain)
        q = float(np.percentile(dn_per_ms, percentile))
        if q <= 0:
            raise SimulatorError(
                f"the {percentile}th percentile of this field is dark under LEDs "
                f"{sorted(lit)}; no exposure reaches level {level}."
            )
        return (level - black) / q

    def _check_leds(self, leds: Mapping[int, int]) -> dict[int, int]:
        max_b = self.profile.led_array.max_brightness
        lit = {}
        for led, value in leds.items():
            if led not in self._leds:
                raise SimulatorError(
                    f"LED {led} is not on the {self.profile.name!r} array "
                    f"(ids 0..{max(self._leds)})."
                )
            if not 0 <= value <= max_b:
                raise SimulatorError(
                    f"LED {led} brightness must be between 0 and {max_b}; got {value!r}."
                )
            if value > 0:
                lit[int(led)] = int(value)
        return lit

    def _check_camera(self, *, exposure_ms: float, gain: float, width: int, height: int) -> None:
        cam = self.profile.camera
        if not exposure_ms > 0 or not math.isfinite(exposure_ms):
            raise SimulatorError(f"exposure must be a positive number of ms; got {exposure_ms!r}.")
        if not cam.gain_min <= gain <= cam.gain_max:
            raise SimulatorError(
                f"gain must be between {cam.gain_min} and {cam.gain_max} for camera "
                f"{cam.name!r}; got {gain!r}."
            )
        for name, value in (("width", width), ("height", height)):
            if int(value) != value or not 8 <= value <= 16384:
                raise SimulatorError(f"frame {name} must be 8..16384 pixels; got {value!r}.")

    def _to_slide(self, pass_: str, x: np.ndarray, y: np.ndarray):
        a = self._placements[pass_]
        dx, dy = x - a[0, 2], y - a[1, 2]
        return a[0, 0] * dx + a[1, 0] * dy, a[0, 1] * dx + a[1, 1] * dy

    def _slide_bbox(self, pass_: str, raster: Raster, *, pad: float):
        """Slide-coordinate bounding box of a raster (stage) grown by ``pad`` µm."""
        xs = np.array([raster.x0 - pad, raster.x0 + raster.nx * raster.step + pad])
        ys = np.array([raster.y0 - pad, raster.y0 + raster.ny * raster.step + pad])
        cx, cy = np.meshgrid(xs, ys)
        sx, sy = self._to_slide(pass_, cx.ravel(), cy.ravel())
        return sx.min(), sx.max(), sy.min(), sy.max()

    def _objects_for(self, pass_: str, raster: Raster) -> SmearObjects:
        bbox = self._slide_bbox(pass_, raster, pad=MAX_OBJECT_EXTENT_UM + raster.step)
        return self.smear.objects_in(*bbox, pass_=pass_)

    def truth(
        self,
        pass_: str,
        fields: Sequence[tuple[float, float]],
        width: int,
        height: int,
    ) -> dict:
        """Ground truth of a scan of ``pass_`` at these field centres (stage µm).

        Returns
        -------
        dict
            ``slide_to_stage``: 2x3 placement; ``magnification_ratio``: float for the highres
            pass, else None; ``cells``: structured array (:data:`CELLS_DTYPE`: ``id``,
            ``type``, ``x_um``/``y_um`` in slide coordinates, ``radius_um`` in this pass,
            ``pass`` = "" or the one pass the object is in) of every object present in this
            pass whose centre falls in any field; ``faults``: structured array
            (:data:`FAULTS_DTYPE`) of planted ``pls_shift`` faults, one row per field and
            single-LED stack channel LED that is shifted (stage-aligned pixels).
        """
        self._check_pass(pass_)
        self._check_camera(
            exposure_ms=1.0, gain=self.profile.camera.neutral_gain, width=width, height=height
        )
        wc, hc = camera_model.stage_aligned_size(width, height, self.profile.camera)
        p = self.pixel_size_um(pass_)
        half_w, half_h = wc * p / 2, hc * p / 2
        stained = pass_ != "unstained"
        a = self._placements[pass_]
        centres = np.asarray(fields, dtype=np.float64).reshape(-1, 2)
        parts: dict[int, tuple] = {}

        def inside(x, y) -> np.ndarray:
            sx = a[0, 0] * x + a[0, 1] * y + a[0, 2]
            sy = a[1, 0] * x + a[1, 1] * y + a[1, 2]
            dx = np.abs(np.asarray(sx)[..., None] - centres[:, 0])
            dy = np.abs(np.asarray(sy)[..., None] - centres[:, 1])
            return np.any((dx <= half_w) & (dy <= half_h), axis=-1)

        for fx, fy in centres:
            raster = Raster(x0=fx - half_w, y0=fy - half_h, step=p, nx=wc, ny=hc)
            objects = self._objects_for(pass_, raster)
            for type_, recs in (("rbc", objects.rbcs), ("platelet", objects.platelets)):
                recs = recs[inside(recs["x"], recs["y"])]
                radius = recs["radius"] * (recs["shrink"] if stained else 1.0)
                for rec, r in zip(recs, radius, strict=True):
                    parts[int(rec["id"])] = (type_, rec["x"], rec["y"], float(r), "")
            for cell in objects.wbcs:
                if inside(cell.x, cell.y):
                    r = cell.radius * (cell.shrink if stained else 1.0)
                    parts[cell.id] = (cell.type, cell.x, cell.y, r, "")
            for d in objects.debris:
                if inside(d.x, d.y):
                    parts[d.id] = (d.type, d.x, d.y, d.radius, d.pass_)
        cells = np.zeros(len(parts), CELLS_DTYPE)
        for i, (oid, (t, x, y, r, ps)) in enumerate(sorted(parts.items())):
            cells[i] = (oid, t, x, y, r, ps)

        faults = []
        if pass_ == "unstained":
            single = sorted({ch.leds[0] for ch in self.profile.stack if ch.kind != "brightfield"})
            for fx, fy in fields:
                for led in single:
                    shift = self.pls_shift_px(fx, fy, led)
                    if shift is not None:
                        faults.append(("pls_shift", fx, fy, str(led), shift[0], shift[1]))
        return {
            "slide_to_stage": self.placement(pass_),
            "magnification_ratio": self.magnification_ratio() if pass_ == "highres" else None,
            "cells": cells,
            "faults": np.array(faults, FAULTS_DTYPE),
        }

    def masks(
        self, *, pass_: str, x_um: float, y_um: float, width: int, height: int
    ) -> dict[str, np.ndarray]:
        """Truth masks ``(height, width)`` bool in camera pixels, oriented like the frames.

        Keys: ``nucleus``, ``cytoplasm`` (WBC minus nucleus), ``wbc``, ``rbc`` (red cells
        outside white cells). Pixels are sampled at their centres.
        """
        self._check_pass(pass_)
        self._check_camera(
            exposure_ms=1.0, gain=self.profile.camera.neutral_gain, width=width, height=height
        )
        wc, hc = camera_model.stage_aligned_size(width, height, self.profile.camera)
        p = self.pixel_size_um(pass_)
        raster = Raster(
            x0=x_um - (wc - 1) / 2 * p, y0=y_um - (hc - 1) / 2 * p, step=p, nx=wc, ny=hc
        )
        with self._lock:
            masks = sample.truth_masks(
                self._objects_for(pass_, raster), raster, self._geometry(pass_)
            )
        cam = self.profile.camera
        return {k: camera_model.to_camera_orientation(v, cam) for k, v in masks.items()}


def _true_leds(profile: HardwareProfile, config: SimConfig):
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


def _affine(theta: float, t: np.ndarray) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, float(t[0])], [s, c, float(t[1])]], dtype=np.float64)
