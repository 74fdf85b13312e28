"""Shared fixtures. The simulator is the hardware in tests: no mocks of scope's own code."""

from __future__ import annotations

import os

import pytest

# Keep BLAS/torch from oversubscribing CI's two cores, and from spinning idle threads (on a
# loaded 2-core machine spinning makes small torch ops up to 10x slower).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def pls43():
    import hardware_profiles as hp

    return hp.load("pls43")


@pytest.fixture(scope="session")
def grid9x9():
    import hardware_profiles as hp

    return hp.load("grid9x9")


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory):
    """A simulator-made dataset (one slide, 30 cells, 32 px crops), built once per session.

    Read-only: a test that changes a dataset copies it first.
    """
    from training.simulated import simulate_dataset

    path = tmp_path_factory.mktemp("sim") / "sim.dataset.h5"
    return simulate_dataset(path, slides=("sim-a",), cells_per_slide=30, crop_size=32, seed=0)
