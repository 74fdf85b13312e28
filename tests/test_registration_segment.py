"""WBC detection: physical sizes, joining a cell's nucleus lobes, splitting touching cells."""

from __future__ import annotations

import numpy as np
import pytest

from registration import find_wbcs
from registration.segment import SegmentationError, make_params, overlay, segment_wbcs

BACKGROUND = (225, 222, 224)
BODY = (200, 185, 220)  # lilac cytoplasm
NUCLEUS = (95, 55, 150)  # purple chromatin
RBC = (235, 120, 160)  # pink red cell


def _scene(
    pixel_size_um: float, cells: list[dict], size_um: float = 60.0, seed: int = 0
) -> np.ndarray:
    """A stained-smear-like image drawn in µm: red cells, WBC bodies and nucleus blobs."""
    n = round(size_um / pixel_size_um)
    yy, xx = (np.mgrid[:n, :n] + 0.5) * pixel_size_um
    img = np.empty((n, n, 3), np.float32)
    img[:] = BACKGROUND
    rng = np.random.default_rng(seed)
    for _ in range(12):  # red cells away from the centre
        cx, cy = rng.uniform(3, size_um - 3, 2)
        if all(np.hypot(cx - c["x"], cy - c["y"]) > c.get("r", 6) + 5 for c in cells):
            img[np.hypot(xx - cx, yy - cy) < 3.7] = RBC
    for c in cells:
        if c.get("r"):
            img[np.hypot(xx - c["x"], yy - c["y"]) < c["r"]] = BODY
        for bx, by, br in c["blobs"]:
            img[np.hypot(xx - c["x"] - bx, yy - c["y"] - by) < br] = NUCLEUS
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


NEUTROPHIL = {
    "x": 30.0,
    "y": 30.0,
    "r": 6.0,
    "blobs": [(-2.6, 0.0, 1.3), (0.0, -0.8, 1.3), (2.6, 0.3, 1.3)],
}


@pytest.mark.parametrize("pixel_size_um", [0.293, 0.15])
def test_lobes_of_one_neutrophil_are_one_cell_at_any_pixel_size(pixel_size_um):
    img = _scene(pixel_size_um, [NEUTROPHIL])
    cents = find_wbcs(img, pixel_size_um=pixel_size_um)
    assert cents.shape == (1, 2)
    assert np.allclose(cents[0] * pixel_size_um, [30.0, 30.0], atol=0.6)


def test_two_touching_cells_stay_two():
    cells = [
        {"x": 24.0, "y": 30.0, "r": 5.5, "blobs": [(0, 0, 3.5)]},
        {"x": 35.0, "y": 30.0, "r": 5.5, "blobs": [(0, 0, 3.5)]},
    ]
    cents = find_wbcs(_scene(0.293, cells), pixel_size_um=0.293)
    assert len(cents) == 2
    xs = np.sort(cents[:, 0] * 0.293)
    assert np.allclose(xs, [24.0, 35.0], atol=1.0)


def test_platelet_sized_purple_specks_are_not_cells():
    specks = {"x": 30.0, "y": 30.0, "r": 0, "blobs": [(0, 0, 1.0), (8, 3, 0.8)]}
    assert find_wbcs(_scene(0.293, [specks]), pixel_size_um=0.293).shape == (0, 2)


def test_eosinophil_without_a_lilac_body_is_found_by_its_nucleus():
    eo = {"x": 30.0, "y": 30.0, "r": 0, "blobs": [(-1.8, 0, 1.9), (1.8, 0, 1.9)]}
    assert len(find_wbcs(_scene(0.293, [eo]), pixel_size_um=0.293)) == 1


def test_segmentation_outputs_and_overlay():
    seg = segment_wbcs(_scene(0.293, [NEUTROPHIL]), pixel_size_um=0.293)
    assert seg.labels.max() == 1 and seg.cell_labels.max() == 1
    assert 8 < seg.nucleus_areas_um2[0] < 20 < seg.areas_um2[0] < 140
    assert (seg.labels > 0).sum() < (seg.cell_labels > 0).sum()
    ov = overlay(_scene(0.293, [NEUTROPHIL]), seg)
    assert ov.shape[2] == 3 and ov.dtype == np.uint8


def test_thresholds_are_options():
    img = _scene(0.293, [NEUTROPHIL])
    # a colour box that excludes the purple nucleus finds nothing
    assert len(find_wbcs(img, pixel_size_um=0.293, hue_min=10, hue_max=40)) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hue_min": 150, "hue_max": 120}, "hue ranges"),
        ({"no_such": 1}, "unknown WBC segmentation parameter"),
        ({"min_cell_area_um2": 500}, "cell area limits"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, message):
    with pytest.raises(SegmentationError, match=message):
        make_params(**kwargs)


def test_bad_images_are_clear_errors():
    with pytest.raises(SegmentationError, match=r"\(H, W, 3\) RGB"):
        find_wbcs(np.zeros((50, 50), np.uint8), pixel_size_um=0.3)
    with pytest.raises(SegmentationError, match="uint8"):
        find_wbcs(np.zeros((50, 50, 3), np.float32), pixel_size_um=0.3)
    with pytest.raises(SegmentationError, match="pixel_size_um"):
        find_wbcs(np.zeros((50, 50, 3), np.uint8), pixel_size_um=0.0)


def test_simulated_stained_field(pls43):
    """Every simulated WBC inside the frame is found, and nothing else."""
    from sim_fields import stained_field

    from acquisition.simulator.config import SimConfig

    w, h, p = 640, 400, 0.293
    # the truth of a frame 60 px larger on every side: a detection at the edge may be a white
    # cell centred just outside the frame
    img, px, radius = stained_field(
        pls43, slide="seg", seed=3, config=SimConfig(wbc_per_field=60.0), margin=60
    )
    radius = radius[:, None]
    found = find_wbcs(img, pixel_size_um=p)
    d = np.linalg.norm(px[:, None] - found[None], axis=2)
    inside = (px[:, 0] > 45) & (px[:, 0] < w - 45) & (px[:, 1] > 45) & (px[:, 1] < h - 45)
    assert inside.sum() >= 3
    assert (d[inside] <= radius[inside]).any(1).all()
    assert (d <= radius).any(0).all(), "a detection that is no WBC"


def test_grey_reconstruction_matches_skimage():
    import cv2
    from skimage.morphology import reconstruction

    from registration.wbc_morphology import reconstruct

    rng = np.random.default_rng(1)
    obj = np.zeros((70, 90), np.uint8)
    for _ in range(4):
        cv2.circle(
            obj, tuple(int(v) for v in rng.integers(15, 60, 2)), int(rng.integers(8, 15)), 1, -1
        )
    dist = cv2.distanceTransform(obj, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    want = reconstruction(dist - 2.5, dist, method="dilation")
    assert np.array_equal(reconstruct(dist - 2.5, dist), want.astype(np.float32))


def test_holes_match_scipy_fill_holes():
    from scipy import ndimage as ndi

    from registration.wbc_morphology import holes

    rng = np.random.default_rng(2)
    mask = (rng.random((60, 80)) < 0.55).astype(np.uint8)
    want = ndi.binary_fill_holes(mask) & ~mask.astype(bool)
    assert np.array_equal(holes(mask), want)


def test_coarse_candidate_search_finds_the_same_cells():
    cells = [
        NEUTROPHIL,
        {"x": 12.0, "y": 14.0, "r": 5.0, "blobs": [(0, 0, 3.0)]},
        {"x": 47.0, "y": 45.0, "r": 0, "blobs": [(-1.8, 0, 1.9), (1.8, 0, 1.9)]},
    ]
    img = _scene(0.293, cells)
    fine = segment_wbcs(img, pixel_size_um=0.293, coarse_um=0.0)
    coarse = segment_wbcs(img, pixel_size_um=0.293)
    assert len(fine.centroids) == 3
    order = np.lexsort(fine.centroids.T[::-1]), np.lexsort(coarse.centroids.T[::-1])
    assert np.allclose(fine.centroids[order[0]], coarse.centroids[order[1]])
    assert np.array_equal(fine.cell_labels > 0, coarse.cell_labels > 0)


def test_precipitate_with_little_dye_is_not_a_cell():
    """Faint dye specks on a pale lilac patch pass the colour boxes as a cell, but hold a
    fraction of the dye of the slide's nuclei (a nucleus holds a cell's DNA): dropped."""
    cells = [
        {"x": 12.0, "y": 12.0, "r": 5.5, "blobs": [(0, 0, 3.2)]},
        {"x": 48.0, "y": 12.0, "r": 5.5, "blobs": [(0, 0, 3.0)]},
        {"x": 12.0, "y": 48.0, "r": 5.5, "blobs": [(-1.5, 0, 2.2), (1.5, 0.5, 2.2)]},
    ]
    rng = np.random.default_rng(4)
    img = _scene(0.293, cells, seed=5).astype(np.float32)
    n = img.shape[0]
    yy, xx = (np.mgrid[:n, :n] + 0.5) * 0.293
    img[np.hypot(xx - 45, yy - 45) < 4.5] = BODY
    for dx, dy in rng.normal(0, 1.0, (20, 2)):  # 20 specks of 1 µm around (45, 45) µm
        img[np.hypot(xx - 45 - dx, yy - 45 - dy) < 0.5] = (130, 100, 190)
    img = np.clip(img, 0, 255).astype(np.uint8)
    every = segment_wbcs(img, pixel_size_um=0.293, min_dye_fraction=0.0)
    assert len(every.centroids) == 4  # without the dye rule the specks pass as a cell
    assert every.dye_um2.min() < 0.25 * np.median(every.dye_um2)
    kept = segment_wbcs(img, pixel_size_um=0.293)
    assert len(kept.centroids) == 3
    for k, (x, y) in enumerate(kept.centroids):  # renumbered after the drop, consistently
        ys, xs = np.nonzero(kept.cell_labels == k + 1)
        assert np.allclose([xs.mean(), ys.mean()], [x, y])
        assert ((kept.labels == k + 1) <= (kept.cell_labels == k + 1)).all()
    assert kept.labels.max() == kept.cell_labels.max() == 3
    assert np.all(np.hypot(*(kept.centroids * 0.293 - 45).T) > 10)
    # a field with fewer than three cells has no median of its own: the slide's reference
    # (nucleus_dye_um2) decides, and without one the cell is kept
    crop = img[102:, 102:]
    assert len(segment_wbcs(crop, pixel_size_um=0.293).centroids) == 1
    ref = float(np.median(every.dye_um2))
    assert len(segment_wbcs(crop, pixel_size_um=0.293, nucleus_dye_um2=ref).centroids) == 0


def test_the_slide_sets_the_dye_reference_for_every_field():
    from registration.segment import for_slide, make_params, slide_stain_of

    cells = [
        {"x": 12.0, "y": 12.0, "r": 5.5, "blobs": [(0, 0, 3.2)]},
        {"x": 48.0, "y": 12.0, "r": 5.5, "blobs": [(0, 0, 3.0)]},
        {"x": 12.0, "y": 48.0, "r": 5.5, "blobs": [(-1.5, 0, 2.2), (1.5, 0.5, 2.2)]},
    ]
    full = _scene(0.293, cells, seed=5)
    stain = slide_stain_of([full], pixel_size_um=0.293)
    assert 20 < stain.nucleus_dye < 60
    params = for_slide(make_params(), stain)
    assert params.nucleus_dye_um2 == stain.nucleus_dye
    # a field of the same slide with one cell is checked against the slide's reference
    lone = full[:70, :70]
    assert len(segment_wbcs(lone, pixel_size_um=0.293, params=params).centroids) == 1
    assert for_slide(make_params(nucleus_dye_um2=5.0), stain).nucleus_dye_um2 == 5.0
    assert np.isnan(slide_stain_of([full[:70, :70]], pixel_size_um=0.293).nucleus_dye)
