"""The match-memory benchmark's build path at tiny size: real scans, every field matched."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from acquisition.scanfile import ScanFile

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_match_memory.py"
_SPEC = importlib.util.spec_from_file_location("bench_match_memory", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


@pytest.mark.slow
def test_replicated_scans_are_real_and_match_in_every_field(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "rep").mkdir()
    u1, s1 = bench.base_pair(tmp_path / "base", "2x1")
    u = bench.replicate(u1, tmp_path / "rep", 5)
    with ScanFile(u1) as base, ScanFile(u) as rep:
        assert rep.complete and rep.n_positions == 5 and rep.pass_ == "unstained"
        assert not rep.integrity_problem()
        # field 3 shows simulated field 1 (3 mod 2), at its own stage position
        np.testing.assert_array_equal(rep.stack(3), base.stack(1))
        xy = np.stack([rep.positions["x_um"], rep.positions["y_um"]], axis=1)
        gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))[np.triu_indices(5, 1)]
        assert gaps.min() >= bench.PITCH_UM
        moved = rep.frames[rep.frames["position"] == 3]["stage_x_um"]
        assert np.allclose(
            moved,
            xy[3, 0]
            + base.frames[base.frames["position"] == 1]["stage_x_um"]
            - base.positions["x_um"][1],
        )

    r = bench.measure((u1, s1), tmp_path, 20, workers=1)
    assert r["n"] == 20 and r["fields_with_cells"] == 20  # cells found in every field
    assert r["cells"] >= 20 and 0 < r["unflagged"] <= r["cells"]
    assert 50 < r["peak_mb"] < 2048
    md = bench.table([r], "--fields 20 --quick", 1, True)
    assert f"| 20 | {r['cells']} ({r['unflagged']}) | 20 |" in md
