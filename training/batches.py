"""Cells of a resolved dataset read in batches: the HDF5 stream, the epoch plan, the loader.

:class:`CellStream` reads one split's cells (or caches them), :func:`plan_epoch` cuts an
epoch into deterministic batches for any number of processes, and :class:`BatchSource`
delivers the batches on the training device. The dataset itself is resolved by
:func:`training.data.open_training_data`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from registration.dataset import Dataset
from training.data import DataSpec
from training.device import available_memory_bytes
from training.errors import TrainingError


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
