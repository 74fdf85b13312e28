"""Losses, metrics and the VGG19 feature extractor against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from training.errors import VggWeightsError
from training.losses import (
    GeneratorLoss,
    LossWeights,
    PerceptualLoss,
    fourier_loss,
    l1_loss,
    rpgan_discriminator_loss,
    rpgan_generator_loss,
)
from training.metrics import image_metrics, psnr, ssim
from training.vgg import (
    CONV5_4,
    VGGFeatureExtractor,
    find_vgg_weights,
    load_vgg19_features,
    missing_weights_message,
    vgg19_features,
)


def test_l1_is_the_mean_absolute_difference():
    pred = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    target = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]])
    # |diffs| = 0.5, 0, 1, 0.25
    assert l1_loss(pred, target).item() == pytest.approx(0.4375)


def test_fourier_loss_uses_orthonormal_magnitudes():
    delta = torch.zeros(1, 1, 2, 2)
    delta[0, 0, 0, 0] = 1.0
    # orthonormal FFT of a 2x2 delta: four coefficients of magnitude 1/2
    assert fourier_loss(delta, torch.zeros_like(delta)).item() == pytest.approx(0.5)
    flat = torch.full((1, 1, 4, 4), 0.5)
    # constant 0.5 on 4x4: DC = 0.5·16/4 = 2, the other 15 coefficients 0 → mean 2/16
    assert fourier_loss(flat, torch.zeros_like(flat)).item() == pytest.approx(0.125)


def test_fourier_loss_ignores_circular_shifts_that_l1_sees():
    rng = torch.Generator().manual_seed(1)
    img = torch.rand(2, 3, 8, 8, generator=rng)
    shifted = torch.roll(img, shifts=(3, 2), dims=(2, 3))
    assert fourier_loss(shifted, img).item() < 1e-6
    assert l1_loss(shifted, img).item() > 0.1


def test_relativistic_paired_gan_losses():
    real = torch.tensor([[2.0], [0.0]])
    fake = torch.tensor([[0.0], [0.0]])
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    d = (-math.log(sig(2.0)) - math.log(sig(0.0))) / 2
    g = (-math.log(sig(-2.0)) - math.log(sig(0.0))) / 2
    assert rpgan_discriminator_loss(real, fake).item() == pytest.approx(d)  # 0.410038
    assert rpgan_generator_loss(real, fake).item() == pytest.approx(g)  # 1.410038
    # each real is paired with its own fake: swapping the pairing changes the loss
    assert rpgan_discriminator_loss(real, fake.flip(0)).item() == pytest.approx(d)
    assert rpgan_discriminator_loss(real, torch.tensor([[3.0], [0.0]])).item() != pytest.approx(d)


def _identity_vgg_state(conv5_4_bias: float = -1.0) -> dict[str, torch.Tensor]:
    """VGG19 weights that pass channel 0 through every conv (centre tap 1, rest 0)."""
    state = {}
    for key, tensor in vgg19_features(36).state_dict().items():
        t = torch.zeros_like(tensor)
        if key.endswith("weight"):
            t[0, 0, 1, 1] = 1.0
        state[f"features.{key}"] = t
    state[f"features.{CONV5_4}.bias"][0] = conv5_4_bias
    state["classifier.0.weight"] = torch.zeros(
        8, 8
    )  # extra keys (torchvision has them) are ignored
    return state


def test_perceptual_loss_is_l1_of_conv5_4_before_activation(tmp_path):
    path = tmp_path / "vgg19.pth"
    torch.save(_identity_vgg_state(), path)
    loss = PerceptualLoss(VGGFeatureExtractor(load_vgg19_features(path)))
    pred = torch.zeros(1, 3, 16, 16)
    pred[0, 0, 5, 7] = 0.6  # the red channel's maximum
    target = torch.zeros(1, 3, 16, 16)
    target[0, 0] = 0.485  # exactly the ImageNet mean: normalises to 0
    # channel 0 of conv5_4 = max over the image of relu((R - 0.485) / 0.229) - 1 (bias);
    # pred: 0.502183 - 1 < 0, target: -1; before the ReLU they differ by 0.502183, after it
    # both would be 0. 512 channels, 1x1 map, the other 511 are 0.
    expected = ((0.6 - 0.485) / 0.229) / 512
    assert loss(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_vgg_weights_file_must_have_torchvision_layout(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(VggWeightsError, match="missing features.0.weight"):
        load_vgg19_features(bad)
    with pytest.raises(VggWeightsError, match="does not exist"):
        find_vgg_weights(tmp_path / "nope.pth")


def test_missing_weights_are_found_nowhere_and_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_vgg_weights(None) is None
    msg = missing_weights_message("maePNET")
    assert "--vgg-weights" in msg and "vgg19-dcbb9e9d.pth" in msg and "maeNET" in msg


def test_generator_loss_weights_terms():
    rng = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8, generator=rng), torch.rand(2, 3, 8, 8, generator=rng)
    total, terms = GeneratorLoss(LossWeights(fourier=0.0125))(pred, target)
    assert set(terms) == {"l1", "fourier"}
    expected = l1_loss(pred, target) + 0.0125 * fourier_loss(pred, target)
    assert total.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="perceptual"):
        GeneratorLoss(LossWeights(perceptual=0.0125))


def test_ssim_matches_scikit_image_and_psnr_is_in_db():
    rng = torch.Generator().manual_seed(3)
    a = torch.rand(3, 3, 32, 32, generator=rng)
    b = (a + 0.1 * torch.randn(3, 3, 32, 32, generator=rng)).clamp(0, 1)
    ours = ssim(a, b).numpy()
    ref = [
        structural_similarity(
            a[i].permute(1, 2, 0).double().numpy(),
            b[i].permute(1, 2, 0).double().numpy(),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    ref_psnr = [peak_signal_noise_ratio(a[i].numpy(), b[i].numpy(), data_range=1) for i in range(3)]
    np.testing.assert_allclose(psnr(a, b).numpy(), ref_psnr, rtol=1e-5)
    assert psnr(a, (a + 0.1)).numpy() == pytest.approx([20.0] * 3, abs=1e-3)


def test_image_metrics_clip_predictions_to_the_image_range():
    target = torch.full((1, 3, 16, 16), 1.0)
    m = image_metrics(torch.full((1, 3, 16, 16), 1.7), target)
    assert m["mae"].item() == pytest.approx(0.0)
    assert m["ssim"].item() == pytest.approx(1.0)
