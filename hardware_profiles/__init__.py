"""Hardware profiles: the schema of an LED-array microscope and the shipped profiles."""

from __future__ import annotations

from hardware_profiles.errors import ScopeError
from hardware_profiles.loader import ProfileError, list_profiles, load, profile_path
from hardware_profiles.presets import PRESETS, PresetError, preset_channel_names, select_channels
from hardware_profiles.schema import (
    Camera,
    Channel,
    HardwareProfile,
    Led,
    LedArray,
    Objective,
    Optics,
)

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
