"""White cells and debris drawn one by one on a :class:`~.raster.Canvas`: their dry mass,
optical path and (stained passes) dye columns, or their truth masks.
"""

from __future__ import annotations

import math

import numpy as np

from acquisition.simulator.cells import WhiteCell, cell_columns, chromatin_column, nucleus_level
from acquisition.simulator.debris import Debris
from acquisition.simulator.materials import (
    DEBRIS_MATERIAL,
    DENSE_EXCESS_PG_UM3,
    DNA_PG,
    PHASE_GRANULES,
    STAIN_DNA,
    STAIN_GRANULE,
    STAIN_PROTEIN,
    STAIN_RNA,
)
from acquisition.simulator.raster import Canvas, PassGeometry, local_frame


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


def draw_white_cell(canvas: Canvas, cell: WhiteCell, geom: PassGeometry) -> None:
    sx, sy = geom.to_stage(np.float64(cell.x), np.float64(cell.y))
    scale = cell.shrink if geom.stained else 1.0
    extent = cell.radius * 1.15 * scale + canvas.raster.step
    win = canvas.window(float(sx), float(sy), extent)
    if win is None:
        return
    where, gx, gy = win
    angle = cell.angle + geom.rotation
    u, v = local_frame(gx, gy, angle, scale)
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
        # DNA (pg/µm²): the nucleus's DNA_PG spread over its chromatin column, conserved
        # when the cell shrinks (1/scale² per stage µm²)
        per_um3 = DNA_PG / (cell.chromatin * scale * scale) * k[0]
        dna = chromatin_column(cell, h_nuc, chrom) * np.float32(per_um3)
        # RNA: basophilia of the cytoplasm, patchy (stain only: invisible in phase)
        patches = _blob_sum(*blob, cell.patches, "gauss", gx, gy, angle, scale)
        rna = h_cyto * (np.float32(0.6) + np.float32(0.6) * np.clip(patches, 0, 1.5))
        rna *= np.float32(STAIN_RNA[cell.type] * k[1])
        # protein: the cytoplasm's dry mass
        protein = h_cyto * np.float32(rho_dry * k[2])
        granules = gran * np.float32(k[3])
        for i, name in enumerate(("eosin", "azure", "complex")):
            canvas.add(name, where, dna, STAIN_DNA[i])
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


def draw_debris(canvas: Canvas, d: Debris, geom: PassGeometry) -> None:
    if d.kind == "smudge":
        draw_smudge(canvas, d, geom)
        return
    sx, sy = geom.to_stage(np.float64(d.x), np.float64(d.y))
    win = canvas.window(float(sx), float(sy), d.radius + canvas.raster.step)
    if win is None:
        return
    where, gx, gy = win
    u, v = local_frame(gx, gy, d.angle + geom.rotation, 1.0)
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


def draw_smudge(canvas: Canvas, d: Debris, geom: PassGeometry) -> None:
    """A smudge cell: its lymphocyte's nucleus dry mass and DNA, spread as its blobs say.

    The blobs' weighted chords integrate to 1 per µm², so the dry mass per area is that map
    times the nucleus's dry mass (its share of the cell's mass at this pass's
    ``nucleus_to_cytoplasm``, as :func:`draw_white_cell` splits it) and the optical path
    ``kappa`` times that; stained, the DNA field (pg/µm²) is the map times the nucleus's
    DNA (``dna_pg``) and the cell's DNA uptake, taken up at the ``STAIN_DNA`` rates.
    Smudges are on the slide in every pass and neither move nor shrink.
    """
    cell = d.cell
    sx, sy = geom.to_stage(np.float64(d.x), np.float64(d.y))
    win = canvas.window(float(sx), float(sy), d.radius + canvas.raster.step)
    if win is None or cell is None:
        return
    where, gx, gy = win
    angle = d.angle + geom.rotation
    u, v = local_frame(gx, gy, angle, 1.0)
    share = _blob_sum(u.shape, u, v, d.blobs[:, :3], "sphere", gx, gy, angle, 1.0, d.blobs[:, 3])
    r = geom.nucleus_to_cytoplasm
    mass = cell.mass * r * cell.nucleus_volume / (cell.volume + (r - 1.0) * cell.nucleus_volume)
    canvas.add("mass", where, share, mass)
    canvas.add("opd", where, share, mass * geom.kappa * geom.phase_factor)
    if geom.stained:
        dna = d.dna_pg * float(cell.uptake[0])
        for name, coef in zip(("eosin", "azure", "complex"), STAIN_DNA, strict=True):
            canvas.add(name, where, share, dna * coef)
