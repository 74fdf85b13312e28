"""What the GPU benchmark's stages share: device sync, timed repeats, the seeded generator,
the perceptual loss on untrained VGG19 features (``bench_training.py`` uses it too).

Like ``gpu_bench.py`` this imports only the standard library, torch and the network (GPU
machines have nothing else).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from training.losses import PerceptualLoss
from training.models import RRDBGenerator
from training.vgg import VGGFeatureExtractor, vgg19_features

#: The thesis's network for ``full-nohe`` (44 images) and a tiny one for ``--quick``.
THESIS = {"images": 44, "blocks": 4}
QUICK = {"images": 4, "blocks": 1}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``, each ended by a device sync."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def seeded_generator(
    n_images: int, blocks: int, device: torch.device, channels_last: bool
) -> torch.nn.Module:
    """The RRDB generator for ``n_images`` images, random weights from seed 0."""
    torch.manual_seed(0)
    gen = RRDBGenerator(3 * n_images, blocks=blocks).to(device)
    return gen.to(memory_format=torch.channels_last) if channels_last else gen


def random_perceptual_loss(device: torch.device, channels_last: bool) -> PerceptualLoss:
    """A perceptual loss on frozen VGG19 features with random weights (speed only: the
    pretrained weights would be a download, and the time does not depend on them)."""
    feats = vgg19_features().eval()
    for p in feats.parameters():
        p.requires_grad_(False)
    vgg = VGGFeatureExtractor(feats).to(device)
    if channels_last:
        vgg = vgg.to(memory_format=torch.channels_last)
    return PerceptualLoss(vgg)
