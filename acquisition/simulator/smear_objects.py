"""What a region of the smear holds in one pass: red cells and platelets as record arrays,
white cells and debris as objects (slide coordinates, µm)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from acquisition.simulator.cells import WhiteCell
from acquisition.simulator.debris import Debris

RBC_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("x", "f8"),
        ("y", "f8"),
        ("radius", "f4"),
        ("aspect", "f4"),
        ("angle", "f4"),
        ("mass", "f4"),
        ("pallor", "f4"),
        ("shrink", "f4"),
        ("spicules", "f4"),
        ("spicule_phase", "f4"),
    ]
)
PLATELET_DTYPE = np.dtype(
    [
        ("id", "i8"),
        ("x", "f8"),
        ("y", "f8"),
        ("radius", "f4"),
        ("aspect", "f4"),
        ("angle", "f4"),
        ("shrink", "f4"),
    ]
)


@dataclass
class SmearObjects:
    """Objects of the smear in a region, for one pass (slide coordinates)."""

    rbcs: np.ndarray = field(default_factory=lambda: np.zeros(0, RBC_DTYPE))
    platelets: np.ndarray = field(default_factory=lambda: np.zeros(0, PLATELET_DTYPE))
    wbcs: list[WhiteCell] = field(default_factory=list)
    debris: list[Debris] = field(default_factory=list)
