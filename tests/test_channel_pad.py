"""training.channel_pad: a channel-padded copy of the RRDB generator computes the same outputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from training.channel_pad import pad_channels, padded_width
from training.infer import stain_field
from training.models import RRDBGenerator, UNetGenerator


def _randomised(gen: RRDBGenerator, seed: int = 0) -> RRDBGenerator:
    """Random weights and non-zero biases everywhere (the default init zeroes the biases)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in gen.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05)
    return gen


def _convs(gen: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in gen.named_modules() if isinstance(m, nn.Conv2d)}


def test_padded_width_rounds_up_to_the_multiple():
    assert [padded_width(c) for c in (1, 8, 9, 132, 136, 32)] == [8, 8, 16, 136, 136, 32]
    assert padded_width(10, 4) == 12


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zeros"])
def test_small_padded_generator_matches_in_float64(padding):
    gen = _randomised(RRDBGenerator(6, features=10, growth=5, blocks=2, padding=padding))
    gen = gen.double().eval()
    before = copy.deepcopy(gen.state_dict())
    padded = pad_channels(gen)
    assert (padded.features, padded.growth, padded.in_channels) == (16, 8, 6)
    x = torch.rand(2, 6, 23, 29, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = gen(x), padded(x)
    assert out.shape == ref.shape == (2, 3, 23, 29)
    assert (out - ref).abs().max().item() <= 1e-12
    assert ref.abs().max().item() > 0.01  # the comparison is not between two zero images
    # the original is left as it was
    after = gen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_thesis_shapes_are_multiples_of_8_and_outputs_match_in_float64():
    gen = RRDBGenerator(132, blocks=4).double().eval()  # full-nohe: 44 images, width 132
    padded = pad_channels(gen)
    assert (padded.features, padded.growth) == (136, 32)
    for name, conv in _convs(padded).items():
        if name != "conv_first":  # reads the stack itself: 132 channels, as given
            assert conv.in_channels % 8 == 0, (name, conv.in_channels)
        if name != "conv_last":  # the RGB output
            assert conv.out_channels % 8 == 0, (name, conv.out_channels)
    assert padded.conv_first.in_channels == 132 and padded.conv_last.out_channels == 3
    assert padded.body[0].rdb1.conv5.in_channels == 136 + 4 * 32
    # the default init leaves biases zero: give the trunk's padding something to keep out
    with torch.no_grad():
        for conv in _convs(gen).values():
            conv.bias.uniform_(-0.05, 0.05, generator=torch.Generator().manual_seed(2))
    padded = pad_channels(gen)
    x = torch.rand(1, 132, 12, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, out = gen(x), padded(x)
    assert (out - ref).abs().max().item() <= 1e-12


def test_added_channels_hold_zeros_and_the_rest_the_original_weights():
    gen = _randomised(RRDBGenerator(6, features=10, growth=5, blocks=1))
    padded = pad_channels(gen)
    w, src = padded.body[0].rdb2.conv3.weight, gen.body[0].rdb2.conv3.weight
    # input segments: x 0:10 (padded to 16), x1 16:21 (to 24), x2 24:29; outputs 0:5 of 8
    assert torch.equal(w[:5, 0:10], src[:, 0:10])
    assert torch.equal(w[:5, 16:21], src[:, 10:15])
    assert torch.equal(w[:5, 24:29], src[:, 15:20])
    kept = torch.zeros_like(w, dtype=torch.bool)
    kept[:5, 0:10] = kept[:5, 16:21] = kept[:5, 24:29] = True
    assert w[~kept].abs().max().item() == 0.0
    assert padded.body[0].rdb2.conv3.bias[5:].abs().max().item() == 0.0


def test_copy_keeps_device_dtype_and_mode():
    gen = RRDBGenerator(6, features=10, growth=5, blocks=1).to(torch.bfloat16).train()
    padded = pad_channels(gen)
    assert padded.training
    assert {p.dtype for p in padded.parameters()} == {torch.bfloat16}
    assert pad_channels(gen.eval()).training is False


def test_stain_field_takes_the_padded_copy_and_gives_the_same_image():
    gen = _randomised(RRDBGenerator(6, features=10, growth=5, blocks=1)).eval()
    stack = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    ref = stain_field(gen, stack, dtype=np.float32)
    out = stain_field(pad_channels(gen), stack, dtype=np.float32)
    assert np.abs(out - ref).max() <= 1e-5  # float32 sums in another order


def test_other_generators_and_bad_multiples_are_refused():
    with pytest.raises(TypeError, match="takes an RRDBGenerator"):
        pad_channels(UNetGenerator(6))
    with pytest.raises(ValueError, match="multiple must be a positive integer"):
        pad_channels(RRDBGenerator(6, blocks=1), multiple=0)
