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
