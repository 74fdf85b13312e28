"""The error of registration that is no one phase's own."""

from __future__ import annotations

from hardware_profiles.errors import ScopeError


class RegistrationError(ScopeError):
    """Two passes cannot be registered (no field matched, inputs unusable)."""
