"""Registration: unstained ↔ stained ↔ 100x scans become datasets of matched cell crops.

Light on import: the public functions are loaded from their modules on first use, so
``import registration`` (and ``scope --help``) stays instant.

- :func:`find_wbcs` — WBC centroids in a stained image (:mod:`registration.segment`; its
  parameters :class:`WbcParams` in :mod:`registration.wbc_params`);
- :func:`match_scans` — ``scope match`` (:mod:`registration.match`);
- :func:`add_highres` — ``scope match --highres`` (:mod:`registration.highres_dataset`);
- :func:`merge_datasets`, :func:`resplit_dataset` — ``scope dataset merge|split``
  (:mod:`registration.manage`); :func:`describe_dataset`, :func:`preview_grid` —
  ``scope dataset info`` (:mod:`registration.dataset_info`);
- :func:`evaluate_match` — a dataset against the simulator's truth (:mod:`registration.truth`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HighresOptions": "registration.highres_options",
    "MatchOptions": "registration.match_options",
    "QcOptions": "registration.qc_options",
    "WbcParams": "registration.wbc_params",
    "add_highres": "registration.highres_dataset",
    "describe_dataset": "registration.dataset_info",
    "evaluate_match": "registration.truth",
    "find_wbcs": "registration.segment",
    "match_scans": "registration.match",
    "merge_datasets": "registration.manage",
    "preview_grid": "registration.dataset_info",
    "resplit_dataset": "registration.manage",
    "segment_wbcs": "registration.segment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'registration' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
