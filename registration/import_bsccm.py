"""``scope dataset import bsccm``: a BSCCM download as a scope dataset file.

The Berkeley Single Cell Computational Microscopy dataset (Pinkard et al., Waller lab) holds
white blood cells imaged under 23 LED-array illuminations (brightfield, darkfield rings, DPC
halves, single LEDs) and up to 6 fluorescence channels, 128x128 ``uint16`` crops, with 3- and
10-class cell-type labels. It is read through its own package (``pip install 'scope-pls[bsccm]'``),
whose reader expects, in the dataset folder:

- ``BSCCM_global_metadata.json`` (``name``, ``led_array.channel_names``,
  ``fluorescence.channel_names``);
- ``BSCCM_index.csv`` (index column ``global_index``; ``data_path``, ``batch``,
  ``slide_replicate``, ``antibodies``, …);
- ``BSCCM_images.zarr`` with ``{data_path}/led_array/cell_{i}`` ``(23, h, w)`` and
  ``{data_path}/fluor/cell_{i}`` ``(6, h, w)`` arrays;
- optionally ``BSCCM_surface_markers.csv`` (its ``…selection_gated`` columns give the labels).

scope never downloads: fetching BSCCM (``bsccm.download_dataset``) is the user's step. The
reader joins its root and file names by plain string concatenation, so the root is passed
with its trailing separator.

The dataset written has ``c_in = 1`` (monochrome) ``uint16`` inputs, one image per chosen
LED-array channel, and ``c_out = k`` ``uint16`` fluorescence targets. BSCCM's labels become
their own cell columns ``bsccm_class3`` (0 lymphocyte, 1 granulocyte, 2 monocyte) and
``bsccm_class10`` (-1: unlabelled); they do not map onto the five Romanowsky types, so
``type`` stays empty.
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.progress import Progress, or_null
from acquisition.vocabulary import SPLITS, ChannelKind
from registration.dataset import DatasetError, DatasetWriter

LABEL_FIELDS = [("bsccm_class3", np.int64), ("bsccm_class10", np.int64)]
CLASS3_NAMES = ("lymphocyte", "granulocyte", "monocyte")
#: cells written per HDF5 append
_CHUNK = 64


def _reader(root: str | Path) -> Any:
    try:
        from bsccm import BSCCM
    except ImportError:
        raise DatasetError(
            "scope dataset import bsccm needs the bsccm package: pip install 'scope-pls[bsccm]'"
        ) from None
    folder = Path(root).expanduser()
    if not (folder / "BSCCM_global_metadata.json").is_file():
        raise DatasetError(
            f"{folder} is not a BSCCM folder (no BSCCM_global_metadata.json); give the "
            "extracted dataset folder, e.g. .../BSCCM-tiny (download it with the bsccm package)"
        )
    # the reader prints "Opening …" and leaves its metadata file for the garbage collector
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        reader = BSCCM(str(folder.resolve()) + os.sep)
        gc.collect()
    return reader


def led_channel_row(name: str) -> dict[str, Any]:
    """A scope channel-table row for a BSCCM LED-array channel name.

    ``Brightfield`` → brightfield; ``DF_<NA·100>…`` → darkfield at θ = asin(NA); ``DPC_…``
    (half-disk) and ``LED<id>`` (one LED, position unknown here) → ``pls`` with θ unknown, so
    the ``le<N>`` stack presets leave them out and ``full`` keeps them.
    """
    row: dict[str, Any] = {
        "name": name,
        "leds": "",
        "kind": ChannelKind.PLS,
        "exposure_level": "single",
        "theta_deg": math.nan,
        "phi_deg": math.nan,
        "exposure_ms": math.nan,
        "gain": math.nan,
        "brightness": 0,
    }
    low = name.lower()
    if low == "brightfield":
        row["kind"] = ChannelKind.BRIGHTFIELD
        row["theta_deg"] = 0.0
    elif m := re.match(r"df_(\d+)", low):
        row["kind"] = ChannelKind.DARKFIELD
        na = int(m.group(1)) / 100.0
        if na < 1.0:
            row["theta_deg"] = math.degrees(math.asin(na))
    elif m := re.match(r"led(\d+)$", low):
        row["leds"] = m.group(1)
    return row


def fluor_channel_row(name: str) -> dict[str, Any]:
    """A target-channel row for ``Fluor_<lo>-<hi>`` (emission band, nm; ``Fluor_690-``: ≥ 690)."""
    nums = [float(v) for v in re.findall(r"\d+", name)]
    wavelength = sum(nums[:2]) / len(nums[:2]) if nums else math.nan
    return {
        "name": name,
        "kind": "fluorescence",
        "illumination": "epi",
        "wavelength_nm": wavelength,
    }


def _pick(names: Sequence[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    if not wanted:
        return list(names)
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise DatasetError(
            f"BSCCM has no {what} channel {', '.join(unknown)}; choose from {', '.join(names)}"
        )
    return list(wanted)


def _labels(reader: Any, indices: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: np.full(len(indices), -1, np.int64) for name, _ in LABEL_FIELDS}
    markers = getattr(reader, "surface_marker_dataframe", None)
    if markers is None or not any("selection_gated" in c for c in markers.columns):
        return out
    pos = {int(g): k for k, g in enumerate(indices)}
    for name, ten in (("bsccm_class3", False), ("bsccm_class10", True)):
        idx, lab = reader.get_cell_type_classification_data(ten_class_version=ten)
        for g, v in zip(np.asarray(idx, np.int64), np.asarray(lab), strict=True):
            if int(g) in pos:
                out[name][pos[int(g)]] = int(v)
    return out


def _as_stored(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype in (np.uint8, np.uint16):
        return a.astype(np.uint16, copy=False)
    return np.clip(np.round(a.astype(np.float64)), 0, 65535).astype(np.uint16)


def _cell(reader: Any, index: int, contrast: str, positions: Sequence[int]) -> np.ndarray:
    """Channels ``positions`` of one cell's ``(n, h, w)`` array, read once.

    ``reader.read_image(i, name)`` reads the cell's whole array for every channel asked; this
    reads it once from the same place (``{data_path}/{contrast}/cell_{i}`` in the reader's
    zarr store): once per cell instead of once per channel.
    """
    path = str(reader.index_dataframe.loc[index]["data_path"])
    arr = np.asarray(reader.zarr_dataset[f"{path}/{contrast}/cell_{index}"][:])
    return _as_stored(arr[list(positions)])


def import_bsccm(
    root: str | Path,
    out: str | Path,
    *,
    channels: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    limit: int | None = None,
    antibodies: str | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    software_version: str = "",
    progress: Progress | None = None,
) -> Path:
    """Write the BSCCM cells under ``root`` to the dataset file ``out``.

    Parameters
    ----------
    root
        The extracted BSCCM folder (``BSCCM``, ``BSCCM-tiny``, ``BSCCM-coherent``, …).
    channels, targets
        LED-array input channels and fluorescence target channels (default: all).
    limit
        Keep this many cells (a seeded random choice), e.g. 1000 for the MSc recipe.
    antibodies
        Only cells of this antibody condition (BSCCM's ``antibodies`` column, e.g. ``all``).
    seed, fractions
        The random cell subset and train/val/test assignment (by cell: BSCCM's cells are
        isolated crops).
    """
    reader = _reader(root)
    led_names = [str(n) for n in reader.led_array_channel_names]
    fl_names = [str(n) for n in reader.fluor_channel_names]
    chosen = _pick(led_names, channels, "LED-array")
    if "Brightfield" not in chosen:
        chosen = ["Brightfield", *chosen] if "Brightfield" in led_names else chosen
    fl = _pick(fl_names, targets, "fluorescence")
    if not fl:
        raise DatasetError(f"{root} has no fluorescence channels to train on")
    indices = np.asarray(reader.get_indices(antibodies=antibodies), np.int64)
    if len(indices) == 0:
        raise DatasetError(
            f"{root} has no cells" + (f" with antibodies {antibodies!r}" if antibodies else "")
        )
    rng = np.random.default_rng([seed, 0xB5CC])
    if limit is not None and limit < len(indices):
        indices = np.sort(rng.choice(indices, int(limit), replace=False))
    first = np.asarray(reader.read_image(int(indices[0]), chosen[0]))
    h, w = first.shape[-2:]
    if h != w:
        raise DatasetError(f"BSCCM crops are {h}x{w}; scope datasets need square crops")
    labels = _labels(reader, indices)
    frac = np.asarray(fractions, np.float64) / float(np.sum(fractions))
    bounds = np.round(np.cumsum(frac) * len(indices)).astype(int)
    order = rng.permutation(len(indices))
    split = np.empty(len(indices), object)
    for s, a, b in zip(SPLITS, [0, *bounds[:-1]], bounds, strict=True):
        split[order[a:b]] = s
    frame = reader.index_dataframe
    led_pos = [led_names.index(n) for n in chosen]
    fl_pos = [fl_names.index(n) for n in fl]
    c = (h - 1) / 2
    provenance = {
        "source": "bsccm",
        "root": str(Path(root).expanduser().resolve()),
        "bsccm_name": str(reader),
        "channels": chosen,
        "targets": fl,
        "antibodies": antibodies,
        "limit": limit,
        "seed": seed,
    }
    with DatasetWriter(
        out,
        channels=[led_channel_row(n) for n in chosen],
        crop_size=h,
        provenance=provenance,
        software_version=software_version,
        written_by="scope dataset import bsccm",
        input_components=1,
        target_channels=[fluor_channel_row(n) for n in fl],
        input_dtype=np.uint16,
        target_dtype=np.uint16,
        label_fields=LABEL_FIELDS,
    ) as writer:
        progress = or_null(progress)
        progress.start("cells", len(indices), label="importing cells")
        for a in range(0, len(indices), _CHUNK):
            part = indices[a : a + _CHUNK]
            xs = np.stack([_cell(reader, int(g), "led_array", led_pos) for g in part])[..., None]
            ys = np.stack(
                [np.moveaxis(_cell(reader, int(g), "fluor", fl_pos), 0, -1) for g in part]
            )
            rows = []
            for k, g in enumerate(part):
                entry = frame.loc[int(g)]
                slide = "bsccm-b{}-r{}-{}".format(
                    entry.get("batch", ""),
                    entry.get("slide_replicate", ""),
                    entry.get("antibodies", ""),
                )
                fx = fy = math.nan  # BSCCM records field pixels, not slide micrometres
                rows.append(
                    {
                        "slide": slide,
                        "position": int(g),
                        "x_px": c,
                        "y_px": c,
                        "stained_x_px": c,
                        "stained_y_px": c,
                        "x_um": fx,
                        "y_um": fy,
                        "stained_x_um": fx,
                        "stained_y_um": fy,
                        "coarse_score": math.nan,
                        "ssim": math.nan,
                        "has_highres": False,
                        "highres_score": math.nan,
                        "highres_scale": math.nan,
                        "qc_flags": "",
                        "split": split[a + k],
                        **{name: int(labels[name][a + k]) for name, _ in LABEL_FIELDS},
                    }
                )
            writer.add(xs, ys, rows)
            progress.advance("cells", len(part))
    return Path(out)
