"""``scope export dataset``: a dataset's crops as OME-Zarr or OME-TIFF, one image per cell.

Each cell is one image of ``c = 3 x (n_channels + 2)`` planes: its unstained stack images,
then ``stained`` (the 20x target) and ``stained 100x`` (zeros where the cell has no 100x
image), each RGB folded into ``c``. The image sits at the cell's stage position (unstained
pass) and carries its row of the cells table (split, QC flags, scores) as annotations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from acquisition.export_ome import write
from acquisition.export_scan import CHANNEL_COLUMNS
from acquisition.ome_image import ExportError, OmeImage
from acquisition.progress import Progress
from registration.dataset import Dataset

TARGETS = ("stained", "stained 100x")


def dataset_images(ds: Dataset, cells: Sequence[int] | None = None) -> list[OmeImage]:
    """One :class:`OmeImage` per cell (default: all), read lazily."""
    n = len(ds)
    todo = list(range(n)) if cells is None else [int(c) for c in cells]
    bad = [c for c in todo if not 0 <= c < n]
    if bad:
        raise ExportError(f"{ds.path} has {n} cells; no cell {bad[0]}")
    profile = ds.profile
    if profile is None:
        raise ExportError(f"{ds.path} records no hardware profile, so no pixel size to export")
    p = float(profile.scan_objective.pixel_size_um)
    c = ds.crop_size
    table = ds.channels
    cols = [k for k in CHANNEL_COLUMNS if k in (table.dtype.names or ())]
    channels = [{"name": str(row["name"]), **{k: row[k] for k in cols}} for row in table]
    channels += [{"name": name, "kind": "target"} for name in TARGETS]
    names = ds.cells.dtype.names or ()
    images = []
    for i in todo:
        row = ds.cells[i]
        x_um, y_um = float(row["x_um"]), float(row["y_um"])
        images.append(
            OmeImage(
                name=f"cell {i}",
                height=c,
                width=c,
                pixel_size_um=p,
                x_um=x_um - (c - 1) / 2 * p,
                y_um=y_um - (c - 1) / 2 * p,
                z_um=0.0,
                channels=channels,
                frames=_cell_frames(ds, i),
                annotations={"cell": i, **{k: row[k] for k in names}},
            )
        )
    return images


def _cell_frames(ds: Dataset, i: int):
    def frames() -> Iterator[np.ndarray]:
        yield from ds.inputs[i]
        yield ds.targets[i]
        yield ds.targets_highres[i]

    return frames


def export_dataset(
    path: str | Path,
    out: str | Path,
    *,
    to: str,
    cells: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> tuple[Path, int, int]:
    """Export a dataset's crops; returns ``(out, n_images, raw bytes)``."""
    with Dataset(path) as ds:
        images = dataset_images(ds, cells)
        attrs = {
            "source": str(Path(path).resolve()),
            "format": "scope-dataset",
            "crop_size": ds.crop_size,
            "pixel_size_um": images[0].pixel_size_um if images else None,
        }
        result = write(images, out, to=to, progress=progress, attrs=attrs)
    return result, len(images), sum(img.nbytes for img in images)
