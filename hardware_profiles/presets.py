"""Stack presets: one function over a channel table.

The same function selects channels from a hardware profile (``scope scan --stack``) and from
a dataset's ``channels`` table (``scope train --stack``), so a model trained on ``le36`` sees
exactly the images a ``le36`` scan takes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hardware_profiles.errors import ScopeError

#: preset -> (maximum LED angle in degrees or None for no limit, drop high exposures)
_RULES: dict[str, tuple[float | None, bool]] = {
    "full": (None, False),
    "full-nohe": (None, True),
    "le36": (36.0, False),
    "le36-nohe": (36.0, True),
    "le18": (18.0, False),
    "le8": (8.0, False),
    "brightfield": (-1.0, False),
}
PRESETS: tuple[str, ...] = tuple(_RULES)

#: Angles come from LED positions stored to 0.01 mm; a nominal 18° LED may read 18.02°.
_THETA_SLACK_DEG = 0.5


class PresetError(ScopeError, ValueError):
    """A preset name is unknown or selects channels a table does not have."""


def _rows(table: Any) -> list[Mapping[str, Any]]:
    if isinstance(table, np.ndarray) and table.dtype.names:
        out = []
        for rec in table:
            row = {}
            for name in table.dtype.names:
                v = rec[name]
                row[name] = v.decode() if isinstance(v, bytes) else v
            out.append(row)
        return out
    if isinstance(table, Sequence):
        return list(table)
    raise TypeError(f"expected a channel table (rows or structured array), got {type(table)}")


def select_channels(table: Any, preset: str) -> list[int]:
    """Indices of the rows of ``table`` that ``preset`` keeps, in table order.

    Parameters
    ----------
    table
        Channel table: a sequence of mappings or a numpy structured array with at least the
        columns ``kind`` (``brightfield``/``pls``/``darkfield``), ``exposure_level``
        (``single``/``high``/``low``) and ``theta_deg`` (NaN for multi-LED channels).
    preset
        One of :data:`PRESETS`.

    Every preset keeps the brightfield channel; ``le<N>`` keeps single-LED channels with
    θ ≤ N°; ``-nohe`` drops high-exposure images.
    """
    if preset not in _RULES:
        raise PresetError(f"unknown stack preset {preset!r}; choose one of {', '.join(PRESETS)}")
    max_theta, drop_high = _RULES[preset]
    rows = _rows(table)
    keep = []
    for i, row in enumerate(rows):
        kind = str(row["kind"])
        if kind == "brightfield":
            keep.append(i)
            continue
        if drop_high and str(row["exposure_level"]) == "high":
            continue
        theta = float(row["theta_deg"])
        if max_theta is not None and (math.isnan(theta) or theta > max_theta + _THETA_SLACK_DEG):
            continue
        keep.append(i)
    if not any(str(rows[i]["kind"]) == "brightfield" for i in keep):
        raise PresetError(f"stack preset {preset!r}: the channel table has no brightfield channel")
    return keep


def preset_channel_names(table: Any, preset: str) -> list[str]:
    """Names of the channels ``preset`` keeps (see :func:`select_channels`)."""
    rows = _rows(table)
    return [str(rows[i]["name"]) for i in select_channels(rows, preset)]
