"""Each physical claim of the simulator's materials, checked by a measurement.

Red cells' optical path from their haemoglobin mass, the haemoglobin spectrum, the
nucleus/cytoplasm optical-path ratio, darkfield energy at high angles from sub-µm texture,
per-cell stain uptake, cells moved and lost by staining, smudge cells, and the stained
absorbance against two real Romanowsky sets (skipped without ``../shared``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import hardware_profiles
from acquisition.simulator import optics
from acquisition.simulator.cells import make_white_cell
from acquisition.simulator.config import WBC_TYPES, SimConfig
from acquisition.simulator.materials import haemoglobin_absorption
from acquisition.simulator.microscope import SimulatedMicroscope
from acquisition.simulator.sample import PassGeometry, Raster, column_maps
from acquisition.simulator.smear import RBC_DTYPE, SmearObjects

PROFILE = hardware_profiles.load("pls43")
#: Tests not about the spectrum sample each white LED at 3 wavelengths instead of 8 (the
#: documented faster setting, docs/simulator.md "Performance").
FAST = {"spectral_samples": 3}
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wbc-stains"


def _geometry(**kw) -> PassGeometry:
    base = dict(
        placement=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        stained=False,
        phase_factor=1.0,
        stain_scale=(1.0, 1.0, 1.0),
        texture_scale=0.0,
    )
    base.update(kw)
    return PassGeometry(**base)


def _raster(half: float = 12.0, step: float = 0.05) -> Raster:
    n = round(2 * half / step)
    return Raster(x0=-half, y0=-half, step=step, nx=n, ny=n)


def test_red_cell_optical_path_is_kappa_times_its_haemoglobin_mass():
    rbc = np.zeros(1, RBC_DTYPE)
    rbc[0] = (1, 0.0, 0.0, 3.8, 0.95, 0.3, 30.0, 0.8, 1.0, 0.0, 0.0)
    raster = _raster(6.0)
    maps = column_maps(SmearObjects(rbcs=rbc), raster, _geometry(kappa=0.41))
    area = raster.step**2
    # the mass map integrates to the cell's 30 pg; the optical path is 0.41 µm³/pg of it
    assert maps["mass"].sum() * area == pytest.approx(30.0, rel=0.02)
    assert maps["opd"].sum() * area == pytest.approx(0.41 * 30.0, rel=0.02)
    g = raster.x0 + np.arange(raster.nx) * raster.step
    inside = np.hypot(g[None, :], g[:, None]) < 3.8 * 0.95  # within the cell's outline
    mean_opd = maps["opd"][inside].mean()
    assert 0.22 < mean_opd < 0.32  # real dried red cells: about 0.25 µm
    # central pallor: the centre is thinner than the rim (rounded over 0.9 µm)
    c = raster.nx // 2
    assert maps["opd"][c, c] < 0.8 * maps["opd"].max()


def test_haemoglobin_absorbs_most_in_the_soret_band_and_little_in_the_red():
    soret, green, red = (haemoglobin_absorption(w) for w in (414.0, 540.0, 630.0))
    assert soret / green == pytest.approx(524280 / 53236, rel=1e-6)  # Prahl's table
    assert green / red > 80
    # a 30 pg red cell over 45 µm²: green absorbance about 0.1, Soret about 1
    sigma = 30.0 / 45.0
    assert 0.07 < green * sigma < 0.15 and 0.8 < soret * sigma < 1.6


@pytest.mark.parametrize("ratio", [1.0, 1.2, 1.6])
def test_nucleus_optical_path_per_column_follows_nucleus_to_cytoplasm(ratio):
    rng = np.random.default_rng(5)
    cell = make_white_cell("lymphocyte", rng=rng, id=1, x=0.0, y=0.0, radius=5.5)
    raster = _raster(8.0, 0.05)
    geom = _geometry(nucleus_to_cytoplasm=ratio, coupling=0.0)
    maps = column_maps(SmearObjects(wbcs=[cell]), raster, geom)
    # mass is conserved whatever the ratio
    assert maps["mass"].sum() * raster.step**2 == pytest.approx(cell.mass, rel=0.03)
    # optical path per µm of column: nucleus over cytoplasm
    from acquisition.simulator.cells import cell_columns

    g = raster.x0 + np.arange(raster.nx) * raster.step
    h_cell, h_nuc, _ = cell_columns(cell, g[None, :], g[:, None], raster.step)
    nuc = h_nuc > 0.97 * np.minimum(cell.nucleus_thickness, 0.95 * h_cell)
    cyt = (h_nuc == 0) & (h_cell > 0.3)
    per_um_n = np.median(maps["opd"][nuc] / h_cell[nuc])
    per_um_c = np.median(maps["opd"][cyt] / h_cell[cyt])
    expected = (0.05 + 0.95 * ratio) if ratio != 1.0 else 1.0  # the rim keeps 5 % cytoplasm
    assert per_um_n / per_um_c == pytest.approx(expected, rel=0.08)


def _darkfield_energy(config: SimConfig) -> dict[int, float]:
    m = SimulatedMicroscope(PROFILE, slide="energy", seed=4, config=config)
    out: dict[int, float] = {}
    for ch in PROFILE.stack:
        if len(ch.leds) != 1:
            continue
        led = PROFILE.led_array.by_id[ch.leds[0]]
        theta = round(math.degrees(math.asin(math.hypot(*optics.led_direction(led)))))
        if theta in (25, 57) and theta not in out:
            rate = m._electron_rate("unstained", 0.0, 0.0, 0.0, {led.id: 255}, 256, 192)
            out[theta] = float(rate.mean() / optics.led_irradiance(led))
    return out


@pytest.mark.slow  # renders full darkfield frames
def test_sub_micron_texture_lifts_darkfield_energy_at_high_angles():
    flat = _darkfield_energy(SimConfig(texture_scale=0.0, **FAST))
    rough = _darkfield_energy(SimConfig(texture_scale=2.0, **FAST))
    # scattering at 57° rises with the texture; at 25° (near the pupil) it hardly changes
    assert rough[57] > 1.25 * flat[57]
    assert rough[25] == pytest.approx(flat[25], rel=0.1)
    assert rough[57] / rough[25] > 1.2 * flat[57] / flat[25]


def test_stain_uptake_varies_cell_by_cell():
    rng = np.random.default_rng(0)
    uptakes = np.array(
        [
            make_white_cell("neutrophil", rng=rng, id=k, x=0, y=0, radius=6.0).uptake
            for k in range(200)
        ]
    )
    spread = np.log(uptakes).std(axis=0)
    assert np.all((0.18 < spread) & (spread < 0.32))  # 20-30 % per cell and dye
    assert abs(np.mean(uptakes) - 1.0) < 0.05


def test_staining_moves_and_loses_a_few_cells_and_truth_follows_each_pass():
    cfg = SimConfig(cell_loss_fraction=0.02, cell_displacement_um=0.6, **FAST)
    m = SimulatedMicroscope(PROFILE, slide="moves", seed=1, config=cfg)
    region = (0.0, 600.0, 0.0, 600.0)
    before = m.smear.objects_in(*region, pass_="unstained").rbcs
    after = m.smear.objects_in(*region, pass_="stained").rbcs
    lost = 1 - after.size / before.size
    assert 0.01 <= lost <= 0.03
    by_id = {int(r["id"]): r for r in before}
    moves = np.array(
        [
            math.hypot(r["x"] - by_id[int(r["id"])]["x"], r["y"] - by_id[int(r["id"])]["y"])
            for r in after
        ]
    )
    # a smooth field (0.36 µm RMS here) plus a little jitter of each cell's own
    assert 0.2 < np.sqrt(np.mean(moves**2)) < 0.6 and moves.max() < 1.5
    # neighbours move together: the moves of nearby cells correlate
    pts = np.column_stack([after["x"], after["y"]])
    d = np.column_stack(
        [
            after["x"] - [by_id[int(r["id"])]["x"] for r in after],
            after["y"] - [by_id[int(r["id"])]["y"] for r in after],
        ]
    )
    from scipy.spatial import cKDTree

    _, nn = cKDTree(pts).query(pts, k=2)
    assert np.corrcoef(d[:, 0], d[nn[:, 1], 0])[0, 1] > 0.6
    # the highres pass images the same stained slide: same positions as the stained pass
    high = m.smear.objects_in(*region, pass_="highres").rbcs
    assert np.array_equal(high["x"], after["x"])


def test_smudge_cells_are_in_the_truth_but_not_white_cells():
    cfg = SimConfig(smudge_per_field=20.0, **FAST)
    m = SimulatedMicroscope(PROFILE, slide="smudge", seed=0, config=cfg)
    cells = m.truth("unstained", [(0.0, 0.0)], 1920, 1200)["cells"]
    smudges = cells[cells["type"] == "smudge"]
    assert len(smudges) >= 5 and set(smudges["pass"]) == {""}
    assert "smudge" not in WBC_TYPES
    s = smudges[0]
    a = m.placement("unstained")
    x, y = a[:, :2] @ [s["x_um"], s["y_um"]] + a[:, 2]
    masks = m.masks(pass_="unstained", x_um=x, y_um=y, width=16, height=16)
    frame = m.render(
        pass_="stained",
        x_um=float(x),
        y_um=float(y),
        z_um=m.focus_z_um("stained", x, y),
        leds=dict.fromkeys(PROFILE.stack[0].leds, 255),
        exposure_ms=4.0,
        gain=1.0,
        width=16,
        height=16,
    )
    assert not masks["wbc"][8, 8]
    # a smudge takes up the chromatin stain: darker than glass in green
    assert frame[6:10, 6:10, 1].mean() < 180


@pytest.mark.slow  # renders many stained cells
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/wbc-stains is not present")
def test_stained_absorbance_lands_within_the_real_sets():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stain_calibration.py"
    spec = importlib.util.spec_from_file_location("bench_stain_calibration", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reals = [bench.real_absorbance(SHARED / s) for s in bench.SETS]
    sim = bench.simulated_absorbance(20)
    rows = bench.compare(sim, reals)
    assert len(rows) >= 6
    outside = [key for key, _, _, _, ok in rows if not ok]
    assert not outside, outside


@pytest.mark.parametrize("c", [0.0, 0.5, 1.0])
def test_plasma_film_differs_between_passes_but_cells_keep_their_texture(c):
    m = SimulatedMicroscope(
        PROFILE, slide="film", seed=0, config=SimConfig(film_pass_correlation=c, **FAST)
    )
    region = (0.0, 40.0, 0.0, 30.0)
    film_u, cells_u, *origin_u = m.smear.film_texture(*region, pass_="unstained")
    film_s, cells_s, *origin_s = m.smear.film_texture(*region, pass_="stained")
    film_h, _, *_ = m.smear.film_texture(*region, pass_="highres")
    assert origin_u == origin_s
    measured = np.corrcoef(film_u.ravel(), film_s.ravel())[0, 1]
    assert abs(measured - c) < 0.1
    # the same RMS (plasma_film_opd_nm) in every pass; one stained slide for stained and highres
    assert film_s.std() == pytest.approx(film_u.std(), rel=0.15)
    assert np.array_equal(film_s, film_h)
    assert np.array_equal(cells_u, cells_s)


def test_crenated_red_cells_keep_their_mass_and_grow_spicules():
    rbc = np.zeros(2, RBC_DTYPE)
    rbc[0] = (1, 0.0, 0.0, 3.8, 1.0, 0.0, 30.0, 0.8, 1.0, 0.0, 0.0)
    rbc[1] = (2, 0.0, 0.0, 3.8, 1.0, 0.0, 30.0, 0.8, 1.0, 14.0, 0.5)
    raster = _raster(6.0)
    radii = []
    for one in rbc:
        mass = column_maps(SmearObjects(rbcs=one[None]), raster, _geometry(kappa=0.41))["mass"]
        assert mass.sum() * raster.step**2 == pytest.approx(30.0, rel=0.02)
        # the outline (a fifth of the peak) along 256 directions from the centre
        theta = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        r = np.linspace(0, 5.9, 600)
        xs, ys = np.cos(theta)[:, None] * r, np.sin(theta)[:, None] * r
        j = np.clip(np.round((xs - raster.x0) / raster.step).astype(int), 0, raster.nx - 1)
        i = np.clip(np.round((ys - raster.y0) / raster.step).astype(int), 0, raster.ny - 1)
        above = mass[i, j] > 0.2 * mass.max()
        radii.append(r[above.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)])
    smooth, crenated = radii
    assert smooth.std() < 0.05
    spectrum = np.abs(np.fft.rfft(crenated - crenated.mean()))
    assert int(np.argmax(spectrum)) == 14  # 14 spicules
    # the radius varies by about ±12 % of 3.8 µm (softened by the rounded rim)
    assert 0.2 < 2 * spectrum[14] / crenated.size < 0.6


def test_crenated_fraction_of_red_cells_is_crenated_in_every_pass():
    assert SimConfig().crenated_fraction == 0.0
    cfg = SimConfig(crenated_fraction=0.05, **FAST)
    m = SimulatedMicroscope(PROFILE, slide="crenation", seed=0, config=cfg)
    rbcs = m.smear.objects_in(0.0, 300.0, 0.0, 300.0, pass_="unstained").rbcs
    share = np.mean(rbcs["spicules"] > 0)
    assert 0.03 < share < 0.07
    assert set(np.unique(rbcs["spicules"][rbcs["spicules"] > 0])) <= set(range(10, 21))
    stained = m.smear.objects_in(0.0, 300.0, 0.0, 300.0, pass_="stained").rbcs
    by_id = dict(zip(rbcs["id"], rbcs["spicules"], strict=True))
    assert all(by_id[i] == n for i, n in zip(stained["id"], stained["spicules"], strict=True))
