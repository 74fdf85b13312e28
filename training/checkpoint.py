"""Checkpoints: plain dicts of tensors and Python values that load with ``weights_only=True``.

A checkpoint carries everything needed to continue a run exactly (model and optimiser
states, schedulers, RNG states, epoch, early-stopping state, metric history) and everything
needed to use the model (architecture, stack channel names, target, crop and pixel size).
Files are written to a temporary name and renamed, so a crash never leaves half a checkpoint.

Keys: ``format``, ``format_version``, ``epoch`` (completed epochs), ``model``
(:func:`model_info`), ``generator``, ``discriminator`` (or None), ``optimizers``,
``schedulers``, ``rng``, ``early_stopping``, ``history``, ``config``, ``dataset``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.errors import CheckpointError
from training.models import build_generator

FORMAT = "scope-train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAMES = ("best", "last")


def model_info(
    *,
    generator: str,
    generator_kwargs: dict[str, Any],
    in_channels: int,
    channel_names: list[str] | tuple[str, ...],
    stack: str,
    target: str,
    crop_size: int,
    pixel_size_um: float | None,
) -> dict[str, Any]:
    """What identifies a trained generator and what it expects as input."""
    return {
        "generator": generator,
        "generator_kwargs": dict(generator_kwargs),
        "in_channels": int(in_channels),
        "channel_names": [str(n) for n in channel_names],
        "stack": stack,
        "target": target,
        "crop_size": int(crop_size),
        "pixel_size_um": None if pixel_size_um is None else float(pixel_size_um),
    }


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (temporary file + rename)."""
    from acquisition.files import atomic_output

    path = Path(path)
    with atomic_output(path, kept="the previous checkpoint is intact") as tmp:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    return path


def resolve_checkpoint(run_or_file: str | Path, which: str = "best") -> Path:
    """``RUN/checkpoints/<which>.pt`` for a run folder, or the file itself."""
    p = Path(run_or_file)
    if p.is_dir():
        if which not in CHECKPOINT_NAMES:
            raise CheckpointError(f"unknown checkpoint {which!r}; choose best or last")
        f = p / "checkpoints" / f"{which}.pt"
        if not f.is_file():
            raise CheckpointError(f"{p} has no {which} checkpoint ({f} is missing): not a run?")
        return f
    if not p.is_file():
        raise CheckpointError(f"run folder or checkpoint {str(p)!r} does not exist")
    return p


def load_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load and check a checkpoint (``weights_only=True``: no code runs while loading)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # every unpickling failure means "not one of ours / damaged"
        raise CheckpointError(unreadable_message(path, err, "checkpoint")) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a scope training checkpoint")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer scope (checkpoint format "
            f"{ckpt['format_version']}); upgrade scope to read it"
        )
    return ckpt


def unreadable_message(path: Path, err: BaseException, what: str) -> str:
    """One line for a torch file that does not load safely (never advises unsafe loading)."""
    if "weights only load failed" in str(err).lower() and "unsupported global" in str(err).lower():
        return (
            f"{path} holds Python objects besides tensors and plain values; scope loads only "
            f"safe files, so this is not a {what} scope wrote (or it was altered)"
        )
    return f"{path} is not a readable {what} (damaged, truncated or not a PyTorch file)"


def generator_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the generator a checkpoint describes and load its weights (eval mode)."""
    info = ckpt["model"]
    kwargs = dict(info["generator_kwargs"])
    if info["generator"] == "rrdb":
        # written before the border fix: trained (and to be applied) with zero padding
        kwargs.setdefault("padding", "zeros")
    model = build_generator(info["generator"], info["in_channels"], **kwargs)
    try:
        model.load_state_dict(ckpt["generator"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit its architecture: {err}") from None
    return model.eval()


def require_rgb_stain_model(info: dict[str, Any], *, source: str, what: str) -> None:
    """One-line error unless the model maps RGB ``uint8`` stacks to a stained RGB image.

    Models trained on ``k``-channel or ``uint16`` data (fluorescence targets, mono inputs)
    carry their channel layout and scales in ``info``; whole-scan staining and the
    bioimage.io package are written for RGB stains only.
    """
    if not info.get("rgb_target", True) or int(info.get("input_components", 3)) != 3:
        targets = ", ".join(info.get("target_names", [])) or "non-RGB targets"
        raise CheckpointError(
            f"{source} predicts {targets} from {info.get('input_components')}-component "
            f"images, not an RGB stain from RGB images; {what} supports RGB stain models only "
            "(use scope evaluate for this model)"
        )
    scales = [*(info.get("input_scale") or []), *(info.get("target_scale") or [])]
    if any(float(v) != 255.0 for v in scales):
        raise CheckpointError(
            f"{source} was trained on 16-bit data; {what} supports 8-bit RGB models only"
        )


def check_same_model(
    info: dict[str, Any], expected: dict[str, Any], *, source: str, what: str
) -> None:
    """Raise a one-line error when ``info`` (a checkpoint's) differs from ``expected``.

    Compares the architecture and the stack's channel names; ``source`` names the
    checkpoint and ``what`` the thing it was meant for ("this run", "the dataset").
    """
    if info["channel_names"] != expected["channel_names"]:
        a, b = info["channel_names"], expected["channel_names"]
        missing = [n for n in b if n not in a]
        extra = [n for n in a if n not in b]
        detail = (
            f"{len(a)} images (stack {info['stack']!r}) vs {len(b)} (stack {expected['stack']!r})"
            if len(a) != len(b) or missing or extra
            else "the same images in another order"
        )
        raise CheckpointError(f"{source} was trained on another stack than {what}: {detail}")
    for key in ("generator", "generator_kwargs", "in_channels"):
        if info[key] != expected[key]:
            raise CheckpointError(
                f"{source} holds another architecture than {what}: {key} "
                f"{info[key]!r} vs {expected[key]!r}"
            )


# -- RNG states ------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """torch (CPU and every CUDA device), Python ``random`` and NumPy's global RNG."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; some serialisers hand back lists."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value
