"""The images of ``scope demo``'s report, written as files beside the page.

One field under three illuminations, the virtual stain beside the chemical stain resampled
onto the same pixels (:func:`aligned_chemical_stain`), test cells per white-cell type, and
the loss curves. Each function writes its PNG and returns what the page shows: the source
path relative to the page and a caption.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from acquisition.vocabulary import ChannelKind

if TYPE_CHECKING:
    from scope.demo import Demo


def save_png(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"cannot write {path}")
    return path


def field_images(demo: Demo, folder: Path) -> list[tuple[str, str]]:
    from acquisition.scanfile import ScanFile

    slide = demo.result.slides[0]
    out = []
    with ScanFile(demo.scans / f"{slide}.unstained.scan.h5") as sf:
        bf = sf.brightfield_index()
        dark = [
            i
            for i, (k, lvl) in enumerate(
                zip(sf.channels["kind"], sf.channels["exposure_level"], strict=True)
            )
            if k == ChannelKind.DARKFIELD and lvl != "high"
        ]
        oblique = [i for i, k in enumerate(sf.channels["kind"]) if k == ChannelKind.PLS]
        picks = [(bf, f"field 0 of {slide}, unstained, brightfield")]
        if oblique:
            i = oblique[-1]
            picks.append(
                (i, f"unstained, single LED at {sf.channels['theta_deg'][i]:.0f}° (oblique)")
            )
        if dark:
            i = dark[len(dark) // 2]
            picks.append(
                (i, f"unstained, single LED at {sf.channels['theta_deg'][i]:.0f}° (darkfield)")
            )
        for ch, caption in picks:
            name = f"field0_{sf.channels['name'][ch]}.png"
            save_png(folder / name, sf.image(0, ch))
            out.append((f"report/{name}", caption))
    return out


def slide_motion(demo: Demo, slide: str) -> tuple[np.ndarray, str]:
    """``(2, 3)`` stained-stage → unstained-stage µm matrix from the match, and its words."""
    from registration.coarse import RigidTransform
    from registration.dataset import Dataset

    with Dataset(demo.data / f"{slide}.dataset.h5") as ds:
        st = ds.provenance["slide_transform"]
    t = RigidTransform.from_matrix(np.asarray(st["matrix"]))
    words = f"moved by ({t.tx:+.1f}, {t.ty:+.1f}) µm and {t.theta_deg:+.2f}°"
    return np.asarray(st["matrix"], np.float64), words


def aligned_chemical_stain(demo: Demo, slide: str, position: int) -> np.ndarray:
    """The stained pass resampled onto unstained field ``position``'s pixels.

    Each unstained pixel is carried to the stained pass's stage by the inverse of the
    registration transform, and read (bilinear) from whichever stained field holds it.
    """
    import cv2

    from acquisition.scanfile import ScanFile

    m, _ = slide_motion(demo, slide)
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)  # unstained stage µm -> stained stage µm
    with ScanFile(demo.scans / f"{slide}.unstained.scan.h5") as u:
        h, w = u.frame_shape
        px = u.pixel_size_um
        cu = np.array([u.positions["x_um"][position], u.positions["y_um"][position]])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    # unstained pixel -> unstained stage: s = cu + (p - c)·px  (an affine in homogeneous form)
    to_stage = np.array([[px, 0, cu[0] - c[0] * px], [0, px, cu[1] - c[1] * px], [0, 0, 1]])
    out = np.zeros((h, w, 3), np.uint8)
    filled = np.zeros((h, w), bool)
    with ScanFile(demo.scans / f"{slide}.stained.scan.h5") as st:
        centres = np.stack([st.positions["x_um"], st.positions["y_um"]], axis=1)
        stage_centre = inv @ to_stage @ np.array([c[0], c[1], 1.0])
        order = np.argsort(np.hypot(*(centres - stage_centre[:2]).T))
        bf = st.brightfield_index()
        for j in order:
            cs = centres[j]
            from_stage = np.array(
                [[1 / px, 0, c[0] - cs[0] / px], [0, 1 / px, c[1] - cs[1] / px], [0, 0, 1]]
            )
            a = (from_stage @ inv @ to_stage)[:2]  # unstained px -> stained field j px
            img = st.image(int(j), bf)
            # replicate, not black, beyond the field: its edge pixels stay its own colour
            warped = cv2.warpAffine(
                img,
                a,
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            inside = cv2.warpAffine(
                np.ones((h, w), np.uint8),
                a,
                (w, h),
                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                borderValue=0,
            ).astype(bool)
            take = inside & ~filled
            out[take] = warped[take]
            filled |= take
            if filled.all():
                break
    return out


def side_by_side(demo: Demo, folder: Path) -> tuple[str, str] | None:
    """Virtual stain | chemical stain aligned onto the same pixels, full size, one image."""
    import cv2

    stained = sorted((demo.out / "stained").glob("field_*.png"))
    if not stained:
        return None
    slide = demo.result.slides[0]
    virtual = cv2.imread(str(stained[0]))[..., ::-1]
    position = int(stained[0].stem.split("_")[-1])
    chemical = aligned_chemical_stain(demo, slide, position)
    gap = np.full((virtual.shape[0], 8, 3), 255, np.uint8)
    save_png(folder / "virtual_vs_chemical.png", np.hstack([virtual, gap, chemical]))
    _, words = slide_motion(demo, slide)
    return (
        "report/virtual_vs_chemical.png",
        f"Left: field {position} of {slide}, stained virtually by the PLS model from its "
        f"unstained images. Right: the chemical stain of the same cells — the stained rescan "
        f"(the slide was {words} between the passes) resampled onto the same pixels with the "
        "registration transform. Full size: one screen pixel per camera pixel.",
    )


def type_grid(demo: Demo, folder: Path) -> tuple[str, str] | None:
    """Test cells per WBC type: brightfield | PLS | brightfield model | chemical, 2x size;
    ``(src, caption)`` of the image, or None without typed test cells."""
    from registration.dataset import Dataset
    from training.data import to_uint8_image
    from training.infer import load_generator
    from training.predict import predict_cells
    from training.samples import cell_grid

    comp = demo.result.comparison
    if comp is None or not comp.types:
        return None
    by_type: dict[str, list[int]] = {}
    for row, t in sorted(comp.types.items()):
        by_type.setdefault(t or "unknown", []).append(row)
    picks = [r for rows in by_type.values() for r in rows[:2]]
    labels = [comp.types[r] or "unknown" for r in picks]
    picks_sorted = sorted(picks)
    import torch

    columns = []
    with Dataset(demo.out / "data" / "demo.dataset.h5") as ds:
        inputs = ds.inputs[picks_sorted]
        targets = ds.targets[picks_sorted]
        names = [str(n) for n in ds.channels["name"]]
    order = [picks_sorted.index(r) for r in picks]
    inputs, targets = inputs[order], targets[order]
    bf_col = names.index(str(brightfield_name(names)))
    columns.append(inputs[:, bf_col])
    for name in ("pls", "brightfield"):
        gen, ckpt, _dev, _bf16 = load_generator(demo.runs / name, device="cpu")
        sel = [names.index(n) for n in ckpt["model"]["channel_names"]]
        stack = torch.from_numpy(np.ascontiguousarray(inputs[:, sel]))
        with torch.no_grad():
            columns.append(to_uint8_image(predict_cells(gen, stack)))
    columns.append(targets)
    save_png(folder / "cells_by_type.png", cell_grid(columns, scale=2))
    return (
        "report/cells_by_type.png",
        "Test cells, up to two per white-cell type (the simulator's truth), one per column, "
        f"left to right: {', '.join(labels)}. Rows, top to bottom: unstained brightfield | "
        "PLS model | brightfield-only model | chemical stain (the registered stained crop). "
        "Each 64 x 64 px crop is shown at 2x.",
    )


def brightfield_name(names: list[str]) -> str:
    return next((n for n in names if n.startswith("brightfield")), names[0])


def loss_plot(demo: Demo, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    for name, colour in (("pls", "tab:purple"), ("brightfield", "tab:grey")):
        with (demo.runs / name / "metrics.csv").open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        epochs = [int(r["epoch"]) for r in rows]
        ax.plot(
            epochs,
            [float(r["train_loss"]) for r in rows],
            "--",
            color=colour,
            label=f"{name} train",
        )
        ax.plot(
            epochs,
            [float(r["val_loss"]) for r in rows],
            "-",
            color=colour,
            label=f"{name} validation",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("L1 loss")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
