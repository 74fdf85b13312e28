"""Nucleus recipes per white-cell type, drawn in the cell's own frame (µm, before rotation).

Each recipe draws the nucleus lobes as ellipses ``(u, v, a, b, angle)`` (thin ones are the
strands joining lobes), an optional indent circle ``(u, v, r)``, the cell and nucleus column
thicknesses and how many chromatin clumps of which size the nucleus holds.
:func:`acquisition.simulator.cells.make_white_cell` draws the rest of the cell.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Nucleus:
    """A type's nucleus as drawn: lobes, indent, columns and its chromatin clumps' recipe."""

    lobes: list
    indent: np.ndarray
    thickness: float
    nucleus_thickness: float
    n_clumps: int
    clump_sigma: tuple[float, float]


#: Neutrophil lobe size by lobe count: the nucleus's area (about a third of the cell's) is
#: shared by its lobes, so more lobes are smaller.
LOBE_SCALE = {2: 1.2, 3: 1.0, 4: 0.88, 5: 0.8}


def neutrophil_nucleus(rng: np.random.Generator, R: float, thickness: float) -> Nucleus:
    """2-5 lobes on an arc, joined by thin strands."""
    n_lobes = int(rng.choice([2, 3, 4, 5], p=[0.12, 0.45, 0.33, 0.10]))
    arc_r = R * rng.uniform(0.38, 0.5)
    spacing = R * rng.uniform(0.5, 0.6)
    start = rng.uniform(0, 2 * math.pi)
    step = spacing / arc_r * rng.choice([-1, 1])
    centres = []
    for k in range(n_lobes):
        t = start + k * step + rng.normal(0, 0.12)
        centres.append((arc_r * math.cos(t), arc_r * math.sin(t)))
    centres = np.array(centres)
    centres -= centres.mean(axis=0) * 0.6
    lobes = []
    for k, (cu, cv) in enumerate(centres):
        a = R * rng.uniform(0.38, 0.44) * LOBE_SCALE[n_lobes]
        b = R * rng.uniform(0.28, 0.33) * LOBE_SCALE[n_lobes]
        t = start + k * step
        lobes.append((cu, cv, a, b, t + math.pi / 2 + rng.normal(0, 0.3)))
    for (u0, v0), (u1, v1) in itertools.pairwise(centres):
        length = math.hypot(u1 - u0, v1 - v0)
        lobes.append(((u0 + u1) / 2, (v0 + v1) / 2, length / 2, 0.28, math.atan2(v1 - v0, u1 - u0)))
    return Nucleus(lobes, np.zeros(0), thickness, 0.8 * thickness, 40, (0.25, 0.5))


def lymphocyte_nucleus(rng: np.random.Generator, R: float, thickness: float) -> Nucleus:
    """A large round nucleus, sometimes notched, in a thicker cell."""
    off = rng.normal(0, 0.08 * R, 2)
    a, b = R * rng.uniform(0.76, 0.84), R * rng.uniform(0.70, 0.78)
    lobes = [(off[0], off[1], a, b, rng.uniform(0, math.pi))]
    indent = np.zeros(0)
    if rng.random() < 0.3:
        t = rng.uniform(0, 2 * math.pi)
        d = 0.8 * R
        indent = np.array([off[0] + d * math.cos(t), off[1] + d * math.sin(t), 0.22 * R])
    thickness = rng.uniform(2.8, 3.3)
    return Nucleus(lobes, indent, thickness, 0.9 * thickness, 45, (0.3, 0.6))


def monocyte_nucleus(rng: np.random.Generator, R: float, thickness: float) -> Nucleus:
    """A kidney: an ellipse with a circle cut out of its minor-axis side."""
    a = R * rng.uniform(0.74, 0.8)
    b = R * rng.uniform(0.6, 0.66)
    ang = rng.uniform(0, 2 * math.pi)
    normal = np.array([-math.sin(ang), math.cos(ang)])  # the minor axis: the indent side
    centre = -0.1 * R * normal
    lobes = [(centre[0], centre[1], a, b, ang)]
    cut = centre + b * rng.uniform(1.05, 1.3) * normal
    indent = np.array([cut[0], cut[1], b * rng.uniform(0.55, 0.75)])
    return Nucleus(lobes, indent, thickness, 0.75 * thickness, 90, (0.15, 0.3))


def eosinophil_nucleus(rng: np.random.Generator, R: float, thickness: float) -> Nucleus:
    """Two lobes joined by a strand."""
    ang = rng.uniform(0, 2 * math.pi)
    half = R * rng.uniform(0.35, 0.41)
    c, s = math.cos(ang), math.sin(ang)
    lobes = []
    for sign in (-1, 1):
        lobes.append(
            (
                sign * half * c,
                sign * half * s,
                R * rng.uniform(0.46, 0.52),
                R * rng.uniform(0.35, 0.4),
                ang + math.pi / 2 + rng.normal(0, 0.3),
            )
        )
    lobes.append((0.0, 0.0, half, 0.3, ang))
    return Nucleus(lobes, np.zeros(0), thickness, 0.8 * thickness, 32, (0.25, 0.45))


def basophil_nucleus(rng: np.random.Generator, R: float, thickness: float) -> Nucleus:
    """Two overlapping irregular lobes (hidden under the granules once stained)."""
    ang = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(ang), math.sin(ang)
    lobes = []
    for sign in (-1, 1):
        lobes.append(
            (
                sign * 0.25 * R * c,
                sign * 0.25 * R * s,
                R * rng.uniform(0.6, 0.68),
                R * rng.uniform(0.48, 0.54),
                rng.uniform(0, math.pi),
            )
        )
    return Nucleus(lobes, np.zeros(0), thickness, 0.7 * thickness, 28, (0.25, 0.45))


#: The nucleus recipe of each type: ``(rng, cell radius, cell thickness) -> Nucleus``.
NUCLEI = {
    "neutrophil": neutrophil_nucleus,
    "lymphocyte": lymphocyte_nucleus,
    "monocyte": monocyte_nucleus,
    "eosinophil": eosinophil_nucleus,
    "basophil": basophil_nucleus,
}
