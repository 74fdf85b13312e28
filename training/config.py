"""The training configuration: one pydantic model, saved resolved in ``RUN/config.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hardware_profiles.presets import PRESETS as STACK_PRESETS
from training.presets import PRESETS as TRAINING_PRESETS

#: Options that may differ when a run is resumed; everything else must match the saved run.
RESUME_MUTABLE = frozenset(
    {
        "epochs",
        "patience",
        "workers",
        "cache",
        "device",
        "compile",
        "vgg_weights",
        "dataset",
        "resume",
        "init_from",
        "out",
    }
)


class TrainConfig(BaseModel):
    """Everything ``scope train`` needs; ``None`` means "the preset's / automatic value".

    Attributes
    ----------
    dataset
        The ``.dataset.h5`` file (``scope match`` / ``scope dataset merge``).
    out
        Run folder (``runs/NAME``): config, checkpoints, metrics, samples, report.
    preset
        Loss preset (:data:`training.presets.PRESETS`): ``maeNET``, ``maePNET``, ``maePFNET``,
        ``maePF-RpGAN-SN``, ``pix2pix``.
    stack
        Stack preset selecting the dataset's channels (``hardware_profiles.select_channels``).
    target
        ``20x`` (stained 20x crops) or ``highres`` (100x crops; only cells with them).
    include_flagged
        Keep cells with QC flags (excluded by default).
    generator, blocks, features, growth
        Generator architecture (``None``: the preset's, ``rrdb`` for the thesis presets and
        ``unet`` for ``pix2pix``); ``features=None`` makes the RRDB's width its input channels
        (the thesis). For the U-Net, ``features`` is its first encoder width (default 64).
    input_norm
        ``scale``: each input channel divided by its scale (255 for ``uint8``: the thesis's
        ``[0, 1]``); ``standardise``: also shifted by its mean and divided by its standard
        deviation over the training cells, inside the generator (:mod:`training.input_norm`).
    discriminator
        Critic of a GAN preset: ``vgg`` (thesis) or ``patch`` (conditional PatchGAN); ``None``
        is the preset's.
    epochs, patience
        Maximum epochs; stop after ``patience`` epochs without a better validation loss
        (``None``: never stop early).
    batch_size
        Per process; ``torchrun`` with N processes trains on N·batch_size cells per step.
    lr, lr_d
        Adam learning rates of generator and discriminator (preset: 2e-4, 4e-4).
    lr_schedule
        ``constant`` (thesis), ``cosine`` (to zero at ``epochs``) or ``plateau`` (halve after
        ``patience // 2`` epochs without improvement).
    augment
        Geometry-aware flips/rotations that map the LED set onto itself (``training.augment``).
    device, precision, channels_last, compile
        ``auto`` picks CUDA when present; bf16 autocast on CUDA and on CPUs with AMX/AVX-512
        bf16; channels-last activations (default on for bf16 on a CPU only); ``torch.compile``.
    workers
        Data-loading processes (``None``: up to 8 on CUDA, 0 on CPU).
    cache
        ``none`` streams cells from the file; ``ram`` loads the used splits into memory;
        ``device`` keeps them on the GPU (fastest; must fit).
    seed
        Seeds weights, shuffling, augmentation and dropout; a run is reproducible on CPU.
    resume
        Continue ``out`` from its last checkpoint (also to extend a finished run).
    vgg_weights
        torchvision VGG19 ImageNet weights for the perceptual loss (else the torch hub cache).
    init_from
        A run folder or checkpoint whose generator initialises this run (required by the
        GAN preset: a trained maePFNET).
    samples
        Validation cells shown in the per-epoch prediction grids.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="Dataset file (.dataset.h5).")
    out: Path = Field(description="Run folder, e.g. runs/NAME.")
    preset: str = Field("maePFNET", description="Loss preset (maePFNET needs VGG19 weights).")
    stack: str = Field("full-nohe", description="Stack preset: the dataset channels used.")
    target: Literal["20x", "highres"] = Field("20x", description="20x or highres crops.")
    include_flagged: bool = Field(False, description="Keep QC-flagged cells.")
    generator: Literal["rrdb", "unet"] | None = Field(
        None, description="rrdb (thesis) or unet (default: the preset's)."
    )
    blocks: int = Field(4, ge=1, le=64, description="RRDB blocks.")
    features: int | None = Field(
        None, ge=1, description="Generator width (default: input channels)."
    )
    growth: int = Field(32, ge=1, description="RRDB growth channels.")
    input_norm: Literal["scale", "standardise"] = Field(
        "scale",
        description="Input normalisation: scale (divide by 255) or standardise (per channel, "
        "mean 0 and standard deviation 1 over the training cells).",
    )
    discriminator: Literal["vgg", "patch"] | None = Field(
        None, description="GAN critic: vgg (thesis) or patch (default: the preset's)."
    )
    epochs: int = Field(200, ge=1, description="Maximum epochs.")
    patience: int | None = Field(10, ge=1, description="Early-stopping patience in epochs.")
    batch_size: int | None = Field(
        None, ge=1, description="Cells per step and process (default: the preset's, 20)."
    )
    lr: float | None = Field(
        None, gt=0, description="Generator learning rate (default: the preset's, 2e-4)."
    )
    lr_d: float | None = Field(
        None, gt=0, description="Critic learning rate (default: the preset's, 4e-4)."
    )
    lr_schedule: Literal["constant", "cosine", "plateau"] = Field(
        "constant", description="Learning-rate schedule."
    )
    augment: bool = Field(False, description="Flips/rotations that respect the LEDs.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto, fp32 or bf16.")
    channels_last: bool | None = Field(
        None, description="Channels-last activations (default: on for bf16 on a CPU, off on CUDA)."
    )
    compile: bool = Field(False, description="torch.compile the generator.")
    workers: int | None = Field(
        None, ge=0, description="Data-loading processes (default: up to 8 on CUDA, 0 on CPU)."
    )
    cache: Literal["none", "ram", "device"] = Field(
        "none", description="Keep cells in ram or on the device."
    )
    seed: int = Field(0, description="Random seed.")
    resume: bool = Field(False, description="Continue the run in --out (or extend it).")
    vgg_weights: Path | None = Field(None, description="torchvision VGG19 ImageNet weights (.pth).")
    init_from: Path | None = Field(
        None, description="Run or checkpoint whose generator starts this run."
    )
    samples: int = Field(8, ge=0, le=64, description="Cells in sample grids.")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in TRAINING_PRESETS:
            raise ValueError(
                f"unknown preset {value!r}; choose one of {', '.join(TRAINING_PRESETS)}"
            )
        return value

    @field_validator("stack")
    @classmethod
    def _known_stack(cls, value: str) -> str:
        if value not in STACK_PRESETS:
            raise ValueError(f"unknown stack {value!r}; choose one of {', '.join(STACK_PRESETS)}")
        return value

    def to_jsonable(self) -> dict[str, Any]:
        """Plain types only (paths as strings), for YAML and checkpoints."""
        return self.model_dump(mode="json")
