"""Hardware profiles: the schema of an LED-array microscope and the shipped profiles."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from hardware_profiles.errors import ScopeError

if TYPE_CHECKING:
    from hardware_profiles.loader import ProfileError, list_profiles, load, profile_path
    from hardware_profiles.presets import (
        PRESETS,
        PresetError,
        preset_channel_names,
        select_channels,
    )
    from hardware_profiles.schema import (
        Camera,
        Channel,
        HardwareProfile,
        Led,
        LedArray,
        Objective,
        Optics,
    )

# Loaded on first use, so ``hardware_profiles.errors`` (the base of every scope error) stays
# importable without pydantic or yaml: the GPU benchmarks run where only torch exists.
_EXPORTS = {
    "ProfileError": "loader",
    "list_profiles": "loader",
    "load": "loader",
    "profile_path": "loader",
    "PRESETS": "presets",
    "PresetError": "presets",
    "preset_channel_names": "presets",
    "select_channels": "presets",
    "Camera": "schema",
    "Channel": "schema",
    "HardwareProfile": "schema",
    "Led": "schema",
    "LedArray": "schema",
    "Objective": "schema",
    "Optics": "schema",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"hardware_profiles.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hardware_profiles' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "Camera",
    "Channel",
    "HardwareProfile",
    "Led",
    "LedArray",
    "Objective",
    "Optics",
    "PresetError",
    "ProfileError",
    "ScopeError",
    "list_profiles",
    "load",
    "preset_channel_names",
    "profile_path",
    "select_channels",
]
