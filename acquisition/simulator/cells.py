"""White-cell recipes: morphology per type, dry mass, stain uptake and the cell's columns.

A white cell is drawn in its own frame (µm, before rotation): outline harmonics, nucleus lobes
and indent, chromatin clumps, granules, compartment-blind sub-µm bodies and RNA patches, its
dry mass per type and its per-cell stain uptake. :mod:`.smear` places these cells on the
slide (tiling, point processes), :mod:`.staining_moves` moves them through staining,
:mod:`.cell_maps` draws them into optical path and stain maps; debris recipes are in
:mod:`.debris`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from acquisition.simulator.config import WBC_TYPES
from acquisition.simulator.materials import DNA_BASE, DNA_PER_CLUMP
from acquisition.simulator.nuclei import NUCLEI

#: Largest distance from an object's centre to any part of it, µm (for tile queries).
MAX_OBJECT_EXTENT_UM = 16.0

#: Cell radius range (µm) per WBC type: smear diameters of 10-15 µm.
WBC_RADIUS_UM = {
    "neutrophil": (5.8, 7.0),
    "lymphocyte": (5.0, 5.9),
    "monocyte": (6.6, 7.5),
    "eosinophil": (6.0, 7.0),
    "basophil": (5.5, 6.5),
}
MEAN_WBC_RADIUS_UM = 6.3

#: Dry mass range (pg) per WBC type at the type's mean radius, scaled with the cell's area.
#: Wet volume times a dry-mass concentration of about 0.25 pg/fL: neutrophils ≈ 300 fL
#: (Ting-Beall et al., Biophys. J. 1993: 299 ± 28 µm³), lymphocytes ≈ 200 fL, monocytes
#: ≈ 400 fL, eosinophils and basophils between (estimates, not per-type measurements).
WBC_DRY_MASS_PG = {
    "neutrophil": (65.0, 85.0),
    "lymphocyte": (38.0, 55.0),
    "monocyte": (90.0, 125.0),
    "eosinophil": (70.0, 95.0),
    "basophil": (60.0, 80.0),
}


@dataclass(frozen=True, eq=False)
class WhiteCell:
    """One white blood cell; shape parameters in its local frame (µm, before rotation).

    Attributes
    ----------
    boundary
        ``(n, 2)`` relative amplitude and phase of the cell outline's harmonics 2, 3, ...
    lobes
        ``(L, 5)`` nucleus lobes as ellipses ``(u, v, a, b, angle)``; thin ones are strands.
    indent
        ``(3,)`` circle ``(u, v, r)`` cut out of the nucleus (monocyte kidney), or empty.
    clumps
        ``(C, 4)`` chromatin clumps ``(u, v, sigma, amplitude)``.
    granules
        ``(G, 3)`` granules ``(u, v, radius)``.
    mass
        Dry mass, pg.
    volume, nucleus_volume
        Integrals (µm³) of the cell's and the nucleus's column maps (``thickness`` dome and
        nucleus column), so the dry mass can be spread over them exactly.
    chromatin
        Integral (µm³) of the nucleus's chromatin column (its column weighted by its clumps,
        :func:`chromatin_column`): the nucleus's DNA is spread over this map, so the DNA
        per area is ``DNA_PG`` times the map over this integral.
    uptake
        ``(4,)`` per-cell dye uptake of the DNA, RNA, protein and granule fields (lognormal
        about 1: the cell-to-cell variation of a real smear).
    decoys
        ``(D, 3)`` compartment-blind sub-µm bodies ``(u, v, radius)`` spread over the whole cell:
        the phase texture a cell shows independently of its stain (see ``stain_phase_coupling``).
    patches
        ``(P, 4)`` ``(u, v, sigma, amplitude)`` of the cytoplasm's RNA patchiness (stain only).
    """

    id: int
    type: str
    x: float
    y: float
    radius: float
    angle: float
    thickness: float
    nucleus_thickness: float
    boundary: np.ndarray
    lobes: np.ndarray
    indent: np.ndarray
    clumps: np.ndarray
    granules: np.ndarray
    shrink: float
    mass: float = 0.0
    volume: float = 1.0
    nucleus_volume: float = 0.0
    chromatin: float = 1.0
    uptake: np.ndarray = field(default_factory=lambda: np.ones(4))
    decoys: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    patches: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def _place_in(
    rng: np.random.Generator,
    n: int,
    radius: float,
    accept,
    *,
    tries: int = 20,
) -> np.ndarray:
    """Up to ``n`` uniform points in a disc of ``radius`` for which ``accept(u, v)`` holds."""
    pts = np.zeros((0, 2))
    for _ in range(tries):
        m = max(4 * n, 16)
        r = radius * np.sqrt(rng.random(m))
        a = rng.uniform(0, 2 * math.pi, m)
        u, v = r * np.cos(a), r * np.sin(a)
        ok = accept(u, v)
        pts = np.vstack([pts, np.column_stack([u[ok], v[ok]])])
        if len(pts) >= n:
            break
    return pts[:n]


def nucleus_level(cell: WhiteCell, u: np.ndarray, v: np.ndarray, edge_um: float) -> np.ndarray:
    """Soft nucleus indicator in [0, 1] at local points ``(u, v)`` (µm) of ``cell``.

    The nucleus is the union of its lobe ellipses minus the indent circle; ``edge_um`` sets the
    width of the soft edge (about one grid step, for anti-aliasing).
    """
    level = np.zeros(np.broadcast_shapes(np.shape(u), np.shape(v)), np.float32)
    w = max(edge_um, 1e-3)
    for cu, cv, a, b, ang in cell.lobes:
        c, s = math.cos(ang), math.sin(ang)
        du, dv = u - cu, v - cv
        p = (c * du + s * dv) / a
        q = (-s * du + c * dv) / b
        sd = (np.sqrt(p * p + q * q) - 1.0) * min(a, b)
        np.maximum(level, np.clip(0.5 - sd / w, 0.0, 1.0), out=level)
    if cell.indent.size:
        cu, cv, r = cell.indent
        sd = np.hypot(u - cu, v - cv) - r
        level = np.minimum(level, np.clip(0.5 + sd / w, 0.0, 1.0))
    return level


def outline_radius(cell: WhiteCell, psi: np.ndarray) -> np.ndarray:
    """Radius of the cell outline (µm) at polar angle ``psi`` of the local frame."""
    r = np.ones_like(psi)
    for n, (amp, phase) in enumerate(cell.boundary, start=2):
        r = r + amp * np.cos(n * psi + phase)
    return cell.radius * r


#: Granules per type: (count range, cytoplasm margin µm or None = anywhere in the cell with a
#: 0.5 µm margin, radius range µm). Lymphocytes: a few azurophilic granules and organelles.
_GRANULES = {
    "neutrophil": ((120, 200), 0.35, (0.12, 0.2)),
    "eosinophil": ((110, 170), 0.5, (0.33, 0.45)),
    "basophil": ((35, 70), None, (0.3, 0.55)),
    "monocyte": ((40, 80), 0.35, (0.1, 0.18)),
    "lymphocyte": ((4, 14), 0.35, (0.12, 0.2)),
}


def _within(cell: WhiteCell, margin: float):
    """Points of ``cell`` more than ``margin`` µm inside its outline."""

    def accept(u, v):
        return np.hypot(u, v) < outline_radius(cell, np.arctan2(v, u)) - margin

    return accept


def _in_cytoplasm(cell: WhiteCell, margin: float):
    """Points of ``cell``'s cytoplasm more than ``margin`` µm inside its outline."""

    def accept(u, v):
        psi = np.arctan2(v, u)
        inside = np.hypot(u, v) < outline_radius(cell, psi) - margin
        return inside & (nucleus_level(cell, u, v, 0.05) < 0.05)

    return accept


def _granules(cell: WhiteCell, rng: np.random.Generator) -> np.ndarray:
    """``(G, 3)`` granules ``(u, v, radius)`` of the cell's type."""
    (lo, hi), margin, radius = _GRANULES[cell.type]
    accept = _within(cell, 0.5) if margin is None else _in_cytoplasm(cell, margin)
    pts = _place_in(rng, int(rng.integers(lo, hi)), cell.radius, accept)
    return np.column_stack([pts, rng.uniform(*radius, len(pts))])


def make_white_cell(
    type_: str,
    *,
    rng: np.random.Generator,
    id: int,
    x: float,
    y: float,
    radius: float,
    shrink_range: tuple[float, float] = (0.95, 0.99),
    uptake_variation: float = 0.25,
    coupling: float = 1.0,
) -> WhiteCell:
    """Draw the morphology of one white blood cell of ``type_`` centred at slide ``(x, y)``.

    Neutrophils get 2-5 lobes joined by thin strands and fine granules; lymphocytes a large
    round nucleus with coarse chromatin and a thin rim of cytoplasm; monocytes a kidney-shaped
    nucleus with lacy chromatin; eosinophils a bilobed nucleus and large packed granules;
    basophils an irregular nucleus under dark granules.
    """
    if type_ not in WBC_TYPES:
        raise ValueError(f"unknown white cell type {type_!r}; expected one of {WBC_TYPES}")
    R = radius
    boundary = np.column_stack([rng.normal(0, [0.03, 0.02, 0.012]), rng.uniform(0, 2 * math.pi, 3)])
    nucleus = NUCLEI[type_](rng, R, rng.uniform(2.3, 2.8))
    cell = WhiteCell(
        id=id,
        type=type_,
        x=x,
        y=y,
        radius=R,
        angle=float(rng.uniform(0, 2 * math.pi)),
        thickness=nucleus.thickness,
        nucleus_thickness=nucleus.nucleus_thickness,
        boundary=boundary,
        lobes=np.array(nucleus.lobes, dtype=np.float64),
        indent=nucleus.indent,
        clumps=np.zeros((0, 4)),
        granules=np.zeros((0, 3)),
        shrink=float(rng.uniform(*shrink_range)),
    )

    def in_nucleus(u, v):
        return nucleus_level(cell, u, v, 0.05) > 0.5

    n, sigma = nucleus.n_clumps, nucleus.clump_sigma
    pts = _place_in(rng, n, R, in_nucleus)
    clumps = np.column_stack([pts, rng.uniform(*sigma, len(pts)), rng.uniform(0.5, 1.0, len(pts))])
    gran = _granules(cell, rng)
    # compartment-blind sub-µm bodies (organelles, folds): the same density in every type
    n_decoys = round(120 * (R / MEAN_WBC_RADIUS_UM) ** 2)
    pts = _place_in(rng, n_decoys, R, _within(cell, 0.3))
    decoys = np.column_stack([pts, rng.uniform(0.12, 0.3, len(pts))])
    pts = _place_in(rng, 24, R, _in_cytoplasm(cell, 0.35))
    patches = np.column_stack(
        [pts, rng.uniform(0.6, 1.4, len(pts)), rng.uniform(0.3, 1.0, len(pts))]
    )
    lo, hi = WBC_DRY_MASS_PG[type_]
    mass = float(rng.uniform(lo, hi)) * (R / _mean_radius(type_)) ** 2
    # the type's own dry-mass density only as far as the phase follows the stain: at
    # coupling 0 every type has the common density (cells still vary one by one)
    mass *= (_COMMON_DENSITY / _type_density(type_)) ** (1.0 - coupling)
    uptake = np.exp(rng.normal(0.0, uptake_variation, 4) - uptake_variation**2 / 2)
    cell = dataclasses.replace(
        cell,
        clumps=clumps.astype(np.float64),
        granules=gran.astype(np.float64),
        decoys=decoys.astype(np.float64),
        patches=patches.astype(np.float64),
        mass=mass,
        uptake=uptake,
    )
    volume, nucleus_volume = cell_volumes(cell)
    return dataclasses.replace(
        cell, volume=volume, nucleus_volume=nucleus_volume, chromatin=chromatin_um3(cell)
    )


def _mean_radius(type_: str) -> float:
    lo, hi = WBC_RADIUS_UM[type_]
    return (lo + hi) / 2


def _type_density(type_: str) -> float:
    """Mean dry mass per area of a type's cells (pg/µm² of the unit disc)."""
    lo, hi = WBC_DRY_MASS_PG[type_]
    return (lo + hi) / 2 / (math.pi * _mean_radius(type_) ** 2)


_COMMON_DENSITY = float(np.mean([_type_density(t) for t in WBC_TYPES]))


def cell_columns(cell: WhiteCell, u: np.ndarray, v: np.ndarray, edge_um: float):
    """The smooth columns (µm) of a white cell at local points: ``(h_cell, h_nucleus, rho)``.

    ``h_cell`` is a dome thickest at the centre, thinning towards the rim; ``h_nucleus`` the
    part of that column the nucleus fills; ``rho`` the radius relative to the outline.
    """
    psi = np.arctan2(v, u)
    rho = np.hypot(u, v) / outline_radius(cell, psi)
    body = np.clip(1.0 - rho * rho, 0.0, None)
    h_cell = (cell.thickness * body**0.6).astype(np.float32)
    level = nucleus_level(cell, u, v, edge_um)
    h_nuc = np.minimum(cell.nucleus_thickness * level, 0.95 * h_cell).astype(np.float32)
    return h_cell, h_nuc, rho


def cell_volumes(cell: WhiteCell, step: float = 0.1) -> tuple[float, float]:
    """Integrals (µm³) of a cell's ``h_cell`` and ``h_nucleus`` columns (unshrunk)."""
    reach = cell.radius * 1.15
    g = np.arange(-reach, reach + step / 2, step, dtype=np.float32)
    h_cell, h_nuc, _ = cell_columns(cell, g[None, :], g[:, None], step)
    return float(h_cell.sum() * step * step), float(h_nuc.sum() * step * step)


def chromatin_column(cell: WhiteCell, h_nuc: np.ndarray, chrom: np.ndarray) -> np.ndarray:
    """The nucleus column ``h_nuc`` (µm) weighted by the chromatin clump level ``chrom``
    (0..1): condensed chromatin holds more DNA per µm of column."""
    return h_nuc * (np.float32(DNA_BASE) + np.float32(DNA_PER_CLUMP) * np.clip(chrom, 0.0, 1.0))


def chromatin_um3(cell: WhiteCell, step: float = 0.1) -> float:
    """Integral (µm³) of ``cell``'s chromatin column (:func:`chromatin_column`), unshrunk."""
    reach = cell.radius * 1.15
    g = np.arange(-reach, reach + step / 2, step, dtype=np.float32)
    u, v = g[None, :], g[:, None]
    _, h_nuc, _ = cell_columns(cell, u, v, step)
    rows, cols = np.nonzero(h_nuc > 0)
    if not rows.size:
        return 1.0
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    uu, vv = u[:, box[1]], v[box[0], :]
    chrom = np.zeros(h_nuc[box].shape, np.float32)
    for cu, cv, sigma, amp in cell.clumps:
        chrom += np.float32(amp) * np.exp(-((uu - cu) ** 2 + (vv - cv) ** 2) / (2 * sigma * sigma))
    dna = chromatin_column(cell, h_nuc[box], chrom)
    return max(float(dna.sum(dtype=np.float64) * step * step), 1e-6)
