"""`pls_misaligned` over a slide: the offset model absorbs what every field shares, not glitches."""

from __future__ import annotations

import numpy as np

from registration.channel_alignment import misaligned_channels


def _ring_slide(n_fields: int, seed: int = 0):
    """Offsets of a ring of 6 LEDs at 20° and 2 multi-LED channels: per-channel systematic
    offsets, a per-field radial shift of the ring (defocus parallax) and 0.2 px noise."""
    rng = np.random.default_rng(seed)
    phi = np.array([0.0, 60.0, 120.0, 180.0, 240.0, 300.0, np.nan, np.nan])
    theta = np.array([20.0] * 6 + [np.nan, np.nan])
    radial = np.stack([np.cos(np.radians(phi)), np.sin(np.radians(phi))], axis=1)
    radial[~np.isfinite(radial)] = 0.0
    systematic = rng.normal(0, 1.0, (8, 2))
    parallax = rng.uniform(-3, 3, n_fields)  # px along each LED's azimuth, per field
    offsets = systematic[None] + parallax[:, None, None] * radial[None]
    offsets += rng.normal(0, 0.2, offsets.shape)
    return offsets, np.full((n_fields, 8), 0.5), theta, phi


def test_only_the_glitched_image_is_flagged():
    # 5 fields: too few for per-channel noise tolerances, so the ring model alone explains
    offsets, scores, theta, phi = _ring_slide(5)
    # parallax up to 3 px and systematic offsets: far from zero, yet all explained
    assert np.abs(offsets - np.median(offsets, axis=0)).max() > 2.0
    assert not misaligned_channels(offsets, scores, theta, phi).any()
    offsets[3, 2] += (4.0, -3.0)  # one glitched LED image in field 3
    flags = misaligned_channels(offsets, scores, theta, phi)
    assert flags[3, 2] and flags.sum() == 1


def test_a_bistable_channel_counts_its_nearer_candidate():
    offsets, scores, theta, phi = _ring_slide(8, seed=1)
    both = np.full((8, 8, 2, 2), np.nan)
    both[:, :, 0] = offsets
    both[3, 4, 0] += (0.0, 3.5)  # the best peak jumped ...
    both[3, 4, 1] = offsets[3, 4]  # ... and the second peak is where the model says
    assert not misaligned_channels(both, scores, theta, phi).any()
    both[3, 4, 1] = np.nan  # without the second candidate the image is flagged
    assert misaligned_channels(both, scores, theta, phi)[3, 4]


def test_weak_measurements_and_few_fields():
    offsets, scores, theta, phi = _ring_slide(2)
    offsets[:] = 0.5
    offsets[1, 0] = (5.0, 0.0)  # beyond tolerance_single_px from zero
    offsets[0, 1] = (9.0, 0.0)
    scores[0, 1] = 0.01  # too weak a correlation to judge
    flags = misaligned_channels(offsets, scores, theta, phi)
    assert flags[1, 0] and flags.sum() == 1
