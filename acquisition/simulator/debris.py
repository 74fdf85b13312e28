"""Debris recipes: dirt and stain artifacts as unions of small blobs, and smudge cells.

A smudge cell is a lymphocyte ruptured while the smear was spread: the chromatin of one
intact nucleus (its dry mass and its DNA) smeared thin over a patch 1.5-3 times the
nucleus's diameter across, as strands along the smear, cross-links between them and a
patchy film (:func:`make_smudge`). :mod:`.smear` places the pieces on the slide;
:mod:`.cell_maps` draws them into the column maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from acquisition.simulator.cells import (
    MAX_OBJECT_EXTENT_UM,
    WBC_RADIUS_UM,
    WhiteCell,
    make_white_cell,
)
from acquisition.simulator.film import TILE_UM
from acquisition.simulator.materials import DNA_PG, SMUDGE_SPREAD
from acquisition.simulator.seeding import object_id


@dataclass(frozen=True, eq=False)
class Debris:
    """Dirt, a stain artifact or a smudge cell: a union of blobs ``(u, v, radius, height)``
    in µm.

    ``kind`` is ``particle`` or ``fibre`` (dirt), ``precipitate`` or ``watermark`` (artifact)
    or ``smudge``; ``pass_`` is ``""`` when it is on the slide in every pass, else the one pass
    it is in. A smudge's blobs are spheres ``(u, v, radius, weight)`` whose chords, weighted,
    integrate to 1 (its chromatin's distribution per µm²); ``cell`` is the intact lymphocyte
    it was (dry mass, nucleus volume, dye uptake) and ``dna_pg`` that nucleus's DNA (pg).
    """

    id: int
    type: str
    kind: str
    x: float
    y: float
    radius: float
    angle: float
    pass_: str
    blobs: np.ndarray
    cell: WhiteCell | None = None
    dna_pg: float = 0.0


def debris_blobs(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Blobs ``(u, v, radius, height)`` in µm making up one piece of debris."""
    if kind == "particle":
        n = rng.integers(3, 9)
        size = rng.uniform(1.5, 4.5)
        uv = rng.normal(0, size * 0.35, (n, 2))
        r = rng.uniform(0.4, 1.0, n) * size * 0.6
        h = r * rng.uniform(0.6, 1.0, n)
    elif kind == "fibre":
        n = rng.integers(12, 30)
        length = rng.uniform(8.0, 24.0)
        t = np.linspace(-0.5, 0.5, n) * length
        bend = rng.uniform(-0.04, 0.04)
        uv = np.column_stack([t, bend * t**2 + rng.normal(0, 0.1, n)])
        r = np.full(n, rng.uniform(0.4, 0.9))
        h = r
    elif kind == "precipitate":
        n = rng.integers(10, 40)
        spread = rng.uniform(1.5, 5.0)
        uv = rng.normal(0, spread * 0.45, (n, 2))
        r = rng.uniform(0.2, 0.6, n)
        h = r
    elif kind == "watermark":
        n = rng.integers(6, 14)
        size = rng.uniform(4.0, 9.0)
        uv = rng.normal(0, size * 0.3, (n, 2))
        r = rng.uniform(0.3, 0.6, n) * size
        h = np.full(n, rng.uniform(0.15, 0.3))
    else:
        raise ValueError(f"unknown debris kind {kind!r}")
    # keep debris within the extent the tile queries assume
    scale = min(1.0, (MAX_OBJECT_EXTENT_UM - 1.0) / float(np.max(np.hypot(*uv.T) + r)))
    return np.column_stack([uv * scale, r * scale, h]).astype(np.float64)


def scatter_debris(
    rng: np.random.Generator,
    ix: int,
    iy: int,
    code: str,
    type_: str,
    pass_: str,
    mean: float,
    wbcs: tuple[WhiteCell, ...],
    near: float,
    kind: str | None = None,
    uptake_variation: float = 0.25,
    coupling: float = 1.0,
) -> list[Debris]:
    """A Poisson number (``mean``) of debris pieces in tile ``(ix, iy)``, ids of class ``code``.

    A fraction ``near`` lies on or beside a white cell of ``wbcs``; ``kind`` fixes the recipe
    (else dirt is a fibre or a particle, an artifact a precipitate or a watermark); ``pass_``
    is ``""`` (every pass) or the one pass the pieces are in. ``uptake_variation`` and
    ``coupling`` are passed to the lymphocyte a smudge cell was (:func:`make_smudge`).
    """
    n = rng.poisson(mean)
    out = []
    for i in range(n):
        if wbcs and rng.random() < near:
            w = wbcs[rng.integers(len(wbcs))]
            ang = rng.uniform(0, 2 * math.pi)
            dist = w.radius * rng.uniform(0.2, 1.3)
            x, y = w.x + dist * math.cos(ang), w.y + dist * math.sin(ang)
        else:
            x, y = (ix + rng.random()) * TILE_UM, (iy + rng.random()) * TILE_UM
        if kind is not None:
            this = kind
        elif type_ == "dirt":
            this = "fibre" if rng.random() < 0.3 else "particle"
        else:
            this = "precipitate" if rng.random() < 0.6 else "watermark"
        oid = object_id(code, ix, iy, i)
        if this == "smudge":
            out.append(
                make_smudge(
                    rng,
                    id=oid,
                    x=x,
                    y=y,
                    type_=type_,
                    pass_=pass_,
                    uptake_variation=uptake_variation,
                    coupling=coupling,
                )
            )
            continue
        blobs = debris_blobs(this, rng)
        extent = float(np.max(np.hypot(blobs[:, 0], blobs[:, 1]) + blobs[:, 2]))
        out.append(
            Debris(
                id=oid,
                type=type_,
                kind=this,
                x=x,
                y=y,
                radius=extent,
                angle=float(rng.uniform(0, 2 * math.pi)),
                pass_=pass_,
                blobs=blobs,
            )
        )
    return out


def make_smudge(
    rng: np.random.Generator,
    *,
    id: int,
    x: float,
    y: float,
    type_: str = "smudge",
    pass_: str = "",
    uptake_variation: float = 0.25,
    coupling: float = 1.0,
) -> Debris:
    """A smudge cell at slide ``(x, y)``: a lymphocyte (drawn like an intact one, with its
    per-cell dry mass and dye uptake) whose nucleus ruptured while the smear was spread.

    Its chromatin keeps the intact nucleus's dry mass and its DNA (``DNA_PG``) but is spread
    over a patch :data:`SMUDGE_SPREAD` times the nucleus's diameter across, drawn out along
    the smear (the slide's x axis, ±0.15 rad): 2.25-9 times the nucleus's area, so it reads
    paler than an intact nucleus (:func:`smudge_blobs`).
    """
    radius = float(rng.uniform(*WBC_RADIUS_UM["lymphocyte"]))
    cell = make_white_cell(
        "lymphocyte",
        rng=rng,
        id=id,
        x=x,
        y=y,
        radius=radius,
        uptake_variation=uptake_variation,
        coupling=coupling,
    )
    _, _, a, b, _ = cell.lobes[0]
    blobs = smudge_blobs(rng, 2.0 * math.sqrt(a * b))
    extent = float(np.max(np.hypot(blobs[:, 0], blobs[:, 1]) + blobs[:, 2]))
    if extent > MAX_OBJECT_EXTENT_UM - 1.0:  # moving blobs keeps their integrals
        blobs[:, :2] *= (MAX_OBJECT_EXTENT_UM - 1.0 - blobs[:, 2].max()) / (
            extent - blobs[:, 2].max()
        )
        extent = float(np.max(np.hypot(blobs[:, 0], blobs[:, 1]) + blobs[:, 2]))
    return Debris(
        id=id,
        type=type_,
        kind="smudge",
        x=x,
        y=y,
        radius=extent,
        angle=float(rng.normal(0.0, 0.15)),
        pass_=pass_,
        blobs=blobs,
        cell=cell,
        dna_pg=DNA_PG,
    )


def smudge_blobs(rng: np.random.Generator, diameter: float) -> np.ndarray:
    """Spheres ``(u, v, radius, weight)`` (µm) of a smudge of a nucleus ``diameter`` µm across.

    The patch is an ellipse as large as a disc ``SMUDGE_SPREAD`` times the diameter across,
    longer along the smear (u) than across it (width over length 0.5-0.9). Strands along u
    (8-15, 0.3-0.6 µm thick, wavy, each over 40-100 % of the patch) and short cross-links
    between them (the "basket") carry 15-30 % of the chromatin, every strand's chord peaking
    at the same column; a patchy film of broad blobs (1.2-2 µm, on a 1.4 µm lattice, weights
    0.5-1.5) over the whole patch carries the rest. The weighted chords integrate to 1.
    """
    # an ellipse of the area of a disc SMUDGE_SPREAD times the nucleus's diameter, drawn out
    # along the smear (width over length 0.5-0.9), no longer than the tile queries allow
    spread = diameter * rng.uniform(*SMUDGE_SPREAD)
    length = min(spread / math.sqrt(rng.uniform(0.5, 0.9)), 2.0 * (MAX_OBJECT_EXTENT_UM - 2.0))
    width = min(length, spread * spread / length)
    a, b = length / 2, width / 2
    strands: list[np.ndarray] = []
    for _ in range(int(rng.integers(8, 16))):
        v0 = rng.uniform(-0.85, 0.85) * b
        half = a * math.sqrt(1.0 - (v0 / b) ** 2)
        span = 2 * half * rng.uniform(0.4, 1.0)
        mid = rng.uniform(-half + span / 2, half - span / 2)
        t = np.arange(mid - span / 2, mid + span / 2, 0.3)
        phase = rng.uniform(0.0, 2 * math.pi)
        wave = rng.uniform(0.2, 0.6) * np.sin(2 * math.pi * t / rng.uniform(3.0, 8.0) + phase)
        v = v0 + wave + np.cumsum(rng.normal(0.0, 0.05, t.size))
        strands.append(np.column_stack([t, v, np.full(t.size, rng.uniform(0.3, 0.6))]))
    for _ in range(int(rng.integers(4, 10))):
        c = _in_ellipse(rng, 0.8 * a, 0.8 * b, 1)[0]
        ang = math.pi / 2 + rng.normal(0.0, 0.5)
        s = np.arange(-0.5, 0.5, 0.3 / rng.uniform(1.0, 3.0)) * rng.uniform(1.0, 3.0)
        pts = c + np.outer(s, [math.cos(ang), math.sin(ang)])
        strands.append(np.column_stack([pts, np.full(len(pts), rng.uniform(0.25, 0.4))]))
    lines = np.vstack(strands)
    # the film: a lattice over the patch, each blob with its own weight (patchy)
    gu, gv = np.meshgrid(np.arange(-a, a + 0.1, 1.4), np.arange(-b, b + 0.1, 1.4))
    gu = gu + rng.uniform(-0.5, 0.5, gu.shape)
    gv = gv + rng.uniform(-0.5, 0.5, gv.shape)
    inside = (gu / a) ** 2 + (gv / b) ** 2 <= 1.0
    k = int(inside.sum())
    film = np.column_stack([gu[inside], gv[inside], rng.uniform(1.2, 2.0, k)])
    film_w = rng.uniform(0.5, 1.5, k)
    share = rng.uniform(0.15, 0.3)
    parts = []
    for part, w, frac in ((lines, 1.0 / lines[:, 2], share), (film, film_w, 1.0 - share)):
        # lines: weight ∝ 1/r, so every strand's chord peaks at the same column (2 r w)
        w = w * frac / float(np.sum(w * 4.0 / 3.0 * math.pi * part[:, 2] ** 3))
        parts.append(np.column_stack([part, w]))
    return np.vstack(parts).astype(np.float64)


def _in_ellipse(rng: np.random.Generator, a: float, b: float, n: int) -> np.ndarray:
    """``n`` uniform points ``(u, v)`` in the ellipse of semi-axes ``a`` (u) and ``b`` (v)."""
    r = np.sqrt(rng.random(n))
    t = rng.uniform(0.0, 2 * math.pi, n)
    return np.column_stack([a * r * np.cos(t), b * r * np.sin(t)])
