"""The virtual blood smear: an endless, seeded catalogue of cells in slide coordinates (µm).

The slide is cut into square tiles of :data:`TILE_UM`. Everything in a tile is drawn from
random streams keyed by ``(slide, seed, what, tile)``, so any region of the slide is the same
in every pass, process and call order, and a field is generated lazily from the few tiles it
touches. What lives here is where each object is (the tiles, their point processes, caching);
the pieces: red-cell packing in :mod:`.red_cells`, white-cell morphology in :mod:`.cells` and
:mod:`.nuclei`, debris in :mod:`.debris`, the plasma film in :mod:`.film`, what staining does
to positions in :mod:`.staining_moves`, keyed randomness in :mod:`.seeding`; how the objects
look (refractive index, absorption, stains) is in :mod:`.sample`.

Point processes:

- white blood cells: a Matérn type-II hard-core process (candidates thinned by random marks
  within the hard-core distance, decided from the 3 x 3 tile neighbourhood only), so distinct
  WBCs keep about one diameter apart across tile borders;
- red cells: random sequential adsorption per tile (the classic model of a monolayer), kept
  clear of WBC nuclei, then thinned by marks where packings of neighbouring tiles overlap;
- platelets, dirt and one-pass faults: Poisson.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from acquisition.simulator.cells import (
    MEAN_WBC_RADIUS_UM,
    WBC_RADIUS_UM,
    WhiteCell,
    make_white_cell,
)
from acquisition.simulator.config import WBC_TYPES, SimConfig
from acquisition.simulator.debris import Debris, scatter_debris
from acquisition.simulator.film import CELL_TEXTURE_UM, FILM_STEP_UM, TILE_UM, PlasmaFilm
from acquisition.simulator.red_cells import (
    kept_after_neighbours,
    pack_red_cells,
    shape_red_cells,
)
from acquisition.simulator.seeding import SlideStreams, object_id, seeded_rng
from acquisition.simulator.smear_objects import PLATELET_DTYPE, RBC_DTYPE, SmearObjects
from acquisition.simulator.staining_moves import StainingMoves
from acquisition.vocabulary import Pass


@dataclass(frozen=True)
class _Tile:
    rbcs: np.ndarray
    platelets: np.ndarray
    wbcs: tuple[WhiteCell, ...]
    debris: tuple[Debris, ...]


class VirtualSmear:
    """The endless virtual smear of one slide.

    Parameters
    ----------
    slide, seed
        Identify the slide: the same pair gives the same smear everywhere.
    config
        Densities, the WBC differential and the faults.
    field_area_um2
        Area of one scan field, µm² (densities in ``config`` are per field).
    """

    def __init__(
        self,
        *,
        slide: str,
        seed: int,
        config: SimConfig,
        field_area_um2: float,
        tile_cache: int = 96,
    ) -> None:
        self.slide = str(slide)
        self.seed = int(seed)
        self.config = config
        self._per_tile = TILE_UM**2 / field_area_um2
        self._tile_cache = tile_cache
        self._lock = threading.RLock()
        self._caches: dict[str, OrderedDict] = {}
        probs = config.wbc_type_probabilities
        self._type_probs = np.array([probs[t] for t in WBC_TYPES])
        # Matérn II: retained intensity = (1 - exp(-lp*A)) / A with A the hard-core area.
        d = 2 * MEAN_WBC_RADIUS_UM + config.wbc_min_gap_um
        area = math.pi * d * d
        target = config.wbc_per_field / field_area_um2
        self._wbc_parent_density = -math.log(max(1e-9, 1.0 - min(target * area, 0.95))) / area
        self.streams = SlideStreams(self.slide, self.seed)
        self.moves = StainingMoves(self.streams, config)
        self.film = PlasmaFilm(self.streams, config)
        cov_rng = seeded_rng(self.slide, self.seed, "coverage")
        self._coverage_waves = cov_rng.uniform(
            [0.0, 0.0, 0.0, 0.0], [2 * math.pi, 2 * math.pi, 2 * math.pi, 2 * math.pi]
        )

    # ------------------------------------------------------------------ public
    def objects_in(
        self, xmin: float, xmax: float, ymin: float, ymax: float, *, pass_: str
    ) -> SmearObjects:
        """Objects whose centre lies in the slide rectangle, present in ``pass_``."""
        ix0 = math.floor(xmin / TILE_UM)
        ix1 = math.floor(xmax / TILE_UM)
        iy0 = math.floor(ymin / TILE_UM)
        iy1 = math.floor(ymax / TILE_UM)
        rbcs, platelets, wbcs, debris = [], [], [], []
        for iy in range(iy0, iy1 + 1):
            for ix in range(ix0, ix1 + 1):
                tile = self._tile(ix, iy)
                r = tile.rbcs
                rbcs.append(
                    r[(r["x"] >= xmin) & (r["x"] < xmax) & (r["y"] >= ymin) & (r["y"] < ymax)]
                )
                p = tile.platelets
                platelets.append(
                    p[(p["x"] >= xmin) & (p["x"] < xmax) & (p["y"] >= ymin) & (p["y"] < ymax)]
                )
                wbcs += [c for c in tile.wbcs if xmin <= c.x < xmax and ymin <= c.y < ymax]
                debris += [
                    d
                    for d in tile.debris
                    if xmin <= d.x < xmax and ymin <= d.y < ymax and d.pass_ in ("", pass_)
                ]
        objects = SmearObjects(
            rbcs=np.concatenate(rbcs) if rbcs else np.zeros(0, RBC_DTYPE),
            platelets=np.concatenate(platelets) if platelets else np.zeros(0, PLATELET_DTYPE),
            wbcs=wbcs,
            debris=debris,
        )
        return self.moves.apply(objects) if pass_ != Pass.UNSTAINED else objects

    def pass_offsets(
        self, ids: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How staining moved and lost cells: ``(dx, dy, lost)`` per object (slide µm);
        see :meth:`.staining_moves.StainingMoves.pass_offsets`."""
        return self.moves.pass_offsets(ids, x, y)

    def film_texture(
        self, xmin: float, xmax: float, ymin: float, ymax: float, *, pass_: str = Pass.UNSTAINED
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """The plasma film over a slide rectangle; see :meth:`.film.PlasmaFilm.texture`."""
        return self.film.texture(xmin, xmax, ymin, ymax, pass_=pass_)

    # ------------------------------------------------------------------ caching
    def _cached(self, name: str, key: tuple, make):
        with self._lock:
            cache = self._caches.setdefault(name, OrderedDict())
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        value = make(*key)
        with self._lock:
            cache[key] = value
            while len(cache) > self._tile_cache:
                cache.popitem(last=False)
        return value

    def _rng(self, *parts: object) -> np.random.Generator:
        return self.streams.rng(*parts)

    def _tile(self, ix: int, iy: int) -> _Tile:
        return self._cached("tile", (ix, iy), self._make_tile)

    # ------------------------------------------------------------------ WBCs
    def _wbc_candidates(self, ix: int, iy: int) -> np.ndarray:
        return self._cached("wbc_cand", (ix, iy), self._make_wbc_candidates)

    def _make_wbc_candidates(self, ix: int, iy: int) -> np.ndarray:
        rng = self._rng("wbc", ix, iy)
        n = rng.poisson(self._wbc_parent_density * TILE_UM**2)
        out = np.zeros(
            n, [("x", "f8"), ("y", "f8"), ("r", "f8"), ("type", "i4"), ("mark", "f8"), ("i", "i4")]
        )
        out["x"] = (ix + rng.random(n)) * TILE_UM
        out["y"] = (iy + rng.random(n)) * TILE_UM
        out["type"] = rng.choice(len(WBC_TYPES), size=n, p=self._type_probs)
        for k, t in enumerate(WBC_TYPES):
            sel = out["type"] == k
            lo, hi = WBC_RADIUS_UM[t]
            out["r"][sel] = rng.uniform(lo, hi, int(sel.sum()))
        out["mark"] = rng.random(n)
        out["i"] = np.arange(n)
        return out

    def _kept_wbc_candidates(self, ix: int, iy: int) -> np.ndarray:
        return self._cached("wbc_kept", (ix, iy), self._make_kept_wbc_candidates)

    def _make_kept_wbc_candidates(self, ix: int, iy: int) -> np.ndarray:
        own = self._wbc_candidates(ix, iy)
        if own.size == 0:
            return own
        near = np.concatenate(
            [self._wbc_candidates(ix + dx, iy + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        )
        gap = self.config.wbc_min_gap_um
        keep = np.ones(own.size, bool)
        for k, c in enumerate(own):
            dist = np.hypot(near["x"] - c["x"], near["y"] - c["y"])
            conflict = (dist < c["r"] + near["r"] + gap) & (dist > 0)
            if np.any(near["mark"][conflict] > c["mark"]):
                keep[k] = False
        return own[keep]

    def _wbcs_near(self, ix: int, iy: int) -> np.ndarray:
        return np.concatenate(
            [self._kept_wbc_candidates(ix + dx, iy + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        )

    # ------------------------------------------------------------------ RBCs
    def _coverage_at(self, x: float, y: float) -> float:
        ph = self._coverage_waves
        k = 2 * math.pi / 2500.0  # about 2.5 mm period
        mod = 0.5 * (math.sin(k * x + ph[0]) * math.cos(0.7 * k * y + ph[1])) + 0.5 * math.sin(
            0.8 * k * (x + y) + ph[2]
        )
        return self.config.rbc_coverage * (1.0 + 0.15 * mod)

    def _packed_rbcs(self, ix: int, iy: int) -> tuple[np.ndarray, np.ndarray]:
        return self._cached("rbc_rsa", (ix, iy), self._make_packed_rbcs)

    def _make_packed_rbcs(self, ix: int, iy: int) -> tuple[np.ndarray, np.ndarray]:
        coverage = self._coverage_at((ix + 0.5) * TILE_UM, (iy + 0.5) * TILE_UM)
        return pack_red_cells(self._rng("rbc", ix, iy), ix, iy, coverage, self._wbcs_near(ix, iy))

    def _make_rbcs(self, ix: int, iy: int) -> np.ndarray:
        own, own_marks = self._packed_rbcs(ix, iy)
        neighbours = [
            self._packed_rbcs(ix + dx, iy + dy)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dx, dy) != (0, 0)
        ]
        others = np.concatenate([n[0] for n in neighbours])
        other_marks = np.concatenate([n[1] for n in neighbours])
        out = own[kept_after_neighbours(own, own_marks, others, other_marks)].copy()
        shape_red_cells(
            out, self.config, self._rng("rbc-shape", ix, iy), self._rng("rbc-crenation", ix, iy)
        )
        return out

    # ------------------------------------------------------------------ tile
    def _make_tile(self, ix: int, iy: int) -> _Tile:
        cfg = self.config
        kept = self._kept_wbc_candidates(ix, iy)
        wbcs = tuple(
            make_white_cell(
                WBC_TYPES[int(c["type"])],
                rng=self._rng("wbc-detail", ix, iy, int(c["i"])),
                id=object_id("wbc", ix, iy, int(c["i"])),
                x=float(c["x"]),
                y=float(c["y"]),
                radius=float(c["r"]),
                shrink_range=cfg.stain_shrinkage,
                uptake_variation=cfg.stain_uptake_variation,
                coupling=cfg.stain_phase_coupling,
            )
            for c in kept
        )
        rbcs = self._make_rbcs(ix, iy)

        near = self._wbcs_near(ix, iy)
        rng = self._rng("platelet", ix, iy)
        n = rng.poisson(cfg.platelets_per_field * self._per_tile)
        plt = np.zeros(n, PLATELET_DTYPE)
        plt["id"] = [object_id("platelet", ix, iy, i) for i in range(n)]
        plt["x"] = (ix + rng.random(n)) * TILE_UM
        plt["y"] = (iy + rng.random(n)) * TILE_UM
        plt["radius"] = rng.uniform(0.9, 1.6, n)
        plt["aspect"] = rng.uniform(0.6, 1.0, n)
        plt["angle"] = rng.uniform(0, math.pi, n)
        plt["shrink"] = rng.uniform(*cfg.stain_shrinkage, n)
        ok = np.ones(n, bool)
        for w in near:
            ok &= np.hypot(plt["x"] - w["x"], plt["y"] - w["y"]) > w["r"] + 1.5
        plt = plt[ok]

        # (class code, truth type, pass, mean per field, fraction near a WBC, recipe)
        u, s, f = Pass.UNSTAINED, Pass.STAINED, cfg.faults
        kinds = (
            ("dirt", "dirt", "", cfg.dirt_per_field, 0.0, None),
            ("dirt1", "dirt", u, f.unstained_dirt_per_field, 0.5, None),
            ("artifact", "artifact", s, f.stained_artifacts_per_field, 0.5, None),
            ("precipitate", "artifact", s, cfg.precipitate_per_field, 0.0, "precipitate"),
            ("smudge", "smudge", "", cfg.smudge_per_field, 0.0, "smudge"),
        )
        debris: list[Debris] = []
        for code, type_, pass_, per_field, near_wbc, kind in kinds:
            if per_field > 0:
                rng = self._rng(code, ix, iy)
                mean = per_field * self._per_tile
                debris += scatter_debris(
                    rng,
                    ix,
                    iy,
                    code,
                    type_,
                    pass_,
                    mean,
                    wbcs,
                    near_wbc,
                    kind=kind,
                    uptake_variation=cfg.stain_uptake_variation,
                    coupling=cfg.stain_phase_coupling,
                )
        return _Tile(rbcs=rbcs, platelets=plt, wbcs=wbcs, debris=tuple(debris))


#: Names other modules import from here (kept where they were before the split).
__all__ = [
    "CELL_TEXTURE_UM",
    "FILM_STEP_UM",
    "PLATELET_DTYPE",
    "RBC_DTYPE",
    "TILE_UM",
    "SmearObjects",
    "VirtualSmear",
    "object_id",
    "seeded_rng",
]
