"""Training presets: the thesis's four models (Table 3.2, §3.6), one explicit dict.

| preset | λ1 perceptual | λ2 Fourier | λ3 GAN | notes |
|---|---|---|---|---|
| maeNET | – | – | – | L1 only |
| maePNET | 0.0125 | – | – | the ablation study's model |
| maePFNET | 0.0125 | 0.0125 | – | best test metrics; recommended |
| maePF-RpGAN-SN | 0.0125 | 0.0125 | 0.005 | starts from a trained maePFNET |

All use Adam with betas (0.5, 0.9): generator lr 2e-4, discriminator lr 4e-4, both updated
once per batch of 20.

``pix2pix`` is Isola et al.'s conditional GAN ("Image-to-Image Translation with Conditional
Adversarial Networks") with its published defaults: U-Net generator, conditional 70x70-style
PatchGAN, the vanilla (cross-entropy) GAN loss plus 100·L1, Adam lr 2e-4 for both networks,
betas (0.5, 0.999), batch size 1. It is the model of the BSCCM LED-array → fluorescence
studies; it needs no VGG weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.errors import TrainingError
from training.loss_weights import LossWeights

ADAM_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class TrainingPreset:
    """Loss weights and optimiser settings of one named model."""

    name: str
    weights: LossWeights
    description: str
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = ADAM_BETAS
    batch_size: int = 20
    #: the generator must start from a trained (non-GAN) run (``--init-from``)
    needs_init: bool = False
    #: default architectures (``--generator``/``--discriminator`` override them)
    generator: str = "rrdb"
    discriminator: str = "vgg"
    #: ``relativistic`` (the thesis's paired RpGAN) or ``vanilla`` (pix2pix's cross-entropy)
    gan_loss: str = "relativistic"
    #: U-Net only: batch-normalise the 1x1 bottleneck (pix2pix does not)
    unet_innermost_norm: bool = True

    @property
    def gan(self) -> bool:
        return self.weights.gan > 0

    @property
    def needs_vgg(self) -> bool:
        return self.weights.perceptual > 0


PRESETS: dict[str, TrainingPreset] = {
    "maeNET": TrainingPreset("maeNET", LossWeights(), "L1 only (thesis §3.3.1)"),
    "maePNET": TrainingPreset(
        "maePNET", LossWeights(perceptual=0.0125), "L1 + 0.0125·VGG (thesis §3.3.2, ablation)"
    ),
    "maePFNET": TrainingPreset(
        "maePFNET",
        LossWeights(perceptual=0.0125, fourier=0.0125),
        "L1 + 0.0125·VGG + 0.0125·Fourier (thesis §3.3.3; recommended)",
    ),
    "maePF-RpGAN-SN": TrainingPreset(
        "maePF-RpGAN-SN",
        LossWeights(perceptual=0.0125, fourier=0.0125, gan=0.005),
        "maePFNET + 0.005·relativistic paired GAN, spectral-norm critic (thesis §3.4.1)",
        needs_init=True,
    ),
    "pix2pix": TrainingPreset(
        "pix2pix",
        LossWeights(l1=100.0, gan=1.0),
        "U-Net + conditional PatchGAN, GAN + 100·L1 (Isola et al.; BSCCM fluorescence)",
        lr_g=2e-4,
        lr_d=2e-4,
        betas=(0.5, 0.999),
        batch_size=1,
        generator="unet",
        discriminator="patch",
        gan_loss="vanilla",
        unet_innermost_norm=False,
    ),
}


def get_preset(name: str) -> TrainingPreset:
    """The preset called ``name`` (case-sensitive, as in the thesis)."""
    if name not in PRESETS:
        raise TrainingError(f"unknown training preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
