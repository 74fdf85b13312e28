"""The options of ``scope evaluate`` and ``scope stain`` (pydantic; the CLI is built from them).

Training's own options are :class:`training.config.TrainConfig`. Each field's description is
the option's help line; defaults and bounds are the library's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from acquisition.vocabulary import Split
from training.defaults import DEFAULT_BLEND


class InferenceOptions(BaseModel):
    """Which checkpoint runs where (shared by evaluate and stain)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Literal["best", "last"] = Field("best", description="best or last.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto (bf16 on GPUs and AMX CPUs), fp32, bf16."
    )


class EvaluateOptions(InferenceOptions):
    """``scope evaluate``: :func:`training.evaluation.evaluate`'s keyword arguments."""

    split: Split = Field(Split.TEST, description="Dataset split to evaluate.")
    dataset: Path | None = Field(None, description="Dataset file (default: the run's).")
    out: Path | None = Field(None, description="Output folder (RUN/eval/SPLIT).")
    batch_size: int = Field(64, ge=1, description="Cells per forward pass.")
    vgg_weights: Path | None = Field(None, description="VGG19 weights for the VGG metric.")


class StainOptions(InferenceOptions):
    """``scope stain``: :func:`training.infer.stain_scan`'s tiling and engine options."""

    tile: int | None = Field(None, ge=16, description="Tile core size in pixels.")
    halo: int | None = Field(None, ge=0, description="Context around tiles (default: exact).")
    blend: int = Field(DEFAULT_BLEND, ge=0, description="Tile overlap blended, pixels.")
    max_memory: float | None = Field(
        None,
        ge=0.25,
        description="GiB the stain may use; sets the tile (CPU: whole process, default 4 and "
        "at most half the available memory).",
    )
    compile: bool = Field(False, description="torch.compile the generator (many fields).")
    engine: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="torch, onnx (onnxruntime on the CPU; exports RUN to ONNX once, cached in "
        "RUN/export/) or auto (the faster for the device).",
    )
