"""Shared fixtures. The simulator is the hardware in tests: no mocks of scope's own code."""

from __future__ import annotations

import os

import pytest

# Keep BLAS/torch from oversubscribing CI's two cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def pls43():
    import hardware_profiles as hp

    return hp.load("pls43")


@pytest.fixture(scope="session")
def grid9x9():
    import hardware_profiles as hp

    return hp.load("grid9x9")
