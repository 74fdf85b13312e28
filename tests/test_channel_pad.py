"""RRDBGenerator.compute_in: computing in channel counts padded to multiples of 8 is exact.

The same parameters, the same outputs and the same gradients (float64: equal to summation
order), for inference and training; checkpoints keep their shapes.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.channel_pad import padded_conv_weights, padded_width
from training.device import compute_on, default_compute_multiple
from training.infer import stain_field
from training.models import RRDBGenerator, UNetGenerator


def _randomised(gen: RRDBGenerator, seed: int = 0) -> RRDBGenerator:
    """Random weights and non-zero biases everywhere (the default init zeroes the biases)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in gen.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05)
    return gen


def test_padded_width_rounds_up_to_the_multiple():
    assert [padded_width(c) for c in (1, 8, 9, 132, 136, 32)] == [8, 8, 16, 136, 136, 32]
    assert padded_width(10, 4) == 12


def test_padded_weights_keep_each_segment_first_and_zeros_elsewhere():
    w = torch.randn(5, 10 + 5 + 5, 3, 3)
    b = torch.randn(5)
    # input segments: x 10 (padded to 16), x1 5 (to 8), x2 5 (to 8); outputs 5 of 8
    pw, pb = padded_conv_weights(w, b, [10, 5, 5], [16, 8, 8], 8)
    assert pw.shape == (8, 32, 3, 3) and pb.shape == (8,)
    assert torch.equal(pw[:5, 0:10], w[:, 0:10])
    assert torch.equal(pw[:5, 16:21], w[:, 10:15])
    assert torch.equal(pw[:5, 24:29], w[:, 15:20])
    kept = torch.zeros_like(pw, dtype=torch.bool)
    kept[:5, 0:10] = kept[:5, 16:21] = kept[:5, 24:29] = True
    assert pw[~kept].abs().max().item() == 0.0
    assert torch.equal(pb[:5], b) and pb[5:].abs().max().item() == 0.0
    # nothing to pad: the tensors themselves
    same_w, same_b = padded_conv_weights(w, b, [10, 5, 5], [10, 5, 5], 5)
    assert same_w is w and same_b is b
    with pytest.raises(ValueError, match="do not describe a weight of 20 input channels"):
        padded_conv_weights(w, b, [10, 5], [16, 8], 8)
    with pytest.raises(ValueError, match="must not be smaller"):
        padded_conv_weights(w, b, [10, 5, 5], [8, 8, 8], 8)


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zeros"])
def test_outputs_and_gradients_match_in_float64(padding):
    gen = _randomised(RRDBGenerator(6, features=10, growth=5, blocks=2, padding=padding))
    gen = gen.double()
    padded = copy.deepcopy(gen).compute_in(8)
    assert padded.compute_multiple == 8 and gen.compute_multiple == 1
    x = torch.rand(2, 6, 23, 29, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref, out = gen(x), padded(x)
    assert out.shape == ref.shape == (2, 3, 23, 29)
    assert (out - ref).abs().max().item() <= 1e-12
    assert ref.abs().max().item() > 0.01  # the comparison is not between two zero images
    ref.square().mean().backward()
    out.square().mean().backward()
    for (name, p), q in zip(gen.named_parameters(), padded.parameters(), strict=True):
        assert p.shape == q.shape, name  # the parameters themselves, not padded copies
        assert (p.grad - q.grad).abs().max().item() <= 1e-12, name
        assert p.grad.abs().max().item() > 0, name


def test_thesis_widths_compute_in_multiples_of_8_with_the_same_state_dict():
    gen = RRDBGenerator(132, blocks=4).double().eval()  # full-nohe: 44 images, width 132
    shapes = {k: v.shape for k, v in gen.state_dict().items()}
    gen.compute_in(8)
    assert {k: v.shape for k, v in gen.state_dict().items()} == shapes
    block = gen.body[0].rdb1
    for k in range(5):
        w, _ = block._weights(k)
        assert w.shape[1] % 8 == 0 and w.shape[0] % 8 == 0, (k, w.shape)
    assert block._weights(4)[0].shape[:2] == (136, 136 + 4 * 32)
    # the trunk's added channels stay zero through every block and the long skip
    seen = []
    hook = gen.body[1].register_forward_hook(lambda m, i, o: seen.append(o[:, 132:].clone()))
    with torch.no_grad():
        for conv in gen.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.bias.uniform_(-0.05, 0.05, generator=torch.Generator().manual_seed(2))
        x = torch.rand(1, 132, 12, 14, dtype=torch.float64)
        out = gen(x)
        hook.remove()
        ref = gen.compute_in(1)(x)
    assert len(seen) == 1 and seen[0].shape[1] == 4 and seen[0].abs().max().item() == 0.0
    assert (out - ref).abs().max().item() <= 1e-12


def test_a_training_step_moves_the_same_parameters_the_same_way():
    torch.manual_seed(0)
    plain = _randomised(RRDBGenerator(6, features=10, growth=5, blocks=1)).double()
    padded = copy.deepcopy(plain).compute_in(8)
    x = torch.rand(3, 6, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.rand(3, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for model in (plain, padded):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(3):
            opt.zero_grad()
            F.l1_loss(model(x), y).backward()
            opt.step()
    for (name, p), q in zip(plain.named_parameters(), padded.parameters(), strict=True):
        assert (p - q).abs().max().item() <= 1e-10, name
    # and a checkpoint of the padded run loads into a plain generator and computes the same
    fresh = RRDBGenerator(6, features=10, growth=5, blocks=1).double()
    fresh.load_state_dict(padded.state_dict())
    with torch.no_grad():
        assert (fresh(x) - padded(x)).abs().max().item() <= 1e-12


def test_stain_field_gives_the_same_image():
    gen = _randomised(RRDBGenerator(6, features=10, growth=5, blocks=1)).eval()
    stack = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    ref = stain_field(gen, stack, dtype=np.float32)
    out = stain_field(copy.deepcopy(gen).compute_in(8), stack, dtype=np.float32)
    assert np.abs(out - ref).max() <= 1e-5  # float32 sums in another order


def test_devices_choose_the_multiple_and_other_generators_are_left_alone():
    assert default_compute_multiple(torch.device("cpu")) == 1
    assert default_compute_multiple(torch.device("cuda")) == 8  # no GPU needed to decide
    gen = RRDBGenerator(6, blocks=1)
    assert compute_on(gen, torch.device("cuda")) is gen and gen.compute_multiple == 8
    assert compute_on(gen, torch.device("cpu")).compute_multiple == 1
    unet = UNetGenerator(6)
    assert compute_on(unet, torch.device("cuda")) is unet


@pytest.mark.parametrize("bad", [0, -8, 2.5, True, "8"])
def test_bad_multiples_are_refused(bad):
    with pytest.raises(ValueError, match="multiple must be a positive integer"):
        RRDBGenerator(6, blocks=1).compute_in(bad)
