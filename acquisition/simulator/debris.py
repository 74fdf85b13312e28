"""Debris recipes: dirt, stain artifacts and smudge cells as unions of small blobs.

:mod:`.smear` places the pieces on the slide; :mod:`.cell_maps` draws them into the column
maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from acquisition.simulator.cells import MAX_OBJECT_EXTENT_UM, WhiteCell
from acquisition.simulator.film import TILE_UM
from acquisition.simulator.seeding import object_id


@dataclass(frozen=True, eq=False)
class Debris:
    """Dirt or a stain artifact: a union of blobs ``(u, v, radius, height)`` in µm.

    ``kind`` is ``particle`` or ``fibre`` (dirt), ``precipitate`` or ``watermark`` (artifact);
    ``pass_`` is ``""`` when it is on the slide in every pass, else the one pass it is in.
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
    elif kind == "smudge":
        # a broken white cell: loose chromatin smeared into a lacy, flattened patch
        n = rng.integers(25, 50)
        size = rng.uniform(4.0, 7.0)
        uv = rng.normal(0, size * 0.35, (n, 2)) * np.array([1.0, rng.uniform(0.4, 1.0)])
        r = rng.uniform(0.5, 1.5, n)
        h = r * rng.uniform(0.15, 0.35, n)
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
) -> list[Debris]:
    """A Poisson number (``mean``) of debris pieces in tile ``(ix, iy)``, ids of class ``code``.

    A fraction ``near`` lies on or beside a white cell of ``wbcs``; ``kind`` fixes the recipe
    (else dirt is a fibre or a particle, an artifact a precipitate or a watermark); ``pass_``
    is ``""`` (every pass) or the one pass the pieces are in.
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
        blobs = debris_blobs(this, rng)
        extent = float(np.max(np.hypot(blobs[:, 0], blobs[:, 1]) + blobs[:, 2]))
        out.append(
            Debris(
                id=object_id(code, ix, iy, i),
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
