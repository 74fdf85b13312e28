"""The virtual blood smear: an endless, seeded catalogue of cells in slide coordinates (µm).

The slide is cut into square tiles of :data:`TILE_UM`. Everything in a tile is drawn from
random streams keyed by ``(slide, seed, what, tile)``, so any region of the slide is the same
in every pass, process and call order, and a field is generated lazily from the few tiles it
touches. What lives here is geometry only (where each object is, its shape, its nucleus and
granules); how it looks (refractive index, absorption, stains) is in :mod:`.sample`.

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
import itertools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree

from acquisition.simulator.config import WBC_TYPES, SimConfig

#: Side of a generation tile, µm.
TILE_UM = 256.0

#: Lattice spacing of the plasma-film texture, µm.
FILM_STEP_UM = 0.25
#: Correlation length of the cells' sub-µm texture (membrane folds, organelles), µm.
CELL_TEXTURE_UM = 0.15

#: Largest distance from an object's centre to any part of it, µm (for tile queries).
MAX_OBJECT_EXTENT_UM = 16.0

#: Red cells may overlap a neighbour by this much (µm) before packing rejects them: at 55-65 %
#: coverage neighbours touch and deform.
_RBC_OVERLAP_UM = 1.4
#: Red cells may overlap a WBC's edge by this much (µm), never reaching its nucleus.
_RBC_WBC_OVERLAP_UM = 1.2

#: Cell radius range (µm) per WBC type: smear diameters of 10-15 µm.
_WBC_RADIUS_UM = {
    "neutrophil": (5.8, 7.0),
    "lymphocyte": (5.0, 5.9),
    "monocyte": (6.6, 7.5),
    "eosinophil": (6.0, 7.0),
    "basophil": (5.5, 6.5),
}
_MEAN_WBC_RADIUS_UM = 6.3

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
    uptake: np.ndarray = field(default_factory=lambda: np.ones(4))
    decoys: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    patches: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


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
        d = 2 * _MEAN_WBC_RADIUS_UM + config.wbc_min_gap_um
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
            lo, hi = _WBC_RADIUS_UM[t]
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
            blobs = _debris_blobs(this, rng)
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


# ---------------------------------------------------------------------- shapes
def _debris_blobs(kind: str, rng: np.random.Generator) -> np.ndarray:
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
    lobes: list[tuple[float, float, float, float, float]] = []
    indent = np.zeros(0)
    thickness = rng.uniform(2.3, 2.8)
    nuc_thick = 0.8 * thickness
    if type_ == "neutrophil":
        n_lobes = int(rng.choice([2, 3, 4, 5], p=[0.12, 0.45, 0.33, 0.10]))
        arc_r = R * rng.uniform(0.35, 0.5)
        spacing = rng.uniform(2.3, 2.8)
        start = rng.uniform(0, 2 * math.pi)
        step = spacing / arc_r * rng.choice([-1, 1])
        centres = []
        for k in range(n_lobes):
            t = start + k * step + rng.normal(0, 0.12)
            centres.append((arc_r * math.cos(t), arc_r * math.sin(t)))
        centres = np.array(centres)
        centres -= centres.mean(axis=0) * 0.6
        for k, (cu, cv) in enumerate(centres):
            a = rng.uniform(1.25, 1.6)
            b = rng.uniform(0.9, 1.2)
            t = start + k * step
            lobes.append((cu, cv, a, b, t + math.pi / 2 + rng.normal(0, 0.3)))
        for (u0, v0), (u1, v1) in itertools.pairwise(centres):
            length = math.hypot(u1 - u0, v1 - v0)
            lobes.append(
                ((u0 + u1) / 2, (v0 + v1) / 2, length / 2, 0.28, math.atan2(v1 - v0, u1 - u0))
            )
        n_clumps, clump_sigma = 40, (0.25, 0.5)
    elif type_ == "lymphocyte":
        off = rng.normal(0, 0.08 * R, 2)
        a, b = R * rng.uniform(0.76, 0.84), R * rng.uniform(0.70, 0.78)
        lobes.append((off[0], off[1], a, b, rng.uniform(0, math.pi)))
        if rng.random() < 0.3:
            t = rng.uniform(0, 2 * math.pi)
            d = 0.8 * R
            indent = np.array([off[0] + d * math.cos(t), off[1] + d * math.sin(t), 0.22 * R])
        thickness = rng.uniform(2.8, 3.3)
        nuc_thick = 0.9 * thickness
        n_clumps, clump_sigma = 45, (0.3, 0.6)
    elif type_ == "monocyte":
        a = R * rng.uniform(0.55, 0.65)
        b = R * rng.uniform(0.42, 0.5)
        ang = rng.uniform(0, 2 * math.pi)
        normal = np.array([-math.sin(ang), math.cos(ang)])  # the minor axis: the indent side
        centre = -0.12 * R * normal
        lobes.append((centre[0], centre[1], a, b, ang))
        cut = centre + b * rng.uniform(1.05, 1.3) * normal
        indent = np.array([cut[0], cut[1], b * rng.uniform(0.55, 0.75)])
        n_clumps, clump_sigma = 90, (0.15, 0.3)
        nuc_thick = 0.75 * thickness
    elif type_ == "eosinophil":
        ang = rng.uniform(0, 2 * math.pi)
        half = rng.uniform(1.6, 2.1)
        c, s = math.cos(ang), math.sin(ang)
        for sign in (-1, 1):
            lobes.append(
                (
                    sign * half * c,
                    sign * half * s,
                    rng.uniform(1.5, 1.9),
                    rng.uniform(1.15, 1.45),
                    ang + math.pi / 2 + rng.normal(0, 0.3),
                )
            )
        lobes.append((0.0, 0.0, half, 0.3, ang))
        n_clumps, clump_sigma = 32, (0.25, 0.45)
    else:  # basophil
        ang = rng.uniform(0, 2 * math.pi)
        c, s = math.cos(ang), math.sin(ang)
        for sign in (-1, 1):
            lobes.append(
                (
                    sign * 1.3 * c,
                    sign * 1.3 * s,
                    rng.uniform(1.7, 2.2),
                    rng.uniform(1.4, 1.8),
                    rng.uniform(0, math.pi),
                )
            )
        n_clumps, clump_sigma = 28, (0.25, 0.45)
        nuc_thick = 0.7 * thickness
    lobes_arr = np.array(lobes, dtype=np.float64)
    cell = WhiteCell(
        id=id,
        type=type_,
        x=x,
        y=y,
        radius=R,
        angle=float(rng.uniform(0, 2 * math.pi)),
        thickness=thickness,
        nucleus_thickness=nuc_thick,
        boundary=boundary,
        lobes=lobes_arr,
        indent=indent,
        clumps=np.zeros((0, 4)),
        granules=np.zeros((0, 3)),
        shrink=float(rng.uniform(*shrink_range)),
    )

    def in_nucleus(u, v):
        return nucleus_level(cell, u, v, 0.05) > 0.5

    def in_cytoplasm(u, v, margin=0.35):
        psi = np.arctan2(v, u)
        inside = np.hypot(u, v) < outline_radius(cell, psi) - margin
        return inside & (nucleus_level(cell, u, v, 0.05) < 0.05)

    pts = _place_in(rng, n_clumps, R, in_nucleus)
    clumps = np.column_stack(
        [pts, rng.uniform(*clump_sigma, len(pts)), rng.uniform(0.5, 1.0, len(pts))]
    )
    if type_ == "neutrophil":
        pts = _place_in(rng, int(rng.integers(120, 200)), R, in_cytoplasm)
        gran = np.column_stack([pts, rng.uniform(0.12, 0.2, len(pts))])
    elif type_ == "eosinophil":
        pts = _place_in(rng, int(rng.integers(110, 170)), R, lambda u, v: in_cytoplasm(u, v, 0.5))
        gran = np.column_stack([pts, rng.uniform(0.33, 0.45, len(pts))])
    elif type_ == "basophil":

        def anywhere(u, v):
            return np.hypot(u, v) < outline_radius(cell, np.arctan2(v, u)) - 0.5

        pts = _place_in(rng, int(rng.integers(35, 70)), R, anywhere)
        gran = np.column_stack([pts, rng.uniform(0.3, 0.55, len(pts))])
    elif type_ == "monocyte":
        pts = _place_in(rng, int(rng.integers(40, 80)), R, in_cytoplasm)
        gran = np.column_stack([pts, rng.uniform(0.1, 0.18, len(pts))])
    else:  # lymphocyte: a few azurophilic granules and organelles
        pts = _place_in(rng, int(rng.integers(4, 14)), R, in_cytoplasm)
        gran = np.column_stack([pts, rng.uniform(0.12, 0.2, len(pts))])
    # compartment-blind sub-µm bodies (organelles, folds): the same density in every type
    n_decoys = round(120 * (R / _MEAN_WBC_RADIUS_UM) ** 2)
    pts = _place_in(
        rng, n_decoys, R, lambda u, v: np.hypot(u, v) < outline_radius(cell, np.arctan2(v, u)) - 0.3
    )
    decoys = np.column_stack([pts, rng.uniform(0.12, 0.3, len(pts))])
    pts = _place_in(rng, 24, R, in_cytoplasm)
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
    return dataclasses.replace(cell, volume=volume, nucleus_volume=nucleus_volume)


def _mean_radius(type_: str) -> float:
    lo, hi = _WBC_RADIUS_UM[type_]
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
