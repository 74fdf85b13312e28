"""Per-image quality metrics on ``(B, 3, h, w)`` float images in [0, 1], batched on any device.

- **SSIM** — Wang et al. (2004) as scikit-image computes it with
  ``structural_similarity(..., channel_axis=-1, data_range=1.0, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``: an 11x11 Gaussian window (σ = 1.5, truncated at
  3.5σ), K1 = 0.01, K2 = 0.03, data range 1.0, averaged over the window positions that lie
  wholly inside the image (a 5-pixel border is excluded) and over the RGB channels. The test
  suite checks this implementation against scikit-image.
- **PSNR** — ``10·log10(1 / MSE)`` in dB per image (data range 1.0; capped at 100 dB).
- **MAE** — mean absolute error per image.
- **Fourier** — the Fourier loss per image (orthonormal FFT magnitudes, :mod:`training.losses`).
- **VGG** — the perceptual loss per image (L1 of conv5_4 features) when weights exist.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import fourier_magnitude
from training.vgg import VGGFeatureExtractor

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PSNR_CAP_DB = 100.0
METRIC_NAMES = ("ssim", "psnr", "mae", "fourier", "vgg")


def gaussian_kernel1d(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> torch.Tensor:
    """scipy's normalised 1-D Gaussian of radius ``int(truncate·sigma + 0.5)`` (11 taps)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(
    prediction: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0
) -> torch.Tensor:
    """Mean SSIM of each image pair: ``(B, C, h, w)`` → ``(B,)`` (see module docstring)."""
    x = prediction.double()
    y = target.double()
    _b, c, h, w = x.shape
    k1 = gaussian_kernel1d().to(x.device)
    r = len(k1)
    if h < r or w < r:
        raise ValueError(f"SSIM needs images of at least {r}x{r} pixels, got {h}x{w}")
    kx = k1.view(1, 1, 1, r).expand(c * 5, 1, 1, r)
    ky = k1.view(1, 1, r, 1).expand(c * 5, 1, r, 1)
    stacked = torch.cat((x, y, x * x, y * y, x * y), 1)  # (B, 5C, h, w)
    filt = F.conv2d(F.conv2d(stacked, kx, groups=c * 5), ky, groups=c * 5)
    ux, uy, uxx, uyy, uxy = filt.split(c, 1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image for data range 1 (``(B,)``), capped at 100 dB."""
    mse = (prediction.double() - target.double()).pow(2).mean(dim=(1, 2, 3))
    floor = 10 ** (-PSNR_CAP_DB / 10)
    return (10 * torch.log10(1.0 / mse.clamp_min(floor))).float()


def mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image (``(B,)``)."""
    return (prediction.float() - target.float()).abs().mean(dim=(1, 2, 3))


def fourier(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fourier loss per image (``(B,)``)."""
    diff = fourier_magnitude(prediction) - fourier_magnitude(target)
    return diff.abs().mean(dim=(1, 2, 3))


@torch.no_grad()
def image_metrics(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    vgg: VGGFeatureExtractor | None = None,
) -> dict[str, torch.Tensor]:
    """Every metric per image; ``prediction`` is clipped to [0, 1] first (as saved)."""
    p = prediction.float().clamp(0.0, 1.0)
    t = target.float()
    out = {"ssim": ssim(p, t), "psnr": psnr(p, t), "mae": mae(p, t), "fourier": fourier(p, t)}
    if vgg is not None:
        fp = vgg(p).float()
        ft = vgg(t).float()
        out["vgg"] = (fp - ft).abs().mean(dim=(1, 2, 3))
    return out
