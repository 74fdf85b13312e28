"""Generators: the thesis's RRDB network (ESRGAN without upsampling) and a pix2pix U-Net.

Both map a PLS stack, ``(B, 3·n_images, h, w)`` float in [0, 1] (the stack images' RGB
channels side by side, image-major), to a stained RGB image ``(B, 3, h, w)``.

The RRDB generator follows ESRGAN (Wang et al. 2018; BasicSR's ``RRDBNet``) with the
upsampling and the HR convolution removed: ``conv_first → n_blocks × RRDB → conv_body`` with
a long skip, then ``conv_last`` to 3 channels. With ``features`` equal to the input channels
and growth 32 it reproduces every parameter count of the thesis's Table 4.1.

The U-Net follows the TensorFlow pix2pix generator the thesis used (its Table A.1 count,
29,279,011 parameters for ``full-nohe``, is reproduced exactly): a 1x1 convolution reduces
the stack to 32 channels, six stride-2 4x4 convolutions encode 64x64 to 1x1x512 (no bias;
batch norm on all but the first), and transposed convolutions decode with skips (dropout 0.5
on the first three).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from training.channel_pad import padded_conv_weights, padded_width
from training.input_norm import maybe_standardiser

#: ESRGAN: "empirically, scaling the residual by 0.2 stabilises training without BN".
RESIDUAL_SCALE = 0.2
#: ESRGAN's "smaller initialisation": Kaiming-normal weights multiplied by 0.1.
INIT_SCALE = 0.1

GeneratorArch = Literal["rrdb", "unet"]
#: How the RRDB generator's 3x3 convolutions see beyond the image: mirrored content. Zero
#: padding (ESRGAN's) shows every layer a black frame, and the network answers with a
#: 1-pixel coloured border on every output; reflection makes the edge look like more cells
#: and background. Checkpoints written before this record no padding and keep "zeros".
DEFAULT_PADDING = "reflect"


def _conv3(cin: int, cout: int, padding: str) -> nn.Conv2d:
    """3x3 convolution, stride 1, same size out (``padding`` as :class:`RRDBGenerator`)."""
    return nn.Conv2d(cin, cout, 3, 1, 1, padding_mode=padding)


def _init_scaled(modules: list[nn.Module], scale: float) -> None:
    for m in modules:
        nn.init.kaiming_normal_(m.weight, a=0.0, mode="fan_in")
        m.weight.data.mul_(scale)
        if m.bias is not None:
            m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions; the output is scaled and added to the input.

    Parameters
    ----------
    features
        Channels in and out.
    growth
        Channels each intermediate convolution adds to the dense concatenation.
    """

    def __init__(self, features: int, growth: int, padding: str = DEFAULT_PADDING) -> None:
        super().__init__()
        self.padding = padding
        self.features, self.growth = features, growth
        #: Channel counts computed in multiples of this (see :meth:`RRDBGenerator.compute_in`).
        self.compute_multiple = 1
        self.conv1 = _conv3(features, growth, padding)
        self.conv2 = _conv3(features + growth, growth, padding)
        self.conv3 = _conv3(features + 2 * growth, growth, padding)
        self.conv4 = _conv3(features + 3 * growth, growth, padding)
        self.conv5 = _conv3(features + 4 * growth, features, padding)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        _init_scaled([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], INIT_SCALE)

    def _weights(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of convolution ``k`` (0–4) as the block computes them.

        With ``compute_multiple`` 1 they are the parameters themselves; otherwise each
        input segment (the trunk, then each growth) and the output are zero-padded to the
        padded widths, so the padded channels of every feature stay exactly zero and the
        gradients reach the parameters unchanged.
        """
        conv = (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)[k]
        m = self.compute_multiple
        if m == 1:
            return conv.weight, conv.bias
        f, g = self.features, self.growth
        fp, gp = padded_width(f, m), padded_width(g, m)
        return padded_conv_weights(
            conv.weight, conv.bias, [f, *[g] * k], [fp, *[gp] * k], fp if k == 4 else gp
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "zeros":  # the convolutions pad inside cuDNN/oneDNN: nothing to share
            feats = [x]
            for k in range(4):
                w, b = self._weights(k)
                inp = feats[0] if k == 0 else torch.cat(feats, 1)
                feats.append(self.lrelu(F.conv2d(inp, w, b, padding=1)))
            w, b = self._weights(4)
            x5 = F.conv2d(torch.cat(feats, 1), w, b, padding=1)
        else:
            x5 = self._forward_padded_once(x)
        # in place: a convolution's backward needs its input, not its output
        return x5.mul_(RESIDUAL_SCALE).add_(x)

    def _forward_padded_once(self, x: torch.Tensor) -> torch.Tensor:
        """The same block with each feature map mirrored once instead of once per convolution.

        Reflection (or replication) acts on each channel alone, so the padded concatenation
        equals the concatenation of padded features: padding ``x, x1 … x4`` once each moves
        ``features + 4·growth`` channels per pixel instead of the ``5·features + 10·growth``
        that five ``padding_mode`` convolutions pad (3.8x fewer at the thesis width), and the
        mirror's backward shrinks alike. The convolutions then run unpadded on the
        concatenation. Outputs equal the per-convolution path's.
        """
        feats = [F.pad(x, (1, 1, 1, 1), mode=self.padding)]
        for k in range(4):
            inp = feats[0] if k == 0 else torch.cat(feats, 1)
            out = self.lrelu(F.conv2d(inp, *self._weights(k)))
            feats.append(F.pad(out, (1, 1, 1, 1), mode=self.padding))
        return F.conv2d(torch.cat(feats, 1), *self._weights(4))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside a scaled residual."""

    def __init__(self, features: int, growth: int, padding: str = DEFAULT_PADDING) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth, padding)
        self.rdb2 = ResidualDenseBlock(features, growth, padding)
        self.rdb3 = ResidualDenseBlock(features, growth, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))).mul_(RESIDUAL_SCALE).add_(x)


class RRDBGenerator(nn.Module):
    """ESRGAN's generator without upsampling (thesis Fig. 3.7).

    Parameters
    ----------
    in_channels
        Input channels, 3 per stack image.
    features
        Width of the trunk; ``None`` makes it equal to ``in_channels`` (the thesis).
    blocks
        Number of RRDB blocks (thesis: 4, or 8 for the "deeper" model).
    growth
        Dense growth channels (thesis: 32).
    out_channels
        3 for RGB.
    padding
        ``"reflect"`` (default) or ``"zeros"`` (ESRGAN, and checkpoints from before the
        border fix): how the convolutions extend the image at its edges.
    input_mean, input_std
        Per-input-channel statistics to standardise the input with before the first
        convolution (:mod:`training.input_norm`; ``--input-norm standardise``); None: the
        input goes in as it is.

    Notes
    -----
    Fully convolutional: a pixel depends on inputs within
    :attr:`receptive_radius` pixels (``15·blocks + 3``), which the tiled inference uses to
    make tile interiors identical to a single pass.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        features: int | None = None,
        blocks: int = 4,
        growth: int = 32,
        out_channels: int = 3,
        padding: str = DEFAULT_PADDING,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, blocks=blocks, growth=growth)
        if padding not in ("reflect", "replicate", "zeros"):
            raise ValueError(f"padding must be reflect, replicate or zeros, got {padding!r}")
        features = in_channels if features is None else features
        _check_positive(features=features)
        self.in_channels = in_channels
        self.features = features
        self.blocks = blocks
        self.growth = growth
        self.padding = padding
        self.standardise = maybe_standardiser(in_channels, input_mean, input_std)
        self.conv_first = _conv3(in_channels, features, padding)
        self.body = nn.Sequential(*(RRDB(features, growth, padding) for _ in range(blocks)))
        self.conv_body = _conv3(features, features, padding)
        self.conv_last = _conv3(features, out_channels, padding)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that influence one output pixel."""
        return 15 * self.blocks + 3

    @property
    def compute_multiple(self) -> int:
        """The granularity of the channel counts the network computes in (1: as built)."""
        return self.body[0].rdb1.compute_multiple

    def compute_in(self, multiple: int) -> RRDBGenerator:
        """Compute with the trunk and growth widths rounded up to multiples of ``multiple``.

        cuDNN's tensor-core convolutions take channel counts in multiples of 8 (bf16); for
        any other count they copy every input into a padded buffer first, on every call, and
        the thesis network's are all 132 + 32k. With ``compute_in(8)`` each convolution's
        weight and bias are zero-padded on the fly (the trunk 132 → 136, each dense block's
        input 136 + 32k): the added channels of every feature are exactly zero after every
        layer (a zero pre-activation stays zero through the leaky ReLU, the mirror padding
        and the scaled residuals), so outputs equal the plain network's up to summation order,
        and gradients reach the same parameters. The parameters, the state dict and
        checkpoints are unchanged; training and inference both may use it. Returns ``self``.
        """
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
        for m in self.modules():
            if isinstance(m, ResidualDenseBlock):
                m.compute_multiple = multiple
        return self

    def _conv(
        self, x: torch.Tensor, conv: nn.Conv2d, ins: int, ins_p: int, out_p: int
    ) -> torch.Tensor:
        """``conv`` applied with its input channels ``ins → ins_p`` and output to ``out_p``."""
        w, b = padded_conv_weights(conv.weight, conv.bias, [ins], [ins_p], out_p)
        if self.padding == "zeros":
            return F.conv2d(x, w, b, padding=1)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode=self.padding), w, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardise is not None:
            x = self.standardise(x)
        multiple = self.compute_multiple
        if multiple == 1:
            feat = self.conv_first(x)
            return self.conv_last(self.conv_body(self.body(feat)).add_(feat))
        f, ins = self.features, self.in_channels
        fp = padded_width(f, multiple)
        feat = self._conv(x, self.conv_first, ins, ins, fp)
        trunk = self._conv(self.body(feat), self.conv_body, f, fp, fp).add_(feat)
        return self._conv(trunk, self.conv_last, f, fp, self.conv_last.out_channels)


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int, *, norm: bool) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        super().__init__(*layers)


class _Up(nn.Sequential):
    def __init__(self, cin: int, cout: int, *, dropout: bool) -> None:
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNetGenerator(nn.Module):
    """pix2pix U-Net with a 1x1 channel reducer (thesis App. A.2, Fig. A.3).

    Parameters
    ----------
    in_channels
        Input channels, 3 per stack image.
    crop_size
        Training crop size; the encoder halves it down to 1x1, so it sets the depth
        (``log2(crop_size)`` levels; 64 → 6). Inputs must be multiples of ``2**depth``.
    reduced
        Channels after the 1x1 reducer (thesis: 32).
    features
        Filters of the first encoder level; doubled per level up to ``8·features``.
    out_channels
        3 for RGB, ``k`` for ``k`` fluorescence channels. The output is ``(tanh + 1) / 2``,
        in [0, 1].
    innermost_norm
        Batch-normalise the 1x1 bottleneck (the thesis's U-Net). Isola et al.'s innermost
        block has no normalisation, which also lets it train with batch size 1 (``pix2pix``).
    input_mean, input_std
        As for :class:`RRDBGenerator`.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        crop_size: int = 64,
        reduced: int = 32,
        features: int = 64,
        out_channels: int = 3,
        innermost_norm: bool = True,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, reduced=reduced, features=features)
        depth = round(math.log2(crop_size)) if crop_size > 1 else 0
        if depth < 2 or 2**depth != crop_size:
            raise ValueError(f"U-Net crop_size must be a power of two ≥ 4, got {crop_size}")
        self.in_channels = in_channels
        self.depth = depth
        self.standardise = maybe_standardiser(in_channels, input_mean, input_std)
        self.reducer = nn.Conv2d(in_channels, reduced, 1)
        widths = [min(features * 2**i, features * 8) for i in range(depth)]
        self.down = nn.ModuleList(
            _Down(cin, cout, norm=i > 0 and (innermost_norm or i < depth - 1))
            for i, (cin, cout) in enumerate(zip([reduced, *widths[:-1]], widths, strict=True))
        )
        skips = widths[:-1][::-1]
        up_widths = widths[:-1][::-1]
        self.up = nn.ModuleList()
        cin = widths[-1]
        for i, cout in enumerate(up_widths):
            self.up.append(_Up(cin, cout, dropout=i < 3))
            cin = cout + skips[i]
        self.last = nn.ConvTranspose2d(cin, out_channels, 4, 2, 1)

    @property
    def receptive_radius(self) -> int:
        """The bottleneck sees the whole crop: tiles must overlap by their own size."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardise is not None:
            x = self.standardise(x)
        h = self.reducer(x)
        skips = []
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        skips = skips[:-1][::-1]
        for layer, skip in zip(self.up, skips, strict=True):
            h = torch.cat((layer(h), skip), 1)
        return (torch.tanh(self.last(h)) + 1.0) * 0.5


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")


def build_generator(arch: GeneratorArch, in_channels: int, **kwargs: Any) -> nn.Module:
    """A generator by name (``rrdb`` or ``unet``); ``kwargs`` go to its constructor."""
    if arch == "rrdb":
        return RRDBGenerator(in_channels, **kwargs)
    if arch == "unet":
        return UNetGenerator(in_channels, **kwargs)
    raise ValueError(f"unknown generator architecture {arch!r}; choose rrdb or unet")


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, counting spectral-norm weights once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
