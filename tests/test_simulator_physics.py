"""The simulated microscope's physics, checked against its own ground truth.

Frames are small (a few hundred pixels) so the whole file runs in well under a minute.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import phase_cross_correlation

import hardware_profiles
from acquisition.simulator.camera_model import from_camera_orientation
from acquisition.simulator.config import WBC_TYPES, Faults, SimConfig, SimulatorError
from acquisition.simulator.microscope import SimulatedMicroscope

PROFILE = hardware_profiles.load("pls43")
CHANNELS = {ch.name: ch for ch in PROFILE.stack}
BF_LEDS = dict.fromkeys(CHANNELS["brightfield"].leds, 255)
#: Tests not about the spectrum sample each white LED at 3 wavelengths instead of 8 (the
#: documented faster setting, docs/simulator.md "Performance").
FAST = {"spectral_samples": 3}
FAST_CFG = SimConfig(**FAST)
#: Many WBCs of every type so small frames hold several.
DENSE = SimConfig(
    **FAST,
    wbc_per_field=60.0,
    wbc_type_fractions=(
        ("neutrophil", 0.4),
        ("lymphocyte", 0.2),
        ("monocyte", 0.15),
        ("eosinophil", 0.15),
        ("basophil", 0.1),
    ),
)


@pytest.fixture(scope="module")
def scope() -> SimulatedMicroscope:
    return SimulatedMicroscope(PROFILE, slide="physics", seed=11, config=DENSE)


def _stage(m: SimulatedMicroscope, pass_: str, x: float, y: float) -> tuple[float, float]:
    sx, sy = m.placement(pass_) @ np.array([x, y, 1.0])
    return float(sx), float(sy)


def _wbcs(m: SimulatedMicroscope, pass_: str, x: float, y: float, w: int, h: int):
    cells = m.truth(pass_, [(x, y)], w, h)["cells"]
    return cells[np.isin(cells["type"], WBC_TYPES)]


def _snap(m, pass_, x, y, leds, exposure_ms, gain, w, h, dz=0.0):
    z = m.focus_z_um(pass_, x, y) + dz
    return m.render(
        pass_=pass_,
        x_um=x,
        y_um=y,
        z_um=z,
        leds=leds,
        exposure_ms=exposure_ms,
        gain=gain,
        width=w,
        height=h,
    )


# ---------------------------------------------------------------------- determinism
def test_same_slide_and_seed_give_identical_frames_in_a_new_instance():
    kwargs = dict(pass_="unstained", x_um=120.0, y_um=-40.0, z_um=1.0, leds={5: 255})
    kwargs |= dict(exposure_ms=30.0, gain=4.0, width=128, height=96)
    a = SimulatedMicroscope(PROFILE, slide="d", seed=1, config=FAST_CFG).render(**kwargs)
    b = SimulatedMicroscope(PROFILE, slide="d", seed=1, config=FAST_CFG).render(**kwargs)
    other_seed = SimulatedMicroscope(PROFILE, slide="d", seed=2, config=FAST_CFG).render(**kwargs)
    other_slide = SimulatedMicroscope(PROFILE, slide="e", seed=1, config=FAST_CFG).render(**kwargs)
    assert a.shape == (96, 128, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != other_seed) > 0.5
    assert np.mean(a != other_slide) > 0.5


def test_noise_is_reproducible_and_has_the_shot_noise_of_the_signal(scope):
    w, h = 256, 192
    args = ("unstained", 0.0, 0.0, BF_LEDS)
    a = _snap(scope, *args, 4.0, 1.0, w, h).astype(float)
    b = _snap(scope, *args, 4.0001, 1.0, w, h).astype(float)
    np.testing.assert_array_equal(a, _snap(scope, *args, 4.0, 1.0, w, h))
    masks = scope.masks(pass_="unstained", x_um=0.0, y_um=0.0, width=w, height=h)
    glass = ~ndimage.binary_dilation(masks["wbc"] | masks["rbc"], iterations=6)
    cfg = scope.config
    dn_per_e = 255 / cfg.full_well_e
    signal = a[glass].mean() - cfg.black_level_dn
    expected = math.sqrt(2 * (signal * dn_per_e + (cfg.read_noise_e * dn_per_e) ** 2) + 2 / 12)
    diff = (a - b)[glass]  # same scene, independent noise
    assert abs(diff.mean()) < 0.1
    assert diff.std() == pytest.approx(expected, rel=0.1)


def test_dark_frame_shows_only_read_noise_about_the_black_level(scope):
    frame = scope.render(
        pass_="unstained",
        x_um=0,
        y_um=0,
        z_um=0,
        leds={},
        exposure_ms=100.0,
        gain=16.0,
        width=160,
        height=120,
    )
    cfg = scope.config
    read_dn = cfg.read_noise_e * 16.0 * 255 / cfg.full_well_e
    assert abs(frame.mean() - cfg.black_level_dn) < 0.3
    assert frame.std() == pytest.approx(read_dn, rel=0.25)


# ---------------------------------------------------------------------- geometry
def test_truth_positions_land_on_rendered_cells(scope):
    w, h = 320, 240
    for pass_ in ("unstained", "stained"):
        x, y = 40.0, 25.0
        cells = _wbcs(scope, pass_, x, y, w, h)
        assert len(cells) >= 2
        masks = scope.masks(pass_=pass_, x_um=x, y_um=y, width=w, height=h)
        labels, _ = ndimage.label(masks["wbc"])
        p = scope.pixel_size_um(pass_)
        for cell in cells:
            sx, sy = _stage(scope, pass_, cell["x_um"], cell["y_um"])
            px = (sx - x) / p + (w - 1) / 2
            py = (sy - y) / p + (h - 1) / 2
            margin = cell["radius_um"] / p + 2
            if not (margin < px < w - margin and margin < py < h - margin):
                continue
            lab = labels[round(py), round(px)]
            assert lab > 0
            cy, cx = ndimage.center_of_mass(labels == lab)
            # the outline has small harmonics, so its centroid is near, not at, the centre
            assert math.hypot(cx - px, cy - py) < 1.5


def test_rendered_stained_image_is_aligned_with_the_masks(scope):
    w, h = 256, 192
    x, y = 40.0, 25.0
    frame = _snap(scope, "stained", x, y, BF_LEDS, 4.0, 1.0, w, h)
    nucleus = scope.masks(pass_="stained", x_um=x, y_um=y, width=w, height=h)["nucleus"]
    darkness = 255.0 - frame[:, :, 1].astype(float)  # chromatin absorbs green
    shift, _, _ = phase_cross_correlation(
        nucleus.astype(float), darkness, upsample_factor=10, normalization=None
    )
    assert np.all(np.abs(shift) < 0.5)


@pytest.mark.slow  # renders full frames in every orientation
def test_camera_orientation_is_applied_to_frames_and_masks():
    camera = PROFILE.camera.model_copy(update={"flip_x": True, "rotation_deg": 90})
    turned = SimulatedMicroscope(
        PROFILE.model_copy(update={"camera": camera}), slide="o", seed=3, config=DENSE
    )
    plain = SimulatedMicroscope(PROFILE, slide="o", seed=3, config=DENSE)
    kwargs = dict(pass_="stained", x_um=5.0, y_um=5.0, z_um=0.0, leds=BF_LEDS)
    kwargs |= dict(exposure_ms=4.0, gain=1.0)
    raw = turned.render(**kwargs, width=96, height=160)
    upright = plain.render(**kwargs, width=160, height=96)
    assert raw.shape == (160, 96, 3)
    # same scene; the noise field is laid out in raw order, so compare the noiseless content
    restored = from_camera_orientation(raw, camera).astype(float)
    assert np.corrcoef(restored.ravel(), upright.astype(float).ravel())[0, 1] > 0.97
    raw_mask = turned.masks(pass_="stained", x_um=5.0, y_um=5.0, width=96, height=160)["rbc"]
    up_mask = plain.masks(pass_="stained", x_um=5.0, y_um=5.0, width=160, height=96)["rbc"]
    np.testing.assert_array_equal(from_camera_orientation(raw_mask, camera), up_mask)


def test_placements_follow_the_configured_ranges():
    cfg = SimConfig()
    for seed in range(8):
        m = SimulatedMicroscope(PROFILE, slide="p", seed=seed)
        a_u, a_s, a_h = (m.placement(p) for p in ("unstained", "stained", "highres"))
        for a in (a_u, a_s, a_h):  # rigid: a rotation and a translation
            np.testing.assert_allclose(a[:, :2] @ a[:, :2].T, np.eye(2), atol=1e-12)
        d_rot = math.degrees(math.atan2(a_s[1, 0], a_s[0, 0]) - math.atan2(a_u[1, 0], a_u[0, 0]))
        assert abs(d_rot) <= cfg.max_rotation_deg + 1e-9
        assert np.all(np.abs(a_s[:, 2] - a_u[:, 2]) <= cfg.max_translation_um)
        assert np.all(np.abs(a_h[:, 2] - a_s[:, 2]) <= cfg.highres_translation_um)
        assert abs(m.magnification_ratio() - 5.0) <= 5.0 * cfg.magnification_error + 1e-12


# ---------------------------------------------------------------------- the premise
def test_nucleus_stands_out_in_darkfield_and_oblique_light_not_in_brightfield(scope):
    """Weber contrast |μ_nucleus − μ_cytoplasm| / (μ_nucleus + μ_cytoplasm), black removed."""
    w, h = 480, 360
    x, y = 40.0, 25.0
    masks = scope.masks(pass_="unstained", x_um=x, y_um=y, width=w, height=h)
    labels, n = ndimage.label(masks["wbc"])

    def contrasts(name: str, exposure_ms: float, gain: float) -> np.ndarray:
        leds = dict.fromkeys(CHANNELS[name].leds, 255)
        frame = _snap(scope, "unstained", x, y, leds, exposure_ms, gain, w, h)
        grey = frame.astype(float).mean(axis=2) - scope.config.black_level_dn
        out = []
        for k in range(1, n + 1):
            nuc, cyt = (labels == k) & masks["nucleus"], (labels == k) & masks["cytoplasm"]
            if nuc.sum() < 30 or cyt.sum() < 30:
                continue
            a, b = grey[nuc].mean(), grey[cyt].mean()
            out.append(abs(a - b) / (a + b))
        return np.array(out)

    dark_leds = dict.fromkeys(CHANNELS["df_07_low"].leds, 255)
    dark_ms = scope.ideal_exposure_ms(
        pass_="unstained",
        x_um=x,
        y_um=y,
        leds=dark_leds,
        gain=4.0,
        level=235,
        percentile=99.9,
        width=w,
        height=h,
    )
    bright = contrasts("brightfield", 4.0, 1.0)
    oblique = contrasts("pls_20", 30.0, 1.0)
    dark = contrasts("df_07_low", dark_ms, 4.0)
    assert len(bright) >= 5
    assert np.mean(dark > 3 * bright) >= 0.7
    assert np.mean(oblique > bright) >= 0.7
    # a nucleus denser than its cytoplasm by `nucleus_to_cytoplasm` (1.2): dry-mass contrast
    # only (the first model's 3.75x optical path gave a median above 0.25)
    assert np.median(bright) < 0.08
    assert np.median(dark) > 0.1


def test_darkfield_glass_is_dark_and_brightfield_glass_is_bright(scope):
    w, h = 256, 192
    masks = scope.masks(pass_="unstained", x_um=0, y_um=0, width=w, height=h)
    cells = ndimage.binary_dilation(masks["wbc"] | masks["rbc"], iterations=6)
    glass = ~cells
    assert glass.sum() > 1000
    bright = _snap(scope, "unstained", 0, 0, BF_LEDS, 4.0, 1.0, w, h)
    dark = _snap(scope, "unstained", 0, 0, {7: 255}, 120.0, 4.0, w, h)
    assert 195 < np.median(bright[glass]) < 232
    assert np.median(dark[glass]) < 15
    assert (bright == 255).mean() < 0.002


def test_high_darkfield_exposure_burns_red_cell_rims_but_not_white_cell_interiors(scope):
    w, h = 400, 300
    x, y = -150.0, 60.0
    leds = {6: 255}
    low_ms = scope.ideal_exposure_ms(
        pass_="unstained",
        x_um=x,
        y_um=y,
        leds=leds,
        gain=4.0,
        level=235,
        percentile=99.9,
        width=w,
        height=h,
    )
    low = _snap(scope, "unstained", x, y, leds, low_ms, 4.0, w, h)
    high = _snap(scope, "unstained", x, y, leds, 4 * low_ms, 4.0, w, h)
    masks = scope.masks(pass_="unstained", x_um=x, y_um=y, width=w, height=h)
    burned_low = (low == 255).any(axis=2)
    burned_high = (high == 255).any(axis=2)
    assert burned_low.mean() < 0.003
    assert burned_high.mean() > 0.02
    # the burned pixels are mostly red-cell rims; white-cell interiors keep their detail
    # (per pixel 5.4 % of red-cell pixels against 3.6 % of white-cell ones: rims rounded over
    # 0.9 µm scatter less than the first model's sharp ones, white cells' sub-µm texture more)
    assert burned_high[masks["rbc"]].sum() > 5 * burned_high[masks["wbc"]].sum()
    assert burned_high[masks["rbc"]].mean() > burned_high[masks["wbc"]].mean()
    interior = ndimage.binary_erosion(masks["wbc"], iterations=4)
    assert burned_high[interior].mean() < 0.25
    assert high[interior].std() > 2 * low[interior].std()


# ---------------------------------------------------------------------- stains
def test_stained_nuclei_are_purple_and_red_cells_pink(scope):
    w, h = 320, 240
    x, y = 40.0, 25.0
    frame = _snap(scope, "stained", x, y, BF_LEDS, 4.0, 1.0, w, h)
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(float)
    masks = scope.masks(pass_="stained", x_um=x, y_um=y, width=w, height=h)
    core = ndimage.binary_erosion(masks["nucleus"], iterations=1)
    hue, sat, _ = np.median(hsv[core], axis=0)
    assert 120 <= hue <= 170 and sat > 100
    rbc = ndimage.binary_erosion(masks["rbc"], iterations=2)
    r, g, b = np.median(frame[rbc].astype(float), axis=0)
    # pink: green absorbed by eosin and haemoglobin; the two real Romanowsky sets' median red
    # cells (docs/stain-calibration.md) give r - g of about 30 DN on a 220 DN glass
    assert r > g + 20 and b > g
    # the unstained pass of the same slide is nearly colourless
    plain = _snap(scope, "unstained", *_stage(scope, "unstained", 0, 0), BF_LEDS, 4.0, 1.0, w, h)
    assert np.median(cv2.cvtColor(plain, cv2.COLOR_RGB2HSV)[:, :, 1]) < 30


def test_stain_colour_varies_between_slides_and_cells_shrink_about_their_centres():
    a = SimulatedMicroscope(PROFILE, slide="s", seed=1, config=DENSE)
    b = SimulatedMicroscope(PROFILE, slide="s", seed=2, config=DENSE)
    assert a._stain_scale != b._stain_scale
    assert all(abs(k - 1) <= 0.1 for k in a._stain_scale)
    unstained = _wbcs(a, "unstained", 0, 0, 640, 480)
    stained = a.truth("stained", [_stage(a, "stained", 0, 0)], 1200, 900)["cells"]
    by_id = {int(c["id"]): c for c in stained}
    matched = [(c, by_id[int(c["id"])]) for c in unstained if int(c["id"]) in by_id]
    assert matched
    before_all = np.array([b for b, _ in matched])
    dx, dy, lost = a.staining_moves(before_all["id"], before_all["x_um"], before_all["y_um"])
    assert not lost.any()
    for (before, after), mx, my in zip(matched, dx, dy, strict=True):
        # each cell moves with the film (staining_moves) and shrinks about its own centre
        assert after["x_um"] == pytest.approx(before["x_um"] + mx, abs=1e-9)
        assert after["y_um"] == pytest.approx(before["y_um"] + my, abs=1e-9)
        assert 0.94 <= after["radius_um"] / before["radius_um"] <= 0.99


# ---------------------------------------------------------------------- 100x
def test_highres_pass_has_the_true_ratio_and_resolves_finer_structure(scope):
    ratio = scope.magnification_ratio()
    assert abs(ratio - 5.0) <= 0.05
    assert scope.pixel_size_um("highres") == pytest.approx(0.293 / ratio)
    assert scope.objective("highres").na == 1.25
    x, y = _stage(scope, "highres", 0.0, 0.0)
    truth = scope.truth("highres", [(x, y)], 320, 240)
    assert truth["magnification_ratio"] == ratio
    assert scope.truth("stained", [(0, 0)], 64, 64)["magnification_ratio"] is None
    # a white cell's chromatin and granules: steepest normalised slope per µm, 100x against
    # 20x (red cells' rims are rounded over 0.9 µm, too smooth to tell the objectives apart)
    wbc = _wbcs(scope, "stained", 0, 0, 640, 480)[0]

    def edge_slope(pass_: str, exposure_ms: float) -> float:
        cx, cy = _stage(scope, pass_, wbc["x_um"], wbc["y_um"])
        p = scope.pixel_size_um(pass_)
        n = round(16 / p) // 2 * 2
        img = _snap(scope, pass_, cx, cy, BF_LEDS, exposure_ms, 1.0, n, n)
        grey = cv2.GaussianBlur(img[:, :, 1].astype(np.float32), (0, 0), 0.04 / p)
        gy, gx = np.gradient(grey, p)
        return float(np.percentile(np.hypot(gx, gy), 99.5) / (grey.max() - grey.min()))

    hi_ms = scope.ideal_exposure_ms(
        pass_="highres",
        x_um=x,
        y_um=y,
        leds=BF_LEDS,
        gain=1.0,
        level=235,
        percentile=99.9,
        width=320,
        height=240,
    )
    # 1.9x measured on this slide (NA 1.25 against 0.4; the cell's own structure is finite)
    assert edge_slope("highres", hi_ms) > 1.5 * edge_slope("stained", 4.0)


# ---------------------------------------------------------------------- focus
def test_defocus_blurs_and_focus_follows_the_slide_surface(scope):
    w, h = 192, 144
    x, y = 300.0, -200.0

    from acquisition.focus import contrast, focus_from_curve, sharpness

    dzs = np.arange(-8.0, 8.1, 1.0)
    frames = [_snap(scope, "stained", x, y, BF_LEDS, 4.0, 1.0, w, h, dz=dz) for dz in dzs]
    contrasts = np.array([contrast(f) for f in frames])
    curve = np.array([sharpness(f) for f in frames])
    # the autofocus rule (a contrast dip for phase-like cells, else the sharpness peak) finds
    # focus within the depth of field λ/NA² ≈ 3.3 µm
    best, _ = focus_from_curve(dzs, contrasts, curve)
    assert abs(best) <= 2.0
    # 8 µm out of focus the image is another one: dried red cells are strong phase objects,
    # whose defocused rings are even sharper than the focused image (hence the contrast rule)
    focused = frames[int(np.argmin(np.abs(dzs)))].astype(np.float32)
    for far in (frames[0], frames[-1]):
        assert np.abs(far.astype(np.float32) - focused).mean() > 8.0
    # the surface tilts and sags: focus differs between distant stage positions
    f0 = scope.focus_z_um("stained", 0.0, 0.0)
    f1 = scope.focus_z_um("stained", 2000.0, 0.0)
    f2 = scope.focus_z_um("stained", 0.0, 2000.0)
    assert 0.2 < math.hypot(f1 - f0, f2 - f0) < 5.0


# ---------------------------------------------------------------------- exposure
@pytest.mark.parametrize(
    ("leds", "gain", "level", "percentile"),
    [(BF_LEDS, 1.0, 235.0, 99.9), ({9: 255}, 16.0, 235.0, 99.9), ({6: 255}, 4.0, 255.0, 97.0)],
)
def test_ideal_exposure_puts_the_percentile_at_the_level(scope, leds, gain, level, percentile):
    w, h = 256, 192
    ms = scope.ideal_exposure_ms(
        pass_="unstained",
        x_um=50.0,
        y_um=50.0,
        leds=leds,
        gain=gain,
        level=level,
        percentile=percentile,
        width=w,
        height=h,
    )
    frame = _snap(scope, "unstained", 50.0, 50.0, leds, ms, gain, w, h)
    value = frame.max(axis=2).astype(float)
    if level >= 255:
        burned = (value >= 255).mean() * 100
        assert burned == pytest.approx(100 - percentile, abs=1.0)
    else:
        assert np.percentile(value, percentile) == pytest.approx(level, rel=0.04)


def test_several_leds_add_incoherently(scope):
    w, h = 192, 144
    pair = {5: 255, 13: 255}
    both = _snap(scope, "unstained", 10.0, 10.0, pair, 40.0, 4.0, w, h).astype(float)
    one = _snap(scope, "unstained", 10.0, 10.0, {5: 255}, 40.0, 4.0, w, h).astype(float)
    two = _snap(scope, "unstained", 10.0, 10.0, {13: 255}, 40.0, 4.0, w, h).astype(float)
    black = scope.config.black_level_dn
    unsaturated = (both < 250) & (one < 250) & (two < 250)
    np.testing.assert_allclose(
        (both - black)[unsaturated].mean(), (one + two - 2 * black)[unsaturated].mean(), rtol=0.03
    )
    half = _snap(scope, "unstained", 10.0, 10.0, {5: 128}, 80.0, 4.0, w, h).astype(float)
    assert (half - black).mean() == pytest.approx((one - black).mean() * 2 * 128 / 255, rel=0.03)


# ---------------------------------------------------------------------- faults
@pytest.mark.slow  # renders full-stack frames
def test_pls_shift_fault_is_recorded_and_visible():
    faults = Faults(pls_shift_probability=1.0, pls_shift_px=(4.0, 6.0))
    bad = SimulatedMicroscope(PROFILE, slide="f", seed=4, config=SimConfig(faults=faults, **FAST))
    good = SimulatedMicroscope(PROFILE, slide="f", seed=4, config=SimConfig(**FAST))
    fields = [(0.0, 0.0), (600.0, 0.0)]
    rows = bad.truth("unstained", fields, 160, 120)["faults"]
    single = {ch.leds[0] for ch in PROFILE.stack if ch.kind != "brightfield"}
    assert len(rows) == len(fields) * len(single)
    assert set(rows["kind"]) == {"pls_shift"}
    assert good.truth("unstained", fields, 160, 120)["faults"].size == 0
    row = rows[(rows["leds"] == "20") & (rows["x_um"] == 600.0)][0]
    assert 4.0 <= math.hypot(row["dx_px"], row["dy_px"]) <= 6.0
    args = dict(pass_="unstained", x_um=600.0, y_um=0.0, z_um=bad.focus_z_um("unstained", 600, 0))
    args |= dict(leds={20: 255}, exposure_ms=30.0, gain=1.0, width=160, height=120)
    shifted = bad.render(**args).astype(float).mean(axis=2)
    plain = good.render(**args).astype(float).mean(axis=2)
    found, _, _ = phase_cross_correlation(shifted, plain, upsample_factor=20)
    np.testing.assert_allclose(found, [row["dy_px"], row["dx_px"]], atol=0.3)
    # the brightfield image of the same field is not shifted
    args |= dict(leds=BF_LEDS, exposure_ms=4.0)
    np.testing.assert_array_equal(bad.render(**args), good.render(**args))


@pytest.mark.slow  # renders full frames in every pass
def test_one_pass_artifacts_and_dirt_are_recorded_and_visible():
    faults = Faults(stained_artifacts_per_field=40.0, unstained_dirt_per_field=40.0)
    bad = SimulatedMicroscope(PROFILE, slide="a", seed=9, config=SimConfig(faults=faults, **FAST))
    good = SimulatedMicroscope(PROFILE, slide="a", seed=9, config=SimConfig(**FAST))
    for pass_, kind, other in (
        ("stained", "artifact", "unstained"),
        ("unstained", "dirt", "stained"),
    ):
        field = _stage(bad, pass_, 0.0, 0.0)
        cells = bad.truth(pass_, [field], 640, 480)["cells"]
        mine = cells[(cells["pass"] == pass_) & (cells["type"] == kind)]
        assert len(mine) >= 2
        assert not np.any(
            bad.truth(other, [_stage(bad, other, 0, 0)], 640, 480)["cells"]["pass"] == pass_
        )
        p = bad.pixel_size_um(pass_)
        yy, xx = np.mgrid[:64, :64] - 31.5
        for obj in mine[:4]:
            x, y = _stage(bad, pass_, obj["x_um"], obj["y_um"])
            a = _snap(bad, pass_, x, y, BF_LEDS, 4.0, 1.0, 64, 64).astype(float)
            b = _snap(good, pass_, x, y, BF_LEDS, 4.0, 1.0, 64, 64).astype(float)
            near = np.hypot(xx, yy) * p <= obj["radius_um"] + 1.0
            assert np.percentile(np.abs(a - b).mean(axis=2)[near], 99) > 15.0


# ---------------------------------------------------------------------- the smear
@pytest.mark.slow  # renders the truth of many fields
def test_white_cells_keep_apart_and_red_cells_clear_their_nuclei():
    m = SimulatedMicroscope(PROFILE, slide="gap", seed=2, config=DENSE)
    cells = m.truth("unstained", [_stage(m, "unstained", 0, 0)], 2400, 2400)["cells"]
    wbc = cells[np.isin(cells["type"], WBC_TYPES)]
    rbc = cells[cells["type"] == "rbc"]
    assert len(wbc) >= 20 and len(rbc) > 3000
    xy = np.column_stack([wbc["x_um"], wbc["y_um"]])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    need = wbc["radius_um"][:, None] + wbc["radius_um"][None, :] + DENSE.wbc_min_gap_um
    off = ~np.eye(len(wbc), dtype=bool)
    assert np.all(d[off] >= need[off] - 1e-6)
    dr = np.hypot(rbc["x_um"][:, None] - wbc["x_um"], rbc["y_um"][:, None] - wbc["y_um"])
    assert np.all(dr >= wbc["radius_um"] + rbc["radius_um"][:, None] - 1.2 - 1e-6)
    # about the configured red-cell coverage
    area = (2400 * 0.293) ** 2
    coverage = np.sum(np.pi * rbc["radius_um"] ** 2) / area
    assert 0.5 < coverage < 0.7  # rbc_coverage 0.6 (real monolayers: 55-65 %)


@pytest.mark.slow  # counts the cells of many fields
def test_the_differential_follows_the_configured_fractions():
    config = SimConfig(wbc_per_field=40, rbc_coverage=0.0, platelets_per_field=0.0)
    m = SimulatedMicroscope(PROFILE, slide="diff", seed=0, config=config)
    cells = m.truth("unstained", [(0.0, 0.0)], 4000, 4000)["cells"]
    types = cells["type"][np.isin(cells["type"], WBC_TYPES)]
    assert len(types) > 200
    share = {t: np.mean(types == t) for t in WBC_TYPES}
    assert 0.45 < share["neutrophil"] < 0.65 and 0.23 < share["lymphocyte"] < 0.43
    assert share["monocyte"] < 0.13 and share["eosinophil"] < 0.09 and share["basophil"] < 0.04


def test_overlapping_queries_agree_on_the_same_cells(scope):
    small = scope.truth("unstained", [(0.0, 0.0)], 300, 200)["cells"]
    big = scope.truth("unstained", [(30.0, -20.0)], 900, 700)["cells"]
    in_big = dict(zip(big["id"].tolist(), big, strict=True))
    for cell in small:
        other = in_big[int(cell["id"])]
        assert other["type"] == cell["type"] and other["x_um"] == cell["x_um"]


def test_other_profiles_render_every_pass():
    grid = hardware_profiles.load("grid9x9")
    m = SimulatedMicroscope(grid, slide="g", seed=1, config=FAST_CFG)
    assert m.magnification_ratio() == pytest.approx(0.345 / 0.0863, rel=0.011)
    leds = dict.fromkeys(grid.stack[0].leds, 255)
    for pass_ in ("unstained", "stained", "highres"):
        x, y = _stage(m, pass_, 0.0, 0.0)
        ms = m.ideal_exposure_ms(
            pass_=pass_,
            x_um=x,
            y_um=y,
            leds=leds,
            gain=1.0,
            level=235.0,
            percentile=99.0,
            width=128,
            height=96,
        )
        frame = _snap(m, pass_, x, y, leds, ms, 1.0, 128, 96)
        assert frame.shape == (96, 128, 3)
        assert np.percentile(frame.max(axis=2), 99.0) == pytest.approx(235, rel=0.04)
        assert frame.mean() > 100


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pass_": "wet"}, "unknown pass"),
        ({"leds": {999: 10}}, "LED 999 is not on"),
        ({"leds": {3: 300}}, "brightness must be between"),
        ({"gain": 50.0}, "gain must be between"),
        ({"exposure_ms": 0.0}, "exposure must be a positive"),
        ({"width": 3}, "frame width"),
    ],
)
def test_render_rejects_bad_requests_with_a_clear_message(scope, change, message):
    kwargs = dict(pass_="unstained", x_um=0.0, y_um=0.0, z_um=0.0, leds={3: 255})
    kwargs |= dict(exposure_ms=10.0, gain=1.0, width=64, height=64)
    with pytest.raises(SimulatorError, match=message):
        scope.render(**(kwargs | change))


def test_config_rejects_impossible_settings():
    with pytest.raises(SimulatorError, match="unknown cell types"):
        SimConfig(wbc_type_fractions=(("plasma_cell", 1.0),))
    with pytest.raises(SimulatorError, match="pls_shift_probability"):
        Faults(pls_shift_probability=1.5)
