"""Red cells of one tile: random sequential adsorption, thinning against the neighbouring
tiles' packings, and each cell's shape (aspect, pallor, haemoglobin, crenation).

:class:`~acquisition.simulator.smear.VirtualSmear` calls these per tile with the tile's own
random streams and caches the results.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from acquisition.simulator.config import SimConfig
from acquisition.simulator.film import TILE_UM
from acquisition.simulator.seeding import object_id
from acquisition.simulator.smear_objects import RBC_DTYPE

#: Red cells may overlap a neighbour by this much (µm) before packing rejects them: at 55-65 %
#: coverage neighbours touch and deform.
RBC_OVERLAP_UM = 1.4
#: Red cells may overlap a WBC's edge by this much (µm), never reaching its nucleus.
RBC_WBC_OVERLAP_UM = 1.2
#: Mean and largest red-cell radius, µm.
RBC_MEAN_RADIUS_UM = 3.8
RBC_MAX_RADIUS_UM = 4.4


def _clashes(grid: dict, xs, ys, rs, x: float, y: float, r: float, gx: int, gy: int) -> bool:
    """Whether a disc at ``(x, y, r)`` overlaps an accepted one by more than allowed."""
    for jx in (gx - 1, gx, gx + 1):
        for jy in (gy - 1, gy, gy + 1):
            for j in grid.get((jx, jy), ()):
                if (xs[j] - x) ** 2 + (ys[j] - y) ** 2 < (rs[j] + r - RBC_OVERLAP_UM) ** 2:
                    return True
    return False


def pack_red_cells(
    rng: np.random.Generator, ix: int, iy: int, coverage: float, wbcs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Random sequential adsorption of red cells in tile ``(ix, iy)``: (cells, packing marks).

    ``coverage`` is the target area fraction; ``wbcs`` the white-cell candidates near the tile
    (fields ``x``, ``y``, ``r``), whose nuclei the red cells keep clear of.
    """
    r_mean = RBC_MEAN_RADIUS_UM
    # overlapping neighbours: the discs' summed area is about 1.19x the area they cover
    n_target = round(1.19 * coverage * TILE_UM**2 / (math.pi * r_mean**2 * 1.005))
    n_try = 10 * n_target + 10
    xs = (ix + rng.random(n_try)) * TILE_UM
    ys = (iy + rng.random(n_try)) * TILE_UM
    rs = np.clip(rng.normal(r_mean, 0.22, n_try), 3.2, RBC_MAX_RADIUS_UM)
    marks = rng.random(n_try)
    # keep clear of WBC nuclei: touching the WBC edge slightly is allowed
    ok = np.ones(n_try, bool)
    for w in wbcs:
        ok &= np.hypot(xs - w["x"], ys - w["y"]) >= w["r"] + rs - RBC_WBC_OVERLAP_UM
    cell = 2 * RBC_MAX_RADIUS_UM
    grid: dict[tuple[int, int], list[int]] = {}
    accepted: list[int] = []
    for i in np.flatnonzero(ok):
        if len(accepted) >= n_target:
            break
        gx, gy = int(xs[i] // cell), int(ys[i] // cell)
        if not _clashes(grid, xs, ys, rs, xs[i], ys[i], rs[i], gx, gy):
            grid.setdefault((gx, gy), []).append(int(i))
            accepted.append(int(i))
    idx = np.array(accepted, dtype=np.int64)
    out = np.zeros(idx.size, RBC_DTYPE)
    out["id"] = [object_id("rbc", ix, iy, int(i)) for i in idx]
    out["x"], out["y"], out["radius"] = xs[idx], ys[idx], rs[idx]
    return out, marks[idx]


def kept_after_neighbours(
    own: np.ndarray, own_marks: np.ndarray, others: np.ndarray, other_marks: np.ndarray
) -> np.ndarray:
    """Which of a tile's packed cells survive where neighbouring tiles' packings overlap
    them: of two clashing cells the one with the higher mark stays (bool per ``own``)."""
    keep = np.ones(own.size, bool)
    if others.size and own.size:
        tree = cKDTree(np.column_stack([others["x"], others["y"]]))
        pts = np.column_stack([own["x"], own["y"]])
        for k, hits in enumerate(tree.query_ball_point(pts, r=2 * RBC_MAX_RADIUS_UM)):
            for j in hits:
                d = math.hypot(others["x"][j] - own["x"][k], others["y"][j] - own["y"][k])
                if (
                    d < own["radius"][k] + others["radius"][j] - RBC_OVERLAP_UM
                    and other_marks[j] > own_marks[k]
                ):
                    keep[k] = False
                    break
    return keep


def shape_red_cells(
    cells: np.ndarray,
    config: SimConfig,
    rng: np.random.Generator,
    crenate: np.random.Generator,
) -> None:
    """Fill in each cell's shape in place: aspect, angle, haemoglobin, pallor, crenation."""
    n = cells.size
    cells["aspect"] = rng.uniform(0.88, 1.0, n)
    cells["angle"] = rng.uniform(0, math.pi, n)
    cells["mass"] = config.rbc_hb_pg * rng.uniform(0.9, 1.1, n)
    cells["pallor"] = rng.uniform(0.45, 1.2, n)
    # dried red cells keep their size (and the overlaps of neighbours) through fixing
    # and staining; drawn anyway so the random stream does not depend on it
    rng.uniform(*config.stain_shrinkage, n)
    cells["shrink"] = 1.0
    # crenation (echinocytes: a drying artifact, so in every pass): 10-20 spicules
    hit = crenate.random(n) < config.crenated_fraction
    cells["spicules"] = np.where(hit, crenate.integers(10, 21, n), 0)
    cells["spicule_phase"] = crenate.uniform(0, 2 * math.pi, n)
