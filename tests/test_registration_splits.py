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


def test_by_slide_with_three_or_more_slides():
    slides = ["a"] * 50 + ["b"] * 40 + ["c"] * 30 + ["d"] * 45
    split = default_split(np.zeros(165), np.zeros(165), slides, crop_um=18.75)
    for s in set(slides):
        assert len(set(split[np.array(slides) == s])) == 1  # a slide is never split
    assert set(split) == {"train", "val", "test"}
    assert np.array_equal(split, split_by_slide(slides))


def test_fewer_than_three_slides_split_by_blocks():
    x, y = _cells(n=200)
    slides = ["a"] * 100 + ["b"] * 100
    split = default_split(x, y, slides, crop_um=18.75)
    assert len(set(split[:100])) > 1
    with pytest.raises(SplitError, match="at least 3 slides"):
        default_split(x, y, slides, crop_um=18.75, by="slide")


@pytest.mark.parametrize("text", ["8:1", "a:b:c", "-1:1:1", "0:0:0"])
def test_bad_fractions_are_clear_errors(text):
    with pytest.raises(SplitError, match="fractions"):
        parse_fractions(text)


def test_fractions_are_normalised():
    assert parse_fractions("8:1:1") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_fractions("0.6,0.2,0.2") == pytest.approx((0.6, 0.2, 0.2))
