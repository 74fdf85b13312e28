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

from acquisition.simulator.cells import WhiteCell, cell_columns, nucleus_level
from acquisition.simulator.debris import Debris
from acquisition.simulator.film import FILM_STEP_UM
from acquisition.simulator.materials import (  # the materials the maps are made of
    CRENATED_EDGE_UM,
    CRENATION_AMPLITUDE,
    DEBRIS_MATERIAL,
    DENSE_EXCESS_PG_UM3,
    FINE_TEXTURE_RMS,
    PHASE_GRANULES,
    PLATELET_DRY_MASS_PG,
    RBC_EDGE_UM,
    STAIN_DNA,
    STAIN_GRANULE,
    STAIN_PLATELET,
    STAIN_PROTEIN,
    STAIN_RBC,
    STAIN_RNA,
    dye_absorption,
    haemoglobin_absorption,
    yellow_absorption,
)
from acquisition.simulator.smear_objects import SmearObjects

MAP_NAMES = ("opd", "mass", "hb", "grey", "yellow", "eosin", "azure", "complex")
MASK_NAMES = ("nucleus", "cytoplasm", "wbc", "rbc")


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
    and the shrinkage; ``phase_factor`` scales the optical path (oil immersion);
    ``stain_scale`` multiplies (eosin, azure, complex) per slide; the rest are the material
    knobs of :class:`~acquisition.simulator.config.SimConfig` (``kappa`` µm³/pg).
    """

    placement: np.ndarray
    stained: bool
    phase_factor: float
    stain_scale: tuple[float, float, float]
    kappa: float = 0.41
    nucleus_to_cytoplasm: float = 1.2
    coupling: float = 0.5
    texture_scale: float = 1.0
    background_stain: float = 0.0

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


def _accumulate_max(out: np.ndarray, flat: np.ndarray, values: np.ndarray) -> None:
    """``out.flat[i] = max(out.flat[i], values)`` over the samples (touching cells deform:
    where two overlap, the column is the thicker one's, not their sum)."""
    sel = values > 0
    np.maximum.at(out.reshape(-1), flat[sel], values[sel])


def _rbc_mass(raster: Raster, rbcs: np.ndarray, geom: PassGeometry) -> np.ndarray:
    """Red-cell haemoglobin per area (pg/µm²): Evans–Fung biconcave discs flattened by drying.

    Each cell's profile ``sqrt(1 - ρ²)(c0 + 7.83ρ² - 4.39ρ⁴)`` (Evans & Fung 1972, with the
    centre term ``c0`` varied for the pallor) is scaled so it integrates to the cell's mass.
    """
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
        asp = rec["aspect"][:, None, None]
        u = (c * gx[:, None, :] + s * gy[:, :, None]) / sc
        v = (-s * gx[:, None, :] + c * gy[:, :, None]) / (sc * asp)
        rho2 = u * u + v * v
        spicules = rec["spicules"][:, None, None]
        if np.any(spicules > 0):
            # crenated cells: the outline (and the whole profile) stretched radially by
            # 1 + a·cos(nθ + φ), which multiplies the profile's integral by 1 + a²/2
            theta = np.arctan2(v, u)
            wave = np.cos(spicules * theta + rec["spicule_phase"][:, None, None])
            stretch = np.where(spicules > 0, 1.0 + CRENATION_AMPLITUDE * wave, 1.0)
            rho2 = rho2 / (stretch * stretch)
        c0 = rec["pallor"][:, None, None]
        h = np.sqrt(np.clip(1.0 - rho2, 0.0, None))
        h *= c0 + 7.83 * rho2 - 4.39 * rho2 * rho2
        # ∫ over the unit disc: 2π (c0/3 + 7.83·2/15 - 4.39·8/105)
        integral = 2 * np.pi * (c0 / 3 + 1.044 - 0.334476) * sc * sc * asp
        integral = integral * np.where(spicules > 0, 1.0 + CRENATION_AMPLITUDE**2 / 2, 1.0)
        h *= rec["mass"][:, None, None] / integral
        h[~valid] = 0.0
        _accumulate_max(out, flat, h)
    return out


def _platelet_maps(raster: Raster, plts: np.ndarray, geom: PassGeometry):
    """Platelet dry mass per area (pg/µm²) and the thickness of its central granulomere."""
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
    asp = rec["aspect"][:, None, None]
    u = (c * gx[:, None, :] + s * gy[:, :, None]) / sc
    v = (-s * gx[:, None, :] + c * gy[:, :, None]) / (sc * asp)
    rho2 = u * u + v * v
    # a cap sqrt(1 - ρ²) integrates to 2/3 π r² a over the ellipse
    h = np.sqrt(np.clip(1.0 - rho2, 0.0, None)) * (
        PLATELET_DRY_MASS_PG / (2 / 3 * np.pi * sc * sc * asp)
    )
    h[~valid] = 0.0
    body += _accumulate(raster, flat, h)
    g = 0.6 * np.sqrt(np.clip(1.0 - rho2 / 0.3, 0.0, None))
    g[~valid] = 0.0
    core += _accumulate(raster, flat, g)
    return body, core


# ---------------------------------------------------------------------- white cells
def _blob_sum(shape, u, v, blobs, kind, gx, gy, angle, scale, weights=None) -> np.ndarray:
    """Sum of sub-µm bodies on a cell's local grid.

    ``kind`` ``"gauss"``: rows ``(u, v, sigma, amp)`` give ``amp·exp(-d²/2σ²)``;
    ``"sphere"``: rows ``(u, v, r)`` give the chord ``2·sqrt(r² - d²)`` (µm).
    """
    out = np.zeros(shape, np.float32)
    for k, row in enumerate(blobs):
        w = 1.0 if weights is None else weights[k]
        if w == 0.0:
            continue
        if kind == "gauss":
            cu, cv, sigma, amp = row
            reach = 3 * sigma
        else:
            cu, cv, r = row
            reach = r
        sub = _sub_window(u, v, cu, cv, reach, gx, gy, angle, scale)
        if sub is None:
            continue
        (ri, ci), uu, vv = sub
        d2 = (uu - cu) ** 2 + (vv - cv) ** 2
        if kind == "gauss":
            out[ri, ci] += (w * amp) * np.exp(-d2 / (2 * sigma * sigma))
        else:
            out[ri, ci] += (2.0 * w) * np.sqrt(np.clip(r * r - d2, 0, None))
    return out


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
    step_local = canvas.raster.step / scale
    h_cell, h_nuc, rho = cell_columns(cell, u, v, step_local)

    if "wbc" in canvas.maps:  # truth masks
        inside = rho < 1.0
        level = nucleus_level(cell, u, v, step_local)
        canvas.add_max("wbc", where, inside.astype(np.float32))
        canvas.add_max("nucleus", where, ((level > 0.5) & inside).astype(np.float32))
        return

    inside_cell = (rho < 1.0).astype(np.float32)
    shape = h_cell.shape
    blob = (shape, u, v)
    chrom = np.clip(_blob_sum(*blob, cell.clumps, "gauss", gx, gy, angle, scale), 0.0, 1.0)
    gran = _blob_sum(*blob, cell.granules, "sphere", gx, gy, angle, scale) * inside_cell

    # --- phase: dry mass per area (pg/µm²), conserved under the stain's shrinkage
    r = geom.nucleus_to_cytoplasm
    rho_dry = cell.mass / (cell.volume + (r - 1.0) * cell.nucleus_volume) / (scale * scale)
    h_cyto = h_cell - h_nuc
    sigma = (h_cyto + np.float32(r) * h_nuc) * np.float32(rho_dry)
    ts, c = geom.texture_scale, geom.coupling
    if ts > 0:
        # sub-µm bodies: where the stained structures are (weight c) or compartment-blind
        # bodies with the same statistics in every type (weight 1 - c)
        dense = np.float32(DENSE_EXCESS_PG_UM3 * ts)
        real = gran * np.float32(PHASE_GRANULES[cell.type])
        real += chrom * (h_nuc > 0.05 * cell.nucleus_thickness) * np.float32(0.6)
        texture = real * np.float32(c)
        if c < 1.0:
            decoy = _blob_sum(*blob, cell.decoys, "sphere", gx, gy, angle, scale)
            texture += decoy * inside_cell * np.float32(1.0 - c)
        sigma += texture * dense
    canvas.add("mass", where, sigma)
    canvas.add("opd", where, sigma, geom.kappa * geom.phase_factor)

    if geom.stained:
        k = cell.uptake
        # DNA: the nucleus column weighted by its chromatin clumps
        dna = h_nuc * (np.float32(0.4) + np.float32(0.8) * chrom) * np.float32(k[0])
        # RNA: basophilia of the cytoplasm, patchy (stain only: invisible in phase)
        patches = _blob_sum(*blob, cell.patches, "gauss", gx, gy, angle, scale)
        rna = h_cyto * (np.float32(0.6) + np.float32(0.6) * np.clip(patches, 0, 1.5))
        rna *= np.float32(STAIN_RNA[cell.type] * k[1])
        # protein: the cytoplasm's dry mass
        protein = h_cyto * np.float32(rho_dry * k[2])
        granules = gran * np.float32(k[3])
        for i, name in enumerate(("eosin", "azure", "complex")):
            canvas.add(name, where, dna, STAIN_DNA[cell.type][i])
            canvas.add(name, where, protein, STAIN_PROTEIN[cell.type][i])
            canvas.add(name, where, granules, STAIN_GRANULE[cell.type][i])
        canvas.add("azure", where, rna)
    elif cell.type == "eosinophil":
        canvas.add("yellow", where, gran, geom.coupling)


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
    if d.kind == "smudge":
        canvas.add("mass", where, h, dn / max(geom.kappa, 1e-6))
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
        ``mass`` is the dry mass per area (pg/µm²) of the cells, ``opd`` its optical path
        (``kappa`` times it, scaled by ``phase_factor``) plus that of the debris.
    """
    names = MAP_NAMES if geom.stained else ("opd", "mass", "hb", "grey", "yellow")
    canvas = _Canvas(raster, names)
    kp = np.float32(geom.kappa * geom.phase_factor)
    rbcs = objects.rbcs
    crenated = rbcs["spicules"] > 0
    hb = _rbc_mass(raster, rbcs[~crenated], geom)
    if RBC_EDGE_UM > 0 and hb.size:
        # dried red cells have rounded rims, not the profile's vertical edge
        cv2.GaussianBlur(hb, (0, 0), RBC_EDGE_UM / raster.step, dst=hb)
    if crenated.any():
        # a crenated cell's spicules are sharper than a smooth cell's rim
        spiky = _rbc_mass(raster, rbcs[crenated], geom)
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
    body, core = _platelet_maps(raster, objects.platelets, geom)
    canvas.maps["mass"] += body
    if geom.stained:
        for name, coef in zip(("eosin", "azure", "complex"), STAIN_PLATELET, strict=True):
            canvas.maps[name] += (body * np.float32(0.3) + core) * np.float32(coef)
    del body, core
    canvas.maps["opd"] += canvas.maps["mass"] * kp
    # white cells add their own mass and optical path
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
    canvas = _Canvas(raster, ("wbc", "nucleus"))
    for cell in objects.wbcs:
        _draw_white_cell(canvas, cell, geom)
    wbc = canvas.maps["wbc"] > 0.5
    nucleus = canvas.maps["nucleus"] > 0.5
    rbc = _rbc_mass(raster, objects.rbcs, geom) > 0
    return {"nucleus": nucleus, "cytoplasm": wbc & ~nucleus, "wbc": wbc, "rbc": rbc & ~wbc}
