"""From smear objects to a complex transmittance per wavelength (and truth masks).

Each object is rasterised on a grid (stage µm) into column maps, all in µm of material:

- ``opd``: optical path difference ``Σ Δn·h`` against the medium (air for the dry passes);
- ``hb``: haemoglobin-filled red-cell thickness (absorbs blue and green);
- ``grey``: broadband absorbance of dirt (natural log, already per column);
- ``yellow``: unstained eosinophil granule thickness (faintly yellow);
- ``eosin``, ``azure``, ``complex``: dye columns (concentration × thickness) of the stained
  slide: eosin (pink/red), azure B / methylene blue (blue), and the azure–eosin complex that
  colours chromatin purple (the Romanowsky effect).

The transmittance is then ``t = exp(-A(λ)/2 + i 2π·opd/λ)`` with ``A`` the natural-log
intensity absorbance: Beer–Lambert over haemoglobin (Prahl's HbO2 molar extinction at the
MCHC of 330 g/L), dirt, and the dyes' absorption bands.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from acquisition.simulator.cell_maps import draw_debris, draw_white_cell
from acquisition.simulator.disc_maps import platelet_maps, rbc_mass
from acquisition.simulator.film import FILM_STEP_UM
from acquisition.simulator.materials import (  # the materials the maps are made of
    CRENATED_EDGE_UM,
    FINE_TEXTURE_RMS,
    RBC_EDGE_UM,
    STAIN_PLATELET,
    STAIN_RBC,
    dye_absorption,
    haemoglobin_absorption,
    yellow_absorption,
)
from acquisition.simulator.raster import Canvas, PassGeometry, Raster
from acquisition.simulator.smear_objects import SmearObjects

MAP_NAMES = ("opd", "mass", "hb", "grey", "yellow", "eosin", "azure", "complex")
MASK_NAMES = ("nucleus", "cytoplasm", "wbc", "rbc")


def column_maps(objects: SmearObjects, raster: Raster, geom: PassGeometry) -> dict[str, np.ndarray]:
    """Rasterise ``objects`` (slide coordinates) into the column maps of :data:`MAP_NAMES`.

    Returns
    -------
    dict
        ``name -> (ny, nx) float32`` on ``raster``; dye maps only when ``geom.stained``.
        ``mass`` is the dry mass per area (pg/µm²) of the cells, ``opd`` its optical path
        (``kappa`` times it, scaled by ``phase_factor``) plus that of the debris.
    """
    names = MAP_NAMES if geom.stained else ("opd", "mass", "hb", "grey", "yellow")
    canvas = Canvas(raster, names)
    kp = np.float32(geom.kappa * geom.phase_factor)
    rbcs = objects.rbcs
    crenated = rbcs["spicules"] > 0
    hb = rbc_mass(raster, rbcs[~crenated], geom)
    if RBC_EDGE_UM > 0 and hb.size:
        # dried red cells have rounded rims, not the profile's vertical edge
        cv2.GaussianBlur(hb, (0, 0), RBC_EDGE_UM / raster.step, dst=hb)
    if crenated.any():
        # a crenated cell's spicules are sharper than a smooth cell's rim
        spiky = rbc_mass(raster, rbcs[crenated], geom)
        cv2.GaussianBlur(spiky, (0, 0), CRENATED_EDGE_UM / raster.step, dst=spiky)
        np.maximum(hb, spiky, out=hb)
        del spiky
    canvas.maps["mass"] += hb
    canvas.maps["hb"] += hb
    if geom.stained:
        for name, coef in zip(("eosin", "azure", "complex"), STAIN_RBC, strict=True):
            if coef:
                canvas.maps[name] += hb * np.float32(coef)
    del hb
    body, core = platelet_maps(raster, objects.platelets, geom)
    canvas.maps["mass"] += body
    if geom.stained:
        for name, coef in zip(("eosin", "azure", "complex"), STAIN_PLATELET, strict=True):
            canvas.maps[name] += (body * np.float32(0.3) + core) * np.float32(coef)
    del body, core
    canvas.maps["opd"] += canvas.maps["mass"] * kp
    # white cells add their own mass and optical path
    for cell in objects.wbcs:
        draw_white_cell(canvas, cell, geom)
    for d in objects.debris:
        draw_debris(canvas, d, geom)
    return canvas.maps


def add_film(
    maps: dict[str, np.ndarray],
    raster: Raster,
    geom: PassGeometry,
    texture: np.ndarray,
    origin: tuple[float, float],
    fine: np.ndarray | None = None,
) -> None:
    """Add the plasma film and the cells' sub-µm texture (slide lattices) to the maps.

    ``texture[i, j]`` (optical path, µm) sits at slide ``origin + (j, i) * FILM_STEP_UM``; it
    is resampled (bilinear) at the raster's points through this pass's placement. ``fine``
    (unit RMS, same lattice) modulates the cells' dry mass by ``FINE_TEXTURE_RMS ·
    texture_scale``: membrane folds and organelles, fixed to the slide. In a stained pass the
    film also takes up a little eosin (``background_stain``).
    """
    a = geom.placement
    c, s = a[0, 0], a[1, 0]
    tx, ty = a[0, 2], a[1, 2]
    k = raster.step / FILM_STEP_UM
    bx = (c * (raster.x0 - tx) + s * (raster.y0 - ty) - origin[0]) / FILM_STEP_UM
    by = (-s * (raster.x0 - tx) + c * (raster.y0 - ty) - origin[1]) / FILM_STEP_UM
    m = np.array([[c * k, s * k, bx], [-s * k, c * k, by]], dtype=np.float64)

    def warp(lattice: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            lattice,
            m,
            (raster.nx, raster.ny),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )

    maps["opd"] += warp(texture) * np.float32(geom.phase_factor)
    if fine is not None and geom.texture_scale > 0 and "mass" in maps:
        amp = geom.kappa * geom.phase_factor * geom.texture_scale * FINE_TEXTURE_RMS
        maps["opd"] += warp(fine) * maps["mass"] * np.float32(amp)
    if geom.stained and geom.background_stain > 0 and "eosin" in maps:
        maps["eosin"] += np.float32(geom.background_stain)


def transmittance(
    maps: dict[str, np.ndarray],
    wavelength_nm: float,
    *,
    stain_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    path_scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Complex transmittance ``(ny, nx) complex64`` of the column maps at one wavelength.

    ``path_scale`` multiplies the phase and the absorbance (an oblique path through the
    layer, :func:`~acquisition.simulator.optics.oblique_path`).
    """
    lam_um = wavelength_nm * 1e-3
    absorb = maps["hb"] * np.float32(haemoglobin_absorption(wavelength_nm))
    absorb += maps["grey"]
    if "yellow" in maps:
        absorb += maps["yellow"] * np.float32(yellow_absorption(wavelength_nm))
    if "eosin" in maps:
        for name, eps, k in zip(
            ("eosin", "azure", "complex"), dye_absorption(wavelength_nm), stain_scale, strict=True
        ):
            absorb += maps[name] * np.float32(eps * k)
    absorb *= np.float32(-0.5 * path_scale[1])
    amplitude = np.exp(absorb, out=absorb)
    phase = maps["opd"] * np.float32(2 * math.pi / lam_um * path_scale[0])
    re, im = cv2.polarToCart(amplitude, phase)  # 8x faster than numpy's complex exp
    return cv2.merge([re, im]).view(np.complex64)[..., 0]


def truth_masks(objects: SmearObjects, raster: Raster, geom: PassGeometry) -> dict[str, np.ndarray]:
    """Boolean masks ``(ny, nx)`` of :data:`MASK_NAMES` sampled at the raster points.

    ``wbc`` is the cell outline, ``nucleus`` its nucleus, ``cytoplasm`` = ``wbc`` minus
    ``nucleus``, ``rbc`` red-cell pixels outside any white cell.
    """
    canvas = Canvas(raster, ("wbc", "nucleus"))
    for cell in objects.wbcs:
        draw_white_cell(canvas, cell, geom)
    wbc = canvas.maps["wbc"] > 0.5
    nucleus = canvas.maps["nucleus"] > 0.5
    rbc = rbc_mass(raster, objects.rbcs, geom) > 0
    return {"nucleus": nucleus, "cytoplasm": wbc & ~nucleus, "wbc": wbc, "rbc": rbc & ~wbc}


#: Names other modules import from here (the grid types live in :mod:`.raster`).
__all__ = [
    "MAP_NAMES",
    "MASK_NAMES",
    "PassGeometry",
    "Raster",
    "add_film",
    "column_maps",
    "transmittance",
    "truth_masks",
]
