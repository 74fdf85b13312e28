"""The clinical measures of `scope evaluate` on constructed cases, the cell-type labels and the
nucleus segmentation on real stained crops."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from training.differential import cohen_kappa, confusion, fit_classifier
from training.morphology import compare, measure_target
from training.tolerance import tolerance_from_errors, tolerance_levels

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WBC = SHARED / "data" / "wbc-stains"

BACKGROUND = (222, 216, 222)
CYTOPLASM = (205, 175, 212)
NUCLEUS = (85, 40, 140)


def _disc(img: np.ndarray, cy: float, cx: float, r: float, colour) -> None:
    y, x = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = colour


def _noisy(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """Camera-like noise (flat colours alone are no image: Otsu needs a histogram)."""
    noise = np.random.default_rng(seed).normal(0, 2.0, img.shape)
    return np.clip(img + noise, 0, 255).round().astype(np.uint8)


def neutrophil(size: int = 64, lobes=((26, 22), (30, 33), (26, 44))) -> np.ndarray:
    """A lilac cell with round lobes joined by thin bridges (noise-free; see _noisy)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    _disc(img, 30, 32, 22, CYTOPLASM)
    for (y0, x0), (y1, x1) in itertools.pairwise(lobes):
        for t in np.linspace(0, 1, 30):
            _disc(img, y0 + t * (y1 - y0), x0 + t * (x1 - x0), 1.2, NUCLEUS)
    for y, x in lobes:
        _disc(img, y, x, 5, NUCLEUS)
    return img


def test_identical_images_agree_fully():
    img = _noisy(neutrophil())
    a = compare(img, img)
    assert a.nucleus_iou == 1.0
    assert a.lobes_virtual == a.lobes_target == 3
    assert a.ratio_error == 0.0 and a.granules_agree and a.hallucination == ""
    tl = tolerance_levels(img[None], img[None])
    assert tl["tolerance_level"][0] == 0.0 and tl["tolerance_threshold"][0] == 0.0


def test_a_deleted_lobe_is_a_lobe_disagreement_and_a_missing_part():
    target = _noisy(neutrophil())
    virtual = _noisy(neutrophil(lobes=((26, 22), (30, 33))), seed=1)
    a = compare(virtual, target)
    assert (a.lobes_virtual, a.lobes_target) == (2, 3)
    assert not a.lobes_agree
    # the lost lobe was joined to the rest by a bridge: one nucleus part, not a missing part
    assert a.missing_parts == 0 and a.spurious_parts == 0
    assert a.nucleus_iou < 0.8


def test_a_lone_missing_nucleus_and_a_spurious_one_are_flagged():
    target = np.zeros((64, 64, 3), np.uint8)
    target[:] = BACKGROUND
    _disc(target, 32, 32, 20, CYTOPLASM)
    _disc(target, 28, 26, 6, NUCLEUS)
    _disc(target, 36, 40, 5, NUCLEUS)
    virtual = target.copy()
    _disc(virtual, 36, 40, 5, CYTOPLASM)  # loses a part
    _disc(virtual, 22, 40, 4, NUCLEUS)  # paints a new one
    a = compare(_noisy(virtual, 1), _noisy(target))
    assert a.missing_parts == 1 and a.spurious_parts == 1
    assert a.hallucination == "spurious+missing"


def test_a_shifted_nucleus_drops_the_iou():
    target = neutrophil()
    virtual = np.full_like(target, BACKGROUND)
    _disc(virtual, 30, 32, 22, CYTOPLASM)
    shifted = np.roll(neutrophil(), 4, axis=1)
    virtual[(shifted == NUCLEUS).all(axis=-1)] = NUCLEUS
    target, virtual = _noisy(target), _noisy(virtual, 1)
    a = compare(virtual, target)
    assert 0.2 < a.nucleus_iou < 0.75
    assert compare(target, target).nucleus_iou == 1.0


def test_tolerance_level_follows_eq7():
    # every pixel off by 5 levels: below threshold from i = 2 % (5.1 levels) on
    err = np.full((1, 100), 5)
    tl, thr = tolerance_from_errors(err)
    assert tl[0] == pytest.approx(0.5 * 5 / 255) and thr[0] == 2.0
    # a tenth of the pixels badly wrong (a spurious object), the rest exact: the minimum
    # lies where the threshold first tolerates the object (i = 79 %: 201 levels), IE its MAE
    err = np.zeros((1, 1000), int)
    err[0, :100] = 200
    tl, thr = tolerance_from_errors(err)
    assert tl[0] == pytest.approx(0.5 * 0.1 * 200 / 255) and thr[0] == 79.0
    # a mild object (30 levels) over a faint background error (1 level): tolerated at 12 %
    err[0, :100] = 30
    err[0, 100:] = 1
    tl, thr = tolerance_from_errors(err)
    assert tl[0] == pytest.approx(0.5 * (100 * 30 + 900) / 1000 / 255) and thr[0] == 12.0
    # brute force over i for random errors
    rng = np.random.default_rng(0)
    err = rng.integers(0, 256, (3, 500))
    tl, _ = tolerance_from_errors(err)
    for k in range(3):
        e = err[k]
        best = min(
            0.5 * ((e[e <= t].mean() / 255 if (e <= t).any() else 0.0) + (e > t).mean())
            for t in (np.arange(100) * 255 / 100)
        )
        assert tl[k] == pytest.approx(best)


def test_kappa_confusion_and_classifier():
    a = ["neutrophil", "lymphocyte", "monocyte", "lymphocyte"]
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(a, ["neutrophil", "monocyte", "lymphocyte", "monocyte"]) < 0.1
    assert confusion(a, a, ["neutrophil", "lymphocyte", "monocyte"]) == [
        [1, 0, 0],
        [0, 2, 0],
        [0, 0, 1],
    ]
    rng = np.random.default_rng(1)
    centres = {"neutrophil": [0, 0], "lymphocyte": [5, 0], "monocyte": [0, 5]}
    labels = [t for t in centres for _ in range(30)]
    x = np.array([centres[t] for t in labels]) + rng.normal(0, 0.5, (90, 2))
    clf = fit_classifier(x, labels)
    assert (clf.predict(x) == np.array(labels)).mean() >= 0.98


def test_label_csv_round_trip_and_errors(tmp_path, sim_dataset):
    import shutil

    from registration.dataset import Dataset, DatasetError
    from registration.labels import label_dataset

    path = Path(shutil.copy(sim_dataset, tmp_path / "l.dataset.h5"))  # labelling rewrites it
    with Dataset(path) as ds:
        truth = list(ds.cells["type"])  # the simulator's types are copied in
    assert all(truth)
    good = tmp_path / "labels.csv"
    good.write_text("row,type\n0,Basophil\n2,\n")
    s = label_dataset(path, good)
    with Dataset(path) as ds:
        types = list(ds.cells["type"])
    assert types[0] == "basophil" and types[2] == "" and types[1] == truth[1]
    assert s.labelled == len(truth) - 1  # all but row 2
    for text, words in (
        ("row,type\n0,blast\n", "unknown type 'blast'"),
        ("row,type\n99,neutrophil\n", "outside the dataset"),
        ("id,kind\n0,neutrophil\n", "needs the columns row,type"),
    ):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(DatasetError, match=words):
            label_dataset(path, bad)


@pytest.mark.skipif(not WBC.is_dir(), reason="needs the real stained crops in ../shared")
def test_nucleus_segmentation_on_real_stained_crops():
    import skimage.io

    for folder, floor in (("set1-tecom-120px", 0.75), ("set2-cellavision-300px", 0.85)):
        images = sorted((WBC / folder / "images").glob("*.png"))[::4]
        ious = []
        for p in images:
            img = skimage.io.imread(p)[..., :3]
            mask = skimage.io.imread(WBC / folder / "masks" / p.name)
            nucleus = (mask[..., 0] if mask.ndim == 3 else mask) == 255
            m = measure_target(img).nucleus
            ious.append((m & nucleus).sum() / max(1, (m | nucleus).sum()))
        assert np.mean(ious) >= floor, (folder, np.mean(ious))


@pytest.mark.skipif(not WBC.is_dir(), reason="needs the real stained crops in ../shared")
def test_lobes_on_real_stained_crops():
    import skimage.io

    folder = WBC / "set1-tecom-120px"
    with open(folder / "classes.csv") as fh:
        kinds = {int(r[0]): r[1] for r in list(csv.reader(fh))[1:]}
    lobes = {"1": [], "2": []}  # neutrophils, lymphocytes
    for p in sorted((folder / "images").glob("*.png"))[::2]:
        k = kinds.get(int(p.stem))
        if k in lobes:
            lobes[k].append(measure_target(skimage.io.imread(p)[..., :3]).lobes)
    assert np.mean(lobes["2"]) <= 1.2
    assert np.mean(lobes["1"]) >= 2.0


def test_a_smoothed_out_cytoplasm_loses_the_granules():
    target = neutrophil()
    rng = np.random.default_rng(2)
    for y, x in rng.uniform(14, 46, (40, 2)):
        if not (target[int(y), int(x)] == NUCLEUS).all():
            _disc(target, y, x, 0.8, (150, 60, 60))  # coarse red granules
    smooth = neutrophil()
    a = compare(_noisy(smooth, 1), _noisy(target))
    assert a.granularity_target > 1.3 * a.granularity_virtual
    assert not a.granules_agree
    assert compare(_noisy(target, 1), _noisy(target)).granules_agree
