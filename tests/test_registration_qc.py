"""Quality checks of matched cells (registration/qc.py) on controlled inputs.

The end-to-end behaviour on the simulator is in test_registration_pipeline.py; here each
check gets inputs whose answer is known: neighbouring LED images with one glitched, slides of
speck measurements with one outlier, crops with an object in one pass only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from acquisition.scanfile import CHANNEL_FIELDS
from acquisition.tables import decode, to_records
from registration.qc import (
    ChannelAligner,
    PairMeasurer,
    QcOptions,
    blue_speck_cells,
    channel_pairs,
    ghost_cells,
    misaligned_pairs,
    one_pass_objects,
    pair_offset,
    same_direction_pairs,
)


@pytest.fixture(scope="module")
def channels(pls43):
    return decode(to_records(pls43.channel_table(), CHANNEL_FIELDS))


def test_channel_pairs_cover_every_single_led_image(channels):
    pairs = channel_pairs(channels)
    kind = np.asarray(channels["kind"]).astype(str)
    leds = np.asarray(channels["leds"]).astype(str)
    level = np.asarray(channels["exposure_level"]).astype(str)
    th = np.asarray(channels["theta_deg"])
    single = np.flatnonzero(kind != "brightfield")
    assert set(pairs.ravel()) == set(single)  # every PLS and darkfield image has a partner
    for a, b in pairs:
        assert a < b and kind[a] == kind[b]  # never a brightfield-like with a darkfield image
        if leds[a] == leds[b]:
            assert level[a] != level[b]  # the two exposures of one LED
        else:
            assert level[a] == level[b]
    # the two exposures of every darkfield LED are paired
    for led in set(leds[kind == "darkfield"]):
        idx = np.flatnonzero(leds == led)
        if len(idx) == 2:
            assert tuple(idx) in {tuple(p) for p in pairs}
    # an arm pair joins adjacent angles (25° with 30°, never 25° with 36°)
    arm = [(a, b) for a, b in pairs if leds[a] != leds[b] and abs(th[a] - th[b]) > 0.5]
    assert arm and all(abs(th[a] - th[b]) < 8.5 for a, b in arm)


def test_few_fields_judge_only_pairs_along_one_direction(channels):
    pairs = channel_pairs(channels)
    along = same_direction_pairs(channels, pairs)
    ph = np.asarray(channels["phi_deg"])
    assert along.any() and (~along).any()
    assert all(abs(ph[a] - ph[b]) < 1.0 for a, b in pairs[along])
    # one field: a ring pair's large systematic offset is not a glitch
    offsets = np.zeros((1, len(pairs), 2))
    offsets[0, ~along] = (9.0, -4.0)
    scores = np.full((1, len(pairs)), 0.8)
    bad, judged = misaligned_pairs(offsets, scores, pairs, len(channels), same_direction=along)
    assert not bad.any() and judged.sum() > 0


def test_pair_offset_measures_a_shift():
    rng = np.random.default_rng(0)
    import cv2

    a = cv2.GaussianBlur(rng.normal(0, 1, (300, 300)).astype(np.float32), (0, 0), 2.0)
    b = np.roll(a, (3, -5), axis=(0, 1))
    (dx, dy), score = pair_offset(a, b)
    assert (dx, dy) == pytest.approx((-5.0, 3.0), abs=0.1) and score > 0.9
    flat = np.zeros_like(a)
    offset, score = pair_offset(a, flat)
    assert np.isnan(offset).all() and score == 0.0


def _texture(seed: int, shape=(300, 300)) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), 2.0)


def _split(image: np.ndarray, dx: int) -> np.ndarray:
    """``image`` whose left half moved by ``dx`` px and right half by ``-dx``: two images that
    differ by content, not by a shift (a 10° and an 18° image of a defocused field)."""
    out = np.roll(image, -dx, axis=1)
    w = image.shape[1]
    out[:, : w // 2] = np.roll(image, dx, axis=1)[:, : w // 2]
    return out


def test_pair_offset_cannot_judge_images_that_differ_by_content():
    a = _texture(0)
    offset, score = pair_offset(a, _split(a, 4))
    assert np.isnan(offset).all() and np.isnan(score)
    (dx, dy), score = pair_offset(a, np.roll(a, 4, axis=1))  # a glitch moves the whole image
    assert (dx, dy) == pytest.approx((4.0, 0.0), abs=0.1) and score > 0.9


def test_a_field_whose_neighbours_differ_by_content_is_not_flagged():
    """Nine fields, channels 0-1-2 paired along a chain. In field 2 channel 0's image differs
    from its neighbour's by content (its halves disagree), in field 5 it is shifted by 4 px:
    only the shift is a glitch. (The 3x3 benchmark flagged a whole field when a 10°/18° pair
    of a defocused field correlated at two peaks and the higher one lay 3.3 px off.)"""
    pairs = np.array([(0, 1), (1, 2)])
    offsets = np.full((9, 2, 2), np.nan)
    scores = np.full((9, 2), np.nan)
    for f in range(9):
        base = _texture(10 + f, (200, 200))
        images = {0: base, 1: base, 2: base}
        if f == 2:
            images[0] = _split(base, 4)
        if f == 5:
            images[0] = np.roll(base, (0, 4), axis=(0, 1))
        m = PairMeasurer(pairs)
        for c in range(3):
            m.add(c, images[c])
        offsets[f], scores[f] = m.offsets, m.scores
    bad, judged = misaligned_pairs(offsets, scores, pairs, 3)
    assert judged.all()
    assert bad[5].tolist() == [True, False, False]
    assert not bad[np.arange(9) != 5].any()


def test_pair_measurer_measures_every_pair_and_releases_images(channels):
    import cv2

    pairs = channel_pairs(channels)
    rng = np.random.default_rng(2)
    base = cv2.GaussianBlur(rng.normal(0, 1, (160, 160)).astype(np.float32), (0, 0), 2.0)
    glitched = int(pairs[-1, 1])
    m = PairMeasurer(pairs)
    most = 0
    for c in range(len(channels)):  # the order a scan file delivers them
        if m.wants(c):
            m.add(c, np.roll(base, (4, 0), axis=(0, 1)) if c == glitched else base)
            most = max(most, m.held)
    assert np.isfinite(m.scores).all() and np.isfinite(m.offsets).all()
    assert m.held == 0 and most < len(set(pairs.ravel()))
    moved = (pairs == glitched).any(1)
    assert np.abs(m.offsets[moved]).max(1).min() == pytest.approx(4.0, abs=0.1)
    assert np.abs(m.offsets[~moved]).max() < 0.1


def _pair_measurements(n_fields=8, glitch=None, seed=0):
    """Offsets of a chain of 5 channels paired 0-1, 1-2, 2-3, 3-4 plus a weak pair 0-4."""
    rng = np.random.default_rng(seed)
    pairs = np.array([(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)])
    shift = np.zeros((n_fields, 5, 2))
    if glitch is not None:
        f, c, d = glitch
        shift[f, c] = d
    systematic = rng.normal(0, 1.0, (len(pairs), 2))
    offsets = np.empty((n_fields, len(pairs), 2))
    for p, (a, b) in enumerate(pairs):
        offsets[:, p] = systematic[p] + shift[:, b] - shift[:, a]
    offsets += rng.normal(0, 0.1, offsets.shape)
    scores = np.full((n_fields, len(pairs)), 0.8)
    scores[:, 4] = 0.1  # images too different to trust
    return offsets, scores, pairs


def test_misaligned_pairs_blames_the_glitched_image():
    offsets, scores, pairs = _pair_measurements(glitch=(3, 2, (4.0, -2.0)))
    bad, judged = misaligned_pairs(offsets, scores, pairs, 6)
    assert judged.tolist() == [True, True, True, True, True, False]
    assert bad[3].tolist() == [False, False, True, False, False, False]
    assert not bad[np.arange(8) != 3].any()


def test_a_noisy_pair_cannot_outvote_a_sharp_one():
    """Channel 4's glitch breaks its sharp pair (3-4); its ring pair (4-5) wanders by 3-4 px
    between fields, so its tolerance (4x its median departure) hides the glitch."""
    offsets, scores, pairs = _pair_measurements(glitch=(5, 4, (0.0, 4.0)))
    rng = np.random.default_rng(7)
    noisy = np.array([(-4.0, 3.0)] * 8) + np.where(rng.random((8, 1)) < 0.5, 0.0, 3.5)
    noisy[5] += (0.0, -4.0)  # channel 4 moved by the glitch
    offsets = np.concatenate([offsets, noisy[:, None, :]], axis=1)
    scores = np.concatenate([scores, np.full((8, 1), 0.45)], axis=1)
    pairs = np.concatenate([pairs, [(4, 5)]])
    bad, judged = misaligned_pairs(offsets, scores, pairs, 6)
    assert bad[5, 4] and bad.any(1).tolist() == [f == 5 for f in range(8)]
    assert not judged[5]  # only a noisy pair: left to the brightfield comparison
    # counted as vouching (the former rule), the noisy pair outvotes the sharp one
    old, _ = misaligned_pairs(offsets, scores, pairs, 6, max_tolerance_px=np.inf)
    assert not old[5, 4]


def test_misaligned_pairs_chain_end_and_clean_slide():
    offsets, scores, pairs = _pair_measurements(glitch=(5, 4, (0.0, 3.0)))
    bad, _ = misaligned_pairs(offsets, scores, pairs, 5)
    assert bad[5].tolist() == [False, False, False, False, True]  # its one trusted pair
    assert bad.any(1).tolist() == [f == 5 for f in range(8)]
    clean, _ = misaligned_pairs(*_pair_measurements(seed=3), 5)
    assert not clean.any()
    # fewer than three fields: offsets are compared with zero; with one pair, both images
    # share the blame (the field is flagged either way)
    few, _ = misaligned_pairs(
        np.array([[[0.3, 0.2]], [[3.0, 0.0]]]), [[0.9], [0.9]], np.array([(0, 1)]), 2
    )
    assert few.tolist() == [[False, False], [True, True]]


def test_blue_speck_cells_adapts_to_the_stain():
    rng = np.random.default_rng(1)
    # a stain whose chromatin shows bluish dark spots everywhere: only the outlier counts
    gaps = np.concatenate([rng.normal(10, 3, 200).clip(0), [45.0]])
    flagged = blue_speck_cells(gaps)
    assert flagged[-1] and flagged[:-1].mean() < 0.02
    # a clean simulator-like slide: the floor decides
    gaps = np.array([0.0] * 50 + [2.0, 15.0, 25.0, np.nan])
    assert np.flatnonzero(blue_speck_cells(gaps)).tolist() == [52]
    assert not blue_speck_cells(np.full(3, np.nan)).any()


def _stained_cell(size=64):
    """A stained WBC crop (purple nucleus, lilac cytoplasm) and its masks."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    img = np.full((size, size, 3), (235, 232, 236), np.uint8)
    body, nucleus = r < 22, r < 11
    img[body] = (205, 175, 215)
    img[nucleus] = (120, 60, 150)
    return img, body, nucleus


def test_one_pass_objects_finds_a_blue_speck_on_the_nucleus_and_lost_dirt():
    opt = QcOptions()
    target, body, nucleus = _stained_cell()
    unstained = np.full_like(target, 220)
    bg_t, bg_u = np.array([235, 232, 236]), np.array([220, 220, 220])
    kw = dict(
        target_background=bg_t,
        input_background=bg_u,
        input_noise=1.0,
        pixel_size_um=0.293,
        options=opt,
    )
    clean = one_pass_objects(target, unstained, body, nucleus, own_nucleus=nucleus, **kw)
    assert not clean.target_only and not clean.input_only and clean.speck_gap < 5
    # precipitate on the nucleus: small, dark and blue (hue ~115 vs ~140 for the nucleus)
    speck = target.copy()
    speck[30:34, 28:32] = (20, 30, 90)
    found = one_pass_objects(speck, unstained, body, nucleus, own_nucleus=nucleus, **kw)
    assert found.speck_gap > opt.speck_gap_floor
    # stain deposit on the glass, apart from the cell: flagged; pale cytoplasm just outside
    # the body mask, touching the cell: not
    deposit = target.copy()
    deposit[2:10, 2:10] = (120, 130, 200)
    assert one_pass_objects(deposit, unstained, body, nucleus, **kw).target_only
    halo = target.copy()
    yy, xx = np.mgrid[:64, :64]
    halo[(np.hypot(xx - 32, yy - 32) < 30) & ~body] = (140, 175, 222)  # in the dye mask
    assert not one_pass_objects(halo, unstained, body, nucleus, **kw).target_only
    # dirt in the unstained image, on the cytoplasm, gone from the target: neutral grey
    # absorbance that the stain (which passes red) cannot explain
    dirty = unstained.copy()
    dirty[14:20, 40:46] = 110
    found = one_pass_objects(target, dirty, body, nucleus, own_nucleus=nucleus, **kw)
    assert found.input_only and not found.target_only
    # the same dirt in both passes is not flagged
    both = target.copy()
    both[14:20, 40:46] = (90, 80, 95)
    found = one_pass_objects(both, dirty, body, nucleus, own_nucleus=nucleus, **kw)
    assert not found.input_only


def test_a_speck_on_a_cell_is_judged_by_its_hue_even_where_the_input_shows_relief():
    """Precipitate beside the nucleus, where the unstained image shows the cell's own relief.

    A cell's edge, nucleus outline and granules are dark spots of the unstained image within
    1 µm of nearly every pixel of the cell, so they cannot vouch for a speck on it; an object
    that absorbs in the unstained image too can. Chromatin that is as purple as its nucleus
    is not a blue speck either.
    """
    opt = QcOptions()
    target, body, nucleus = _stained_cell()
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(xx - 32, yy - 32)
    # unstained: flat cytoplasm with a dark relief ring at the nucleus outline and granules
    unstained = np.full_like(target, 220)
    unstained[(r > 10) & (r < 12)] = 200
    unstained[(yy % 6 == 0) & (xx % 6 == 0) & body] = 195
    kw = dict(
        target_background=np.array([235, 232, 236]),
        input_background=np.array([220, 220, 220]),
        input_noise=1.0,
        pixel_size_um=0.293,
        options=opt,
    )
    # a blue speck on the nucleus outline: inside the input's relief
    speck = target.copy()
    speck[(np.abs(r - 11) < 2) & (np.abs(yy - 32) < 2) & (xx < 32)] = (20, 30, 90)
    found = one_pass_objects(speck, unstained, body, nucleus, own_nucleus=nucleus, **kw)
    assert found.speck_gap > opt.speck_gap_floor
    # the same speck over dirt that absorbs in the input too (an object in both passes)
    dirty = unstained.copy()
    dirty[(np.abs(r - 11) < 2) & (np.abs(yy - 32) < 2) & (xx < 32)] = 90
    found = one_pass_objects(speck, dirty, body, nucleus, own_nucleus=nucleus, **kw)
    assert found.speck_gap < opt.speck_gap_floor
    # a dark chromatin clump of the nucleus's own purple: no gap
    clump = target.copy()
    clump[30:34, 28:32] = (60, 20, 80)
    found = one_pass_objects(clump, unstained, body, nucleus, own_nucleus=nucleus, **kw)
    assert found.speck_gap < 5


def test_ghost_cells_flag_only_detections_without_an_outline():
    # a slide whose unstained scan outlines nuclei sharply (median ratio ~8): granular cells
    # with a weaker but clear outline (2-3) are real; a detection at ~1 has no outline at all
    ratios = np.array([8.0] * 40 + [2.2, 2.6, 3.0, 1.02, np.nan])
    assert np.flatnonzero(ghost_cells(ratios)).tolist() == [43]
    # the relative rule, when asked for, flags the granular cells too
    assert ghost_cells(ratios, fraction=0.4)[40:43].all()
    assert not ghost_cells(np.full(3, np.nan)).any()


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
needs_stains = pytest.mark.skipif(
    not (SHARED / "data" / "wbc-stains").is_dir(),
    reason="the public stained-WBC sets are not in ../shared/data/wbc-stains (a clone elsewhere)",
)


@needs_stains
def test_colour_checks_together_flag_under_3_percent_of_real_clean_cells():
    """Loose dye, blue specks and ghosts on the 400 real stained WBCs (no precipitate)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from real_stain_qc import REAL_SETS, real_colour_flags, real_colour_signals

    for name, pixel in REAL_SETS.items():
        flags = real_colour_flags(real_colour_signals(SHARED / "data/wbc-stains", name, pixel))
        assert flags["any"].mean() < 0.03, (name, {k: int(v.sum()) for k, v in flags.items()})


def test_channel_aligner_grey_is_the_compared_region():
    frame = np.random.default_rng(0).integers(0, 255, (400, 900, 3), dtype=np.uint8)
    al = ChannelAligner(frame, region_px=256)
    assert al.grey(frame).shape == (256, 256)
