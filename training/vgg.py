"""VGG19 feature extractor for the perceptual loss, defined here (torchvision is not needed).

The layers and their state-dict keys follow torchvision's ``vgg19().features``
(``features.0.weight`` … ``features.34.bias``), so torchvision's ImageNet checkpoint
``vgg19-dcbb9e9d.pth`` loads as is. Nothing is ever downloaded: weights come from an
explicit file or from a file already in the torch hub cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from training.errors import VggWeightsError

#: torchvision's VGG19 configuration ("E"): conv widths, "M" for 2x2 max pooling.
VGG19_CONFIG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)
#: Index of conv5_4 in ``features`` (its output before the ReLU is ESRGAN's perceptual layer).
CONV5_4 = 34
#: File name of torchvision's ImageNet VGG19 weights (as the hub cache stores them).
TORCHVISION_VGG19_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features(last_layer: int = CONV5_4) -> nn.Sequential:
    """torchvision's ``vgg19().features`` truncated after layer ``last_layer`` (inclusive)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = int(item)
    if not 0 <= last_layer < len(layers):
        raise ValueError(f"last_layer must lie in [0, {len(layers) - 1}], got {last_layer}")
    return nn.Sequential(*layers[: last_layer + 1])


def hub_weights_path() -> Path:
    """Where torchvision would have cached the VGG19 weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG19_FILE


def find_vgg_weights(path: str | Path | None = None) -> Path | None:
    """The weights file to use: ``path`` if given (must exist), else the hub cache, else None."""
    if path is not None:
        p = Path(os.path.expanduser(str(path)))
        if not p.is_file():
            raise VggWeightsError(f"VGG19 weights file {str(p)!r} does not exist")
        return p
    cached = hub_weights_path()
    return cached if cached.is_file() else None


def missing_weights_message(preset: str) -> str:
    return (
        f"preset {preset!r} needs VGG19 ImageNet weights for its perceptual loss and none were "
        f"found: pass --vgg-weights PATH to torchvision's {TORCHVISION_VGG19_FILE} (state-dict "
        f"keys features.N.weight), or copy it to {hub_weights_path()}, or choose --preset maeNET"
    )


def load_vgg19_features(path: str | Path, *, last_layer: int = CONV5_4) -> nn.Sequential:
    """VGG19 features up to ``last_layer`` with weights from a torchvision-layout state dict.

    Parameters
    ----------
    path
        A ``.pth`` file holding torchvision's VGG19 state dict (``features.*`` and optionally
        ``classifier.*`` keys), loaded with ``weights_only=True``.
    last_layer
        Last ``features`` index kept (default conv5_4).

    Returns
    -------
    torch.nn.Sequential
        In eval mode, parameters frozen.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors of every kind: a damaged or foreign file
        from training.checkpoint import unreadable_message

        raise VggWeightsError(unreadable_message(Path(path), err, "VGG19 weights file")) from None
    if not isinstance(state, dict):
        raise VggWeightsError(f"{path} does not hold a state dict")
    state = state.get("state_dict", state)
    model = vgg19_features(last_layer)
    wanted = model.state_dict()
    features = {
        k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
    }
    missing = [k for k in wanted if k not in features]
    if missing:
        raise VggWeightsError(
            f"{path} is not a torchvision VGG19 state dict: missing features.{missing[0]} "
            f"(and {len(missing) - 1} more)"
        )
    for key, tensor in wanted.items():
        if tuple(features[key].shape) != tuple(tensor.shape):
            raise VggWeightsError(
                f"{path}: features.{key} has shape {tuple(features[key].shape)}, VGG19 needs "
                f"{tuple(tensor.shape)}"
            )
    model.load_state_dict({k: features[k] for k in wanted})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class VGGFeatureExtractor(nn.Module):
    """ImageNet-normalise ``[0, 1]`` RGB images and return VGG19 conv5_4 features (pre-ReLU).

    The network stays in eval mode (no training-mode behaviour exists in VGG features, but
    ``train()`` on a parent module must not unfreeze it) and its weights are not saved in
    checkpoints (they are a fixed part of the loss).
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        super().train(False)
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` in [0, 1] → conv5_4 features ``(B, 512, h/16, w/16)``."""
        return self.features((image - self.mean) / self.std)
