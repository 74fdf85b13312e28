"""The virtual blood smear: an endless, seeded catalogue of cells in slide coordinates (µm).

The slide is cut into square tiles of :data:`TILE_UM`. Everything in a tile is drawn from
random streams keyed by ``(slide, seed, what, tile)``, so any region of the slide is the same
in every pass, process and call order, and a field is generated lazily from the few tiles it
touches. What lives here is where each object is and what staining does to it; the objects'
shapes (white-cell morphology, debris) are drawn by the recipes in :mod:`.cells`, and how
they look (refractive index, absorption, stains) is in :mod:`.sample`.

Point processes:

- white blood cells: a Matérn type-II hard-core process (candidates thinned by random marks
  within the hard-core distance, decided from the 3 x 3 tile neighbourhood only), so distinct
  WBCs keep about one diameter apart across tile borders;
- red cells: random sequential adsorption per tile (the classic model of a monolayer), kept
  clear of WBC nuclei, then thinned by marks where packings of neighbouring tiles overlap;
- platelets, dirt and one-pass faults: Poisson.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree

from acquisition.simulator.cells import (
    MEAN_WBC_RADIUS_UM,
    WBC_RADIUS_UM,
    WhiteCell,
    make_white_cell,
)
from acquisition.simulator.config import WBC_TYPES, SimConfig
from acquisition.simulator.debris import Debris, debris_blobs

#: Side of a generation tile, µm.
TILE_UM = 256.0

#: Lattice spacing of the plasma-film texture, µm.
FILM_STEP_UM = 0.25
#: Correlation length of the cells' sub-µm texture (membrane folds, organelles), µm.
CELL_TEXTURE_UM = 0.15


#: Red cells may overlap a neighbour by this much (µm) before packing rejects them: at 55-65 %
#: coverage neighbours touch and deform.
_RBC_OVERLAP_UM = 1.4
#: Red cells may overlap a WBC's edge by this much (µm), never reaching its nucleus.
_RBC_WBC_OVERLAP_UM = 1.2


RBC_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("x", "f8"),
        ("y", "f8"),
        ("radius", "f4"),
        ("aspect", "f4"),
        ("angle", "f4"),
        ("mass", "f4"),
        ("pallor", "f4"),
        ("shrink", "f4"),
        ("spicules", "f4"),
        ("spicule_phase", "f4"),
    ]
)
PLATELET_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("x", "f8"),
        ("y", "f8"),
        ("radius", "f4"),
        ("aspect", "f4"),
        ("angle", "f4"),
        ("shrink", "f4"),
    ]
)

# object class codes packed into ids
_CODE = {
    "wbc": 1,
    "rbc": 2,
    "platelet": 3,
    "dirt": 4,
    "dirt1": 5,
    "artifact": 6,
    "precipitate": 7,
    "smudge": 8,
}


def object_id(kind: str, ix: int, iy: int, index: int) -> int:
    """A unique, stable positive int64 id for the ``index``-th object of a class in a tile."""
    return (_CODE[kind] << 59) | ((ix & 0xFFFFF) << 39) | ((iy & 0xFFFFF) << 19) | (index & 0x7FFFF)


def seeded_rng(slide: str, seed: int, *parts: object) -> np.random.Generator:
    """A generator keyed by the slide, the seed and any labels, stable across processes."""
    key = repr((str(slide), int(seed), *parts)).encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass
class SmearObjects:
    """Objects of the smear in a region, for one pass (slide coordinates)."""

    rbcs: np.ndarray = field(default_factory=lambda: np.zeros(0, RBC_DTYPE))
    platelets: np.ndarray = field(default_factory=lambda: np.zeros(0, PLATELET_DTYPE))
    wbcs: list[WhiteCell] = field(default_factory=list)
    debris: list[Debris] = field(default_factory=list)


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
        return self._after_staining(objects) if pass_ != "unstained" else objects

    # ------------------------------------------------------------------ staining moves
    def pass_offsets(
        self, ids: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How staining moved and lost cells: ``(dx, dy, lost)`` per object (slide µm).

        Fixing, staining and rinsing deform the film: a smooth displacement field (a few
        random modes, 40-150 µm wavelengths, RMS ``0.6 x cell_displacement_um``), plus each
        cell's own jitter (10 % of ``cell_displacement_um`` RMS); rinsing washes a few cells
        off (``cell_loss_fraction``). ``x, y`` are the unstained slide positions. The stained
        and highres passes image the same stained slide, so they share these; the unstained
        pass is the reference.
        """
        ids = np.asarray(ids, dtype=np.int64)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        cfg = self.config
        amp = cfg.cell_displacement_um
        salt = np.uint64(int.from_bytes(self._rng("staining").bytes(8), "little"))
        keys = ids.astype(np.uint64) ^ salt
        dx = np.zeros(ids.shape)
        dy = np.zeros(ids.shape)
        if amp > 0:
            for kx, ky, ax, ay, ph in self._staining_modes:
                wave = np.cos(kx * x + ky * y + ph)
                dx += ax * wave
                dy += ay * wave
            dx *= amp
            dy *= amp
            jitter = 0.1 * amp
            dx += jitter * _hash_normal(keys, 1)
            dy += jitter * _hash_normal(keys, 3)
        lost = _hash_uniform(keys, 5) < cfg.cell_loss_fraction
        return dx, dy, lost

    @property
    def _staining_modes(self) -> np.ndarray:
        """Modes ``(kx, ky, ax, ay, phase)`` of the staining field, unit RMS of 0.6 overall."""
        if not hasattr(self, "_modes"):
            rng = self._rng("staining-field")
            n = 6
            lam = rng.uniform(40.0, 150.0, n)
            ang = rng.uniform(0, 2 * np.pi, n)
            k = 2 * np.pi / lam
            a = rng.normal(0.0, 1.0, (n, 2))
            # RMS of |D| = sqrt(sum(|a|²)/2) -> scale to 0.6
            a *= 0.6 / math.sqrt(float(np.sum(a * a)) / 2)
            self._modes = np.column_stack(
                [k * np.cos(ang), k * np.sin(ang), a[:, 0], a[:, 1], rng.uniform(0, 2 * np.pi, n)]
            )
        return self._modes

    def _after_staining(self, objects: SmearObjects) -> SmearObjects:
        out = SmearObjects(debris=objects.debris)
        for name in ("rbcs", "platelets"):
            recs = getattr(objects, name)
            dx, dy, lost = self.pass_offsets(recs["id"], recs["x"], recs["y"])
            moved = recs[~lost].copy()
            moved["x"] += dx[~lost]
            moved["y"] += dy[~lost]
            setattr(out, name, moved)
        if objects.wbcs:
            dx, dy, lost = self.pass_offsets(
                np.array([c.id for c in objects.wbcs]),
                np.array([c.x for c in objects.wbcs]),
                np.array([c.y for c in objects.wbcs]),
            )
            out.wbcs = [
                dataclasses.replace(c, x=c.x + float(dx[k]), y=c.y + float(dy[k]))
                for k, c in enumerate(objects.wbcs)
                if not lost[k]
            ]
        return out

    def film_texture(
        self, xmin: float, xmax: float, ymin: float, ymax: float, *, pass_: str = "unstained"
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Optical-path texture (µm) of the dried plasma film over a slide rectangle.

        Returns ``(texture, cells, x_origin, y_origin)``: float32 lattices with spacing
        :data:`FILM_STEP_UM` whose sample ``[i, j]`` sits at slide
        ``(x_origin + j * step, y_origin + i * step)``. The texture is white noise drawn per
        tile and low-passed at two correlation lengths (0.3 and 1.5 µm), so any region gives
        the same values where regions overlap; its RMS is ``config.plasma_film_opd_nm``.
        Fixing and staining redissolve and redeposit part of the film: in the stained and
        highres passes (one stained slide) the film's noise is ``c`` times the unstained
        one's plus ``sqrt(1 - c²)`` times its own, ``c`` = ``config.film_pass_correlation``.
        ``cells`` is a unit-RMS texture with a 0.15 µm correlation length from the unstained
        draw: the relative dry-mass texture of the cells lying on the film (the cells keep it).
        """
        rms = self.config.plasma_film_opd_nm * 1e-3
        step = FILM_STEP_UM
        pad = 8.0  # µm: more than the filters' reach
        ix0, ix1 = math.floor((xmin - pad) / TILE_UM), math.floor((xmax + pad) / TILE_UM)
        iy0, iy1 = math.floor((ymin - pad) / TILE_UM), math.floor((ymax + pad) / TILE_UM)
        j0 = math.floor((xmin - pad - ix0 * TILE_UM) / step)
        j1 = math.ceil((xmax + pad - ix0 * TILE_UM) / step)
        i0 = math.floor((ymin - pad - iy0 * TILE_UM) / step)
        i1 = math.ceil((ymax + pad - iy0 * TILE_UM) / step)
        region = (ix0, ix1, iy0, iy1, i0, i1, j0, j1)
        noise = self._tiled_noise("film", region)
        film = noise
        c = self.config.film_pass_correlation
        if pass_ != "unstained" and c < 1.0:
            own = self._tiled_noise("film-stained", region)
            film = noise * np.float32(c) + own * np.float32(math.sqrt(1.0 - c * c))
        fine = cv2.GaussianBlur(film, (0, 0), 0.3 / step)
        coarse = cv2.GaussianBlur(film, (0, 0), 1.5 / step)
        # unit variance for each scale (a Gaussian filter of white noise: var = 1/(4 pi s^2))
        fine *= np.float32(math.sqrt(4 * math.pi) * 0.3 / step)
        coarse *= np.float32(math.sqrt(4 * math.pi) * 1.5 / step)
        texture = (fine + coarse) * np.float32(rms / math.sqrt(2.0))
        # the cells' sub-µm texture: 0.15 µm correlation, unit variance (exact for the kernel)
        sig = CELL_TEXTURE_UM / step
        kern = cv2.getGaussianKernel(2 * math.ceil(3 * sig) + 1, sig).astype(np.float64)
        cells = cv2.sepFilter2D(noise, cv2.CV_32F, kern, kern)
        cells *= np.float32(1.0 / float(np.sum(kern**2)))
        return texture, cells, ix0 * TILE_UM + j0 * step, iy0 * TILE_UM + i0 * step

    def _tiled_noise(self, name: str, region: tuple) -> np.ndarray:
        """Unit white noise on the film lattice over ``region``, drawn per tile as ``name``."""
        ix0, ix1, iy0, iy1, i0, i1, j0, j1 = region
        n = round(TILE_UM / FILM_STEP_UM)
        noise = np.empty((i1 - i0, j1 - j0), np.float32)
        for iy in range(iy0, iy1 + 1):
            for ix in range(ix0, ix1 + 1):
                # this tile's rows/columns within the region
                r0, r1 = max(i0, (iy - iy0) * n), min(i1, (iy - iy0 + 1) * n)
                c0, c1 = max(j0, (ix - ix0) * n), min(j1, (ix - ix0 + 1) * n)
                if r0 >= r1 or c0 >= c1:
                    continue
                tile = self._rng(name, ix, iy).standard_normal((n, n), dtype=np.float32)
                ty, tx = (iy - iy0) * n, (ix - ix0) * n
                noise[r0 - i0 : r1 - i0, c0 - j0 : c1 - j0] = tile[
                    r0 - ty : r1 - ty, c0 - tx : c1 - tx
                ]
        return noise

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
        return seeded_rng(self.slide, self.seed, *parts)

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
        """Random sequential adsorption of red cells in one tile: (cells, packing marks)."""
        rng = self._rng("rbc", ix, iy)
        coverage = self._coverage_at((ix + 0.5) * TILE_UM, (iy + 0.5) * TILE_UM)
        r_mean = 3.8
        # overlapping neighbours: the discs' summed area is about 1.19x the area they cover
        n_target = round(1.19 * coverage * TILE_UM**2 / (math.pi * r_mean**2 * 1.005))
        n_try = 10 * n_target + 10
        xs = (ix + rng.random(n_try)) * TILE_UM
        ys = (iy + rng.random(n_try)) * TILE_UM
        rs = np.clip(rng.normal(r_mean, 0.22, n_try), 3.2, 4.4)
        marks = rng.random(n_try)
        # keep clear of WBC nuclei: touching the WBC edge slightly is allowed
        wbcs = self._wbcs_near(ix, iy)
        ok = np.ones(n_try, bool)
        for w in wbcs:
            ok &= np.hypot(xs - w["x"], ys - w["y"]) >= w["r"] + rs - _RBC_WBC_OVERLAP_UM
        cell = 2 * 4.4
        grid: dict[tuple[int, int], list[int]] = {}
        accepted: list[int] = []
        for i in np.flatnonzero(ok):
            if len(accepted) >= n_target:
                break
            gx, gy = int(xs[i] // cell), int(ys[i] // cell)
            x, y, r = xs[i], ys[i], rs[i]
            clash = False
            for jx in (gx - 1, gx, gx + 1):
                for jy in (gy - 1, gy, gy + 1):
                    for j in grid.get((jx, jy), ()):
                        if (xs[j] - x) ** 2 + (ys[j] - y) ** 2 < (rs[j] + r - _RBC_OVERLAP_UM) ** 2:
                            clash = True
                            break
                    if clash:
                        break
                if clash:
                    break
            if not clash:
                grid.setdefault((gx, gy), []).append(int(i))
                accepted.append(int(i))
        idx = np.array(accepted, dtype=np.int64)
        out = np.zeros(idx.size, RBC_DTYPE)
        out["id"] = [object_id("rbc", ix, iy, int(i)) for i in idx]
        out["x"], out["y"], out["radius"] = xs[idx], ys[idx], rs[idx]
        return out, marks[idx]

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
        keep = np.ones(own.size, bool)
        if others.size and own.size:
            tree = cKDTree(np.column_stack([others["x"], others["y"]]))
            pts = np.column_stack([own["x"], own["y"]])
            for k, hits in enumerate(tree.query_ball_point(pts, r=2 * 4.4)):
                for j in hits:
                    d = math.hypot(others["x"][j] - own["x"][k], others["y"][j] - own["y"][k])
                    if (
                        d < own["radius"][k] + others["radius"][j] - _RBC_OVERLAP_UM
                        and other_marks[j] > own_marks[k]
                    ):
                        keep[k] = False
                        break
        out = own[keep].copy()
        rng = self._rng("rbc-shape", ix, iy)
        n = out.size
        out["aspect"] = rng.uniform(0.88, 1.0, n)
        out["angle"] = rng.uniform(0, math.pi, n)
        out["mass"] = self.config.rbc_hb_pg * rng.uniform(0.9, 1.1, n)
        out["pallor"] = rng.uniform(0.45, 1.2, n)
        # dried red cells keep their size (and the overlaps of neighbours) through fixing
        # and staining; drawn anyway so the random stream does not depend on it
        rng.uniform(*self.config.stain_shrinkage, n)
        out["shrink"] = 1.0
        # crenation (echinocytes: a drying artifact, so in every pass): 10-20 spicules
        crenate = self._rng("rbc-crenation", ix, iy)
        hit = crenate.random(n) < self.config.crenated_fraction
        out["spicules"] = np.where(hit, crenate.integers(10, 21, n), 0)
        out["spicule_phase"] = crenate.uniform(0, 2 * math.pi, n)
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

        debris: list[Debris] = []
        debris += self._debris(ix, iy, "dirt", "dirt", "", cfg.dirt_per_field, wbcs, near=0.0)
        debris += self._debris(
            ix, iy, "dirt1", "dirt", "unstained", cfg.faults.unstained_dirt_per_field, wbcs, 0.5
        )
        debris += self._debris(
            ix,
            iy,
            "artifact",
            "artifact",
            "stained",
            cfg.faults.stained_artifacts_per_field,
            wbcs,
            0.5,
        )
        debris += self._debris(
            ix,
            iy,
            "precipitate",
            "artifact",
            "stained",
            cfg.precipitate_per_field,
            wbcs,
            0.0,
            kind="precipitate",
        )
        debris += self._debris(
            ix, iy, "smudge", "smudge", "", cfg.smudge_per_field, wbcs, 0.0, kind="smudge"
        )
        return _Tile(rbcs=rbcs, platelets=plt, wbcs=wbcs, debris=tuple(debris))

    def _debris(
        self,
        ix: int,
        iy: int,
        code: str,
        type_: str,
        pass_: str,
        per_field: float,
        wbcs: tuple[WhiteCell, ...],
        near: float,
        kind: str | None = None,
    ) -> list[Debris]:
        if per_field <= 0:
            return []
        rng = self._rng(code, ix, iy)
        n = rng.poisson(per_field * self._per_tile)
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


def _hash_uniform(keys: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers from uint64 keys (splitmix64), one stream per ``stream``."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(0x9E3779B97F4A7C15) * np.uint64(stream + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _hash_normal(keys: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal numbers from uint64 keys (Box–Muller on two hashed uniforms)."""
    u1 = np.maximum(_hash_uniform(keys, stream), 1e-12)
    u2 = _hash_uniform(keys, stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)
