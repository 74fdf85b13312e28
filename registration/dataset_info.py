"""``scope dataset info``: what a dataset file holds, as a JSON-friendly dict and a picture grid.

:func:`describe_dataset` counts cells, splits and QC flags (``scope.dataset_tables`` renders
it as tables); :func:`preview_grid` draws a PNG of cells to check matches by eye.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.vocabulary import SPLITS, ChannelKind
from registration.qc import FLAG_ORDER


def cell_flags(cells: np.ndarray) -> list[set[str]]:
    return [{f for f in str(s).split(",") if f} for s in cells["qc_flags"]]


def describe_dataset(path: str | Path) -> dict[str, Any]:
    """What a dataset file holds: a JSON-friendly dict.

    Keys: ``path``, ``n_cells``, ``crop_size``, ``n_channels``, ``channels`` (names),
    ``input_shape``, ``slides`` (slide → cells), ``splits`` (split → cells), ``splits_clean``
    (unflagged cells per split), ``flags`` (flag → cells), ``n_flagged``, ``n_clean``,
    ``n_highres``, ``median_ssim``, ``median_highres_scale``, ``slide_transform``,
    ``software_version``.
    """
    from registration.dataset import Dataset

    with Dataset(path) as ds:
        cells = ds.cells
        flags = cell_flags(cells)
        counts = dict.fromkeys(FLAG_ORDER, 0)
        for fl in flags:
            for f in fl:
                counts[f] = counts.get(f, 0) + 1
        clean = np.array([not f for f in flags], dtype=bool)
        slides, n_per = np.unique(cells["slide"], return_counts=True)
        ssim = cells["ssim"][np.isfinite(cells["ssim"])]
        scale = cells["highres_scale"][cells["has_highres"] & np.isfinite(cells["highres_scale"])]
        prov = ds.provenance
        return {
            "path": str(ds.path),
            "n_cells": len(cells),
            "crop_size": ds.crop_size,
            "n_channels": len(ds.channels),
            "channels": [str(n) for n in ds.channels["name"]],
            "input_shape": list(ds.inputs.shape),
            "input_dtype": str(ds.inputs.dtype),
            "targets": [str(n) for n in ds.target_channels["name"]],
            "target_dtype": str(ds.targets.dtype),
            "slides": {str(s): int(n) for s, n in zip(slides, n_per, strict=True)},
            "splits": {s: int((cells["split"] == s).sum()) for s in SPLITS},
            "splits_clean": {s: int(((cells["split"] == s) & clean).sum()) for s in SPLITS},
            "flags": counts,
            "n_flagged": int((~clean).sum()),
            "n_clean": int(clean.sum()),
            "n_highres": int(cells["has_highres"].sum()),
            "median_ssim": float(np.median(ssim)) if len(ssim) else float("nan"),
            "median_highres_scale": float(np.median(scale)) if len(scale) else float("nan"),
            "slide_transform": prov.get("slide_transform"),
            "software_version": str(ds.attrs.get("software_version", "")),
        }


def _grey_tiles(image: np.ndarray) -> list[np.ndarray]:
    """``(h, w, c)`` of any dtype → ``c`` grey ``(h, w, 3) uint8`` tiles, each by its own max."""
    out = []
    for ch in np.moveaxis(np.asarray(image, np.float64), -1, 0):
        top = max(float(ch.max()), 1.0)
        grey = np.round(ch / top * 255.0).astype(np.uint8)
        out.append(np.repeat(grey[..., None], 3, axis=-1))
    return out


def preview_grid(
    path: str | Path,
    out: str | Path,
    *,
    n: int = 24,
    seed: int = 0,
    include_flagged: bool = True,
) -> Path:
    """Save a PNG grid: per cell, input brightfield | stained target | 100x target.

    A red frame marks flagged cells, with the first flag written under it. ``n`` cells are
    drawn at random (seeded), flagged ones included unless ``include_flagged`` is false.
    """
    import cv2

    from registration.dataset import Dataset

    with Dataset(path) as ds:
        cells = ds.cells
        if len(cells) == 0:
            from registration.manage import DatasetOperationError

            raise DatasetOperationError(f"{path} holds no cells to show")
        flags = cell_flags(cells)
        pool = np.arange(len(cells)) if include_flagged else np.flatnonzero([not f for f in flags])
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
        bf = int(np.flatnonzero(ds.channels["kind"] == ChannelKind.BRIGHTFIELD)[0])
        c = ds.crop_size
        scale = max(1, 96 // c)
        tiles = []
        rgb = ds.rgb_stain_target and ds.input_components == 3
        for k in pick:
            if rgb:
                row = [
                    ds.inputs[k, bf],
                    ds.targets[k],
                    ds.targets_highres[k]
                    if cells["has_highres"][k]
                    else np.full((c, c, 3), 40, np.uint8),
                ]
            else:  # mono inputs or k target channels: one grey tile per channel
                row = _grey_tiles(ds.inputs[k, bf]) + _grey_tiles(ds.targets[k])
            tile = np.concatenate(
                [np.pad(r, ((1, 1), (1, 1), (0, 0)), constant_values=255) for r in row], axis=1
            )
            tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            label = np.full((14, tile.shape[1], 3), 255, np.uint8)
            text = f"#{k} " + (sorted(flags[k])[0] if flags[k] else f"ssim {cells['ssim'][k]:.2f}")
            cv2.putText(
                label,
                text,
                (2, 11),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (200, 0, 0) if flags[k] else (0, 0, 0),
                1,
            )
            tile = np.concatenate([tile, label], axis=0)
            if flags[k]:
                cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), (220, 0, 0), 2)
            tiles.append(np.pad(tile, ((3, 3), (3, 3), (0, 0)), constant_values=255))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate(
        [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)], axis=0
    )
    from acquisition.files import check_target, guard_output, write_image

    out = guard_output(out, option="--grid")
    check_target(out, "image", command="scope dataset info", option="--grid")
    return write_image(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def description_json(path: str | Path) -> str:
    return json.dumps(describe_dataset(path), indent=2, default=float)
