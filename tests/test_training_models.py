"""Generators, critics, presets and the relativistic GAN step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import hardware_profiles as hp
from training.discriminators import PatchDiscriminator, VGGDiscriminator
from training.losses import GeneratorLoss, LossWeights
from training.models import (
    ResidualDenseBlock,
    RRDBGenerator,
    UNetGenerator,
    count_parameters,
)
from training.presets import PRESETS, get_preset
from training.steps import gan_step

#: thesis Table 4.1 (le36-nohe: 29 images, Wulff 2022) and Table A.1
THESIS_PARAMETERS = {
    "full": 13_021_833,
    "full-nohe": 6_515_463,
    "le36": 6_515_463,
    "le36-nohe": 4_027_728,
    "le18": 2_050_293,
    "le8": 1_015_503,
    "brightfield": 749_292,
}


@pytest.mark.parametrize("stack", list(THESIS_PARAMETERS))
def test_rrdb_parameter_counts_match_the_thesis(pls43, stack):
    n_images = len(hp.select_channels(pls43.channel_table(), stack))
    with torch.device("meta"):
        model = RRDBGenerator(3 * n_images, blocks=4)
    assert count_parameters(model) == THESIS_PARAMETERS[stack]


def test_unet_parameter_count_matches_the_thesis():
    with torch.device("meta"):
        model = UNetGenerator(132, crop_size=64)
    assert count_parameters(model) == 29_279_011


def test_generators_keep_the_crop_size_and_give_rgb():
    x = torch.rand(2, 12, 32, 32)
    assert RRDBGenerator(12, features=8, blocks=1)(x).shape == (2, 3, 32, 32)
    out = UNetGenerator(12, crop_size=32, features=8).eval()(x)
    assert out.shape == (2, 3, 32, 32)
    assert 0.0 <= out.min().item() and out.max().item() <= 1.0


def test_rrdb_output_has_no_border_on_a_uniform_field():
    """Empty glass in, the same colour everywhere out: no 1-pixel frame (zero padding made one)."""
    torch.manual_seed(0)
    model = RRDBGenerator(6, features=8, blocks=1).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.uniform_(m.bias, 0.0, 0.2)  # a trained net's non-zero offsets
    x = torch.full((1, 6, 40, 48), 0.8)
    with torch.no_grad():
        out = model(x)[0]
    centre = out[:, 20, 24]
    spread = (out - centre[:, None, None]).abs().amax()
    assert spread.item() < 1e-5
    # the old zero padding: edges differ from the interior
    legacy = RRDBGenerator(6, features=8, blocks=1, padding="zeros").eval()
    legacy.load_state_dict(model.state_dict())
    with torch.no_grad():
        old = legacy(x)[0]
    assert (old[:, 0, :] - old[:, 20, 24, None]).abs().amax().item() > 1e-3


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
def test_dense_block_pads_each_feature_once_with_the_same_result(padding):
    """Padding x, x1 … x4 once each equals padding every concatenation (values and grads)."""
    torch.manual_seed(0)
    block = ResidualDenseBlock(12, 8, padding).double()
    x = torch.rand(2, 12, 9, 7, dtype=torch.double, requires_grad=True)
    fast = block(x.clone())
    (g_fast,) = torch.autograd.grad(fast.square().sum(), x)
    b = block  # the per-convolution path: every module convolution mirrors its own input
    x1 = b.lrelu(b.conv1(x))
    x2 = b.lrelu(b.conv2(torch.cat((x, x1), 1)))
    x3 = b.lrelu(b.conv3(torch.cat((x, x1, x2), 1)))
    x4 = b.lrelu(b.conv4(torch.cat((x, x1, x2, x3), 1)))
    ref = b.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    assert torch.allclose(fast, ref, atol=1e-12)
    assert torch.allclose(g_fast, g_ref, atol=1e-12)


def test_checkpoints_without_padding_keep_zero_padding():
    from training.checkpoint import generator_from_checkpoint

    model = RRDBGenerator(3, features=4, blocks=1, padding="zeros")
    info = {
        "generator": "rrdb",
        "in_channels": 3,
        "generator_kwargs": {"features": 4, "blocks": 1, "growth": 32},
    }
    rebuilt = generator_from_checkpoint({"model": info, "generator": model.state_dict()})
    assert rebuilt.padding == "zeros"
    assert RRDBGenerator(3, features=4, blocks=1).padding == "reflect"


def test_rrdb_output_depends_only_on_its_receptive_radius():
    torch.manual_seed(0)
    model = RRDBGenerator(3, features=4, blocks=1).double().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.bias.data.zero_()  # a zero background keeps far, tiny contributions visible
    radius = model.receptive_radius  # 18 for one block
    x = torch.zeros(1, 3, 64, 64, dtype=torch.float64)
    bumped = x.clone()
    bumped[0, :, 32, 32] = 1.0
    with torch.no_grad():
        diff = (model(bumped) - model(x)).abs().sum(1)[0]
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    assert (ys - 32).abs().max().item() == radius
    assert (xs - 32).abs().max().item() == radius


def test_vgg_critic_flattens_4096_values_and_is_spectrally_normalised():
    d = VGGDiscriminator(crop_size=64)
    assert d.flat_features == 4096
    assert d(torch.rand(3, 3, 64, 64)).shape == (3, 1)
    layers = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(layers) == 8
    assert all(hasattr(m, "parametrizations") for m in layers)
    patch = PatchDiscriminator(12)
    assert patch(torch.rand(2, 3, 64, 64), torch.rand(2, 12, 64, 64)).shape == (2, 1, 6, 6)
    with pytest.raises(ValueError, match="condition"):
        patch(torch.rand(2, 3, 64, 64))


def test_presets_resolve_to_the_thesis_settings():
    assert list(PRESETS) == ["maeNET", "maePNET", "maePFNET", "maePF-RpGAN-SN", "pix2pix"]
    expected = {
        "maeNET": (0.0, 0.0, 0.0),
        "maePNET": (0.0125, 0.0, 0.0),
        "maePFNET": (0.0125, 0.0125, 0.0),
        "maePF-RpGAN-SN": (0.0125, 0.0125, 0.005),
    }
    for name, (l1p, l2f, l3g) in expected.items():
        p = get_preset(name)
        assert (p.weights.l1, p.weights.perceptual, p.weights.fourier, p.weights.gan) == (
            1.0,
            l1p,
            l2f,
            l3g,
        )
        assert (p.lr_g, p.lr_d, p.betas, p.batch_size) == (2e-4, 4e-4, (0.5, 0.9), 20)
        assert p.needs_init == (name == "maePF-RpGAN-SN")
        assert (p.generator, p.discriminator, p.gan_loss) == ("rrdb", "vgg", "relativistic")


def test_pix2pix_preset_has_the_published_defaults():
    p = get_preset("pix2pix")
    assert (p.weights.l1, p.weights.perceptual, p.weights.fourier, p.weights.gan) == (
        100.0,
        0.0,
        0.0,
        1.0,
    )
    assert (p.lr_g, p.lr_d, p.betas, p.batch_size) == (2e-4, 2e-4, (0.5, 0.999), 1)
    assert (p.generator, p.discriminator, p.gan_loss) == ("unet", "patch", "vanilla")
    assert not p.needs_vgg and not p.needs_init
    # batch size 1 trains: the 1x1 bottleneck is not batch-normalised
    gen = UNetGenerator(6, crop_size=32, features=4, out_channels=2, innermost_norm=False).train()
    assert gen(torch.rand(1, 6, 32, 32)).shape == (1, 2, 32, 32)


def test_vanilla_gan_losses_are_pix2pix_cross_entropy():
    from training.losses import vanilla_discriminator_loss, vanilla_generator_loss

    real, fake = torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    sig = torch.sigmoid
    d = -(torch.log(sig(real)) + torch.log(1 - sig(fake))).mean() / 2
    g = -torch.log(sig(fake)).mean()
    assert torch.allclose(vanilla_discriminator_loss(real, fake), d)
    assert torch.allclose(vanilla_generator_loss(real, fake), g)


def test_rpgan_step_updates_generator_then_critic_as_the_formulas_say():
    torch.manual_seed(0)
    gen = RRDBGenerator(6, features=4, blocks=1)
    critic = VGGDiscriminator(crop_size=16, base_features=4, hidden=8)
    x = torch.rand(4, 6, 16, 16)
    y = torch.rand(4, 3, 16, 16)
    ref_g, ref_d, before = copy.deepcopy(gen), copy.deepcopy(critic), copy.deepcopy(critic)
    # plain SGD: Adam's first step is lr·sign(g), which would magnify float noise in
    # gradients that vanish in theory (the critic's last bias cancels in C(x_r) − C(x_f))
    opt_g = torch.optim.SGD(gen.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(critic.parameters(), lr=0.1)
    terms = gan_step(gen, critic, GeneratorLoss(LossWeights()), 0.005, opt_g, opt_d, x, y)

    # reference, written out: the generator's gradient at the old critic, the critic's at
    # the old generator's fakes; each followed by one optimiser step
    ref_opt_g = torch.optim.SGD(ref_g.parameters(), lr=0.1)
    ref_opt_d = torch.optim.SGD(ref_d.parameters(), lr=0.1)
    fake = ref_g(x)
    critic_out = ref_d(torch.cat((y, fake)))
    c_r, c_f = critic_out[:4], critic_out[4:]
    l_g = (fake - y).abs().mean() - 0.005 * F.logsigmoid(c_f - c_r).mean()
    g_grads = torch.autograd.grad(l_g, list(ref_g.parameters()))
    for p, g in zip(ref_g.parameters(), g_grads, strict=True):
        p.grad = g
    ref_opt_g.step()
    critic_out = ref_d(torch.cat((y, fake.detach())))
    l_d = -F.logsigmoid(critic_out[:4] - critic_out[4:]).mean()
    l_d.backward()
    ref_opt_d.step()

    assert terms["d"].item() == pytest.approx(l_d.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(l_g.item(), rel=1e-5)
    for a, b in zip(gen.parameters(), ref_g.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(critic.parameters(), ref_d.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # the critic's parameters are trainable again after the step, and its weights moved
    assert all(p.requires_grad for p in critic.parameters())
    for (name, a), b in zip(critic.named_parameters(), before.parameters(), strict=True):
        if name.endswith("original"):
            assert not torch.equal(a, b), name
