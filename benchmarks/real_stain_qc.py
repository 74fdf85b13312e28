"""The colour QC checks on the public real stained-WBC sets, where every flag is a false one.

Shared by ``bench_qc.py --real-only`` (the table in docs/bench/qc.md) and the tests that hold
the checks under 3 % on real clean cells: one place computes what the checks measure on a
real crop (:func:`crop_signals`), one walks a set (:func:`real_colour_signals`) and one turns
the measures into the slide-level verdicts (:func:`real_colour_flags`).

The sets have no unstained pair and (as far as their experts noted) no precipitate. The
unstained input is stood in for by the stained image's grey for loose dye and ghosts (on a
clean cell every object of the stained image is in the unstained one too; but the stained
grey outlines nuclei far more sharply than an unstained image does) and by a flat image for
blue specks (nothing explained: the strictest case, and the one QC meets on a cell, where the
input never vouches for a speck).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_segmentation import SETS as REAL_SETS  # set name -> µm per pixel

__all__ = [
    "REAL_SETS",
    "crop_signals",
    "real_colour_flags",
    "real_colour_signals",
    "real_stain_specks",
]

WBC_CLASSES = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}


def crop_signals(img: np.ndarray, *, pixel_size_um: float = 0.293) -> tuple[bool, float, float]:
    """``(loose, gap, ratio)`` of the white cell centred in a real stained RGB crop.

    ``loose``: loose dye or dark specks the input (the crop's grey) does not explain;
    ``gap``: :attr:`registration.qc.OnePass.speck_gap` against a flat input; ``ratio``: the
    nucleus edge ratio of the centred cell. ``img`` is at the scan's pixel size.
    """
    import cv2

    from registration.qc import QcOptions, image_noise, one_pass_objects
    from registration.segment import segment_wbcs

    opt = QcOptions()
    seg = segment_wbcs(img, pixel_size_um=pixel_size_um)
    cells, nuclei = seg.cell_labels > 0, seg.labels > 0
    bg = np.percentile(img.reshape(-1, 3), 95, axis=0)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    h, w = img.shape[:2]
    centre = seg.cell_labels[h // 2, w // 2]  # the set's cell (centred)
    found = one_pass_objects(
        img,
        grey,
        cells,
        nuclei,
        own_nucleus=seg.labels == centre if centre else None,
        target_background=bg,
        input_background=np.percentile(grey.reshape(-1, 3), 95, axis=0),
        input_noise=image_noise(grey),
        pixel_size_um=pixel_size_um,
        options=opt,
    )
    flat = np.broadcast_to(bg.astype(np.uint8), img.shape).copy()
    gap = one_pass_objects(
        img,
        flat,
        cells,
        nuclei,
        target_background=bg,
        input_background=bg,
        input_noise=2.0,
        pixel_size_um=pixel_size_um,
        options=opt,
    ).speck_gap
    return bool(found.target_only), float(gap), float(found.edge_ratio)


def real_colour_signals(
    data: Path, name: str, pixel: float, *, pixel_size_um: float = 0.293, step: int = 1
) -> dict[str, np.ndarray] | None:
    """What the colour checks measure on each real stained WBC of one public set.

    Returns per-cell arrays ``loose`` (loose dye or dark specks, bool), ``gap``
    (:attr:`registration.qc.OnePass.speck_gap`), ``ratio`` (nucleus edge ratio) and ``type``
    (the set's class), or None when the set is not under ``data``. Images are resampled to
    the scan's pixel size; every ``step``-th image is used.
    """
    import cv2

    images = sorted((data / name / "images").glob("*.png"))[::step]
    if not images:
        return None
    classes = {}
    table = data / name / "classes.csv"
    if table.exists():
        for line in table.read_text().splitlines()[1:]:
            i, c = line.split(",")[:2]
            classes[int(i)] = WBC_CLASSES.get(int(c), "?")
    out: dict[str, list] = {"loose": [], "gap": [], "ratio": [], "type": []}
    for f in images:
        img = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        scale = pixel / pixel_size_um
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        loose, gap, ratio = crop_signals(img, pixel_size_um=pixel_size_um)
        out["loose"].append(loose)
        out["ratio"].append(ratio)
        out["gap"].append(gap)
        out["type"].append(classes.get(int(f.stem), "?") if f.stem.isdigit() else "?")
    return {
        "loose": np.array(out["loose"], dtype=bool),
        "gap": np.array(out["gap"], dtype=np.float64),
        "ratio": np.array(out["ratio"], dtype=np.float64),
        "type": np.array(out["type"]),
    }


def real_colour_flags(signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The colour checks' verdicts on one real set (treated as one slide), per cell."""
    from registration.qc import QcOptions, blue_speck_cells, ghost_cells

    opt = QcOptions()
    specks = blue_speck_cells(
        signals["gap"], floor=opt.speck_gap_floor, spread=opt.speck_gap_spread
    )
    ghosts = ghost_cells(signals["ratio"], fraction=opt.ghost_fraction, floor=opt.ghost_floor)
    loose = signals["loose"]
    return {"loose": loose, "speck": specks, "ghost": ghosts, "any": loose | specks | ghosts}


def real_stain_specks(data: Path, pixel_size_um: float = 0.293) -> list[str]:
    """Table rows: how often the colour checks fire on real stained WBCs (all false flags).

    See :func:`real_colour_signals`. ``target_only_color`` is flagged by loose dye or dark
    dye specks the input does not explain, a blue speck
    (:func:`registration.qc.blue_speck_cells`) or a ghost (:func:`registration.qc.ghost_cells`,
    nucleus outline missing from the input).
    """
    rows = []
    for name, pixel in REAL_SETS.items():
        sig = real_colour_signals(data, name, pixel, pixel_size_um=pixel_size_um)
        if sig is None:
            rows.append(f"| {name} | (not found under {data}) | | | | |")
            continue
        fl = real_colour_flags(sig)

        def pct(x: np.ndarray) -> str:
            return f"{int(x.sum())} ({x.mean():.1%})"

        rows.append(
            f"| {name} ({pixel} µm/px) | {len(fl['any'])} | {pct(fl['loose'])} | "
            f"{pct(fl['speck'])} | {pct(fl['ghost'])} | {pct(fl['any'])} |"
        )
    return rows
