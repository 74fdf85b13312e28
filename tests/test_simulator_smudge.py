"""Smudge cells: a ruptured lymphocyte's chromatin, spread thinner, in the simulator.

A smudge cell carries one lymphocyte nucleus's dry mass and DNA stain (checked exactly on the
column maps against the intact cell it was) spread over a larger patch along the smear, so a
rendered stained frame shows about one nucleus's integrated absorbance at a clearly lower
absorbance per area; and white cells are still found on fields holding smudge cells.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

import hardware_profiles
from acquisition.simulator.cells import chromatin_um3
from acquisition.simulator.config import SimConfig
from acquisition.simulator.debris import make_smudge
from acquisition.simulator.materials import DNA_PG, STAIN_DNA
from acquisition.simulator.sample import PassGeometry, Raster, column_maps
from acquisition.simulator.smear import SmearObjects
from tests.sim_fields import stained_field

PROFILE = hardware_profiles.load("pls43")
_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_segmentation.py"


def _geometry(stained: bool = True, ratio: float = 1.2) -> PassGeometry:
    return PassGeometry(
        placement=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        stained=stained,
        phase_factor=1.0,
        stain_scale=(1.0, 1.0, 1.0),
        nucleus_to_cytoplasm=ratio,
        texture_scale=0.0,
    )


def _raster(half: float = 16.0, step: float = 0.1) -> Raster:
    n = round(2 * half / step)
    return Raster(x0=-half, y0=-half, step=step, nx=n, ny=n)


def _dna(maps: dict, step: float) -> np.ndarray:
    """The DNA field (pg/µm²) from the eosin map of a DNA-only object."""
    return maps["eosin"] / np.float32(STAIN_DNA[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_smudge_holds_its_lymphocyte_nucleus_spread_thinner_along_the_smear(seed):
    d = make_smudge(np.random.default_rng(seed), id=1, x=0.0, y=0.0)
    cell = d.cell
    raster, area = _raster(), 0.1 * 0.1
    smudge = column_maps(SmearObjects(debris=[d]), raster, _geometry())
    # the intact cell it was, with its DNA stain alone (no RNA, protein or granule uptake) and
    # unshrunk: its DNA field integrates to the smudge's
    dna_only = dataclasses.replace(
        cell, shrink=1.0, uptake=np.array([cell.uptake[0], 0.0, 0.0, 0.0])
    )
    intact = column_maps(SmearObjects(wbcs=[dna_only]), raster, _geometry())
    dna_s, dna_i = _dna(smudge, 0.1), _dna(intact, 0.1)
    assert dna_s.sum() * area == pytest.approx(dna_i.sum() * area, rel=0.02)
    assert dna_s.sum() * area == pytest.approx(DNA_PG * cell.uptake[0], rel=0.01)
    assert d.dna_pg == DNA_PG and cell.chromatin == pytest.approx(chromatin_um3(cell))
    # its dry mass is the nucleus's share of the cell's (at this nucleus/cytoplasm ratio)
    for ratio in (1.0, 1.2):
        maps = column_maps(SmearObjects(debris=[d]), raster, _geometry(False, ratio))
        share = ratio * cell.nucleus_volume / (cell.volume + (ratio - 1) * cell.nucleus_volume)
        assert maps["mass"].sum() * area == pytest.approx(cell.mass * share, rel=0.01)
        assert maps["opd"].sum() * area == pytest.approx(0.41 * cell.mass * share, rel=0.01)
    # spread thinner: over 2x the intact nucleus's area, at under 0.6 of its mean column
    nucleus = dna_i > 0.05 * dna_i.max()
    patch = dna_s > 0.05 * dna_i.max()
    assert patch.sum() > 2.0 * nucleus.sum()
    assert dna_s[patch].mean() < 0.6 * dna_i[nucleus].mean()
    # drawn out along the smear (the slide's x axis)
    g = raster.x0 + np.arange(raster.nx) * raster.step
    w = dna_s / dna_s.sum()
    mx, my = (w.sum(0) * g).sum(), (w.sum(1) * g).sum()
    sxx, syy = (w.sum(0) * (g - mx) ** 2).sum(), (w.sum(1) * (g - my) ** 2).sum()
    assert sxx > syy and abs(d.angle) < 0.6
    assert d.radius < 15.0 and not math.isnan(d.radius)


@pytest.mark.slow  # renders two 960x600 stained frames
def test_rendered_smudges_hold_about_one_nucleus_of_stain_at_a_lower_density():
    spec = importlib.util.spec_from_file_location("bench_segmentation", _PATH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    got = bench.smudge_stain_ratios(
        2, 960, 600, wbc_per_field=40.0, smudge_per_field=40.0, spectral_samples=3
    )
    intact, smudge = got["intact"], got["smudge"]
    assert len(intact) >= 5 and len(smudge) >= 5
    # integrated absorbance: about one intact nucleus's (the smudge's DNA uptake varies cell
    # by cell like the nuclei's, ±25 %); per area: well under an intact nucleus's
    assert 0.7 < np.median(smudge[:, 0]) < 1.3
    assert np.median(smudge[:, 1]) < 0.5
    assert np.median(smudge[:, 2]) > 2.0 * np.median(intact[:, 2])


def test_white_cells_are_found_on_a_field_with_smudge_cells():
    from registration.segment import find_wbcs

    cfg = SimConfig(wbc_per_field=40.0, smudge_per_field=40.0, spectral_samples=3)
    img, xy, radius = stained_field(
        PROFILE, slide="smudges", seed=5, config=cfg, width=960, height=600, margin=40
    )
    found = find_wbcs(img, pixel_size_um=PROFILE.scan_objective.pixel_size_um)
    h, w = img.shape[:2]
    inside = (xy[:, 0] >= 45) & (xy[:, 0] <= w - 46) & (xy[:, 1] >= 45) & (xy[:, 1] <= h - 46)
    d = np.linalg.norm(xy[inside, None] - found[None], axis=2)
    assert inside.sum() >= 6
    # white cells are still found among the smudge cells (which detection returns too:
    # docs/registration.md, "Smudge cells"); a smudge lying over a white cell can pull its
    # body, and so its centroid, beyond the cell (1 of 11 here)
    assert (d <= radius[inside, None]).any(1).mean() >= 0.9


def test_the_default_slide_holds_smudge_cells_at_a_normal_smears_share():
    """Smudge cells are normally under 2 % of a smear's nucleated cells (more in CLL)."""
    from acquisition.simulator.config import NORMAL_SMUDGE_SHARE, SimConfig, smudges_per_field

    cfg = SimConfig()
    share = cfg.smudge_per_field / (cfg.wbc_per_field + cfg.smudge_per_field)
    assert 0.01 <= share <= NORMAL_SMUDGE_SHARE
    n = smudges_per_field(20.0)
    assert n / (20.0 + n) == pytest.approx(NORMAL_SMUDGE_SHARE)
    with pytest.raises(ValueError, match="share"):
        smudges_per_field(5.0, share=1.0)


def test_the_segmentation_benchmark_gives_precision_both_ways(monkeypatch):
    """Smudge detections count against precision over intact white cells only, not against
    precision with smudge cells counted as the ruptured white cells they are."""
    monkeypatch.syspath_prepend(str(_PATH.parent))  # the benchmark imports its siblings
    sim = importlib.import_module("segmentation_simulated")
    t = sim.Tally(tp=158, n_det=162, fp=4, on={"smudge": 3, "artifact": 1}, times=[0.05])
    t.cpu, t.wbc_density = [0.05], [1.0]
    t.false_stats = [(0.5, 0.8, 60.0)] * 4
    rows = {}
    for row in sim.tally_rows(t, 6)[2:]:
        name, value = row.strip("| ").rsplit(" | ", 1)
        rows[name] = value
    assert rows["precision (before QC)"] == "0.975"
    assert rows["precision, smudge cells counted as the ruptured white cells they are"] == "0.994"
