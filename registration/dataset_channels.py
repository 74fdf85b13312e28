"""Channel tables shared between scan and dataset files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from acquisition.scanfile import CHANNEL_FIELDS
from acquisition.tables import decode, to_records


def channel_records(channels: np.ndarray | Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Any channel table (rows or structured array) → structured array with ``str`` columns."""
    if isinstance(channels, np.ndarray):
        rows = [{n: channels[n][i] for n in channels.dtype.names} for i in range(len(channels))]
    else:
        rows = [dict(r) for r in channels]
    return decode(to_records(rows, CHANNEL_FIELDS))
