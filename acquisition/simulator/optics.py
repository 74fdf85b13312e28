"""Thin-sample LED-array imaging: one inverse FFT per LED and wavelength.

The standard forward model of LED-array (Fourier ptychographic) microscopy (Zheng et al.,
Nature Photonics 2013): an LED at polar angle θ and azimuth φ lights the sample with a tilted
plane wave of transverse spatial frequency ``k = (sin θ cos φ, sin θ sin φ) / λ`` (pointing
from the LED towards the axis). The field behind a thin sample ``t(x)`` has the spectrum
``T(f - k)``; the objective passes ``|f| <= NA/λ`` with a defocus and aberration phase, and the
camera records ``|IFFT(P(f) T(f - k))|²``.

Grids. The sample is rasterised on a fine grid (``oversample`` samples per camera pixel) that
holds frequencies up to ``(max sin θ + NA) / λ`` without wrapping; its spectrum is computed
once per field and wavelength and only the box of frequencies any LED can reach is kept. Each
LED then costs one inverse FFT on the *camera* grid (or ``field_oversample`` times finer when
the camera undersamples ``|E|²``), pruned to the rows and columns the pupil and the frame
use. The camera pixel integrates the intensity over its area: a small FIR filter matched to
the pixel's sinc transfer function (or exact binning when the field grid is finer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import scipy.fft as sfft

from acquisition.geometry import FieldGeometry
from hardware_profiles.schema import Led, Objective

#: LED-to-sample distance of the reference LED that ``led_flux_e_per_ms_um2`` refers to, mm.
REFERENCE_LED_DISTANCE_MM = 50.0


def led_direction(led: Led) -> tuple[float, float]:
    """Transverse direction sines ``(sx, sy)`` of the light from ``led`` at the sample.

    The light travels from the LED (``z_mm`` below the sample) to the sample at the origin, so
    its transverse direction is ``-(x, y) / r``; ``k = (sx, sy) / λ``.
    """
    r = math.sqrt(led.x_mm**2 + led.y_mm**2 + led.z_mm**2)
    return -led.x_mm / r, -led.y_mm / r


def point_direction(
    x_mm: float, y_mm: float, z_mm: float, u_mm: float = 0.0, v_mm: float = 0.0
) -> tuple[float, float]:
    """Transverse direction sines of the light from a point at ``(x, y, z)`` (mm, ``z`` below
    the sample) reaching the sample at field position ``(u, v)`` (mm from the optical axis)."""
    dx, dy = x_mm - u_mm, y_mm - v_mm
    r = math.sqrt(dx * dx + dy * dy + z_mm * z_mm)
    return -dx / r, -dy / r


def oblique_path(sine: float, index: float) -> tuple[float, float]:
    """First-order oblique-path factors ``(phase, absorbance)`` of a thin layer of ``index``
    lit from air at ``sine``, relative to normal incidence.

    A layer of thickness d delays an oblique plane wave by ``d (sqrt(n² - s²) - sqrt(1 - s²))``
    instead of ``d (n - 1)``, and absorbs along ``d / cos θ_t`` (``cos θ_t = sqrt(n² - s²)/n``).
    The walk-off of the ray across the layer (d·tan θ_t, about 1 µm for a 2 µm cell at 57°)
    is not modelled.
    """
    if sine <= 0.0:
        return 1.0, 1.0
    inner = math.sqrt(index * index - sine * sine)
    phase = (inner - math.sqrt(max(0.0, 1.0 - sine * sine))) / (index - 1.0)
    return phase, index / inner


def led_irradiance(led: Led) -> float:
    """Irradiance at the sample relative to an LED on the axis at the reference distance.

    The LED is a Lambertian emitter facing up (intensity ∝ cos θ) lighting the sample plane
    obliquely (another cos θ), at distance r: ``cos²θ · (r_ref / r)²``.
    """
    r = math.sqrt(led.x_mm**2 + led.y_mm**2 + led.z_mm**2)
    cos_t = led.z_mm / r
    return cos_t * cos_t * (REFERENCE_LED_DISTANCE_MM / r) ** 2


#: Fraction of the top of ``|E|²``'s band (2 NA/λ) allowed to alias when the camera samples
#: it (see :func:`field_oversample`).
ALIAS_TOLERANCE = 0.08


def field_oversample(na: float, pixel_um: float, wavelength_um: float) -> int:
    """Samples per camera pixel (per axis) that hold ``|E|²``'s bandwidth ``2 NA / λ``.

    Frequencies in the top :data:`ALIAS_TOLERANCE` of the band may alias: there the pupil's
    autocorrelation (the incoherent transfer) is below 3 %, and the pixel's area average
    halves it again. This keeps a 20x NA 0.4 camera at one sample per pixel down to 435 nm
    instead of doubling the grid (4x the work) for a white LED's blue pump.
    """
    need = 4.0 * na * pixel_um / wavelength_um * (1.0 - ALIAS_TOLERANCE)
    return max(1, math.ceil(need - 1e-9))


@dataclass(frozen=True)
class FieldGrid:
    """Where one frame's render grids lie (stage µm) and how fine they are.

    The camera grid has ``nx x ny`` pixels of ``pixel_um``: the frame (``width x height``, in
    the stage-aligned orientation) plus a margin, starting at column ``mx`` and row ``my``.
    Its column 0 sits at stage ``x0``; the sample grid has ``oversample`` samples per pixel on
    the same origin, and the field (|E|²) grid ``field_oversample``.
    """

    pixel_um: float
    width: int
    height: int
    nx: int
    ny: int
    mx: int
    my: int
    x0: float
    y0: float
    oversample: int
    field_oversample: int

    @property
    def sample_step_um(self) -> float:
        return self.pixel_um / self.oversample

    @property
    def sample_shape(self) -> tuple[int, int]:
        return self.ny * self.oversample, self.nx * self.oversample

    @property
    def df_x(self) -> float:
        """Frequency step along x, 1/µm (the same on every grid: one period)."""
        return 1.0 / (self.nx * self.pixel_um)

    @property
    def df_y(self) -> float:
        return 1.0 / (self.ny * self.pixel_um)


def field_grid(
    *,
    x_um: float,
    y_um: float,
    width: int,
    height: int,
    pixel_um: float,
    margin_um: float,
    na: float,
    max_sin: float,
    min_wavelength_um: float,
) -> FieldGrid:
    """The render grids of a ``width x height`` frame centred on stage ``(x_um, y_um)``.

    The sample grid holds ``(max_sin + NA) / λ_min`` (every LED's shifted pupil) below its
    Nyquist frequency; the field grid holds ``|E|²``'s bandwidth ``2 NA / λ_min``.
    """
    field_os = field_oversample(na, pixel_um, min_wavelength_um)
    need = math.ceil(2.0 * pixel_um * (max_sin + na) / min_wavelength_um - 1e-9)
    oversample = field_os * max(1, math.ceil(need / field_os))
    margin = max(16, math.ceil(margin_um / pixel_um))
    nx = sfft.next_fast_len(width + 2 * margin)
    ny = sfft.next_fast_len(height + 2 * margin)
    mx = (nx - width) // 2
    my = (ny - height) // 2
    # the padded grid's first sample sits at pixel (-mx, -my) of the frame
    x0, y0 = FieldGeometry(width, height, pixel_um).pixel_to_stage(-mx, -my, x_um, y_um)
    return FieldGrid(
        pixel_um=pixel_um,
        width=width,
        height=height,
        nx=nx,
        ny=ny,
        mx=mx,
        my=my,
        x0=float(x0),
        y0=float(y0),
        oversample=oversample,
        field_oversample=field_os,
    )


@dataclass(frozen=True)
class SampleSpectrum:
    """The Fourier coefficients of ``t(x)`` for the frequencies any LED can reach.

    ``coeffs`` is centred (``fftshift``-ed), ``(2 by + 1, 2 bx + 1)`` complex64, normalised so
    that clear glass has coefficient 1 at DC.
    """

    coeffs: np.ndarray
    bx: int
    by: int


def sample_spectrum(
    transmittance: np.ndarray, grid: FieldGrid, *, max_freq: float, workers: int
) -> SampleSpectrum:
    """Forward FFT of the sample's complex transmittance, cropped to ``|f| <= max_freq``."""
    spec = sfft.fft2(transmittance, norm="forward", workers=workers, overwrite_x=True)
    ny, nx = spec.shape
    bx = min(math.ceil(max_freq / grid.df_x) + 1, nx // 2 - 1)
    by = min(math.ceil(max_freq / grid.df_y) + 1, ny // 2 - 1)
    rows = np.r_[ny - by : ny, 0 : by + 1]
    cols = np.r_[nx - bx : nx, 0 : bx + 1]
    coeffs = np.ascontiguousarray(spec[np.ix_(rows, cols)])
    return SampleSpectrum(coeffs=coeffs, bx=bx, by=by)


def pupil(
    grid: FieldGrid,
    *,
    objective: Objective,
    wavelength_um: float,
    defocus_um: float,
    spherical_waves: float,
    shift_um: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, int, int]:
    """The pupil ``P(f)`` on its support box: ``(array, rx, ry)``, array ``(2ry+1, 2rx+1)``.

    ``P = circ(|f| <= NA/λ) · exp(i 2π [-dz (sqrt((n/λ)² - f²) - n/λ) + W Z11(ρ)])`` with the
    defocus ``dz`` (sample above the focal plane when positive), ``W`` the RMS primary
    spherical aberration in waves (Zernike Z11 = √5 (6ρ⁴ - 6ρ² + 1)) and an extra phase ramp
    that moves the image by ``shift_um`` (plus the half-pixel recentring the field grid needs
    when it is finer than the camera).
    """
    return _pupil_cached(
        grid.nx,
        grid.ny,
        grid.pixel_um,
        grid.field_oversample,
        objective.na,
        objective.immersion_index,
        float(wavelength_um),
        float(defocus_um),
        float(spherical_waves),
        (float(shift_um[0]), float(shift_um[1])),
    )


@lru_cache(maxsize=64)
def _pupil_cached(
    nx: int,
    ny: int,
    pixel_um: float,
    field_os: int,
    na: float,
    n_imm: float,
    lam: float,
    dz: float,
    w040: float,
    shift: tuple[float, float],
) -> tuple[np.ndarray, int, int]:
    df_x, df_y = 1.0 / (nx * pixel_um), 1.0 / (ny * pixel_um)
    f_cut = na / lam
    rx, ry = math.floor(f_cut / df_x), math.floor(f_cut / df_y)
    fx = np.arange(-rx, rx + 1) * df_x
    fy = np.arange(-ry, ry + 1) * df_y
    f2 = fx[None, :] ** 2 + fy[:, None] ** 2
    inside = f2 <= f_cut * f_cut
    rho2 = f2 / (f_cut * f_cut)
    kz = np.sqrt(np.maximum((n_imm / lam) ** 2 - f2, 0.0))
    phase = -dz * (kz - n_imm / lam)
    if w040:
        phase = phase + w040 * math.sqrt(5.0) * (6 * rho2 * rho2 - 6 * rho2 + 1)
    # The field grid's samples must average to camera-pixel centres when it is finer.
    recentre = (field_os - 1) / (2 * field_os) * pixel_um
    sx, sy = shift[0] + recentre, shift[1] + recentre
    phase = phase - (fx[None, :] * sx + fy[:, None] * sy)
    p = np.where(inside, np.exp(2j * np.pi * phase), 0.0).astype(np.complex64)
    p.setflags(write=False)
    return p, rx, ry


@lru_cache(maxsize=1)
def _pixel_mtf_taps() -> np.ndarray:
    """Symmetric 7-tap FIR whose response matches sinc(ν) (a pixel's area average) to ν=0.5.

    A band-limited intensity sampled once per pixel, filtered with this, equals the pixel's
    area integral to within about 0.3 %.
    """
    nu = np.linspace(0.0, 0.5, 256)
    basis = np.column_stack(
        [np.ones_like(nu)] + [2 * np.cos(2 * np.pi * k * nu) for k in (1, 2, 3)]
    )
    coef, *_ = np.linalg.lstsq(basis, np.sinc(nu), rcond=None)
    taps = np.concatenate([coef[:0:-1], coef]).astype(np.float32)
    return taps / taps.sum()


def led_intensity(
    spectrum: SampleSpectrum,
    grid: FieldGrid,
    *,
    direction: tuple[float, float],
    wavelength_um: float,
    pupil_box: tuple[np.ndarray, int, int],
    workers: int,
) -> np.ndarray:
    """Camera-pixel intensity ``(height, width)`` float32 of one LED at one wavelength.

    Relative to clear glass under the same LED in brightfield (= 1). ``direction`` is the
    LED's transverse direction sines (:func:`led_direction`).
    """
    p, rx, ry = pupil_box
    kx = round(direction[0] / wavelength_um / grid.df_x)
    ky = round(direction[1] / wavelength_um / grid.df_y)
    c = spectrum.coeffs
    # T(f - k) for the pupil's box of f: a contiguous window of the centred coefficients.
    r0 = spectrum.by - ky - ry
    c0 = spectrum.bx - kx - rx
    window = c[max(r0, 0) : r0 + 2 * ry + 1, max(c0, 0) : c0 + 2 * rx + 1]
    g = np.zeros_like(p)
    g[max(-r0, 0) : max(-r0, 0) + window.shape[0], max(-c0, 0) : max(-c0, 0) + window.shape[1]] = (
        window
    )
    g *= p

    s = grid.field_oversample
    ny_e, nx_e = grid.ny * s, grid.nx * s
    pad = 3 if s == 1 else 0  # room for the pixel-MTF filter
    # columns first: inverse FFT along y only for the pupil's 2rx+1 columns
    a = np.zeros((ny_e, 2 * rx + 1), np.complex64)
    a[: ry + 1] = g[ry:]
    a[ny_e - ry :] = g[:ry]
    a = sfft.ifft(a, axis=0, norm="forward", workers=workers, overwrite_x=True)
    r_start = grid.my * s - pad
    a = a[r_start : r_start + grid.height * s + 2 * pad]
    # then along x only for the rows the frame keeps
    b = np.zeros((a.shape[0], nx_e), np.complex64)
    b[:, : rx + 1] = a[:, rx:]
    b[:, nx_e - rx :] = a[:, :rx]
    b = sfft.ifft(b, axis=1, norm="forward", workers=workers, overwrite_x=True)
    c_start = grid.mx * s - pad
    e = b[:, c_start : c_start + grid.width * s + 2 * pad]
    intensity = np.square(e.real) + np.square(e.imag)
    if s == 1:
        taps = _pixel_mtf_taps()
        intensity = cv2.sepFilter2D(intensity, cv2.CV_32F, taps, taps)
        return np.ascontiguousarray(intensity[pad:-pad, pad:-pad])
    h, w = grid.height, grid.width
    return intensity.reshape(h, s, w, s).mean(axis=(1, 3), dtype=np.float32)
