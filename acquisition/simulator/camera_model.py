"""The simulated camera: photo-electrons to 8-bit RGB, and the mounting orientation
(the one convention of :mod:`acquisition.geometry`).

Signal chain per pixel and colour: ``e`` photo-electrons (clipped at the full well), shot
noise (Gaussian approximation, variance ``e``), read noise (``read_noise_e`` RMS), all
amplified by the gain into DN with ``255 / full_well_e`` DN per electron at gain 1, plus the
black level; then rounding and saturation to 0..255.

Noise is drawn from a pre-drawn pool of standard normals (float32): each frame mixes two
slices at offsets chosen by the frame's key, ``n = cos a · pool[o1:] + sin a · pool[o2:]``, so
the same key gives the same noise, distinct keys give independent-looking noise and no frame
is a shifted copy of another's.
"""

from __future__ import annotations

import hashlib
import math
import threading

import cv2
import numpy as np

from acquisition.geometry import Orientation
from hardware_profiles.schema import Camera

_POOL_SEED = 20220601
#: Fixed pool size (64 MB of float32). It must not depend on what a process rendered before:
#: the slice offsets are taken modulo it, so a pool that grew on demand would give the same
#: frame different noise after a larger frame had been rendered (a re-imaged field would not
#: be identical).
_POOL_SIZE = 1 << 24
#: Frames with more samples than this draw their noise in chunks.
_CHUNK = _POOL_SIZE // 4
_pool_lock = threading.Lock()
_pool: np.ndarray | None = None


def _noise_pool() -> np.ndarray:
    """The shared pool of standard normals (float32), drawn once per process."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = np.random.default_rng(_POOL_SEED).standard_normal(_POOL_SIZE, dtype=np.float32)
        return _pool


def frame_key(*parts: object) -> int:
    """A 64-bit key from anything with a stable ``repr`` (process independent)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _noise_slices(n: int, key: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Two distinct slices of the pool and a mixing angle, all chosen by ``key``."""
    pool = _noise_pool()
    span = pool.size - n
    o1 = key % span
    o2 = (o1 + n // 2 + 1 + (key >> 24) % (span - n)) % span  # never the same slice as o1
    angle = ((key >> 40) % 100_000) / 100_000 * 2 * math.pi
    return pool[o1 : o1 + n], pool[o2 : o2 + n], angle


def _mix(n: int, key: int) -> np.ndarray:
    a, b, angle = _noise_slices(n, key)
    out = a * np.float32(math.cos(angle))
    out += b * np.float32(math.sin(angle))
    return out


def standard_normal(shape: tuple[int, ...], key: int) -> np.ndarray:
    """Standard normal noise of ``shape`` (float32), a deterministic function of ``key``."""
    n = math.prod(shape)
    if n <= _CHUNK:
        return _mix(n, key).reshape(shape)
    out = np.empty(n, dtype=np.float32)
    for i, start in enumerate(range(0, n, _CHUNK)):
        stop = min(n, start + _CHUNK)
        out[start:stop] = _mix(stop - start, frame_key(key, i))
    return out.reshape(shape)


def expose(
    electrons: np.ndarray,
    *,
    gain: float,
    full_well_e: float,
    read_noise_e: float,
    black_level_dn: float,
    key: int | None,
) -> np.ndarray:
    """Digitise a photo-electron image into uint8 DN.

    Parameters
    ----------
    electrons
        ``(H, W, 3)`` float32 mean photo-electrons per pixel, non-negative (overwritten).
    gain
        Analogue gain (1 = ``full_well_e`` fills 255 DN).
    full_well_e, read_noise_e, black_level_dn
        Sensor constants (see :class:`~acquisition.simulator.config.SimConfig`).
    key
        Noise key (:func:`frame_key`); ``None`` gives the noiseless image.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, rounded and saturated.
    """
    shape = electrons.shape
    flat = electrons.reshape(-1, 1)  # OpenCV runs these passes threaded and vectorised
    cv2.min(flat, full_well_e, dst=flat)
    dn_per_e = 255.0 / full_well_e * gain
    if key is None:
        dn = flat * np.float32(dn_per_e)
    else:
        # std in electrons: sqrt(shot (= e) + read²); noise scaled to DN in the mix
        std = cv2.add(flat, read_noise_e**2)
        cv2.sqrt(std, dst=std)
        a, b, angle = _noise_slices(flat.size, key)
        noise = cv2.addWeighted(
            a.reshape(-1, 1),
            dn_per_e * math.cos(angle),
            b.reshape(-1, 1),
            dn_per_e * math.sin(angle),
            0.0,
        )
        cv2.multiply(std, noise, dst=std)
        dn = cv2.scaleAdd(flat, dn_per_e, std)
    # + black level, rounded and saturated to 0..255 (values below -black clip to 0 first)
    cv2.max(dn, -black_level_dn, dst=dn)
    return cv2.convertScaleAbs(dn, alpha=1.0, beta=black_level_dn).reshape(shape)


def bayer_mosaic(image: np.ndarray) -> np.ndarray:
    """The ``(H, W)`` RGGB Bayer mosaic of an ``(H, W, 3)`` image: R at even rows and
    columns, B at odd rows and columns, G elsewhere (a copy)."""
    mosaic = image[:, :, 1].copy()
    mosaic[0::2, 0::2] = image[0::2, 0::2, 0]
    mosaic[1::2, 1::2] = image[1::2, 1::2, 2]
    return mosaic


def demosaic(mosaic: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from an RGGB mosaic (OpenCV's edge-aware demosaicing).

    OpenCV names Bayer patterns from the second row and column, so RGGB is its ``BG``.
    """
    return cv2.cvtColor(mosaic, cv2.COLOR_BayerBG2RGB_EA)


def to_camera_orientation(image: np.ndarray, camera: Camera) -> np.ndarray:
    """Turn a stage-aligned image into the orientation the camera delivers
    (:meth:`acquisition.geometry.Orientation.to_device`); :func:`from_camera_orientation`
    undoes it."""
    return Orientation.of(camera).to_device(image)


def from_camera_orientation(image: np.ndarray, camera: Camera) -> np.ndarray:
    """Inverse of :func:`to_camera_orientation`: a raw frame back to the stage orientation."""
    return Orientation.of(camera).to_stage(image)


def stage_aligned_size(width: int, height: int, camera: Camera) -> tuple[int, int]:
    """``(width, height)`` of the stage-aligned image behind a raw ``width x height`` frame."""
    return Orientation.of(camera).stage_size(width, height)
