"""The demo's PLS-vs-brightfield comparison: paired bootstrap interval, honest verdicts."""

from __future__ import annotations

import numpy as np

from scope.demo_stats import bootstrap_interval, compare


def test_a_clear_gap_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    bf = rng.uniform(0.5, 0.8, 40)
    better = compare("all", bf + 0.05 + rng.normal(0, 0.01, 40), bf)
    assert better.significant and better.lo > 0 and better.verdict() == "PLS better"
    noise = compare("all", bf + rng.normal(0, 0.05, 40), bf)
    assert noise.lo < 0 < noise.hi
    assert not noise.significant and noise.verdict() == "no significant difference"
    worse = compare("all", bf - 0.05, bf)
    assert worse.verdict() == "brightfield better"


def test_too_few_cells_are_never_called_significant():
    c = compare("basophil", np.array([0.9, 0.9]), np.array([0.1, 0.1]))
    assert c.verdict() == "too few cells to compare" and not c.significant


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.normal(0.02, 0.05, 20)
    large = rng.normal(0.02, 0.05, 2000)
    lo_s, hi_s = bootstrap_interval(small)
    lo_l, hi_l = bootstrap_interval(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3
