"""Errors the training package raises for problems a user can fix (printed as one red line)."""

from __future__ import annotations

from hardware_profiles.errors import ScopeError


class TrainingError(ScopeError):
    """A training, evaluation or staining request cannot be carried out as given."""


class CheckpointError(TrainingError):
    """A checkpoint or run folder is missing, damaged, or belongs to another model or stack."""


class VggWeightsError(TrainingError):
    """The VGG19 ImageNet weights a perceptual loss needs are missing or unusable."""
