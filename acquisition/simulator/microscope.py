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
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from acquisition.simulator import camera_model, optics, sample, smear, spectra
from acquisition.simulator.cells import MAX_OBJECT_EXTENT_UM
from acquisition.simulator.config import SimConfig, SimulatorError
from acquisition.simulator.rendering import FieldRenderer, cpu_workers
from acquisition.simulator.requests import check_camera, check_frame, check_leds, check_pass
from acquisition.simulator.sample import Raster
from acquisition.simulator.slide_state import SlideState, planted_pls_shift, true_leds
from acquisition.simulator.smear_objects import SmearObjects
from acquisition.simulator.truth import CELLS_DTYPE, FAULTS_DTYPE, scan_truth
from acquisition.vocabulary import PASSES, Pass  # re-exported: the simulator's passes
from hardware_profiles.schema import HardwareProfile, Objective


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
        self._true_leds, self._led_gain = true_leds(profile, self.config)
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
        self._workers = cpu_workers()
        self._lock = threading.RLock()
        self._spectra: OrderedDict[tuple, tuple] = OrderedDict()
        self._intensities: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._intensity_bytes = 0
        state = SlideState.draw(profile, self.config, slide=self.slide, seed=self.seed)
        self._placements = state.placements
        self._ratio = state.magnification_ratio
        self._z_offset = state.focus_offset_um
        self._tilt = state.tilt
        self._stain_scale = state.stain_scale

    def _spectral_samples(self, colour: str) -> spectra.SpectralSamples:
        cfg = self.config
        if cfg.spectral_samples == 0:
            return spectra.line_samples(colour, tuple(cfg.wavelengths_nm))
        return spectra.spectral_samples(colour, int(cfg.spectral_samples))

    def _geometry(self, pass_: str):
        return sample.PassGeometry(
            placement=self._placements[pass_],
            stained=pass_ != Pass.UNSTAINED,
            phase_factor=self.config.highres_phase_factor if pass_ == Pass.HIGHRES else 1.0,
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
        check_pass(self.profile, pass_)
        return self._placements[pass_].copy()

    def objective(self, pass_: str) -> Objective:
        """The objective that images ``pass_``: the scan objective, or the highres one."""
        check_pass(self.profile, pass_)
        if pass_ == Pass.HIGHRES:
            return self.profile.highres_objective
        return self.profile.scan_objective

    def pixel_size_um(self, pass_: str) -> float:
        """True camera pixel size at the sample in ``pass_``, µm.

        The scan objective's is the profile's; the highres one's is the scan pixel size over
        the true magnification ratio (the profile's highres value is only nominal).
        """
        check_pass(self.profile, pass_)
        scan = self.profile.scan_objective.pixel_size_um
        return scan / self._ratio if pass_ == Pass.HIGHRES else scan

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
        check_pass(self.profile, pass_)
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
        return planted_pls_shift(self.slide, self.seed, self.config.faults, x_um, y_um, led)

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
        check_pass(self.profile, pass_)
        lit = check_leds(self.profile, leds)
        check_camera(
            self.profile.camera, exposure_ms=exposure_ms, gain=gain, width=width, height=height
        )
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
        check_pass(self.profile, pass_)
        lit = check_leds(self.profile, leds)
        check_camera(self.profile.camera, exposure_ms=1.0, gain=gain, width=width, height=height)
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

    def objects_for(self, pass_: str, raster: Raster) -> SmearObjects:
        """The smear's objects that can reach ``raster`` (stage grid) in ``pass_``."""
        bbox = self._slide_bbox(pass_, raster, pad=MAX_OBJECT_EXTENT_UM + raster.step)
        return self.smear.objects_in(*bbox, pass_=pass_)

    def truth(
        self,
        pass_: str,
        fields: Sequence[tuple[float, float]],
        width: int,
        height: int,
    ) -> dict:
        """Ground truth of a scan of ``pass_`` at these field centres (stage µm); see
        :func:`acquisition.simulator.truth.scan_truth`."""
        return scan_truth(self, pass_, fields, width, height)

    def masks(
        self, *, pass_: str, x_um: float, y_um: float, width: int, height: int
    ) -> dict[str, np.ndarray]:
        """Truth masks ``(height, width)`` bool in camera pixels, oriented like the frames.

        Keys: ``nucleus``, ``cytoplasm`` (WBC minus nucleus), ``wbc``, ``rbc`` (red cells
        outside white cells). Pixels are sampled at their centres.
        """
        frame = check_frame(self.profile, pass_, width, height, self.pixel_size_um(pass_))
        x0, y0 = frame.pixel_to_stage(0.0, 0.0, x_um, y_um)  # the first pixel's centre
        raster = Raster(
            x0=float(x0), y0=float(y0), step=frame.pixel_size_um, nx=frame.width, ny=frame.height
        )
        with self._lock:
            masks = sample.truth_masks(
                self.objects_for(pass_, raster), raster, self._geometry(pass_)
            )
        cam = self.profile.camera
        return {k: camera_model.to_camera_orientation(v, cam) for k, v in masks.items()}


#: Names other modules import from here (the truth's record types live in :mod:`.truth`).
__all__ = ["CELLS_DTYPE", "FAULTS_DTYPE", "PASSES", "SimulatedMicroscope"]
