"""The words scope's files and stages share: passes, cell types, splits, QC flags, channel kinds.

Each vocabulary is a :class:`~enum.StrEnum`, so a member *is* its string: it compares equal to
the text stored in HDF5 attributes, CSV columns and YAML (``Pass.STAINED == "stained"``), hashes
the same, and formats as the bare word. Files keep storing plain strings; code names the
members instead of retyping the strings. The tuples beside each enum list the values in their
documented order as plain strings, for ``choices`` in the CLI, messages and membership checks.

This module sits at the bottom of the dependency order (acquisition ← registration ←
training) so every layer can import it; it imports nothing from scope's packages except the
hardware profile's channel kinds, which the profile schema defines.
"""

from __future__ import annotations

from enum import StrEnum

from hardware_profiles.schema import ChannelKind  # the profile's stack defines the kinds


class Pass(StrEnum):
    """The three acquisitions of one slide."""

    UNSTAINED = "unstained"  # the PLS stack of the unstained smear (the network's input)
    STAINED = "stained"  # the same slide after chemical staining (the target)
    HIGHRES = "highres"  # a 100x rescan of the stained slide at the matched cells


class CellType(StrEnum):
    """The five white-cell types of a Romanowsky-stained smear (the differential count)."""

    NEUTROPHIL = "neutrophil"
    LYMPHOCYTE = "lymphocyte"
    MONOCYTE = "monocyte"
    EOSINOPHIL = "eosinophil"
    BASOPHIL = "basophil"


class Split(StrEnum):
    """Dataset splits; a slide (or a region of one) belongs to exactly one."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class QcFlag(StrEnum):
    """Why a matched cell is doubtful. Flags are recorded in ``qc_flags``; no cell is dropped."""

    PLS_MISALIGNED = "pls_misaligned"  # a PLS image moved against the others (loose slide)
    LOW_SSIM = "low_ssim"  # the fine match's best score is too low
    FINE_RESIDUAL = "fine_residual"  # the fine match departs from the refitted slide transform
    TARGET_ONLY_COLOR = "target_only_color"  # stain colour with no object in the input
    INPUT_ONLY_OBJECT = "input_only_object"  # an object in the input missing from the target
    SATURATED_TARGET = "saturated_target"  # the stained crop clips
    COARSE_OUTLIER = "coarse_outlier"  # the field's coarse offset departs from the slide's fit
    NEAR_EDGE = "near_edge"  # the crop reaches the frame's border


PASSES: tuple[str, ...] = tuple(m.value for m in Pass)
CELL_TYPES: tuple[str, ...] = tuple(m.value for m in CellType)
SPLITS: tuple[str, ...] = tuple(m.value for m in Split)
QC_FLAGS: tuple[str, ...] = tuple(m.value for m in QcFlag)
CHANNEL_KINDS: tuple[str, ...] = tuple(m.value for m in ChannelKind)

__all__ = [
    "CELL_TYPES",
    "CHANNEL_KINDS",
    "PASSES",
    "QC_FLAGS",
    "SPLITS",
    "CellType",
    "ChannelKind",
    "Pass",
    "QcFlag",
    "Split",
]
