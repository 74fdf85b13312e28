"""Discriminators (critics) for the relativistic paired GAN.

- :class:`VGGDiscriminator` — the thesis's Fig. 3.8, a VGG-128-style CNN: three blocks of
  (3x3 conv stride 1, 4x4 conv stride 2) with filters doubling per block, flattened (4096
  values for 64x64 crops: 8·8·64) and two fully connected layers down to one critic value.
  Spectral normalisation (Miyato et al. 2018) on every layer replaces batch norm.
- :class:`PatchDiscriminator` — a conditional pix2pix PatchGAN (Isola et al. 2017): the
  stained image concatenated with the PLS stack, one critic value per overlapping patch.

Both return raw critic values ``C(x)`` (no sigmoid); the loss applies the relativistic
sigmoid (:mod:`training.losses`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

DiscriminatorArch = Literal["vgg", "patch"]


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


class VGGDiscriminator(nn.Module):
    """VGG-128-style critic with spectral normalisation.

    Parameters
    ----------
    crop_size
        Side of the square input images (must be divisible by 8).
    in_channels
        3 for an RGB image.
    base_features
        Filters of the first block, doubled per block (thesis: 16 → 32 → 64, flattening
        64x64 crops to 4096 values).
    hidden
        Width of the first fully connected layer (ESRGAN's VGG-128 uses 100).
    spectral
        Spectral normalisation on every layer.
    """

    conditional = False

    def __init__(
        self,
        *,
        crop_size: int = 64,
        in_channels: int = 3,
        base_features: int = 16,
        hidden: int = 100,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if crop_size < 8 or crop_size % 8:
            raise ValueError(f"crop_size must be a positive multiple of 8, got {crop_size}")
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(3):
            cout = base_features * 2**i
            layers += [
                _sn(nn.Conv2d(cin, cout, 3, 1, 1), spectral),
                nn.LeakyReLU(0.2, inplace=True),
                _sn(nn.Conv2d(cout, cout, 4, 2, 1), spectral),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = cin * (crop_size // 8) ** 2
        self.classifier = nn.Sequential(
            _sn(nn.Linear(flat, hidden), spectral),
            nn.LeakyReLU(0.2, inplace=True),
            _sn(nn.Linear(hidden, 1), spectral),
        )
        self.flat_features = flat

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Critic values ``(B, 1)`` of images ``(B, 3, h, w)``; ``condition`` is ignored."""
        return self.classifier(torch.flatten(self.features(image), 1))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN critic (pix2pix's 70x70 design, spectral norm instead of BN).

    Parameters
    ----------
    condition_channels
        Channels of the PLS stack the critic is conditioned on.
    in_channels
        3 for an RGB image.
    base_features
        Filters of the first layer (pix2pix: 64), doubled per layer up to ``8·base``.
    layers
        Stride-2 layers (pix2pix: 3).
    spectral
        Spectral normalisation on every convolution.
    """

    conditional = True

    def __init__(
        self,
        condition_channels: int,
        *,
        in_channels: int = 3,
        base_features: int = 64,
        layers: int = 3,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        cin = in_channels + condition_channels
        mods: list[nn.Module] = []
        for i in range(layers + 1):
            cout = base_features * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [_sn(nn.Conv2d(cin, cout, 4, stride, 1), spectral), nn.LeakyReLU(0.2, True)]
            cin = cout
        mods.append(_sn(nn.Conv2d(cin, 1, 4, 1, 1), spectral))
        self.net = nn.Sequential(*mods)

    def forward(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Patch critic values ``(B, 1, h', w')`` of ``image`` given the stack ``condition``."""
        if condition is None:
            raise ValueError("the conditional PatchGAN needs the PLS stack as condition")
        return self.net(torch.cat((image, condition.to(image.dtype)), 1))


def build_discriminator(
    arch: DiscriminatorArch, *, crop_size: int, condition_channels: int, image_channels: int = 3
) -> nn.Module:
    """A critic by name: ``vgg`` (thesis) or ``patch`` (conditional PatchGAN).

    ``image_channels`` is the target's channel count (3 for a stain, k for fluorescence).
    """
    if arch == "vgg":
        return VGGDiscriminator(crop_size=crop_size, in_channels=image_channels)
    if arch == "patch":
        return PatchDiscriminator(condition_channels, in_channels=image_channels)
    raise ValueError(f"unknown discriminator {arch!r}; choose vgg or patch")
