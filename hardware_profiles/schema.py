"""Pydantic schema of a hardware profile: optics, camera, LED array and the image stack.

Angles follow the LED-array convention: an LED at ``(x_mm, y_mm, z_mm)`` with ``z_mm`` the
distance *below* the sample (the frame of the Illuminate firmware's ``pledpos``) lights the
sample from polar angle ``theta`` (from the optical axis) and azimuth ``phi`` (from +x towards
+y). LED angles are in air, so a single LED is darkfield when ``sin(theta) > NA``.
"""

from __future__ import annotations

import math
from enum import StrEnum
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ChannelKind(StrEnum):
    """What an image of the stack is, from its LED's angle against the objective's NA."""

    BRIGHTFIELD = "brightfield"
    PLS = "pls"  # one LED inside the brightfield cone: an oblique point light source
    DARKFIELD = "darkfield"  # LEDs outside the cone: only scattered light reaches the camera


ExposureLevel = Literal["single", "high", "low"]

#: Tolerance (degrees) when a channel's declared kind is checked against its LED's angle.
#: LED positions are stored to 0.01 mm, which moves angles by well under 0.1 degree.
ANGLE_TOLERANCE_DEG = 0.05


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Strict):
    """A microscope objective and the pixel size it gives at the sample."""

    magnification: float = Field(gt=0)
    na: float = Field(gt=0, le=1.6, description="numerical aperture")
    immersion_index: float = Field(1.0, ge=1.0, le=1.8, description="1.0 air, 1.515 oil")
    pixel_size_um: float = Field(gt=0, description="camera pixel size at the sample, µm")
    brightfield_exposure_ms: float | None = Field(
        None,
        gt=0,
        description="brightfield exposure under this objective when it is not the "
        "scan objective (e.g. 100x: far less light per pixel); default: the stack's",
    )
    brightfield_gain: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _na_fits_immersion(self) -> Objective:
        if self.na > self.immersion_index:
            raise ValueError(
                f"NA {self.na} exceeds the immersion index {self.immersion_index}; "
                "an objective's NA cannot exceed n (use immersion_index 1.515 for oil)"
            )
        return self

    def is_darkfield(self, theta_deg: float) -> bool:
        """True when an LED at ``theta_deg`` (in air) lies outside this objective's acceptance.

        Light leaves the LED in air; by Snell's law ``n sin`` is conserved through the slide
        and immersion, so the LED is darkfield when ``sin(theta) > NA``. For ``NA >= 1`` no LED
        can be darkfield.
        """
        return math.sin(math.radians(theta_deg)) > self.na


class Optics(_Strict):
    objectives: dict[str, Objective] = Field(min_length=1)
    scan_objective: str = Field(description="objective used for the unstained/stained passes")
    highres_objective: str | None = Field(None, description="objective of the highres pass")

    @model_validator(mode="after")
    def _names_exist(self) -> Optics:
        for role in ("scan_objective", "highres_objective"):
            name = getattr(self, role)
            if name is not None and name not in self.objectives:
                raise ValueError(
                    f"{role} {name!r} is not one of the objectives {sorted(self.objectives)}"
                )
        return self


class Camera(_Strict):
    name: str = "camera"
    sensor_width_px: int = Field(gt=0)
    sensor_height_px: int = Field(gt=0)
    rgb: bool = True
    bit_depth: int = Field(8, ge=8, le=16)
    gain_property: str | None = Field(
        "Gain", description="Micro-Manager camera property that sets the gain (None: no gain)"
    )
    gain_min: float = Field(1.0, gt=0)
    gain_max: float = Field(1.0, gt=0)
    neutral_gain: float = Field(1.0, gt=0, description="gain value that leaves the signal as is")
    flip_x: bool = False
    flip_y: bool = False
    rotation_deg: Literal[0, 90, 180, 270] = 0

    @model_validator(mode="after")
    def _gain_range(self) -> Camera:
        if self.gain_min > self.gain_max:
            raise ValueError(f"gain_min {self.gain_min} is above gain_max {self.gain_max}")
        if not self.gain_min <= self.neutral_gain <= self.gain_max:
            raise ValueError(
                f"neutral_gain {self.neutral_gain} lies outside [{self.gain_min}, {self.gain_max}]"
            )
        return self


class SerialSettings(_Strict):
    baudrate: int = Field(115200, gt=0)
    timeout_s: float = Field(2.0, gt=0)


class Led(_Strict):
    id: int = Field(ge=0)
    x_mm: float
    y_mm: float
    z_mm: float = Field(gt=0, description="distance below the sample, mm")
    color: Literal["white", "red", "green", "blue", "rgb"] = "white"

    @property
    def theta_deg(self) -> float:
        """Polar angle from the optical axis, degrees (in air)."""
        return math.degrees(math.atan2(math.hypot(self.x_mm, self.y_mm), self.z_mm))

    @property
    def phi_deg(self) -> float:
        """Azimuth from +x towards +y, degrees in [0, 360)."""
        return math.degrees(math.atan2(self.y_mm, self.x_mm)) % 360.0


class LedArray(_Strict):
    protocol: Literal["illuminate"] = "illuminate"
    serial: SerialSettings = SerialSettings()
    leds: list[Led] = Field(min_length=1)
    max_brightness: int = Field(255, ge=1, le=65535)
    geometry_tolerance_mm: float = Field(
        0.05, ge=0, description="allowed |firmware - profile| per LED coordinate, beyond 0.01 mm"
    )
    verify: bool = Field(True, description="read every pattern back (pvals) before imaging")

    @model_validator(mode="after")
    def _unique_ids(self) -> LedArray:
        ids = [led.id for led in self.leds]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"LED ids must be unique; repeated: {dupes}")
        return self

    @cached_property
    def by_id(self) -> dict[int, Led]:
        return {led.id: led for led in self.leds}


class Connection(_Strict):
    """How this profile's hardware is reached (``scope scan --backend`` etc. override it).

    ``sim``: the built-in simulator. ``mmcore``: pymmcore-plus loads ``mm_config``.
    ``micromanager``: a running Micro-Manager via pycromanager (``mm_port``). The LED array
    is on a serial port (``led_port``) or is a Micro-Manager device (``led_device``).
    """

    backend: Literal["sim", "mmcore", "micromanager"] = "sim"
    mm_config: str | None = None
    mm_port: int = Field(4827, gt=0, lt=65536)
    led_port: str | None = None
    led_device: str | None = None


class Channel(_Strict):
    name: str = Field(min_length=1)
    leds: list[int] = Field(min_length=1)
    kind: ChannelKind
    exposure_level: ExposureLevel = "single"
    exposure_ms: float = Field(gt=0)
    gain: float = Field(1.0, gt=0)
    brightness: int = Field(255, ge=0)


class HardwareProfile(_Strict):
    """A whole instrument: what `scope scan` drives and what every file records."""

    name: str
    description: str = ""
    optics: Optics
    camera: Camera
    led_array: LedArray
    stack: list[Channel] = Field(min_length=1)
    connection: Connection = Connection()

    @model_validator(mode="after")
    def _stack_consistent(self) -> HardwareProfile:
        objective = self.optics.objectives[self.optics.scan_objective]
        leds = self.led_array.by_id
        names = [c.name for c in self.stack]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel names must be unique; repeated: {dupes}")
        n_bf = sum(c.kind == "brightfield" for c in self.stack)
        if n_bf != 1:
            raise ValueError(f"the stack needs exactly one brightfield channel, found {n_bf}")
        cam = self.camera
        for ch in self.stack:
            missing = [i for i in ch.leds if i not in leds]
            if missing:
                raise ValueError(f"channel {ch.name!r} lights LEDs {missing} the array lacks")
            if ch.brightness > self.led_array.max_brightness:
                raise ValueError(
                    f"channel {ch.name!r} brightness {ch.brightness} exceeds the array's "
                    f"max_brightness {self.led_array.max_brightness}"
                )
            if not cam.gain_min <= ch.gain <= cam.gain_max:
                raise ValueError(
                    f"channel {ch.name!r} gain {ch.gain} lies outside the camera's range "
                    f"[{cam.gain_min}, {cam.gain_max}]"
                )
            thetas = [leds[i].theta_deg for i in ch.leds]
            dark = [objective.is_darkfield(t) for t in thetas]
            if ch.kind == "brightfield":
                if any(dark):
                    raise ValueError(
                        f"brightfield channel {ch.name!r} lights darkfield LEDs "
                        f"(sin θ > NA {objective.na})"
                    )
                if ch.exposure_level != "single":
                    raise ValueError(f"brightfield channel {ch.name!r} must be exposure 'single'")
                continue
            if len(ch.leds) != 1:
                raise ValueError(f"{ch.kind} channel {ch.name!r} must light exactly one LED")
            if ch.kind == "pls" and dark[0]:
                raise ValueError(
                    f"channel {ch.name!r} is 'pls' but LED {ch.leds[0]} at θ={thetas[0]:.1f}° "
                    f"is darkfield for NA {objective.na}"
                )
            if ch.kind == "darkfield" and not dark[0]:
                raise ValueError(
                    f"channel {ch.name!r} is 'darkfield' but LED {ch.leds[0]} at "
                    f"θ={thetas[0]:.1f}° is inside NA {objective.na}"
                )
            if ch.kind == "pls" and ch.exposure_level != "single":
                raise ValueError(f"pls channel {ch.name!r} must be exposure 'single'")
            if ch.kind == "darkfield" and ch.exposure_level == "single":
                # allowed: a darkfield LED imaged once
                pass
        return self

    @property
    def scan_objective(self) -> Objective:
        return self.optics.objectives[self.optics.scan_objective]

    @property
    def highres_objective(self) -> Objective | None:
        name = self.optics.highres_objective
        return None if name is None else self.optics.objectives[name]

    def channel_table(self) -> list[dict]:
        """One row per stack image, with the columns of the scan file's ``channels`` table."""
        leds = self.led_array.by_id
        rows = []
        for ch in self.stack:
            single = len(ch.leds) == 1
            rows.append(
                {
                    "name": ch.name,
                    "leds": ",".join(str(i) for i in ch.leds),
                    "kind": ch.kind,
                    "exposure_level": ch.exposure_level,
                    "theta_deg": leds[ch.leds[0]].theta_deg if single else math.nan,
                    "phi_deg": leds[ch.leds[0]].phi_deg if single else math.nan,
                    "exposure_ms": ch.exposure_ms,
                    "gain": ch.gain,
                    "brightness": ch.brightness,
                }
            )
        return rows

    def with_stack(self, channels: list[Channel]) -> HardwareProfile:
        """A copy of this profile whose stack is ``channels``."""
        return self.model_copy(update={"stack": list(channels)})
