"""Cells at field edges: cut from the neighbouring field (or stitched), never silently black.

The simulated slide is scanned in abutting fields and re-seated between the passes, so many
cells near a stained field's edge lie, unstained, in the next field or across two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acquisition.rig import SimOptions, open_sim
from acquisition.scan import plan_scan, run_scan
from acquisition.scanfile import ScanFile
from acquisition.simulator.config import SimConfig
from registration.dataset import Dataset
from registration.match import match_scans
from registration.mosaic import FieldMosaic

SENSOR = (320, 200)


def test_mosaic_cuts_straddling_windows_exactly():
    rng = np.random.default_rng(0)
    slide = rng.integers(0, 255, (400, 640, 3), dtype=np.uint8)  # 2x2 abutting 320x200 fields
    px = 0.5
    tops = [(0, 0), (320, 0), (0, 200), (320, 200)]
    fields = [slide[y : y + 200, x : x + 320] for x, y in tops]
    centres = np.array([((x + 159.5) * px, (y + 99.5) * px) for x, y in tops])
    m = FieldMosaic(centres, 320, 200, px)
    # a window in field 0's grid reaching into fields 1, 2 and 3
    crop, full = m.cut(0, 300, 180, 64, 64, lambda j: fields[j])
    assert full
    assert np.array_equal(crop, slide[180:244, 300:364])
    assert m.covers(0, 300, 180, 64, 64)
    # a window wholly in field 3, asked for in field 0's grid
    crop, full = m.cut(0, 400, 250, 32, 32, lambda j: fields[j])
    assert full and np.array_equal(crop, slide[250:282, 400:432])
    # past the scanned area: zeros there, and not full
    crop, full = m.cut(3, 300, 180, 40, 40, lambda j: fields[j])
    assert not full and not m.covers(3, 300, 180, 40, 40)
    assert (crop[-10:, -10:] == 0).all()


@pytest.fixture(scope="module")
def edge_scan(tmp_path_factory, pls43):
    out = tmp_path_factory.mktemp("edges")
    config = SimConfig(wbc_per_field=60.0, max_translation_um=15.0, max_rotation_deg=0.2)
    paths = {}
    with open_sim(pls43, SimOptions(slide="e1", seed=5, sensor_wh=SENSOR, config=config)) as rig:
        for pass_, kw in (("unstained", {"grid": "3x3", "stack": "brightfield"}), ("stained", {})):
            rig.set_pass(pass_)
            z = rig.mm.read_stage().z_um
            plan = plan_scan(
                slide="e1", pass_=pass_, profile=pls43, out=out, frame_wh=SENSOR, z_um=z, **kw
            )
            paths[pass_] = run_scan(plan, rig).path
    summary = match_scans(paths["unstained"], paths["stained"], out / "e1.dataset.h5")
    return paths, summary


def _scan_area(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stage µm corners (min, max) of the union of a pass's abutting fields."""
    with ScanFile(path) as sf:
        pos = sf.positions
        h, w = sf.frame_shape
        px = sf.pixel_size_um
    c = np.stack([pos["x_um"], pos["y_um"]], axis=1)
    half = np.array([w / 2, h / 2]) * px
    return c.min(0) - half, c.max(0) + half


@pytest.mark.slow  # scans and matches a 3x3 slide
def test_edge_cells_come_from_the_neighbouring_field(edge_scan, pls43):
    paths, summary = edge_scan
    assert any("neighbouring unstained field" in n for n in summary.notes)
    lo_u, hi_u = _scan_area(paths["unstained"])
    lo_s, hi_s = _scan_area(paths["stained"])
    with Dataset(summary.dataset) as ds:
        cells = ds.cells
        half = ds.crop_size / 2 * 0.293 + 0.5  # µm, with half a pixel of rounding
        for k, flags in enumerate(cells["qc_flags"]):
            u = np.array([cells["x_um"][k], cells["y_um"][k]])
            s = np.array([cells["stained_x_um"][k], cells["stained_y_um"][k]])
            inside = (
                (u - half >= lo_u).all()
                and (u + half <= hi_u).all()
                and (s - half >= lo_s).all()
                and (s + half <= hi_s).all()
            )
            if "near_edge" in str(flags):
                # only a crop reaching past the scanned area may be flagged near_edge
                assert not inside, (k, u, s)
            else:
                # and no unflagged cell has a black (zero-padded) band in its input or target
                inp = ds.inputs[k]
                assert (inp.reshape(-1, 3).max(axis=1) > 0).all(), k
                assert (ds.targets[k].reshape(-1, 3).max(axis=1) > 0).all(), k
