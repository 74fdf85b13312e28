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
from dataclasses import dataclass

import cv2
import numpy as np

from acquisition.simulator.legacy_smear import (
    FILM_STEP_UM,
    Debris,
    SmearObjects,
    WhiteCell,
    nucleus_level,
    outline_radius,
)

MAP_NAMES = ("opd", "hb", "grey", "yellow", "eosin", "azure", "complex")
MASK_NAMES = ("nucleus", "cytoplasm", "wbc", "rbc")

# ---------------------------------------------------------------------- materials
#: Refractive-index contrast against air (dried smear) of each material.
DN_RBC = 0.09
DN_PLATELET = 0.04
DN_DIRT = 0.12
#: Per WBC type: (cytoplasm Δn, nucleus Δn, granule Δn).
DN_WBC = {
    "neutrophil": (0.02, 0.075, 0.07),
    "lymphocyte": (0.022, 0.075, 0.05),
    "monocyte": (0.02, 0.07, 0.06),
    "eosinophil": (0.02, 0.075, 0.12),
    "basophil": (0.02, 0.075, 0.08),
}
#: Dye uptake (eosin, azure, complex) per µm of material, before the per-slide variation.
STAIN_RBC = (0.45, 0.0, 0.0)
STAIN_PLATELET = (0.05, 0.15, 0.35)
STAIN_CYTOPLASM = {
    "neutrophil": (0.12, 0.04, 0.02),
    "lymphocyte": (0.04, 0.30, 0.0),
    "monocyte": (0.08, 0.15, 0.03),
    "eosinophil": (0.06, 0.05, 0.0),
    "basophil": (0.05, 0.10, 0.02),
}
STAIN_NUCLEUS = {
    "neutrophil": (0.05, 0.12, 0.85),
    "lymphocyte": (0.05, 0.15, 1.0),
    "monocyte": (0.05, 0.10, 0.70),
    "eosinophil": (0.05, 0.12, 0.85),
    "basophil": (0.05, 0.15, 0.85),
}
STAIN_GRANULE = {
    "neutrophil": (0.30, 0.0, 0.2),
    "lymphocyte": (0.0, 0.1, 0.4),
    "monocyte": (0.0, 0.1, 0.5),
    "eosinophil": (1.6, 0.0, 0.0),
    "basophil": (0.0, 1.2, 2.2),
}
#: Debris kinds: (Δn, grey absorbance per µm, (eosin, azure, complex) per µm).
DEBRIS_MATERIAL = {
    "particle": (DN_DIRT, 1.2, (0.0, 0.0, 0.0)),
    "fibre": (0.08, 0.6, (0.0, 0.0, 0.0)),
    "precipitate": (0.08, 0.1, (0.0, 2.0, 1.5)),
    "watermark": (0.25, 0.0, (0.1, 0.05, 0.0)),
}

# HbO2 molar extinction (cm⁻¹/M, decadic; S. Prahl, OMLC) at a few wavelengths, nm.
_HB_TABLE = np.array(
    [
        (450, 62816),
        (460, 44480),
        (470, 33209),
        (480, 26629),
        (490, 23684),
        (500, 20932),
        (510, 20035),
        (520, 24202),
        (530, 39956),
        (540, 53236),
        (550, 43016),
        (560, 32613),
        (570, 44496),
        (580, 50104),
        (590, 14400),
        (600, 3200),
        (610, 1506),
        (620, 942),
        (630, 610),
        (640, 442),
        (650, 368),
        (660, 320),
        (680, 277),
        (700, 290),
    ],
    dtype=np.float64,
)
_HB_MOLAR = 330.0 / 64_500.0  # mol/L: MCHC 330 g/L over the tetramer's 64.5 kDa


def haemoglobin_absorption(wavelength_nm: float) -> float:
    """Natural-log intensity absorption coefficient of red-cell cytoplasm, 1/µm."""
    eps = float(np.interp(wavelength_nm, _HB_TABLE[:, 0], _HB_TABLE[:, 1]))
    return math.log(10.0) * eps * _HB_MOLAR * 1e-4


def _band(wavelength_nm: float, bands: tuple[tuple[float, float, float], ...]) -> float:
    return sum(a * math.exp(-0.5 * ((wavelength_nm - c) / w) ** 2) for a, c, w in bands)


def dye_absorption(wavelength_nm: float) -> tuple[float, float, float]:
    """Relative absorption (peak ≈ 1) of eosin, azure B and the azure–eosin complex at λ.

    Eosin Y absorbs at 517–525 nm with a shoulder near 490 nm (pink/red); azure B and
    methylene blue absorb at 600–660 nm (monomer and dimer bands: blue); the chromatin
    azure–eosin complex absorbs broadly at 550–600 nm, passing red and blue (purple).
    """
    eosin = _band(wavelength_nm, ((1.0, 522.0, 22.0), (0.45, 490.0, 25.0)))
    azure = _band(wavelength_nm, ((1.0, 650.0, 35.0), (0.6, 595.0, 40.0)))
    complex_ = _band(wavelength_nm, ((1.0, 555.0, 40.0),))
    return eosin, azure, complex_


def yellow_absorption(wavelength_nm: float) -> float:
    """Absorption (1/µm) of unstained eosinophil granules: faintly yellow."""
    return 0.03 * _band(wavelength_nm, ((1.0, 440.0, 40.0),))


# ---------------------------------------------------------------------- grids
@dataclass(frozen=True)
class Raster:
    """A grid in stage coordinates: sample ``(i, j)`` sits at ``(x0 + j·step, y0 + i·step)``."""

    x0: float
    y0: float
    step: float
    nx: int
    ny: int


@dataclass(frozen=True)
class PassGeometry:
    """How the slide sits on the stage in this pass and what the pass changes in the sample.

    ``placement`` is the 2x3 affine ``stage = A @ [sx, sy, 1]``; ``stained`` turns on the dyes
    and the shrinkage; ``phase_factor`` scales the index contrast (oil immersion);
    ``stain_scale`` multiplies (eosin, azure, complex) per slide.
    """

    placement: np.ndarray
    stained: bool
    phase_factor: float
    stain_scale: tuple[float, float, float]

    @property
    def rotation(self) -> float:
        return math.atan2(self.placement[1, 0], self.placement[0, 0])

    def to_stage(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.placement
        return a[0, 0] * x + a[0, 1] * y + a[0, 2], a[1, 0] * x + a[1, 1] * y + a[1, 2]


class _Canvas:
    """Accumulates column maps (or masks) on a raster."""

    def __init__(self, raster: Raster, names: tuple[str, ...]) -> None:
        self.raster = raster
        self.maps = {n: np.zeros((raster.ny, raster.nx), np.float32) for n in names}

    def window(self, cx: float, cy: float, extent: float):
        """Slices and local stage offsets of the raster samples within ``extent`` of a point."""
        r = self.raster
        j0 = max(math.floor((cx - extent - r.x0) / r.step), 0)
        j1 = min(math.ceil((cx + extent - r.x0) / r.step) + 1, r.nx)
        i0 = max(math.floor((cy - extent - r.y0) / r.step), 0)
        i1 = min(math.ceil((cy + extent - r.y0) / r.step) + 1, r.ny)
        if j0 >= j1 or i0 >= i1:
            return None
        gx = (r.x0 + np.arange(j0, j1) * r.step - cx).astype(np.float32)
        gy = (r.y0 + np.arange(i0, i1) * r.step - cy).astype(np.float32)
        return (slice(i0, i1), slice(j0, j1)), gx, gy

    def add(self, name: str, where, values: np.ndarray, weight: float = 1.0) -> None:
        if name in self.maps and weight != 0.0:
            target = self.maps[name][where]
            target += values if weight == 1.0 else values * np.float32(weight)

    def add_max(self, name: str, where, values: np.ndarray) -> None:
        if name in self.maps:
            np.maximum(self.maps[name][where], values, out=self.maps[name][where])


def _local(gx: np.ndarray, gy: np.ndarray, angle: float, scale: float):
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    u = c * gx[None, :] + s * gy[:, None]
    v = -s * gx[None, :] + c * gy[:, None]
    return u, v


# ---------------------------------------------------------------------- batch shapes
def _batch_patches(raster: Raster, cx, cy, extent: float):
    """Per-object square patches: flat raster indices, validity and stage offsets."""
    n = math.ceil(2 * extent / raster.step) + 2
    j0 = np.floor((cx - extent - raster.x0) / raster.step).astype(np.int64)
    i0 = np.floor((cy - extent - raster.y0) / raster.step).astype(np.int64)
    ar = np.arange(n)
    jj = j0[:, None] + ar[None, :]
    ii = i0[:, None] + ar[None, :]
    gx = (raster.x0 + jj * raster.step - cx[:, None]).astype(np.float32)
    gy = (raster.y0 + ii * raster.step - cy[:, None]).astype(np.float32)
    valid = ((jj >= 0) & (jj < raster.nx))[:, None, :] & ((ii >= 0) & (ii < raster.ny))[:, :, None]
    flat = ii[:, :, None] * raster.nx + jj[:, None, :]
    return flat, valid, gx, gy


def _accumulate(raster: Raster, flat: np.ndarray, values: np.ndarray) -> np.ndarray:
    sel = values > 0
    out = np.bincount(flat[sel], weights=values[sel], minlength=raster.nx * raster.ny)
    return out.reshape(raster.ny, raster.nx).astype(np.float32)


def _rbc_thickness(raster: Raster, rbcs: np.ndarray, geom: PassGeometry) -> np.ndarray:
    """Summed red-cell thickness (µm): Evans–Fung biconcave discs flattened by drying."""
    out = np.zeros((raster.ny, raster.nx), np.float32)
    if rbcs.size == 0:
        return out
    sx, sy = geom.to_stage(rbcs["x"], rbcs["y"])
    shrink = rbcs["shrink"].astype(np.float64) if geom.stained else np.ones(rbcs.size)
    extent = float(np.max(rbcs["radius"] * shrink)) + raster.step
    keep = (
        (sx > raster.x0 - extent)
        & (sx < raster.x0 + raster.nx * raster.step + extent)
        & (sy > raster.y0 - extent)
        & (sy < raster.y0 + raster.ny * raster.step + extent)
    )
    chunk = max(1, int(4e6 // (2 * extent / raster.step + 2) ** 2))
    idx = np.flatnonzero(keep)
    for start in range(0, idx.size, chunk):
        k = idx[start : start + chunk]
        rec = rbcs[k]
        flat, valid, gx, gy = _batch_patches(raster, sx[k], sy[k], extent)
        ang = (rec["angle"] + geom.rotation).astype(np.float32)[:, None, None]
        c, s = np.cos(ang), np.sin(ang)
        sc = (rec["radius"] * shrink[k]).astype(np.float32)[:, None, None]
        u = (c * gx[:, None, :] + s * gy[:, :, None]) / sc
        v = (-s * gx[:, None, :] + c * gy[:, :, None]) / (sc * rec["aspect"][:, None, None])
        rho2 = u * u + v * v
        h = np.sqrt(np.clip(1.0 - rho2, 0.0, None))
        h *= 0.81 + 7.83 * rho2 - 4.39 * rho2 * rho2  # Evans & Fung 1972, µm for R = 3.91
        h *= rec["thickness"][:, None, None]
        h[~valid] = 0.0
        out += _accumulate(raster, flat, h)
    return out


def _platelet_maps(raster: Raster, plts: np.ndarray, geom: PassGeometry):
    """Platelet thickness (µm) and the thickness of its central granulomere."""
    body = np.zeros((raster.ny, raster.nx), np.float32)
    core = np.zeros_like(body)
    if plts.size == 0:
        return body, core
    sx, sy = geom.to_stage(plts["x"], plts["y"])
    shrink = plts["shrink"].astype(np.float64) if geom.stained else np.ones(plts.size)
    extent = float(np.max(plts["radius"] * shrink)) + raster.step
    keep = (
        (sx > raster.x0 - extent)
        & (sx < raster.x0 + raster.nx * raster.step + extent)
        & (sy > raster.y0 - extent)
        & (sy < raster.y0 + raster.ny * raster.step + extent)
    )
    k = np.flatnonzero(keep)
    if k.size == 0:
        return body, core
    rec = plts[k]
    flat, valid, gx, gy = _batch_patches(raster, sx[k], sy[k], extent)
    ang = (rec["angle"] + geom.rotation).astype(np.float32)[:, None, None]
    c, s = np.cos(ang), np.sin(ang)
    sc = (rec["radius"] * shrink[k]).astype(np.float32)[:, None, None]
    u = (c * gx[:, None, :] + s * gy[:, :, None]) / sc
    v = (-s * gx[:, None, :] + c * gy[:, :, None]) / (sc * rec["aspect"][:, None, None])
    rho2 = u * u + v * v
    h = 0.8 * np.sqrt(np.clip(1.0 - rho2, 0.0, None))
    h[~valid] = 0.0
    body += _accumulate(raster, flat, h)
    g = 0.6 * np.sqrt(np.clip(1.0 - rho2 / 0.3, 0.0, None))
    g[~valid] = 0.0
    core += _accumulate(raster, flat, g)
    return body, core


# ---------------------------------------------------------------------- white cells
def _draw_white_cell(canvas: _Canvas, cell: WhiteCell, geom: PassGeometry) -> None:
    sx, sy = geom.to_stage(np.float64(cell.x), np.float64(cell.y))
    scale = cell.shrink if geom.stained else 1.0
    extent = cell.radius * 1.15 * scale + canvas.raster.step
    win = canvas.window(float(sx), float(sy), extent)
    if win is None:
        return
    where, gx, gy = win
    angle = cell.angle + geom.rotation
    u, v = _local(gx, gy, angle, scale)
    psi = np.arctan2(v, u)
    rho = np.hypot(u, v) / outline_radius(cell, psi)
    # a spread, dried cell: thickest at the centre, thinning gently towards its rim
    body = np.clip(1.0 - rho * rho, 0.0, None)
    h_cell = (cell.thickness * body**0.6).astype(np.float32)
    step_local = canvas.raster.step / scale
    level = nucleus_level(cell, u, v, step_local)

    if "wbc" in canvas.maps:  # truth masks
        inside = rho < 1.0
        canvas.add_max("wbc", where, inside.astype(np.float32))
        canvas.add_max("nucleus", where, ((level > 0.5) & inside).astype(np.float32))
        return

    texture = np.zeros_like(u, dtype=np.float32)
    for cu, cv, sigma, amp in cell.clumps:
        sub = _sub_window(u, v, cu, cv, 3 * sigma, gx, gy, angle, scale)
        if sub is None:
            continue
        (ri, ci), uu, vv = sub
        d2 = (uu - cu) ** 2 + (vv - cv) ** 2
        texture[ri, ci] += amp * np.exp(-d2 / (2 * sigma * sigma))
    np.clip(texture, 0.0, 1.0, out=texture)
    h_nuc = cell.nucleus_thickness * level * (0.35 + 1.0 * texture)
    h_nuc = np.minimum(h_nuc, 0.95 * h_cell).astype(np.float32)
    h_gran = np.zeros_like(h_cell)
    inside_cell = rho < 1.0
    for cu, cv, r in cell.granules:
        sub = _sub_window(u, v, cu, cv, r, gx, gy, angle, scale)
        if sub is None:
            continue
        (ri, ci), uu, vv = sub
        h_gran[ri, ci] += 2.0 * np.sqrt(np.clip(r * r - (uu - cu) ** 2 - (vv - cv) ** 2, 0, None))
    h_gran *= inside_cell
    h_cyto = h_cell - h_nuc

    dn_c, dn_n, dn_g = DN_WBC[cell.type]
    pf = geom.phase_factor
    canvas.add("opd", where, h_cyto, dn_c * pf)
    canvas.add("opd", where, h_nuc, dn_n * pf)
    canvas.add("opd", where, h_gran, dn_g * pf)
    if geom.stained:
        k = cell.stain_scale
        for name, coef_c, coef_n, coef_g in zip(
            ("eosin", "azure", "complex"),
            STAIN_CYTOPLASM[cell.type],
            STAIN_NUCLEUS[cell.type],
            STAIN_GRANULE[cell.type],
            strict=True,
        ):
            canvas.add(name, where, h_cyto, coef_c * k)
            canvas.add(name, where, h_nuc, coef_n * k)
            canvas.add(name, where, h_gran, coef_g * k)
    elif cell.type == "eosinophil":
        canvas.add("yellow", where, h_gran)


def _sub_window(u, v, cu, cv, reach, gx, gy, angle, scale):
    """Rows/columns of a local patch within ``reach`` (µm, local) of local point (cu, cv)."""
    c, s = math.cos(angle), math.sin(angle)
    # local (cu, cv) -> stage offset
    ox = (c * cu - s * cv) * scale
    oy = (s * cu + c * cv) * scale
    rr = reach * scale
    step = gx[1] - gx[0] if gx.size > 1 else 1.0
    j0 = max(math.floor((ox - rr - gx[0]) / step), 0)
    j1 = min(math.ceil((ox + rr - gx[0]) / step) + 1, gx.size)
    i0 = max(math.floor((oy - rr - gy[0]) / step), 0)
    i1 = min(math.ceil((oy + rr - gy[0]) / step) + 1, gy.size)
    if j0 >= j1 or i0 >= i1:
        return None
    ri, ci = slice(i0, i1), slice(j0, j1)
    return (ri, ci), u[ri, ci], v[ri, ci]


def _draw_debris(canvas: _Canvas, d: Debris, geom: PassGeometry) -> None:
    sx, sy = geom.to_stage(np.float64(d.x), np.float64(d.y))
    win = canvas.window(float(sx), float(sy), d.radius + canvas.raster.step)
    if win is None:
        return
    where, gx, gy = win
    u, v = _local(gx, gy, d.angle + geom.rotation, 1.0)
    h = np.zeros(u.shape, np.float32)
    if d.kind == "watermark":
        for bu, bv, r, height in d.blobs:
            film = np.clip((r - np.hypot(u - bu, v - bv)) / 0.3 + 0.5, 0.0, 1.0) * height
            np.maximum(h, film, out=h)
    else:
        for bu, bv, r, height in d.blobs:
            cap = np.sqrt(np.clip(1.0 - ((u - bu) ** 2 + (v - bv) ** 2) / (r * r), 0.0, None))
            h += height * cap
    dn, grey, stains = DEBRIS_MATERIAL[d.kind]
    canvas.add("opd", where, h, dn * geom.phase_factor)
    canvas.add("grey", where, h, grey)
    if geom.stained:
        for name, coef in zip(("eosin", "azure", "complex"), stains, strict=True):
            canvas.add(name, where, h, coef)


# ---------------------------------------------------------------------- public
def column_maps(objects: SmearObjects, raster: Raster, geom: PassGeometry) -> dict[str, np.ndarray]:
    """Rasterise ``objects`` (slide coordinates) into the column maps of :data:`MAP_NAMES`.

    Returns
    -------
    dict
        ``name -> (ny, nx) float32`` on ``raster``; dye maps only when ``geom.stained``.
    """
    names = MAP_NAMES if geom.stained else ("opd", "hb", "grey", "yellow")
    canvas = _Canvas(raster, names)
    pf = geom.phase_factor
    h = _rbc_thickness(raster, objects.rbcs, geom)
    canvas.maps["opd"] += h * np.float32(DN_RBC * pf)
    canvas.maps["hb"] += h
    if geom.stained:
        for name, coef in zip(("eosin", "azure", "complex"), STAIN_RBC, strict=True):
            if coef:
                canvas.maps[name] += h * np.float32(coef)
    del h
    body, core = _platelet_maps(raster, objects.platelets, geom)
    canvas.maps["opd"] += body * np.float32(DN_PLATELET * pf)
    if geom.stained:
        for name, coef in zip(("eosin", "azure", "complex"), STAIN_PLATELET, strict=True):
            canvas.maps[name] += (body * np.float32(0.3) + core) * np.float32(coef)
    for cell in objects.wbcs:
        _draw_white_cell(canvas, cell, geom)
    for d in objects.debris:
        _draw_debris(canvas, d, geom)
    return canvas.maps


def add_film(
    maps: dict[str, np.ndarray],
    raster: Raster,
    geom: PassGeometry,
    texture: np.ndarray,
    origin: tuple[float, float],
) -> None:
    """Add the plasma film's optical-path texture (slide lattice, µm) to ``maps["opd"]``.

    ``texture[i, j]`` sits at slide ``origin + (j, i) * FILM_STEP_UM``; it is resampled
    (bilinear) at the raster's points through this pass's placement.
    """
    a = geom.placement
    c, s = a[0, 0], a[1, 0]
    tx, ty = a[0, 2], a[1, 2]
    k = raster.step / FILM_STEP_UM
    bx = (c * (raster.x0 - tx) + s * (raster.y0 - ty) - origin[0]) / FILM_STEP_UM
    by = (-s * (raster.x0 - tx) + c * (raster.y0 - ty) - origin[1]) / FILM_STEP_UM
    m = np.array([[c * k, s * k, bx], [-s * k, c * k, by]], dtype=np.float64)
    film = cv2.warpAffine(
        texture,
        m,
        (raster.nx, raster.ny),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    maps["opd"] += film * np.float32(geom.phase_factor)


def transmittance(
    maps: dict[str, np.ndarray],
    wavelength_nm: float,
    *,
    stain_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Complex transmittance ``(ny, nx) complex64`` of the column maps at one wavelength."""
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
    absorb *= np.float32(-0.5)
    amplitude = np.exp(absorb, out=absorb)
    phase = maps["opd"] * np.float32(2 * math.pi / lam_um)
    re, im = cv2.polarToCart(amplitude, phase)  # 8x faster than numpy's complex exp
    return cv2.merge([re, im]).view(np.complex64)[..., 0]


def truth_masks(objects: SmearObjects, raster: Raster, geom: PassGeometry) -> dict[str, np.ndarray]:
    """Boolean masks ``(ny, nx)`` of :data:`MASK_NAMES` sampled at the raster points.

    ``wbc`` is the cell outline, ``nucleus`` its nucleus, ``cytoplasm`` = ``wbc`` minus
    ``nucleus``, ``rbc`` red-cell pixels outside any white cell.
    """
    canvas = _Canvas(raster, ("wbc", "nucleus"))
    for cell in objects.wbcs:
        _draw_white_cell(canvas, cell, geom)
    wbc = canvas.maps["wbc"] > 0.5
    nucleus = canvas.maps["nucleus"] > 0.5
    rbc = _rbc_thickness(raster, objects.rbcs, geom) > 0
    return {"nucleus": nucleus, "cytoplasm": wbc & ~nucleus, "wbc": wbc, "rbc": rbc & ~wbc}
