"""Training data: cells of a dataset file, selected by stack preset, target, split and QC.

:func:`open_training_data` resolves a dataset file into a :class:`DataSpec` (what a model is
trained on, saved with every checkpoint) and the rows of each split; reading them in batches
is :mod:`training.batches`.

Cells stay on disk (one HDF5 chunk per cell) unless a cache is asked for; batches travel as
``uint8`` and are normalised to [0, 1] on the training device (:func:`network_input`,
:func:`network_target`), which moves 4x fewer bytes than float32.

Layouts: a stack batch is ``(B, n_images, h, w, c_in)`` as on disk (``c_in`` 3 for RGB, 1
for mono); the network sees ``(B, c_in·n_images, h, w)`` float, image-major (``[img0 R, img0
G, img0 B, img1 R, …]``). Targets are ``(B, h, w, c_out)``. ``uint16`` data travels as
``int32`` (torch lacks flips of ``uint16``) and is scaled per channel (:mod:`training.channels`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.vocabulary import SPLITS, Split
from hardware_profiles.presets import PresetError, select_channels
from registration.dataset import Dataset
from training.errors import TrainingError
from training.tensors import network_input as network_input  # re-exported
from training.tensors import network_target as network_target
from training.tensors import to_uint8_image as to_uint8_image

TARGET_KEYS = {"20x": "targets", "highres": "targets_highres"}


@dataclass(frozen=True)
class DataSpec:
    """What a model is trained on, saved with every checkpoint.

    Attributes
    ----------
    channel_indices
        Rows of the dataset's channel table that form the stack, in table order.
    channel_names
        Their names: a scan or dataset must provide exactly these to use the model.
    """

    path: Path
    stack: str
    target: str
    channel_indices: tuple[int, ...]
    channel_names: tuple[str, ...]
    crop_size: int
    pixel_size_um: float | None
    fingerprint: str
    #: position of the brightfield image within the stack (for grids and reports)
    brightfield_position: int = 0
    #: ``c_in``: components per stack image (3 RGB, 1 mono)
    input_components: int = 3
    #: names of the target channels (``R, G, B`` for a stain)
    target_names: tuple[str, ...] = ("R", "G", "B")
    #: whether the target is a stained RGB image (perceptual loss, colour clinics)
    rgb_target: bool = True
    #: per network input channel / per target channel divisors (:mod:`training.channels`)
    input_scale: tuple[float, ...] | None = None
    target_scale: tuple[float, ...] | None = None
    #: storage dtypes (``uint8`` or ``uint16``)
    input_dtype: str = "uint8"
    target_dtype: str = "uint8"

    @property
    def in_channels(self) -> int:
        return self.input_components * len(self.channel_indices)

    @property
    def out_channels(self) -> int:
        return len(self.target_names)


@dataclass
class TrainingData:
    """A dataset file resolved for training: the stack and the cells of each split."""

    spec: DataSpec
    cells: np.ndarray
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    excluded_flagged: int = 0
    excluded_no_highres: int = 0

    def indices(self, split: str) -> np.ndarray:
        """Dataset row indices of ``split`` (increasing), or a clear error when it is empty."""
        if split not in SPLITS:
            raise TrainingError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        idx = self.splits.get(split, np.empty(0, np.int64))
        if len(idx) == 0:
            why = []
            if self.excluded_flagged:
                why.append(f"{self.excluded_flagged} QC-flagged cells excluded (--include-flagged)")
            if self.excluded_no_highres:
                why.append(f"{self.excluded_no_highres} cells without a 100x target excluded")
            extra = f" ({'; '.join(why)})" if why else ""
            raise TrainingError(
                f"the {split!r} split of {self.spec.path} has no usable cells{extra}"
            )
        return idx


def stack_indices(dataset: Dataset, preset: str) -> list[int]:
    """Channel rows of ``dataset`` that stack preset ``preset`` selects, checked for gaps.

    When the dataset records its hardware profile, the preset applied to the profile's full
    stack says which images the preset needs; a dataset lacking any of them (e.g. made from a
    ``le18`` scan, asked for ``full-nohe``) is an error naming the missing channels.
    """
    try:
        keep = select_channels(dataset.channels, preset)
    except PresetError as err:
        raise TrainingError(f"{dataset.path}: {err}") from None
    names = [str(n) for n in dataset.channels["name"]]
    needed: list[str] | None = None
    profile = dataset.profile
    if profile is not None:
        table = profile.channel_table()
        needed = [str(table[i]["name"]) for i in select_channels(table, preset)]
    if needed is not None:
        missing = [n for n in needed if n not in names]
        if missing:
            listed = ", ".join(missing[:4]) + (", …" if len(missing) > 4 else "")
            raise TrainingError(
                f"stack preset {preset!r} needs {len(needed)} images but {dataset.path} lacks "
                f"{len(missing)} of them ({listed}); choose a smaller --stack"
            )
    elif preset != "brightfield" and len(keep) == 1:
        raise TrainingError(
            f"stack preset {preset!r} needs PLS images but {dataset.path} holds only the "
            "brightfield channel; use --stack brightfield"
        )
    return keep


def _fingerprint(dataset: Dataset) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([str(n) for n in dataset.channels["name"]]).encode())
    for col in ("slide", "position", "x_px", "y_px", "split"):
        h.update(np.ascontiguousarray(dataset.cells[col]).tobytes())
    return h.hexdigest()[:16]


def open_training_data(
    path: str | Path, *, stack: str, target: str = "20x", include_flagged: bool = False
) -> TrainingData:
    """Resolve a dataset file for training.

    Parameters
    ----------
    path
        A ``.dataset.h5`` file.
    stack
        Stack preset (``full-nohe``, ``le18``, ``brightfield``, …).
    target
        ``20x`` or ``highres`` (then only cells with ``has_highres``).
    include_flagged
        Keep cells whose ``qc_flags`` are not empty — except ``near_edge`` cells, whose
        crops are zero-padded: those are always left out (and counted as flagged).
    """
    if target not in TARGET_KEYS:
        raise TrainingError(f"unknown target {target!r}; choose 20x or highres")
    with Dataset(path) as ds:
        keep = stack_indices(ds, stack)
        cells = ds.cells
        usable = np.ones(len(cells), bool)
        flagged = np.array([bool(str(f).strip()) for f in cells["qc_flags"]], bool)
        # near_edge crops are zero-padded where no field had pixels: never trained on, even
        # with include_flagged (they would teach the network black bands)
        padded = np.array(["near_edge" in str(f).split(",") for f in cells["qc_flags"]], bool)
        n_flagged = int(padded.sum())
        usable &= ~padded
        if not include_flagged:
            n_flagged = int(flagged.sum())
            usable &= ~flagged
        n_no_hr = 0
        if target == "highres":
            has = np.asarray(cells["has_highres"], bool)
            if not has.any():
                raise TrainingError(
                    f"{ds.path} has no 100x targets (run `scope match --highres`), so "
                    "--target highres cannot train; use --target 20x"
                )
            n_no_hr = int((usable & ~has).sum())
            usable &= has
        splits = {
            s: np.flatnonzero(usable & (cells["split"] == s)).astype(np.int64) for s in SPLITS
        }
        profile = ds.profile
        tds = ds.targets if target == "20x" else ds.targets_highres
        in_scale, out_scale = _scales(ds, keep, tds, splits[Split.TRAIN])
        spec = DataSpec(
            path=Path(path),
            stack=stack,
            target=target,
            channel_indices=tuple(int(i) for i in keep),
            channel_names=tuple(str(ds.channels["name"][i]) for i in keep),
            crop_size=ds.crop_size,
            pixel_size_um=None if profile is None else float(profile.scan_objective.pixel_size_um),
            fingerprint=_fingerprint(ds),
            brightfield_position=[str(ds.channels["kind"][i]) for i in keep].index("brightfield"),
            input_components=ds.input_components,
            target_names=tuple(ds.target_names),
            rgb_target=ds.rgb_stain_target,
            input_scale=in_scale,
            target_scale=out_scale,
            input_dtype=str(ds.inputs.dtype),
            target_dtype=str(tds.dtype),
        )
        return TrainingData(spec, cells, splits, n_flagged, n_no_hr)


def _scales(
    ds: Dataset, keep: Sequence[int], tds: Any, train_rows: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel scales (255 for uint8; uint16 measured on the first training cells)."""
    from training.channels import SCALE_CELLS, measure_scales

    c_in, c_out = ds.input_components, tds.shape[-1]
    n_in = c_in * len(keep)
    if ds.inputs.dtype == np.uint8 and tds.dtype == np.uint8:
        return (255.0,) * n_in, (255.0,) * c_out
    rows = np.asarray(train_rows[:SCALE_CELLS], np.int64)
    if len(rows) == 0:
        rows = np.arange(min(len(ds), SCALE_CELLS))
    inputs = np.stack([ds.inputs[int(r)][list(keep)] for r in rows])
    targets = np.stack([tds[int(r)] for r in rows])
    return measure_scales(inputs, targets)
