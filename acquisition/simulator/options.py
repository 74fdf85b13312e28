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

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from hardware_profiles.errors import ScopeError


class SimConfigError(ScopeError):
    """A simulator configuration file is malformed."""


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """A dataclass of faults (serial link, devices) from a YAML mapping."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SimConfigError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        f = names[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _build(type(default), value, f"{where}.{key}")
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise SimConfigError(f"{where}: {err}") from None


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
    if "serial" in data:
        out["serial_faults"] = _build(SerialFaults, data.pop("serial") or {}, f"{path}: serial")
    if "devices" in data:
        out["device_faults"] = _build(DeviceFaults, data.pop("devices") or {}, f"{path}: devices")
    if "realtime" in data:
        out["realtime"] = bool(data.pop("realtime"))
    try:  # the pydantic model checks keys, types and ranges (one line naming the key)
        out["config"] = SimConfig(**data)
    except SimulatorError as err:
        raise SimConfigError(f"{path}: {err}") from None
    return out
