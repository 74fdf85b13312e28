"""napari reader (npe2 manifest ``scope/napari.yaml``, extra ``scope-pls[napari]``).

Opens scope's HDF5 files as image layers in µm, lazily (frames are read when shown):

- ``*.scan.h5``: one RGB layer per acquired field, ``(stack image, y, x)``, placed at the
  field's stage position; ``metadata["channel_names"]`` names the stack images.
- ``*.dataset.h5``: ``inputs`` ``(cell, stack image, y, x)``, ``stained`` and ``stained
  100x`` ``(cell, y, x)`` RGB layers; ``metadata["cells"]`` holds the cells table.
- ``*.stained-virtual.h5`` (``scope stain``): one RGB layer per stained field at its stage
  position.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, dict[str, Any], str]
SUFFIXES = (".scan.h5", ".dataset.h5", ".stained-virtual.h5")


class FieldView:
    """``dataset[index]`` as a lazy array: napari reads only the planes it shows."""

    def __init__(self, dataset: Any, index: int) -> None:
        self.dataset = dataset
        self.index = int(index)
        self.shape = tuple(dataset.shape[1:])
        self.dtype = np.dtype(dataset.dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        simple = all(isinstance(k, (int, np.integer, slice)) or k is Ellipsis for k in key)
        if simple and all(not isinstance(k, slice) or k.step in (None, 1) for k in key):
            return np.asarray(self.dataset[(self.index, *key)])
        return np.asarray(self.dataset[self.index])[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = np.asarray(self.dataset[self.index])
        return arr if dtype is None else arr.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 ``get_reader``: a reader for scope's files, else None (another plugin's turn)."""
    if isinstance(path, list):
        if not path or not all(str(p).endswith(SUFFIXES) for p in path):
            return None
    elif not str(path).endswith(SUFFIXES):
        return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    """Layers of every file in ``path``."""
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerData] = []
    for p in paths:
        p = str(p)
        if p.endswith(".scan.h5"):
            layers += scan_layers(p)
        elif p.endswith(".dataset.h5"):
            layers += dataset_layers(p)
        else:
            layers += stained_layers(p)
    return layers


def _origin(x_um: float, y_um: float, hw: tuple[int, int], p: float) -> tuple[float, float]:
    """Stage position (µm) of pixel (0, 0) of a field centred at ``(x_um, y_um)``."""
    return y_um - (hw[0] - 1) / 2 * p, x_um - (hw[1] - 1) / 2 * p


def scan_layers(path: str | Path) -> list[LayerData]:
    from acquisition.scanfile import ScanFile

    scan = ScanFile(path)  # stays open while napari holds the layers
    p = scan.pixel_size_um
    names = [str(n) for n in scan.channels["name"]]
    hw = scan.frame_shape
    layers = []
    for pos in (int(i) for i in scan.done):
        row = scan.positions[pos]
        y0, x0 = _origin(float(row["x_um"]), float(row["y_um"]), hw, p)
        meta = {"channel_names": names, "field": pos, "source": str(path), "units": "µm"}
        layers.append(
            (
                FieldView(scan.images, pos),
                {"name": f"{scan.slide} {scan.pass_} field {pos}", "rgb": True,
                 "scale": (1.0, p, p), "translate": (0.0, y0, x0), "metadata": meta},
                "image",
            )
        )  # fmt: skip
    return layers


def dataset_layers(path: str | Path) -> list[LayerData]:
    from registration.dataset import Dataset

    ds = Dataset(path)  # stays open while napari holds the layers
    profile = ds.profile
    p = float(profile.scan_objective.pixel_size_um) if profile is not None else 1.0
    names = [str(n) for n in ds.channels["name"]]
    cells = {k: ds.cells[k].tolist() for k in ds.cells.dtype.names or ()}
    stem = Path(path).name.removesuffix(".dataset.h5")
    common = {"rgb": True, "metadata": {"cells": cells, "source": str(path), "units": "µm"}}
    inputs_meta = {**common["metadata"], "channel_names": names}
    return [
        (ds.inputs, {**common, "name": f"{stem} inputs", "scale": (1.0, 1.0, p, p),
                     "metadata": inputs_meta}, "image"),
        (ds.targets, {**common, "name": f"{stem} stained", "scale": (1.0, p, p)}, "image"),
        (ds.targets_highres, {**common, "name": f"{stem} stained 100x", "scale": (1.0, p, p),
                              "visible": False}, "image"),
    ]  # fmt: skip


def stained_layers(path: str | Path) -> list[LayerData]:
    import h5py

    from acquisition.tables import read_table

    f = h5py.File(path, "r")  # stays open while napari holds the layers
    fmt = f.attrs.get("format")
    if fmt != "scope-stained":
        f.close()
        from hardware_profiles.errors import ScopeError

        raise ScopeError(f"{path} is not a scope virtual-stain output (format {fmt!r})")
    p = float(f.attrs["pixel_size_um"])
    images = f["images"]
    table = read_table(f, "positions")
    hw = tuple(images.shape[1:3])
    layers = []
    for k, row in enumerate(table):
        y0, x0 = _origin(float(row["x_um"]), float(row["y_um"]), hw, p)
        layers.append(
            (
                FieldView(images, k),
                {"name": f"stained field {int(row['position'])}", "rgb": True,
                 "scale": (p, p), "translate": (y0, x0),
                 "metadata": {"source": str(path), "field": int(row["position"])}},
                "image",
            )
        )  # fmt: skip
    return layers
