"""LED emission spectra, camera RGB sensitivities, and their sampling into a few wavelengths.

The camera records, per colour channel ``c``, ``∫ S(λ) Q_c(λ) I(λ) dλ``: the LED's emission
``S``, the sensor's spectral sensitivity ``Q_c`` and the sample's image ``I`` at that
wavelength. The simulator samples the integral at a few wavelengths per LED colour
(:func:`spectral_samples`): the emission weighted by the sensor is cut into bins of equal
energy, each bin is imaged at its mean wavelength and contributes to channel ``c`` with its
bin integral of ``S·Q_c``. So clear glass (``I = 1``) reads exactly what the integral says,
and colour crosstalk comes from the overlapping sensitivities.

Shapes (Gaussian approximations, not a measured device):
- white (phosphor-converted) LED: an InGaN blue pump at 450 nm (20 nm FWHM) plus a broad
  Ce:YAG phosphor band centred near 560 nm (~110 nm FWHM), peak half the pump's, as in
  E. F. Schubert, *Light-Emitting Diodes* (2nd ed., 2006), ch. "White-light sources";
- red, green and blue dies (and the three dies of an RGB LED): 625 nm / 20 nm FWHM,
  525 nm / 30 nm, 465 nm / 22 nm (the same book's typical AlGaInP and InGaN spectra);
- camera: smooth R, G, B curves peaking at 600, 535 and 460 nm with the overlaps of
  consumer colour sensors (J. Jiang, D. Liu, J. Gu, S. Süsstrunk, "What is the space of
  spectral sensitivity functions for digital color cameras?", WACV 2013), times an IR-cut
  filter at 660 nm.

White balance: the camera's channel gains make the instrument's white (a white LED, or an
RGB LED's three dies together) read 1 in every channel on clear glass, as the
monochromatic model did, so the profiles' exposures keep their grey levels. A single red,
green or blue die then reads mostly in its own channel and a little in its neighbours'.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: The wavelength grid the spectra are integrated on, nm.
_GRID = np.arange(380.0, 781.0, 1.0)
#: Die emission: centre and FWHM, nm.
DIES = {"red": (625.0, 20.0), "green": (525.0, 30.0), "blue": (465.0, 22.0)}
#: White LED: blue pump (centre, FWHM) and phosphor (centre, FWHM, peak relative to pump).
WHITE_PUMP = (450.0, 20.0)
WHITE_PHOSPHOR = (560.0, 110.0, 0.5)
#: Camera channels: sums of Gaussian lobes (centre nm, sigma nm, height).
CAMERA_LOBES = {
    0: ((600.0, 28.0, 1.0), (560.0, 25.0, 0.25), (450.0, 25.0, 0.04)),
    1: ((535.0, 35.0, 1.0), (480.0, 25.0, 0.2), (600.0, 25.0, 0.12)),
    2: ((460.0, 28.0, 1.0), (505.0, 25.0, 0.3), (420.0, 20.0, 0.3)),
}
IR_CUT_NM = 660.0

LED_COLOURS = ("white", "rgb", "red", "green", "blue")


def _gauss(lam: np.ndarray, centre: float, fwhm: float) -> np.ndarray:
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return np.exp(-0.5 * ((lam - centre) / sigma) ** 2)


def emission(colour: str, lam: np.ndarray) -> np.ndarray:
    """Relative emission of an LED of ``colour`` at wavelengths ``lam`` (nm)."""
    if colour == "white":
        c, w, h = WHITE_PHOSPHOR
        return _gauss(lam, *WHITE_PUMP) + h * _gauss(lam, c, w)
    if colour == "rgb":
        return sum(emission(die, lam) for die in DIES)
    if colour in DIES:
        return _gauss(lam, *DIES[colour])
    raise ValueError(f"unknown LED colour {colour!r}; expected one of {', '.join(LED_COLOURS)}")


def camera_sensitivity(lam: np.ndarray) -> np.ndarray:
    """Relative quantum efficiency ``(len(lam), 3)`` of the R, G, B channels (before gains)."""
    lam = np.asarray(lam, dtype=np.float64)
    ir_cut = 1.0 / (1.0 + np.exp((lam - IR_CUT_NM) / 8.0))
    out = np.zeros((lam.size, 3))
    for c, lobes in CAMERA_LOBES.items():
        for centre, sigma, height in lobes:
            out[:, c] += height * np.exp(-0.5 * ((lam - centre) / sigma) ** 2)
    return out * ir_cut[:, None]


@dataclass(frozen=True)
class SpectralSamples:
    """The wavelengths one LED colour is imaged at and what each adds to R, G and B.

    ``weights[i, c]`` is what clear glass under wavelength sample ``i`` adds to channel ``c``
    (white balanced: the instrument's white sums to 1 per channel). ``emitter`` holds, per
    sample, a point of the LED's die in units of its width (−0.5..0.5 on x and y): the joint
    (wavelength, die position) integral is sampled together, so a finite LED size costs
    nothing extra.
    """

    wavelengths_nm: tuple[float, ...]
    weights: np.ndarray
    emitter: np.ndarray


def _bins(density: np.ndarray, n: int) -> list[tuple[float, float]]:
    """Cut ``density`` on the grid into ``n`` bins of equal integral: (lo, hi) in nm."""
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
    cdf /= cdf[-1]
    edges = np.interp(np.linspace(0.0, 1.0, n + 1), cdf, _GRID)
    return list(itertools.pairwise(edges))


def _sample_band(emit: np.ndarray, n: int) -> tuple[list[float], list[np.ndarray]]:
    """Equal-energy bins of one band: mean wavelength and ``∫ S Q_c`` of each."""
    q = camera_sensitivity(_GRID)
    sq = emit[:, None] * q
    lams, weights = [], []
    for lo, hi in _bins(sq.sum(1), n):
        fine = np.linspace(lo, hi, 64)
        s = np.interp(fine, _GRID, emit)[:, None] * camera_sensitivity(fine)
        total = s.sum(1)
        lams.append(float((fine * total).sum() / total.sum()))
        weights.append(np.trapezoid(s, fine, axis=0))
    return lams, weights


def _emitter_points(n: int) -> np.ndarray:
    """``n`` well-spread points on the unit square (−0.5..0.5): a rank-1 lattice."""
    if n == 1:
        return np.zeros((1, 2))
    g = (1.0 + math.sqrt(5.0)) / 2.0
    i = np.arange(n)
    pts = np.column_stack([(i + 0.5) / n, (i / g) % 1.0]) - 0.5
    # decorrelate wavelength order from die position (fixed permutation)
    return pts[np.argsort((i * 0.7548776662 + 0.5) % 1.0)]


@lru_cache(maxsize=32)
def spectral_samples(colour: str, samples: int) -> SpectralSamples:
    """How an LED of ``colour`` is sampled: ``samples`` wavelengths for a broadband (white) LED,
    ``max(1, round(samples / 3))`` per narrow-band die."""
    if samples < 1:
        raise ValueError(f"spectral samples must be at least 1; got {samples}")
    per_die = max(1, round(samples / 3))
    if colour == "white":
        bands = [(emission("white", _GRID), samples)]
        reference = bands
    elif colour in ("rgb", *DIES):
        dies = DIES if colour == "rgb" else (colour,)
        bands = [(emission(d, _GRID), per_die) for d in dies]
        reference = [(emission(d, _GRID), per_die) for d in DIES]
    else:
        raise ValueError(f"unknown LED colour {colour!r}; expected one of {', '.join(LED_COLOURS)}")
    lams: list[float] = []
    weights: list[np.ndarray] = []
    for emit, n in bands:
        lam_b, w_b = _sample_band(emit, n)
        lams += lam_b
        weights += w_b
    white = sum(sum(_sample_band(emit, n)[1]) for emit, n in reference)
    w = np.array(weights) / white[None, :]
    w.setflags(write=False)
    pts = _emitter_points(len(lams))
    pts.setflags(write=False)
    return SpectralSamples(wavelengths_nm=tuple(round(x, 3) for x in lams), weights=w, emitter=pts)


def line_samples(colour: str, wavelengths_nm: tuple[float, float, float]) -> SpectralSamples:
    """The monochromatic model: one line per channel, each read by its own channel only."""
    gains = {
        "white": (1.0, 1.0, 1.0),
        "rgb": (1.0, 1.0, 1.0),
        "red": (1.0, 0.0, 0.0),
        "green": (0.0, 1.0, 0.0),
        "blue": (0.0, 0.0, 1.0),
    }
    if colour not in gains:
        raise ValueError(f"unknown LED colour {colour!r}; expected one of {', '.join(LED_COLOURS)}")
    lams, weights = [], []
    for c, g in enumerate(gains[colour]):
        if g:
            lams.append(float(wavelengths_nm[c]))
            weights.append(np.eye(3)[c] * g)
    w = np.array(weights)
    return SpectralSamples(wavelengths_nm=tuple(lams), weights=w, emitter=np.zeros((len(lams), 2)))


#: The lines a colour-corrected camera renders as pure R, G and B, nm.
PRIMARIES_NM = (630.0, 530.0, 470.0)


@lru_cache(maxsize=4)
def colour_correction(reference: str = "white") -> np.ndarray:
    """The camera's 3x3 colour-correction matrix ``M`` (corrected = ``M @ [R, G, B]``).

    Cameras undo most of their channels' overlap with such a matrix (machine-vision colour
    cameras offer one; consumer images always carry one), fitted so that light at the
    :data:`PRIMARIES_NM` lines reads in its own channel only, and the instrument's white
    (``reference``: ``white`` or ``rgb``) still reads 1 in every channel. Broadband light is
    not fully unmixed: that residue is the spectral crosstalk.
    """
    ref = spectral_samples(reference, 24)  # the white balance of ``reference``
    lam = np.asarray(PRIMARIES_NM)
    q = camera_sensitivity(lam)  # (line, channel)
    emit = emission(reference, _GRID)[:, None] * camera_sensitivity(_GRID)
    gains = 1.0 / np.trapezoid(emit, _GRID, axis=0)
    a = (q * gains[None, :]).T  # channel x line
    inv = np.linalg.inv(a)
    d = 1.0 / (inv @ ref.weights.sum(0))
    m = d[:, None] * inv
    m.setflags(write=False)
    return m
