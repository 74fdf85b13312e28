"""Losses of the thesis (§2.2, §3.3–3.4); images are ``(B, 3, h, w)`` floats in [0, 1].

- :func:`l1_loss` — mean absolute error;
- :class:`PerceptualLoss` — L1 between VGG19 conv5_4 features before activation (ESRGAN),
  of ImageNet-normalised inputs;
- :func:`fourier_loss` — ``mean(| |FFT(y)| − |FFT(ŷ)| |)`` of the 2-D FFT per image and colour
  channel with orthonormal scaling (``norm="ortho"``, so the spectrum has the image's energy;
  the thesis's values, ~0.012 beside an MAE of ~0.046, fit this scaling);
- :func:`rpgan_discriminator_loss` / :func:`rpgan_generator_loss` — the relativistic paired
  GAN: ``L_D = −E log σ(C(x_r) − C(x_f))`` and ``L_G = −E log σ(C(x_f) − C(x_r))``, each real
  image paired with the fake made from its own stack.

:class:`GeneratorLoss` sums them with a preset's weights and returns every named term, so
the trainer can log each one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.loss_weights import LossWeights
from training.vgg import VGGFeatureExtractor


def l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all elements."""
    return F.l1_loss(prediction.float(), target.float())


def fourier_magnitude(image: torch.Tensor) -> torch.Tensor:
    """``|FFT2|`` of each image and channel with orthonormal scaling, computed in float32."""
    return torch.fft.fft2(image.float(), norm="ortho").abs()


def fourier_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean(| |FFT(target)| − |FFT(prediction)| |)`` over images, channels and frequencies."""
    return F.l1_loss(fourier_magnitude(prediction), fourier_magnitude(target))


class PerceptualLoss(nn.Module):
    """L1 distance between VGG19 conv5_4 features (before the ReLU) of two images.

    Parameters
    ----------
    extractor
        A :class:`training.vgg.VGGFeatureExtractor` with ImageNet weights.
    """

    def __init__(self, extractor: VGGFeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.extractor(target).float()
        return F.l1_loss(self.extractor(prediction).float(), target_features)


def rpgan_discriminator_loss(real_critic: torch.Tensor, fake_critic: torch.Tensor) -> torch.Tensor:
    """``−mean log σ(C(x_r) − C(x_f))`` (numerically stable as ``softplus(−(C_r − C_f))``)."""
    return F.softplus(-(real_critic.float() - fake_critic.float())).mean()


def rpgan_generator_loss(real_critic: torch.Tensor, fake_critic: torch.Tensor) -> torch.Tensor:
    """``−mean log σ(C(x_f) − C(x_r))``: the generator wants its fakes to look more real."""
    return F.softplus(-(fake_critic.float() - real_critic.float())).mean()


def vanilla_discriminator_loss(
    real_critic: torch.Tensor, fake_critic: torch.Tensor
) -> torch.Tensor:
    """pix2pix's ``−mean[log D(y) + log(1 − D(G(x)))]`` (logits; averaged over patches)."""
    real, fake = real_critic.float(), fake_critic.float()
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


def vanilla_generator_loss(real_critic: torch.Tensor, fake_critic: torch.Tensor) -> torch.Tensor:
    """The non-saturating ``−mean log D(G(x))`` (``real_critic`` unused)."""
    del real_critic
    return F.softplus(-fake_critic.float()).mean()


class GeneratorLoss(nn.Module):
    """The content part of a preset's generator objective (everything except the GAN term).

    Parameters
    ----------
    weights
        Term weights; a positive ``perceptual`` weight needs ``perceptual``.
    perceptual
        The VGG perceptual loss, or None when the preset does not use it.
    """

    def __init__(self, weights: LossWeights, perceptual: PerceptualLoss | None = None) -> None:
        super().__init__()
        if weights.perceptual > 0 and perceptual is None:
            raise ValueError("a positive perceptual weight needs a PerceptualLoss")
        self.weights = weights
        self.perceptual = perceptual

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total content loss and its named, unweighted terms (detached) for logging."""
        w = self.weights
        terms: dict[str, torch.Tensor] = {"l1": l1_loss(prediction, target)}
        total = w.l1 * terms["l1"]
        if w.perceptual > 0 and self.perceptual is not None:
            terms["perceptual"] = self.perceptual(prediction, target)
            total = total + w.perceptual * terms["perceptual"]
        if w.fourier > 0:
            terms["fourier"] = fourier_loss(prediction, target)
            total = total + w.fourier * terms["fourier"]
        return total, {k: v.detach() for k, v in terms.items()}
