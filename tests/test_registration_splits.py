"""Split assignment: by slide or spatial blocks, overlapping crops together, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from registration.splits import (
    SplitError,
    default_split,
    parse_fractions,
    split_by_blocks,
    split_by_slide,
    split_mode,
)


def _cells(n=600, seed=0, extent=3000.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, extent, n), rng.uniform(0, extent * 0.6, n)


def test_blocks_keep_overlapping_crops_together_and_hit_the_fractions():
    x, y = _cells()
    crop = 64 * 0.293
    split = split_by_blocks(x, y, crop_um=crop, block_um=400.0, seed=1)
    counts = {s: int((split == s).sum()) for s in ("train", "val", "test")}
    assert all(counts.values())
    assert counts["train"] / len(x) == pytest.approx(0.8, abs=0.1)
    # no two crops that overlap sit in different splits
    dx = np.abs(x[:, None] - x[None])
    dy = np.abs(y[:, None] - y[None])
    overlap = (dx < crop) & (dy < crop)
    assert (split[:, None] == split[None])[overlap].all()


def test_splits_are_seeded():
    x, y = _cells(seed=2)
    a = split_by_blocks(x, y, crop_um=18.75, seed=4)
    assert np.array_equal(a, split_by_blocks(x, y, crop_um=18.75, seed=4))
    assert not np.array_equal(a, split_by_blocks(x, y, crop_um=18.75, seed=5))


def test_small_sets_still_fill_every_split():
    x = np.array([0.0, 30.0, 60.0])
    y = np.zeros(3)
    split = split_by_blocks(x, y, crop_um=18.75, block_um=400.0)
    assert sorted(split) == ["test", "train", "val"]


def test_by_slide_with_five_or_more_slides():
    slides = ["a"] * 50 + ["b"] * 40 + ["c"] * 30 + ["d"] * 45 + ["e"] * 20
    split = default_split(np.zeros(185), np.zeros(185), slides, crop_um=18.75)
    for s in set(slides):
        assert len(set(split[np.array(slides) == s])) == 1  # a slide is never split
    assert set(split) == {"train", "val", "test"}
    assert np.array_equal(split, split_by_slide(slides))


def test_fewer_than_three_slides_split_by_blocks():
    x, y = _cells(n=200)
    slides = ["a"] * 100 + ["b"] * 100
    split = default_split(x, y, slides, crop_um=18.75)
    assert len(set(split[:100])) > 1
    with pytest.raises(SplitError, match="at least 5 slides"):
        default_split(x, y, slides, crop_um=18.75, by="slide")


@pytest.mark.parametrize("text", ["8:1", "a:b:c", "-1:1:1", "0:0:0"])
def test_bad_fractions_are_clear_errors(text):
    with pytest.raises(SplitError, match="fractions"):
        parse_fractions(text)


def test_fractions_are_normalised():
    assert parse_fractions("8:1:1") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_fractions("0.6,0.2,0.2") == pytest.approx((0.6, 0.2, 0.2))


def test_three_or_four_slides_split_by_blocks_within_slides():
    x, y = _cells(n=300)
    slides = ["a"] * 100 + ["b"] * 100 + ["c"] * 100
    split = default_split(x, y, slides, crop_um=18.75)
    # every slide contributes to training: not one whole slide per split
    for s in "abc":
        assert "train" in set(split[np.array(slides) == s])
    assert split_mode(slides) == "blocks"
    assert split_mode([*slides, "d", "e"]) == "slide"
    with pytest.raises(SplitError, match="at least 5 slides"):
        default_split(x, y, slides, crop_um=18.75, by="slide")


def test_every_split_gets_usable_cells_when_three_exist():
    # a 3x3 scan's few cells: most QC-flagged, only three clean ones, all far apart
    x = np.array([0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0])
    y = np.zeros(8)
    usable = np.array([False, True, False, False, True, False, False, True])
    for seed in range(10):
        split = split_by_blocks(x, y, crop_um=18.75, block_um=400.0, seed=seed, usable=usable)
        assert sorted(split[usable]) == ["test", "train", "val"], seed
        assert len(split) == 8


def test_by_slide_is_sized_by_usable_cells():
    slides = ["a"] * 50 + ["b"] * 40 + ["c"] * 30 + ["d"] * 45 + ["e"] * 35
    usable = np.ones(200, bool)
    usable[np.array(slides) == "b"] = False  # a slide whose cells are all flagged
    split = split_by_slide(slides, usable=usable)
    for s in ("train", "val", "test"):
        assert usable[split == s].any()
