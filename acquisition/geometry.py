"""Frame geometry: how a camera frame's pixels sit on the stage.

Two conventions every stage shares (docs/architecture.md, "Coordinates"):

- **Orientation.** A camera may be mounted mirrored or turned; the profile declares it
  (``camera.flip_x``, ``flip_y``, ``rotation_deg``). The raw frame is the stage-aligned frame
  mirrored left-right when ``flip_x``, upside down when ``flip_y``, then turned by
  ``rotation_deg`` counter-clockwise as displayed (:func:`numpy.rot90`). Scope undoes this on
  every snap, so every stored image has x right and y down on the stage.
- **Pixel ↔ stage.** Pixel ``(x, y)`` of a stage-aligned ``W x H`` frame whose centre is at
  stage ``(X, Y)`` with pixel size ``p`` µm sits at ``(X + (x − (W−1)/2)·p, Y + (y − (H−1)/2)·p)``.

:class:`Orientation` holds the first, :class:`FieldGeometry` both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Orientation:
    """How the camera is mounted: mirrored (``flip_x``, ``flip_y``) then turned."""

    flip_x: bool = False
    flip_y: bool = False
    rotation_deg: int = 0  # 0, 90, 180 or 270, counter-clockwise as displayed

    @classmethod
    def of(cls, camera: Any) -> Orientation:
        """The orientation a profile's ``camera`` section declares."""
        return cls(bool(camera.flip_x), bool(camera.flip_y), int(camera.rotation_deg))

    @property
    def swaps_axes(self) -> bool:
        return self.rotation_deg in (90, 270)

    def to_stage(self, img: np.ndarray) -> np.ndarray:
        """A raw frame turned so x is right and y is down on the stage."""
        if self.rotation_deg:
            img = np.rot90(img, k=-self.rotation_deg // 90, axes=(0, 1))
        if self.flip_x:
            img = img[:, ::-1]
        if self.flip_y:
            img = img[::-1]
        return np.ascontiguousarray(img)

    def to_device(self, img: np.ndarray) -> np.ndarray:
        """What the camera delivers for a stage-aligned image (inverse of :meth:`to_stage`)."""
        if self.flip_y:
            img = img[::-1]
        if self.flip_x:
            img = img[:, ::-1]
        if self.rotation_deg:
            img = np.rot90(img, k=self.rotation_deg // 90, axes=(0, 1))
        return np.ascontiguousarray(img)

    def stage_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the stage-aligned image behind a raw ``width x height`` frame."""
        return (height, width) if self.swaps_axes else (width, height)


@dataclass(frozen=True)
class FieldGeometry:
    """One field's frame: stage-aligned size in pixels, pixel size, camera orientation."""

    width: int
    height: int
    pixel_size_um: float
    orientation: Orientation = field(default_factory=Orientation)

    @classmethod
    def from_raw(
        cls, raw_width: int, raw_height: int, pixel_size_um: float, camera: Any
    ) -> FieldGeometry:
        """The geometry of frames a camera delivers as ``raw_width x raw_height``."""
        orientation = Orientation.of(camera)
        w, h = orientation.stage_size(raw_width, raw_height)
        return cls(w, h, pixel_size_um, orientation)

    @property
    def size_um(self) -> tuple[float, float]:
        """The field of view ``(width, height)`` in µm."""
        return self.width * self.pixel_size_um, self.height * self.pixel_size_um

    def pixel_to_stage(
        self,
        x_px: np.ndarray | float,
        y_px: np.ndarray | float,
        field_x_um: float,
        field_y_um: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` of this field centred at stage ``(field_x_um, field_y_um)`` → µm."""
        p = self.pixel_size_um
        x = field_x_um + (np.asarray(x_px, dtype=np.float64) - (self.width - 1) / 2) * p
        y = field_y_um + (np.asarray(y_px, dtype=np.float64) - (self.height - 1) / 2) * p
        return x, y

    def stage_to_pixel(
        self,
        x_um: np.ndarray | float,
        y_um: np.ndarray | float,
        field_x_um: float,
        field_y_um: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`pixel_to_stage`."""
        p = self.pixel_size_um
        x = (np.asarray(x_um, dtype=np.float64) - field_x_um) / p + (self.width - 1) / 2
        y = (np.asarray(y_um, dtype=np.float64) - field_y_um) / p + (self.height - 1) / 2
        return x, y


__all__ = ["FieldGeometry", "Orientation"]
