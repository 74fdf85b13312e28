"""Stable randomness for the virtual slide: keyed generators, object ids, hashed draws.

Everything random on the slide comes from a generator keyed by ``(slide, seed, labels...)``
(:func:`seeded_rng`) or from a hash of an object's id (:func:`hash_uniform`,
:func:`hash_normal`), so any region, pass, process and call order sees the same sample.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class SlideStreams:
    """The random streams of one slide: :meth:`rng` with the same labels gives the same
    generator in every process and call order."""

    slide: str
    seed: int

    def rng(self, *parts: object) -> np.random.Generator:
        """The generator labelled ``parts`` on this slide."""
        return seeded_rng(self.slide, self.seed, *parts)


def hash_uniform(keys: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers from uint64 keys (splitmix64), one stream per ``stream``."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(0x9E3779B97F4A7C15) * np.uint64(stream + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def hash_normal(keys: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal numbers from uint64 keys (Box–Muller on two hashed uniforms)."""
    u1 = np.maximum(hash_uniform(keys, stream), 1e-12)
    u2 = hash_uniform(keys, stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)
