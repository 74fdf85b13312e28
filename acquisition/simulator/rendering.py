"""How a field is rendered: electrons per camera pixel for the LEDs lit, tile by tile.

:class:`FieldRenderer` holds the rendering half of
:class:`~acquisition.simulator.microscope.SimulatedMicroscope` (which inherits it): the
field's sample spectra per wavelength and angle tile (cached), one LED's image through the
pupil, the angle tiles and their cross-fades, the flat field (vignetting, dust,
fixed-pattern noise) and the colour response. The microscope supplies the state these
methods read (profile, config, true LED positions, caches, lock) and the slide's objects.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Mapping

import cv2
import numpy as np

from acquisition.geometry import FieldGeometry
from acquisition.simulator import camera_model, optics, sample, spectra
from acquisition.simulator.sample import Raster
from acquisition.simulator.seeding import seeded_rng
from acquisition.vocabulary import Pass

#: Refractive index of dried cell material (protein, haemoglobin) for the oblique-path
#: correction: n ≈ 1 + κ·ρ ≈ 1.55 (docs/simulator.md, materials).
DRY_INDEX = 1.55


def cpu_workers() -> int:
    """CPU cores this process may use (the FFT workers of a render)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class FieldRenderer:
    """Rendering methods of the simulated microscope (mixed into ``SimulatedMicroscope``)."""

    def _electron_rate(
        self,
        pass_: str,
        x_um: float,
        y_um: float,
        dz: float,
        lit: Mapping[int, int],
        wc: int,
        hc: int,
        *,
        exposure_ms: float = 1.0,
    ) -> np.ndarray:
        """Mean photo-electrons in ``exposure_ms``, ``(hc, wc, 3)`` float32, stage-aligned.

        Always a new array (the cached LED images are never modified).
        """
        cfg = self.config
        p = self.pixel_size_um(pass_)
        max_b = self.profile.led_array.max_brightness
        flux = cfg.led_flux_e_per_ms_um2 * p * p * exposure_ms
        shift = None
        if pass_ == Pass.UNSTAINED and len(lit) == 1:
            shift = self.pls_shift_px(x_um, y_um, next(iter(lit)))
        total = None
        for led_id, brightness in lit.items():
            led = self._true_leds[led_id]
            image = self._led_image(pass_, x_um, y_um, dz, led_id, wc, hc, shift)
            weight = flux * brightness / max_b * optics.led_irradiance(led)
            weight *= self._led_gain[led_id]
            if total is None:
                total = cv2.multiply(image, weight)
            else:
                cv2.scaleAdd(image, weight, total, dst=total)
        return self._camera_response(total)

    def _camera_response(self, electrons: np.ndarray) -> np.ndarray:
        """Colour correction, extra crosstalk and the sensor's flat field (vignetting, dust,
        pixel gains)."""
        cfg = self.config
        if cfg.colour_correction and cfg.spectral_samples > 0:
            white = "white" if "white" in self._samples else "rgb"
            m = spectra.colour_correction(white).astype(np.float32)
            electrons = cv2.transform(electrons, m)
            cv2.max(electrons, 0.0, dst=electrons)
        x = cfg.camera_crosstalk
        if x > 0:
            mix = np.array(
                [[1 - x, x, 0.0], [x / 2, 1 - x, x / 2], [0.0, x, 1 - x]], dtype=np.float32
            )
            electrons = cv2.transform(electrons, mix)
        hc, wc = electrons.shape[:2]
        flat = self._flat_field(wc, hc)
        if flat is not None:
            electrons *= flat[:, :, None]
        return electrons

    def _flat_field(self, wc: int, hc: int) -> np.ndarray | None:
        """The sensor's relative response ``(hc, wc)`` for a frame centred on the axis."""
        cfg = self.config
        if not (cfg.vignetting or cfg.fixed_pattern_noise or cfg.dust_spots):
            return None
        if (wc, hc) in self._flats:
            return self._flats[(wc, hc)]
        cam = self.profile.camera
        sw, sh = camera_model.stage_aligned_size(cam.sensor_width_px, cam.sensor_height_px, cam)
        sw, sh = max(sw, wc), max(sh, hc)
        rng = seeded_rng("instrument:" + self.profile.name, cfg.instrument_seed, "flat")
        yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
        # frame pixels in sensor coordinates (the frame is the sensor's centre crop)
        sx = xx + (sw - wc) / 2 - (sw - 1) / 2
        sy = yy + (sh - hc) / 2 - (sh - 1) / 2
        r2 = (sx * sx + sy * sy) / ((sw / 2) ** 2 + (sh / 2) ** 2)
        flat = 1.0 - np.float32(cfg.vignetting) * r2
        for _ in range(int(cfg.dust_spots)):
            cx, cy = rng.uniform(-sw / 2, sw / 2), rng.uniform(-sh / 2, sh / 2)
            sigma, depth = rng.uniform(5, 15), rng.uniform(0.02, 0.06)
            flat *= 1.0 - np.float32(depth) * np.exp(
                -((sx - cx) ** 2 + (sy - cy) ** 2) / np.float32(2 * sigma * sigma)
            )
        if cfg.fixed_pattern_noise:
            pattern = rng.standard_normal((sh, sw), dtype=np.float32)
            r0, c0 = (sh - hc) // 2, (sw - wc) // 2
            flat *= 1.0 + np.float32(cfg.fixed_pattern_noise) * pattern[r0 : r0 + hc, c0 : c0 + wc]
        flat = flat.astype(np.float32)
        if len(self._flats) > 8:
            self._flats.clear()
        self._flats[(wc, hc)] = flat
        return flat

    def _led_image(
        self,
        pass_: str,
        x_um: float,
        y_um: float,
        dz: float,
        led_id: int,
        wc: int,
        hc: int,
        shift_px: tuple[float, float] | None,
    ) -> np.ndarray:
        """Camera-channel intensity ``(hc, wc, 3)`` of one LED, cached.

        Each of the LED colour's wavelength samples is imaged from its own point of the die
        and added to R, G and B with its white-balanced weights (glass in brightfield = 1).
        """
        key = (pass_, float(x_um), float(y_um), round(dz, 6), led_id, wc, hc, shift_px)
        cached = self._intensities.get(key)
        if cached is not None:
            self._intensities.move_to_end(key)
            return cached
        p = self.pixel_size_um(pass_)
        tiles_x, tiles_y = self._angle_tiles(wc, hc, p)
        if tiles_x * tiles_y == 1:
            image = self._tile_image(pass_, x_um, y_um, dz, led_id, wc, hc, shift_px, (0.0, 0.0))
        else:
            image = np.zeros((hc, wc, 3), np.float32)
            frame = FieldGeometry(wc, hc, p)
            for (a, b, wx), (c, d, wy) in itertools.product(
                tile_spans(wc, tiles_x), tile_spans(hc, tiles_y)
            ):
                # the tile's centre: its offset from the field centre, µm (and mm off the axis)
                ux, uy = map(float, frame.pixel_to_stage((a + b - 1) / 2, (c + d - 1) / 2, 0, 0))
                tile = self._tile_image(
                    pass_,
                    x_um + ux,
                    y_um + uy,
                    dz,
                    led_id,
                    b - a,
                    d - c,
                    shift_px,
                    (ux * 1e-3, uy * 1e-3),
                )
                weight = (wy[:, None] * wx[None, :])[:, :, None]
                image[c:d, a:b] += tile * weight
        image.setflags(write=False)
        budget = self.config.render_cache_mb * 2**20
        if image.nbytes <= budget:
            self._intensities[key] = image
            self._intensity_bytes += image.nbytes
            while self._intensity_bytes > budget:
                _, old = self._intensities.popitem(last=False)
                self._intensity_bytes -= old.nbytes
        return image

    def _angle_tiles(self, wc: int, hc: int, pixel_um: float) -> tuple[int, int]:
        """Tiles per axis that keep each LED's angle within ``field_angle_step`` (sine) over a
        tile, at most ``field_angle_tiles`` per axis."""
        cfg = self.config
        if cfg.field_angle_tiles <= 1:
            return 1, 1
        hw, hh = wc * pixel_um * 5e-4, hc * pixel_um * 5e-4  # half the field, mm
        spread_x = spread_y = 0.0
        for led in self._true_leds.values():
            a = optics.point_direction(led.x_mm, led.y_mm, led.z_mm, -hw, -hh)
            b = optics.point_direction(led.x_mm, led.y_mm, led.z_mm, hw, hh)
            spread_x, spread_y = max(spread_x, abs(b[0] - a[0])), max(spread_y, abs(b[1] - a[1]))
        step = cfg.field_angle_step
        n = cfg.field_angle_tiles
        return (
            min(n, max(1, math.ceil(spread_x / step - 1e-9))),
            min(n, max(1, math.ceil(spread_y / step - 1e-9))),
        )

    def _tile_image(
        self,
        pass_: str,
        x_um: float,
        y_um: float,
        dz: float,
        led_id: int,
        wc: int,
        hc: int,
        shift_px: tuple[float, float] | None,
        field_mm: tuple[float, float],
    ) -> np.ndarray:
        """One LED's ``(hc, wc, 3)`` image of a frame (or tile) centred on stage ``(x, y)``,
        lit from the angle the LED has at ``field_mm`` from the optical axis."""
        oblique = self._oblique_group(pass_, led_id)
        grid, spectra = self._field_spectra(pass_, x_um, y_um, wc, hc, oblique)
        obj = self.objective(pass_)
        p = grid.pixel_um
        shift_um = (0.0, 0.0) if shift_px is None else (shift_px[0] * p, shift_px[1] * p)
        sa = self.config.scan_spherical_aberration_waves if pass_ != Pass.HIGHRES else 0.0
        led = self._true_leds[led_id]
        smp = self._samples[led.color]
        size = self.config.led_size_mm
        planes = [np.zeros((hc, wc), np.float32) for _ in range(3)]
        for i, lam_nm in enumerate(smp.wavelengths_nm):
            lam = lam_nm * 1e-3
            g = dataclasses.replace(
                grid, field_oversample=optics.field_oversample(obj.na, grid.pixel_um, lam)
            )
            box = optics.pupil(
                g,
                objective=obj,
                wavelength_um=lam,
                defocus_um=dz,
                spherical_waves=sa,
                shift_um=shift_um,
            )
            ex, ey = smp.emitter[i] * size
            direction = optics.point_direction(led.x_mm + ex, led.y_mm + ey, led.z_mm, *field_mm)
            intensity = optics.led_intensity(
                spectra[lam_nm],
                g,
                direction=direction,
                wavelength_um=lam,
                pupil_box=box,
                workers=self._workers,
            )
            for c in range(3):
                w = float(smp.weights[i, c])
                if w > 1e-4:
                    cv2.scaleAdd(intensity, w, planes[c], dst=planes[c])
        return cv2.merge(planes)

    def _oblique_group(self, pass_: str, led_id: int) -> float:
        """The sine (rounded to 0.02) whose oblique path the LED's sample spectra use, or 0
        when the correction is off (``oblique_correction``; dry scan passes only)."""
        if not self.config.oblique_correction or pass_ == Pass.HIGHRES:
            return 0.0
        return round(math.hypot(*optics.led_direction(self._true_leds[led_id])) / 0.02) * 0.02

    def _field_spectra(
        self, pass_: str, x_um: float, y_um: float, wc: int, hc: int, oblique: float = 0.0
    ):
        key = (pass_, float(x_um), float(y_um), wc, hc, oblique)
        if key in self._spectra:
            self._spectra.move_to_end(key)
            return self._spectra[key]
        cfg = self.config
        obj = self.objective(pass_)
        lam_min = min(self._wavelengths) * 1e-3
        grid = optics.field_grid(
            x_um=float(x_um),
            y_um=float(y_um),
            width=wc,
            height=hc,
            pixel_um=self.pixel_size_um(pass_),
            margin_um=cfg.render_margin_um,
            na=obj.na,
            max_sin=self._max_sin,
            min_wavelength_um=lam_min,
        )
        ny_s, nx_s = grid.sample_shape
        raster = Raster(x0=grid.x0, y0=grid.y0, step=grid.sample_step_um, nx=nx_s, ny=ny_s)
        geom = self._geometry(pass_)
        maps = sample.column_maps(self.objects_for(pass_, raster), raster, geom)
        if cfg.plasma_film_opd_nm > 0 or cfg.texture_scale > 0 or geom.stained:
            xmin, xmax, ymin, ymax = self._slide_bbox(pass_, raster, pad=raster.step)
            texture, cells, ox, oy = self.smear.film_texture(xmin, xmax, ymin, ymax, pass_=pass_)
            sample.add_film(maps, raster, geom, texture, (ox, oy), fine=cells)
        spectra = {}
        for lam_nm in self._wavelengths:
            t = sample.transmittance(
                maps,
                lam_nm,
                stain_scale=geom.stain_scale,
                path_scale=optics.oblique_path(oblique, DRY_INDEX),
            )
            max_freq = (self._max_sin + obj.na) / (lam_nm * 1e-3)
            spectra[lam_nm] = optics.sample_spectrum(
                t, grid, max_freq=max_freq, workers=self._workers
            )
            del t
        del maps
        value = (grid, spectra)
        self._spectra[key] = value
        # a field is up to field_angle_tiles² tiles, each with its own spectra (and, with
        # the oblique correction, a few angle groups of them)
        keep = cfg.spectrum_cache_fields * cfg.field_angle_tiles**2
        while len(self._spectra) > keep * (3 if cfg.oblique_correction else 1):
            self._spectra.popitem(last=False)
        return value

    # ------------------------------------------------------------------ truth


#: Pixels over which neighbouring angle tiles cross-fade (each side of the boundary).
TILE_BLEND_PX = 16


def tile_spans(n: int, tiles: int) -> list[tuple[int, int, np.ndarray]]:
    """``tiles`` overlapping spans ``(start, stop, weight)`` of ``n`` pixels whose linear
    cross-fades over ±:data:`TILE_BLEND_PX` at each boundary sum to 1 everywhere."""
    if tiles == 1:
        return [(0, n, np.ones(n, np.float32))]
    bounds = [round(j * n / tiles) for j in range(tiles + 1)]
    o = TILE_BLEND_PX
    x = np.arange(n, dtype=np.float32) + 0.5
    spans = []
    for j in range(tiles):
        w = np.ones(n, np.float32)
        if j > 0:
            w *= np.clip((x - (bounds[j] - o)) / (2 * o), 0.0, 1.0)
        if j < tiles - 1:
            w *= np.clip(((bounds[j + 1] + o) - x) / (2 * o), 0.0, 1.0)
        start = max(0, bounds[j] - o) if j > 0 else 0
        stop = min(n, bounds[j + 1] + o) if j < tiles - 1 else n
        spans.append((start, stop, w[start:stop]))
    return spans
