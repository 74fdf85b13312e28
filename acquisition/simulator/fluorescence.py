"""A fluorescence-like target: a nuclear (DNA) stain imaged by an epi-fluorescence camera.

Not part of the brightfield optics: a small separate model so that virtual-staining paths
that predict fluorescence (LED-array images → a nuclear stain, as in BSCCM) run end to end on
the simulator. The DNA concentration is the simulator's truth nucleus (uniform inside it: the
simulator draws chromatin into its stain maps, not into a separate DNA map); the emission is
blurred by a Gaussian point spread function and recorded with Poisson shot noise on a
``bit_depth``-bit camera (background photons model autofluorescence and camera offset).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: The channel table row of the simulated target (Hoechst-like: 405 nm excitation, ~460 nm).
NUCLEAR_CHANNEL = {
    "name": "DNA",
    "kind": "fluorescence",
    "illumination": "epi 405 nm",
    "wavelength_nm": 460.0,
}


def nuclear_stain(
    dna: np.ndarray,
    rng: np.random.Generator,
    *,
    blur_px: float = 1.5,
    peak_photons: float = 1500.0,
    background_photons: float = 30.0,
    bit_depth: int = 12,
) -> np.ndarray:
    """Fluorescence counts ``(h, w) uint16`` of a DNA concentration map ``dna`` (0..1).

    Parameters
    ----------
    dna
        Relative DNA concentration per pixel (1 = a nucleus' mean).
    rng
        Source of the shot noise (seed it for reproducible targets).
    blur_px
        Gaussian PSF sigma, pixels.
    peak_photons
        Mean detected photons per pixel where ``dna`` is 1.
    background_photons
        Mean photons per pixel everywhere (autofluorescence, offset).
    bit_depth
        The camera's ADC depth: counts saturate at ``2**bit_depth - 1``.
    """
    conc = gaussian_filter(np.asarray(dna, np.float64), blur_px, mode="nearest")
    mean = background_photons + peak_photons * np.clip(conc, 0.0, None)
    counts = rng.poisson(mean)
    return np.clip(counts, 0, 2**bit_depth - 1).astype(np.uint16)


def nuclear_stain_field(
    sim: object,
    *,
    pass_: str,
    x_um: float,
    y_um: float,
    width: int,
    height: int,
    rng: np.random.Generator,
    **kwargs: float,
) -> np.ndarray:
    """:func:`nuclear_stain` of the field a :class:`SimulatedMicroscope` camera sees there."""
    masks = sim.masks(pass_=pass_, x_um=x_um, y_um=y_um, width=width, height=height)  # type: ignore[attr-defined]
    return nuclear_stain(masks["nucleus"].astype(np.float64), rng, **kwargs)
