"""Finding, loading and validating profiles (shipped by name, or any YAML/JSON file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from hardware_profiles.errors import ScopeError
from hardware_profiles.schema import HardwareProfile

_SHIPPED = Path(__file__).with_name("profiles")


class ProfileError(ScopeError, ValueError):
    """A profile cannot be found, parsed or validated. The message is one readable line."""


def list_profiles() -> list[str]:
    """Names of the profiles shipped with scope."""
    return sorted(p.stem for p in _SHIPPED.glob("*.yaml"))


def profile_path(name_or_path: str | Path) -> Path:
    """The file behind a shipped profile name or a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml", ".json"} or candidate.exists():
        if not candidate.is_file():
            raise ProfileError(f"profile file {str(candidate)!r} does not exist")
        return candidate
    shipped = _SHIPPED / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ProfileError(
            f"unknown profile {str(name_or_path)!r}; shipped profiles: "
            f"{', '.join(list_profiles())} (or give a path to a .yaml file)"
        )
    return shipped


def _format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = "" if err.error_count() <= 3 else f" (+{err.error_count() - 3} more)"
    return f"invalid profile {source}: " + "; ".join(parts) + more


def parse(data: dict, source: str = "<dict>") -> HardwareProfile:
    """Validate a profile given as plain data."""
    if not isinstance(data, dict):
        raise ProfileError(f"invalid profile {source}: expected a mapping at the top level")
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(_format_validation_error(source, err)) from None


def load(name_or_path: str | Path) -> HardwareProfile:
    """Load a shipped profile by name (``pls43``) or a profile file (YAML or JSON)."""
    path = profile_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ProfileError(f"cannot read profile {str(path)!r}: {first}") from None
    return parse(data, repr(str(path)))


def dump(profile: HardwareProfile, path: str | Path) -> Path:
    """Write a profile as YAML (keys in schema order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = profile.model_dump(mode="json")
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # temp + rename: never half a file
    try:
        tmp.write_text(
            yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100),
            encoding="utf-8",
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
