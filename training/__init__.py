"""Training: generators, critics, losses, data loading, the trainer, evaluation, inference.

Importing this package is cheap: the public functions load torch on first use.

- :func:`train` — ``scope train`` (:class:`TrainConfig` → :class:`RunResult`);
- :func:`evaluate` — ``scope evaluate``: Table-4.2 metrics, per-cell CSV, best/worst grids;
- :func:`stain_scan` — ``scope stain``: whole unstained fields, tiled and blended;
- :func:`describe_run` — a run folder's summary for ``scope info``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RunResult": "training.trainer",
    "TrainConfig": "training.config",
    "describe_run": "training.run",
    "evaluate": "training.evaluation",
    "simulate_dataset": "training.simulated",
    "stain_field": "training.tiling",
    "stain_scan": "training.infer",
    "train": "training.trainer",
    "write_report": "training.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
