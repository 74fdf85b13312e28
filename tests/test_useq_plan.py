"""Acquisition plans as useq-schema MDASequence files: `scope scan --plan/--save-plan`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import useq

from acquisition.positions import PositionError
from acquisition.scan import ScanError, field_of_view_um, plan_scan
from acquisition.scanfile import ScanFile
from acquisition.useq_plan import plan_positions, read_plan, save_plan
from scope.cli import main

FRAME_WH = (256, 160)


def _plan(tmp_path: Path, seq: useq.MDASequence, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(seq.yaml() if name.endswith(".yaml") else seq.model_dump_json())
    return path


def _scan_plan(tmp_path, profile, plan, **kw):
    return plan_scan(slide="s1", pass_="unstained", profile=profile, out=tmp_path,
                     frame_wh=FRAME_WH, stack="le8", plan=plan, z_um=3.0, **kw)  # fmt: skip


def test_positions_and_grids_become_fields_with_the_objective_fov(tmp_path, pls43):
    seq = useq.MDASequence(
        stage_positions=[
            useq.Position(x=100.0, y=200.0, z=5.0),
            useq.Position(
                x=1000.0, y=0.0,
                sequence=useq.MDASequence(grid_plan=useq.GridRowsColumns(rows=1, columns=2)),
            ),
        ]
    )  # fmt: skip
    for name in ("plan.yaml", "plan.json"):
        plan = _scan_plan(tmp_path, pls43, _plan(tmp_path, seq, name))
        fov_w, _ = field_of_view_um(pls43, pls43.optics.scan_objective, FRAME_WH)
        expected = [[100.0, 200.0, 5.0], [1000.0 - fov_w / 2, 0.0, 3.0],
                    [1000.0 + fov_w / 2, 0.0, 3.0]]  # fmt: skip
        np.testing.assert_allclose(plan.positions, expected)


def test_a_relative_grid_without_positions_is_around_the_stage(pls43):
    seq = useq.MDASequence(grid_plan=useq.GridRowsColumns(rows=1, columns=3, fov_width=500,
                                                          fov_height=300))  # fmt: skip
    pos = plan_positions(seq, field_um=(1.0, 1.0), stage_xy=(40.0, 60.0))
    np.testing.assert_allclose(pos[:, :2], [[-460.0, 60.0], [40.0, 60.0], [540.0, 60.0]])
    assert np.isnan(pos[:, 2]).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"z_plan": {"range": 4, "step": 1}}, "has a z plan; a scan stores one z per position"),
        ({"time_plan": {"interval": 1, "loops": 3}}, "has a time plan"),
        ({"channels": ["DAPI"]}, "lists channels (DAPI); scope takes its channels from the stack"),
    ],
)
def test_z_time_and_channel_plans_are_refused_in_one_line(tmp_path, pls43, extra, message):
    seq = useq.MDASequence(stage_positions=[(0.0, 0.0, 1.0)], **extra)
    with pytest.raises(PositionError) as err:
        _scan_plan(tmp_path, pls43, _plan(tmp_path, seq))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_plans_meet_the_same_checks_as_other_positions(tmp_path, pls43):
    huge = useq.MDASequence(grid_plan=useq.GridRowsColumns(rows=400, columns=400))
    with pytest.raises(PositionError, match="more than 100,000 fields"):
        _scan_plan(tmp_path, pls43, _plan(tmp_path, huge))
    far = useq.MDASequence(stage_positions=[(1e9, 0.0, 0.0)])
    with pytest.raises(ScanError):
        _scan_plan(tmp_path, pls43, _plan(tmp_path, far))
    with pytest.raises(ScanError, match="give only one of --grid, --region, --positions, --plan"):
        _scan_plan(tmp_path, pls43, _plan(tmp_path, far), grid="2x2")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage_positions: [{x: abc}]\n")
    with pytest.raises(PositionError, match="is not a valid useq-schema MDASequence"):
        read_plan(bad)


def test_saved_plan_round_trips_through_useq(tmp_path):
    positions = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, math.nan]])
    path = save_plan(tmp_path / "p.json", positions, metadata={"slide": "s1"})
    seq = useq.MDASequence.model_validate(json.loads(path.read_text()))
    assert seq.metadata["scope"] == {"slide": "s1"}
    back = plan_positions(seq, field_um=(1.0, 1.0))
    np.testing.assert_array_equal(back, positions)


def test_cli_scans_a_plan_and_saves_the_plan_it_used(tmp_path):
    seq = useq.MDASequence(stage_positions=[(0.0, 0.0, None), (300.0, 0.0, None)])
    plan = _plan(tmp_path, seq)
    out = tmp_path / "scan"
    saved = tmp_path / "used.yaml"
    args = ["scan", "--slide", "s1", "--pass", "unstained", "--profile", "pls43", "--out",
            str(out), "--sim-sensor", "128x96", "--yes", "--stack", "le8", "--plan", str(plan),
            "--save-plan", str(saved)]  # fmt: skip
    assert main(args) == 0
    with ScanFile(out / "s1.unstained.scan.h5") as sf:
        assert sf.complete
        np.testing.assert_allclose(sf.positions["x_um"], [0.0, 300.0])
    used = read_plan(saved)
    np.testing.assert_allclose([p.x for p in used.stage_positions], [0.0, 300.0])
    assert used.metadata["scope"]["stack"][0] == "brightfield"
