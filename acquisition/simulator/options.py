"""``--sim-config FILE``: the simulator's knobs and faults from YAML.

Example::

    model: dry-mass            # optional: the only model (docs/simulator.md)
    wbc_per_field: 8
    max_translation_um: 30
    faults: {pls_shift_probability: 0.05}
    serial: {drop_probability: 0.01, garble_probability: 0.01}
    devices: {camera_timeout_probability: 0.02, stage_error_um: 2.0}
    realtime: false
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hardware_profiles.errors import ScopeError


class SimConfigError(ScopeError):
    """A simulator configuration file is malformed."""


def load_sim_options(path: str | Path | None) -> dict[str, Any]:
    """Parse a simulator YAML → ``config``, ``serial_faults``, ``device_faults``, ``realtime``."""
    from acquisition.simulator.config import SimConfig, SimulatorError
    from acquisition.simulator.devices import DeviceFaults
    from acquisition.simulator.firmware import SerialFaults

    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise SimConfigError(f"simulator configuration {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise SimConfigError(f"cannot parse {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SimConfigError(f"{path}: expected a mapping at the top level")
    data = dict(data)
    out: dict[str, Any] = {}
    sections = {
        "serial": ("serial_faults", SerialFaults),
        "devices": ("device_faults", DeviceFaults),
    }
    try:  # the pydantic models check keys, types and ranges (one line naming the key)
        for section, (name, model) in sections.items():
            if section in data:
                out[name] = model.from_section(data.pop(section), section)
        if "realtime" in data:
            out["realtime"] = bool(data.pop("realtime"))
        out["config"] = SimConfig(**data)
    except SimulatorError as err:
        raise SimConfigError(f"{path}: {err}") from None
    return out
