"""Training data: cells of a dataset file, selected by stack preset, target, split and QC.

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
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acquisition.vocabulary import SPLITS, Split
from hardware_profiles.presets import PresetError, select_channels
from registration.dataset import Dataset
from training.device import available_memory_bytes as available_memory_bytes
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


def _torch_dtype(dtype: str) -> Any:
    """Storage dtype → the numpy dtype batches travel in (uint16 → int32: torch lacks ops)."""
    return np.uint8 if dtype == "uint8" else np.int32


class CellStream(torch.utils.data.Dataset):
    """Cells of one split read from the HDF5 file on demand (or from a RAM cache).

    Items are ``(stack (n_images, h, w, c_in), target (h, w, c_out), row)``;
    :meth:`__getitems__` returns whole batches, so a :class:`torch.utils.data.DataLoader`
    with ``batch_sampler`` reads each batch in one call. The file is opened lazily in each
    worker process (h5py handles must not cross ``fork``).
    """

    def __init__(self, spec: DataSpec, rows: np.ndarray, *, cache: bool = False) -> None:
        self.spec = spec
        self.rows = np.asarray(rows, np.int64)
        self._channels = np.asarray(spec.channel_indices, np.int64)
        self._ds: Dataset | None = None
        self._pid: int | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        if cache:
            self._cache = self._load_all()

    def _dataset(self) -> Dataset:
        if self._ds is None or self._pid != os.getpid():
            self._ds = Dataset(self.spec.path)
            self._pid = os.getpid()
        return self._ds

    def _load_all(self) -> tuple[np.ndarray, np.ndarray]:
        c, sp = self.spec.crop_size, self.spec
        per_cell = (
            len(self._channels)
            * sp.input_components
            * np.dtype(_torch_dtype(sp.input_dtype)).itemsize
            + sp.out_channels * np.dtype(_torch_dtype(sp.target_dtype)).itemsize
        )
        need = len(self.rows) * per_cell * c * c
        avail = available_memory_bytes()
        if need > 0.8 * avail:
            raise TrainingError(
                f"caching {len(self.rows)} cells needs {need / 2**30:.1f} GiB but only "
                f"{avail / 2**30:.1f} GiB of memory is available; train without --cache"
            )
        return self._read(self.rows)

    def _read(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        ds = self._dataset()
        c = self.spec.crop_size
        n_ch = len(self._channels)
        all_channels = n_ch == ds.inputs.shape[1]
        sp = self.spec
        stacks = np.empty(
            (len(rows), n_ch, c, c, sp.input_components), _torch_dtype(sp.input_dtype)
        )
        targets = np.empty((len(rows), c, c, sp.out_channels), _torch_dtype(sp.target_dtype))
        tds = ds.targets if self.spec.target == "20x" else ds.targets_highres
        for j, row in enumerate(rows):
            chunk = ds.inputs[int(row)]  # one HDF5 chunk: the cell's whole stack
            stacks[j] = chunk if all_channels else chunk[self._channels]
            targets[j] = tds[int(row)]
        return stacks, targets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y, r = self.__getitems__([i])
        return x[0], y[0], int(r[0])

    def __getitems__(self, items: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        items = np.asarray(items, np.int64)
        if self._cache is not None:
            x, y = self._cache[0][items], self._cache[1][items]
        else:
            x, y = self._read(self.rows[items])
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(self.rows[items])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split as ``(stacks, targets)`` uint8 arrays (cached or read now)."""
        return self._cache if self._cache is not None else self._load_all()

    def close(self) -> None:
        if self._ds is not None and self._pid == os.getpid():
            self._ds.close()
        self._ds = None


def _passthrough(batch: Any) -> Any:
    return batch


@dataclass(frozen=True)
class EpochPlan:
    """This process's batches of one epoch: positions into the split, and loss scales.

    ``scales[k]`` multiplies batch ``k``'s mean loss so that averaging gradients over
    processes (DistributedDataParallel) gives exactly the mean over the global batch even
    when the last global batch splits unevenly.
    """

    batches: list[np.ndarray]
    scales: list[float]
    global_sizes: list[int]


def plan_epoch(
    n: int,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    rank: int = 0,
    world_size: int = 1,
    every_cell: bool = False,
) -> EpochPlan:
    """Deterministic batches for ``epoch``: the same global batches for any process count.

    A seeded permutation of ``range(n)`` is cut into global batches of
    ``batch_size · world_size``; process ``rank`` takes its contiguous share of each. For
    training (gradients are averaged over processes, so every process must take part in every
    step) a final partial batch is kept only when every process gets at least one cell; with
    ``every_cell`` (validation, evaluation) every cell is kept and a process may have fewer
    batches. The plan depends only on ``(seed, epoch)``, so a resumed run sees exactly the
    batches of an uninterrupted one.
    """
    order = (
        np.random.default_rng([seed, epoch, 0x5C0BE]).permutation(n) if shuffle else np.arange(n)
    )
    g = batch_size * world_size
    batches, scales, sizes = [], [], []
    for start in range(0, n, g):
        chunk = order[start : start + g]
        if len(chunk) < world_size and not every_cell:
            break
        shares = np.array_split(chunk, world_size)
        mine = shares[rank]
        if len(mine) == 0:
            continue
        batches.append(np.sort(mine))  # sorted rows read faster; the mean loss is unchanged
        scales.append(len(mine) * world_size / len(chunk))
        sizes.append(len(chunk))
    return EpochPlan(batches, scales, sizes)


class BatchSource:
    """Yields ``(stack, target, rows)`` uint8 batches on ``device`` for an epoch plan.

    With ``cache="device"`` the split lives on the device and batches are gathered there;
    otherwise a :class:`~torch.utils.data.DataLoader` (``workers`` processes, pinned memory
    on CUDA) reads them, ``prefetch`` batches ahead, and copies them without blocking.
    """

    def __init__(
        self,
        stream: CellStream,
        *,
        device: torch.device,
        workers: int = 0,
        on_device: bool = False,
    ) -> None:
        self.stream = stream
        self.device = device
        self.workers = workers
        self._tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        if on_device:
            x, y = stream.arrays()
            self._tensors = (
                torch.from_numpy(x).to(device),
                torch.from_numpy(y).to(device),
                torch.from_numpy(stream.rows).to(device),
            )

    def __len__(self) -> int:
        return len(self.stream)

    def iterate(
        self, batches: list[np.ndarray]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self._tensors is not None:
            xs, ys, rows = self._tensors
            for b in batches:
                idx = torch.from_numpy(np.asarray(b, np.int64)).to(self.device)
                yield xs[idx], ys[idx], rows[idx]
            return
        pin = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            self.stream,
            batch_sampler=[list(map(int, b)) for b in batches],
            num_workers=self.workers,
            collate_fn=_passthrough,
            pin_memory=pin,
            prefetch_factor=4 if self.workers > 0 else None,
            persistent_workers=False,
        )
        for x, y, rows in loader:
            yield (
                x.to(self.device, non_blocking=pin),
                y.to(self.device, non_blocking=pin),
                rows.to(self.device, non_blocking=pin),
            )
