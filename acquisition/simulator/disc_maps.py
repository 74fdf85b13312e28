"""Red cells and platelets as column maps: many small discs rasterised in batches.

Red cells are Evans–Fung biconcave discs flattened by drying (crenated ones stretched by
their spicules), overlapping neighbours taking the thicker column; platelets are caps with a
denser central granulomere.
"""

from __future__ import annotations

import numpy as np

from acquisition.simulator.materials import CRENATION_AMPLITUDE, PLATELET_DRY_MASS_PG
from acquisition.simulator.raster import (
    PassGeometry,
    Raster,
    accumulate,
    accumulate_max,
    batch_patches,
)


def _visible(raster: Raster, recs: np.ndarray, geom: PassGeometry):
    """Stage centres, scale factors, patch extent and indices of the discs near the raster."""
    sx, sy = geom.to_stage(recs["x"], recs["y"])
    shrink = recs["shrink"].astype(np.float64) if geom.stained else np.ones(recs.size)
    extent = float(np.max(recs["radius"] * shrink)) + raster.step
    keep = (
        (sx > raster.x0 - extent)
        & (sx < raster.x0 + raster.nx * raster.step + extent)
        & (sy > raster.y0 - extent)
        & (sy < raster.y0 + raster.ny * raster.step + extent)
    )
    return sx, sy, shrink, extent, np.flatnonzero(keep)


def _disc_frames(rec: np.ndarray, shrink: np.ndarray, geom: PassGeometry, gx, gy):
    """Each disc's local coordinates ``(u, v)`` on its patch (unit radius along ``u``), its
    radius and aspect (broadcastable to the patches)."""
    ang = (rec["angle"] + geom.rotation).astype(np.float32)[:, None, None]
    c, s = np.cos(ang), np.sin(ang)
    sc = (rec["radius"] * shrink).astype(np.float32)[:, None, None]
    asp = rec["aspect"][:, None, None]
    u = (c * gx[:, None, :] + s * gy[:, :, None]) / sc
    v = (-s * gx[:, None, :] + c * gy[:, :, None]) / (sc * asp)
    return u, v, sc, asp


def rbc_mass(raster: Raster, rbcs: np.ndarray, geom: PassGeometry) -> np.ndarray:
    """Red-cell haemoglobin per area (pg/µm²): Evans–Fung biconcave discs flattened by drying.

    Each cell's profile ``sqrt(1 - ρ²)(c0 + 7.83ρ² - 4.39ρ⁴)`` (Evans & Fung 1972, with the
    centre term ``c0`` varied for the pallor) is scaled so it integrates to the cell's mass.
    """
    out = np.zeros((raster.ny, raster.nx), np.float32)
    if rbcs.size == 0:
        return out
    sx, sy, shrink, extent, idx = _visible(raster, rbcs, geom)
    chunk = max(1, int(4e6 // (2 * extent / raster.step + 2) ** 2))
    for start in range(0, idx.size, chunk):
        k = idx[start : start + chunk]
        rec = rbcs[k]
        flat, valid, gx, gy = batch_patches(raster, sx[k], sy[k], extent)
        u, v, sc, asp = _disc_frames(rec, shrink[k], geom, gx, gy)
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
        accumulate_max(out, flat, h)
    return out


def platelet_maps(raster: Raster, plts: np.ndarray, geom: PassGeometry):
    """Platelet dry mass per area (pg/µm²) and the thickness of its central granulomere."""
    body = np.zeros((raster.ny, raster.nx), np.float32)
    core = np.zeros_like(body)
    if plts.size == 0:
        return body, core
    sx, sy, shrink, extent, k = _visible(raster, plts, geom)
    if k.size == 0:
        return body, core
    rec = plts[k]
    flat, valid, gx, gy = batch_patches(raster, sx[k], sy[k], extent)
    u, v, sc, asp = _disc_frames(rec, shrink[k], geom, gx, gy)
    rho2 = u * u + v * v
    # a cap sqrt(1 - ρ²) integrates to 2/3 π r² a over the ellipse
    h = np.sqrt(np.clip(1.0 - rho2, 0.0, None)) * (
        PLATELET_DRY_MASS_PG / (2 / 3 * np.pi * sc * sc * asp)
    )
    h[~valid] = 0.0
    body += accumulate(raster, flat, h)
    g = 0.6 * np.sqrt(np.clip(1.0 - rho2 / 0.3, 0.0, None))
    g[~valid] = 0.0
    core += accumulate(raster, flat, g)
    return body, core
