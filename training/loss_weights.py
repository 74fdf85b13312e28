"""The weights of a generator objective (no torch here: the CLI reads presets at start-up)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator objective ``L1 + λ1·perceptual + λ2·Fourier + λ3·GAN``."""

    l1: float = 1.0
    perceptual: float = 0.0
    fourier: float = 0.0
    gan: float = 0.0
