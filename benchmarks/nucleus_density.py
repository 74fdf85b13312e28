"""Nucleus density per white-cell type, over the slide's median nucleus: real sets and simulator.

A nucleus's *density* is its mean optical density (``log10(I_glass / I)`` summed over R, G
and B, :func:`acquisition.simulator.absorbance.nucleus_density`), its *dye* that times its
area. Both are read over the slide's median nucleus, so stain strength and camera drop out:

- real: the two public sets in ``../shared/data/wbc-stains`` (one white cell per crop, each
  set taken as one slide), inside the expert nucleus masks;
- simulator: stained 1920x1200 fields of the default model (30 white cells per field, stain
  variation ±25 %, as ``bench_segmentation.py`` renders them; each field its own slide),
  inside the truth nucleus masks of the cells lying wholly in the field;
- both again inside the detector's own nucleus outline (``registration.segment_wbcs``), the
  outline that detection's density and dye rules read.

    python benchmarks/nucleus_density.py [--fields 6] [--out FILE]

``bench_stain_calibration.py`` appends these tables to docs/stain-calibration.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acquisition.simulator.absorbance import nucleus_density
from acquisition.vocabulary import CELL_TYPES

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wbc-stains"
#: real set -> estimated pixel size (µm), as in ``segmentation_real.SETS``
SETS = {"set1-tecom-120px": 0.16, "set2-cellavision-300px": 0.08}

#: One nucleus: (type, density, area µm², slide index)
Row = tuple[str, float, float, int]


def real_rows(folder: Path, pixel_um: float, *, detector: bool = False) -> list[Row]:
    """Every crop's nucleus in a real set (one slide): inside the expert mask, or (``detector``)
    inside the detector's outline of the cell whose centroid lies in the expert cell."""
    import cv2

    with (folder / "classes.csv").open(encoding="utf-8") as fh:
        classes = {int(i): int(c) for i, c in list(csv.reader(fh))[1:]}
    rows: list[Row] = []
    for iid, cls in classes.items():
        name = f"{iid:03d}.png"
        img = cv2.imread(str(folder / "images" / name))[..., ::-1]
        m = cv2.imread(str(folder / "masks" / name), cv2.IMREAD_GRAYSCALE)
        nucleus = m > 200
        if detector:
            nucleus = _detected(img, m > 60, pixel_um)
        d = nucleus_density(img, nucleus, m < 60)
        if np.isfinite(d):
            rows.append((CELL_TYPES[cls - 1], d, float(nucleus.sum()) * pixel_um**2, 0))
    return rows


def _detected(img: np.ndarray, cell: np.ndarray, pixel_um: float) -> np.ndarray:
    """The detector's nucleus of the cell whose centroid lies in ``cell`` (empty if none)."""
    from registration.segment import segment_wbcs

    seg = segment_wbcs(img, pixel_size_um=pixel_um)
    h, w = cell.shape
    for k, (x, y) in enumerate(seg.centroids):
        if cell[min(round(y), h - 1), min(round(x), w - 1)]:
            return seg.labels == k + 1
    return np.zeros_like(cell)


def simulated_rows(
    n_fields: int, width: int = 1920, height: int = 1200, first: int = 0, **config
) -> tuple[list[Row], list[Row]]:
    """``(truth, detector)`` rows of ``n_fields`` stained fields of the default model.

    Field ``k`` is slide ``seg{k}`` (seed ``100 + k``) at stage ``(400 k, -250 k)`` µm, as
    ``bench_segmentation.py`` renders it; ``config`` overrides its :class:`SimConfig`
    (``wbc_per_field`` 30, ``stain_variation`` 0.25). Truth rows: every white cell lying
    wholly in the field, its nucleus the truth nucleus pixels nearest its centre. Detector
    rows: each detection whose centroid lies within a white cell's radius, typed by it.
    """
    import hardware_profiles as hp
    from acquisition.geometry import FieldGeometry
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.microscope import SimulatedMicroscope
    from registration.segment import segment_wbcs

    prof = hp.load("pls43")
    p = prof.scan_objective.pixel_size_um
    bf = prof.stack[0]
    cfg = SimConfig(**{"wbc_per_field": 30.0, "stain_variation": 0.25, **config})
    truth_rows: list[Row] = []
    det_rows: list[Row] = []
    for k in range(first, first + n_fields):
        sim = SimulatedMicroscope(prof, slide=f"seg{k}", seed=100 + k, config=cfg)
        x, y = 400.0 * k, -250.0 * k
        img = sim.render(
            pass_="stained",
            x_um=x,
            y_um=y,
            z_um=sim.focus_z_um("stained", x, y),
            leds=dict.fromkeys(bf.leds, bf.brightness),
            exposure_ms=bf.exposure_ms,
            gain=1.0,
            width=width,
            height=height,
        )
        masks = sim.masks(pass_="stained", x_um=x, y_um=y, width=width, height=height)
        cells = sim.truth("stained", [(x, y)], width, height)["cells"]
        cells = cells[np.isin(cells["type"], CELL_TYPES)]
        a = np.asarray(sim.placement("stained"))
        sx, sy = a[:, :2] @ np.stack([cells["x_um"], cells["y_um"]]) + a[:, 2:]
        cx, cy = FieldGeometry(width, height, p).stage_to_pixel(sx, sy, x, y)
        r = cells["radius_um"] / p
        background = ~masks["wbc"]
        iy, ix = np.nonzero(masks["nucleus"])
        if not len(cells) or not len(iy):
            continue
        own = np.argmin(np.hypot(ix[:, None] - cx[None], iy[:, None] - cy[None]), axis=1)
        whole = (cx - r >= 1) & (cx + r <= width - 2) & (cy - r >= 1) & (cy + r <= height - 2)
        for i in np.flatnonzero(whole):
            nucleus = np.zeros((height, width), bool)
            nucleus[iy[own == i], ix[own == i]] = True
            d = nucleus_density(img, nucleus, background)
            if nucleus.sum() >= 20 and np.isfinite(d):
                truth_rows.append((str(cells["type"][i]), d, float(nucleus.sum()) * p * p, k))
        seg = segment_wbcs(img, pixel_size_um=p)
        for j, (dx, dy) in enumerate(seg.centroids):
            dist = np.hypot(cx - dx, cy - dy)
            i = int(np.argmin(dist))
            if dist[i] <= r[i] and whole[i]:
                d = nucleus_density(img, seg.labels == j + 1, background)
                if np.isfinite(d):
                    area = float(seg.nucleus_areas_um2[j])
                    det_rows.append((str(cells["type"][i]), d, area, k))
    return truth_rows, det_rows


def relative(rows: list[Row]) -> dict[str, np.ndarray]:
    """Per type ``(N, 3)``: density and dye (density x area) over their slide's median nucleus,
    and the area (µm²)."""
    if not rows:
        return {}
    slide = np.array([s for *_, s in rows])
    dens = np.array([d for _, d, _, _ in rows])
    area = np.array([a for _, _, a, _ in rows])
    dye = dens * area
    for s in np.unique(slide):
        on = slide == s
        dens[on] = dens[on] / np.median(dens[on])
        dye[on] = dye[on] / np.median(dye[on])
    types = np.array([t for t, *_ in rows])
    return {
        t: np.column_stack([dens, dye, area])[types == t] for t in CELL_TYPES if (types == t).any()
    }


def _cell(v: np.ndarray | None, col: int) -> str:
    if v is None or not len(v):
        return "-"
    c = v[:, col]
    return f"{np.median(c):.2f} ({c.min():.2f}–{c.max():.2f})"


def table(columns: dict[str, dict[str, np.ndarray]], col: int, what: str) -> list[str]:
    """A markdown table: one row per type, one column per source (median (lowest–highest))."""
    lines = [
        f"| {what} | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for t in CELL_TYPES:
        cells = [f"{_cell(c.get(t), col)} [{len(c.get(t, []))}]" for c in columns.values()]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return lines


def density_tables(n_fields: int, data: Path = SHARED) -> list[str]:
    """The markdown section: density and dye per type, real (expert masks, detector outline)
    and simulated (truth masks, detector outline)."""
    sim_truth, sim_det = simulated_rows(n_fields)
    cols: dict[str, dict[str, np.ndarray]] = {}
    det: dict[str, dict[str, np.ndarray]] = {}
    for name, pixel in SETS.items():
        short = name.split("-")[1]
        if (data / name).is_dir():
            cols[f"{short} (expert)"] = relative(real_rows(data / name, pixel))
            det[f"{short} (detector)"] = relative(real_rows(data / name, pixel, detector=True))
    cols["simulator (truth)"] = relative(sim_truth)
    det["simulator (detector)"] = relative(sim_det)
    head = (
        f"Real: each set as one slide. Simulator: {n_fields} stained 1920x1200 fields of the "
        "default model (30 white cells per field, stain variation ±25 %), each field its own "
        "slide. Median (lowest–highest) [cells]."
    )
    return [
        "## Nucleus density per type, over the slide's median nucleus",
        "",
        "Mean optical density (log10, R + G + B) of each nucleus over its slide's median, "
        "the same function on both (`acquisition.simulator.absorbance.nucleus_density`; "
        "`python benchmarks/nucleus_density.py`). " + head,
        "",
        *table(cols, 0, "density, masks"),
        "",
        *table(cols, 1, "dye (density x area), masks"),
        "",
        *table(det, 0, "density, detector outline"),
        "",
        *table(det, 1, "dye, detector outline"),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=6, help="simulated fields")
    ap.add_argument("--out", type=Path, help="also write the markdown to this file")
    args = ap.parse_args(argv)
    text = "\n".join(density_tables(args.fields))
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
