"""How big ``scope demo`` is: fields per slide, camera, training budget (``--quick``, ``--full``).

The default fits in about five minutes on two CPU cores; ``--full`` is the long version
(larger fields, bigger network, 30 epochs); ``--quick`` is a smoke test for CI.
"""

from __future__ import annotations

from dataclasses import dataclass

EPOCHS_DEFAULT = 10


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: fields per slide, camera, training budget."""

    grid: str
    sensor: str
    highres_sensor: str
    wbc_per_field: float
    epochs: int
    blocks: int
    features: int
    batch_size: int
    growth: int = 32
    lr: float = 2e-4
    #: wavelengths sampled per white LED (simulator default 8); the smoke test takes 3
    spectral_samples: int | None = None
    #: train:val:test; a small demo keeps a fifth of its cells for the test comparison
    fractions: str = "8:1:1"


FULL = DemoSize(
    grid="4x3",
    sensor="640x400",
    highres_sensor="480x480",
    wbc_per_field=60,
    epochs=30,
    blocks=2,
    features=32,
    batch_size=16,
)
#: the default: about five minutes on two idle CPU cores (measured: README, "Two commands")
FIVE_MINUTES = DemoSize(
    grid="3x2",
    sensor="640x400",
    highres_sensor="480x480",
    wbc_per_field=60,
    epochs=EPOCHS_DEFAULT,
    blocks=1,
    features=16,
    batch_size=16,
    growth=16,
    lr=1e-3,
    fractions="6:2:2",
)
QUICK = DemoSize(
    grid="3x2",
    sensor="640x400",
    highres_sensor="480x480",
    wbc_per_field=60,
    epochs=2,
    blocks=1,
    features=8,
    batch_size=16,
    growth=8,
    lr=1e-3,
    fractions="6:2:2",
    spectral_samples=3,
)

PLS_STACK = "full-nohe"
PROFILE = "pls43"
