"""simulate_dataset renders with the simulator settings it is given (the ablation's null test)."""

from __future__ import annotations

import numpy as np

from acquisition.simulator.config import SimConfig
from registration.dataset import Dataset
from training.simulated import simulate_dataset


def _render(path, config):
    simulate_dataset(
        path, slides=("cfg-a",), cells_per_slide=2, crop_size=32, seed=3, highres=False,
        sim_config=config,
    )  # fmt: skip
    with Dataset(path) as ds:
        return ds.inputs[:], np.asarray(ds.cells["x_um"])


def test_the_null_knobs_change_the_unstained_cells_not_the_slide(tmp_path):
    x0, pos0 = _render(tmp_path / "default.dataset.h5", None)
    x1, pos1 = _render(
        tmp_path / "null.dataset.h5", SimConfig(nucleus_to_cytoplasm=1.0, stain_phase_coupling=0.0)
    )
    # the same cells at the same places (one slide, one seed) ...
    assert np.array_equal(pos0, pos1) and x0.shape == x1.shape
    # ... imaged through a different phase model: the unstained stacks differ
    assert np.abs(x0.astype(np.int16) - x1.astype(np.int16)).mean() > 0.05
