"""One optimisation step: the generator-only models and the relativistic paired GAN.

Spelled out as in BasicSR: the generator step with the critic frozen (content terms plus
``λ3 · L_G^RpGAN``), then the critic step on the detached fakes. Real and fake images go
through the critic as one batch (no batch statistics exist in a spectrally normalised
critic, so this equals two passes and halves the kernel launches). Every loss is multiplied by
``scale`` before ``backward`` (:class:`training.batches.EpochPlan`), so averaging gradients over
processes gives the global-batch mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from training.losses import (
    GeneratorLoss,
    rpgan_discriminator_loss,
    rpgan_generator_loss,
    vanilla_discriminator_loss,
    vanilla_generator_loss,
)

AutocastFactory = Callable[[], contextlib.AbstractContextManager]


#: GAN objective → (generator loss, critic loss), both of ``(C(real), C(fake))``
_GAN_LOSSES = {
    "relativistic": (rpgan_generator_loss, rpgan_discriminator_loss),
    "vanilla": (vanilla_generator_loss, vanilla_discriminator_loss),
}


def no_autocast() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    inner = getattr(module, "module", module)
    return getattr(inner, "_orig_mod", inner)


def generator_step(
    generator: nn.Module,
    content_loss: GeneratorLoss,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    scale: float = 1.0,
    autocast: AutocastFactory = no_autocast,
) -> dict[str, torch.Tensor]:
    """Update the generator on one batch; returns detached loss terms (``loss`` = total).

    Parameters
    ----------
    x
        Network input ``(B, 3n, h, w)`` in [0, 1].
    y
        Target ``(B, 3, h, w)`` in [0, 1].
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        prediction = generator(x)
        # L1 and Fourier terms compute in float32 inside; VGG features may run in bf16
        total, terms = content_loss(prediction, y)
    (total * scale).backward()
    optimizer.step()
    return {"loss": total.detach(), **terms}


def critic_pair(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``C(x_r), C(x_f)`` from one pass over ``[real; fake]`` (conditioned when the critic is)."""
    cond = torch.cat((condition, condition), 0) if _unwrap(critic).conditional else None
    out = critic(torch.cat((real, fake), 0), cond).float()
    c_real, c_fake = out.chunk(2, 0)
    return c_real, c_fake


def gan_step(
    generator: nn.Module,
    critic: nn.Module,
    content_loss: GeneratorLoss,
    gan_weight: float,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    scale: float = 1.0,
    autocast: AutocastFactory = no_autocast,
    gan_loss: str = "relativistic",
) -> dict[str, torch.Tensor]:
    """One GAN step (relativistic paired, or pix2pix's ``vanilla``): generator, then critic.

    ``L_G = content + gan_weight · (−mean log σ(C(x_f) − C(x_r)))`` and
    ``L_D = −mean log σ(C(x_r) − C(x_f))`` with each real image paired with its own fake.
    The generator's critic pass uses the unwrapped critic, so DistributedDataParallel does
    not expect critic gradients in the generator's backward.

    Returns detached terms: ``loss`` (generator total), content terms, ``gan`` (generator
    adversarial term) and ``d`` (critic loss).
    """
    plain_critic = _unwrap(critic)
    # -- generator -----------------------------------------------------------------------
    for p in plain_critic.parameters():
        p.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    with autocast():
        fake = generator(x)
        content, terms = content_loss(fake, y)
    with autocast():
        c_real, c_fake = critic_pair(plain_critic, y.to(fake.dtype), fake, x)
    g_loss, d_loss_fn = _GAN_LOSSES[gan_loss]
    g_adv = g_loss(c_real, c_fake)
    total = content + gan_weight * g_adv
    (total * scale).backward()
    opt_g.step()
    # -- critic --------------------------------------------------------------------------
    for p in plain_critic.parameters():
        p.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    with autocast():
        c_real, c_fake = critic_pair(critic, y.to(fake.dtype), fake.detach(), x)
    d_loss = d_loss_fn(c_real, c_fake)
    (d_loss * scale).backward()
    opt_d.step()
    return {"loss": total.detach(), **terms, "gan": g_adv.detach(), "d": d_loss.detach()}
