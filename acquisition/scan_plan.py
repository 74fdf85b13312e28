"""Plan a scan: ``scope scan`` options → positions, stack and objective (:class:`ScanPlan`).

Nothing here moves hardware; :mod:`acquisition.scan` acquires what a plan says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acquisition.files import check_slide_name
from acquisition.geometry import FieldGeometry
from acquisition.positions import (
    check_field_count,
    grid_positions,
    parse_grid,
    parse_region,
    read_cells_csv,
    read_positions_csv,
    region_positions,
)
from acquisition.scanfile import MAX_STAGE_UM, ScanFile, check_positions, scan_path
from acquisition.tables import DEFAULT_COMPRESSION
from acquisition.vocabulary import PASSES, ChannelKind, Pass
from hardware_profiles import HardwareProfile, select_channels
from hardware_profiles.errors import ScopeError


class ScanError(ScopeError):
    """A scan cannot start or continue."""


@dataclass
class ScanPlan:
    """Everything a scan needs to know before the first move."""

    slide: str
    pass_: str
    profile: HardwareProfile  # its stack is exactly the channels to take
    positions: np.ndarray  # (N, 3) stage µm
    out: Path
    objective_name: str
    compression: str = DEFAULT_COMPRESSION
    focus: str = "none"
    cell_ids: list[str] | None = None
    extra_attrs: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return scan_path(self.out, self.slide, self.pass_)


def stack_profile(profile: HardwareProfile, preset: str | None) -> HardwareProfile:
    """The profile with its stack reduced to ``preset`` (None: the full stack)."""
    if preset is None or preset == "full":
        return profile
    keep = select_channels(profile.channel_table(), preset)
    return profile.with_stack([profile.stack[i] for i in keep])


def brightfield_profile(profile: HardwareProfile, objective: str | None = None) -> HardwareProfile:
    """One brightfield image per field (the stained and highres passes).

    Under an objective that declares its own brightfield exposure (a 100x objective gets ~25x
    less light per pixel), that exposure and gain replace the stack's.
    """
    bf = stack_profile(profile, ChannelKind.BRIGHTFIELD)
    obj = profile.optics.objectives[objective] if objective else None
    if obj is None or obj.brightfield_exposure_ms is None:
        return bf
    ch = bf.stack[0].model_copy(
        update={
            "exposure_ms": obj.brightfield_exposure_ms,
            "gain": obj.brightfield_gain if obj.brightfield_gain is not None else bf.stack[0].gain,
        }
    )
    return bf.with_stack([ch])


def field_of_view_um(profile: HardwareProfile, objective: str, frame_wh: tuple[int, int]):
    """The field of view ``(width, height)`` in µm of ``frame_wh`` frames under ``objective``."""
    p = profile.optics.objectives[objective].pixel_size_um
    return FieldGeometry(frame_wh[0], frame_wh[1], p).size_um


#: The longest exposure a channel may ask for (a profile with more is a typo).
MAX_EXPOSURE_MS = 60_000.0


def check_exposures(profile: HardwareProfile) -> None:
    """Every channel's exposure and gain must be finite and plausible."""
    for ch in profile.stack:
        if not (math.isfinite(ch.exposure_ms) and 0 < ch.exposure_ms <= MAX_EXPOSURE_MS):
            raise ScanError(
                f"profile {profile.name!r}: channel {ch.name} asks for a {ch.exposure_ms:g} ms "
                f"exposure; exposures must lie in (0, {MAX_EXPOSURE_MS:g}] ms: fix the profile "
                "(or run scope calibrate)"
            )
        if not (math.isfinite(ch.gain) and 0 < ch.gain <= 1e4):
            raise ScanError(
                f"profile {profile.name!r}: channel {ch.name} has gain {ch.gain:g}; fix the profile"
            )


def positions_from_scan(path: Path) -> np.ndarray:
    """Field centres (x, y, z) of an earlier scan file."""
    with ScanFile(path) as sf:
        pos = sf.positions
        if not sf.complete:
            raise ScanError(
                f"{path} is incomplete ({len(sf.done)} of {sf.n_positions} fields); finish it "
                "with --resume before rescanning its positions"
            )
        return np.stack([pos["x_um"], pos["y_um"], pos["z_um"]], axis=1).astype(np.float64)


def plan_scan(
    *,
    slide: str,
    pass_: str,
    profile: HardwareProfile,
    out: Path,
    frame_wh: tuple[int, int],
    stage_xy: tuple[float, float] = (0.0, 0.0),
    stack: str | None = None,
    grid: str | None = None,
    region: str | None = None,
    positions_csv: Path | None = None,
    positions_from: Path | None = None,
    cells_csv: Path | None = None,
    overlap: float = 0.0,
    compression: str = DEFAULT_COMPRESSION,
    focus: str = "none",
    z_um: float = 0.0,
    plan: Path | None = None,
) -> ScanPlan:
    """Turn ``scope scan`` options into a :class:`ScanPlan` (positions, stack, objective).

    ``z_um`` is the focus for every field whose position carries no Z — the current stage Z,
    where the operator focused (``--focus map`` replaces it per field). Positions taken from
    another pass keep only their XY: re-seating the slide or changing objectives moves focus.
    """
    if pass_ not in PASSES:
        raise ScanError(f"unknown pass {pass_!r}; choose one of {', '.join(PASSES)}")
    check_slide_name(slide)
    # NaN means "no focus known" (a stage without a focus drive): fields without z refuse below
    if math.isinf(z_um) or abs(z_um) > MAX_STAGE_UM:
        raise ScanError(f"--z-um must be a finite stage position, got {z_um}")
    options = (("--grid", grid), ("--region", region), ("--positions", positions_csv))
    given = [n for n, v in (*options, ("--plan", plan)) if v]
    if len(given) > 1:
        raise ScanError(f"give only one of --grid, --region, --positions, --plan (got {given})")
    cell_ids = None
    if pass_ == Pass.HIGHRES:
        if profile.optics.highres_objective is None:
            raise ScanError(f"profile {profile.name!r} declares no highres_objective")
        objective = profile.optics.highres_objective
        if cells_csv is None:
            raise ScanError("--pass highres needs --cells CSV (written by scope match)")
        cell_ids, xy = read_cells_csv(cells_csv, slide=slide)
        positions = np.column_stack([xy, np.full(len(xy), z_um)])
        prof = brightfield_profile(profile, objective)
        if stack not in (None, "brightfield"):
            raise ScanError("--pass highres takes one brightfield image per cell; drop --stack")
    else:
        objective = profile.optics.scan_objective
        if cells_csv is not None:
            raise ScanError("--cells is for --pass highres")
        if pass_ == Pass.STAINED:
            if stack not in (None, "brightfield"):
                raise ScanError(
                    "--pass stained takes one brightfield image per field; drop --stack"
                )
            prof = brightfield_profile(profile)
        else:
            prof = stack_profile(profile, stack)
            if not given:
                raise ScanError(
                    "--pass unstained needs --grid NXxNY, --region, --positions or --plan"
                )
        if given:
            fov = field_of_view_um(profile, objective, frame_wh)
            positions = _explicit_positions(
                grid, region, positions_csv, plan, fov=fov, stage_xy=stage_xy, overlap=overlap,
                z_um=z_um,
            )  # fmt: skip
        else:  # the stained pass images the unstained pass's fields
            source = positions_from or scan_path(out, slide, Pass.UNSTAINED)
            positions = _unstained_positions(source)
            positions[:, 2] = z_um
    if focus != "map" and np.isnan(positions[:, 2]).any():
        raise ScanError(
            "some fields have no z and the stage reports none (no focus drive?): give "
            "--z-um, a z_um column in --positions, or --focus map"
        )
    check_exposures(prof)
    source = "--positions" if positions_csv else "--cells" if cells_csv else "the plan"
    source = str(plan) if plan else source
    checked = positions.copy()
    if focus == "map":  # fields without z take the focus map's z at scan time
        checked[np.isnan(checked[:, 2]), 2] = 0.0
    try:
        check_positions(checked, source=source)
    except ScopeError as err:
        raise ScanError(str(err)) from None
    return ScanPlan(
        slide=slide,
        pass_=pass_,
        profile=prof,
        positions=positions,
        out=Path(out),
        objective_name=objective,
        compression=compression,
        focus=focus,
        cell_ids=cell_ids,
    )


def _explicit_positions(
    grid: str | None,
    region: str | None,
    positions_csv: Path | None,
    plan: Path | None,
    *,
    fov: tuple[float, float],
    stage_xy: tuple[float, float],
    overlap: float,
    z_um: float,
) -> np.ndarray:
    """The fields of whichever of --plan, --grid, --region, --positions was given."""
    if plan:
        from acquisition.useq_plan import plan_positions, read_plan

        seq = read_plan(plan)
        return with_focus(
            plan_positions(seq, field_um=fov, stage_xy=stage_xy, source=str(plan)), z_um
        )
    if grid:
        nx, ny = parse_grid(grid)
        check_field_count(nx, ny, f"--grid {grid}")
        return grid_positions(nx, ny, center_um=stage_xy, field_um=fov, overlap=overlap, z_um=z_um)
    if region:
        return region_positions(parse_region(region), field_um=fov, overlap=overlap, z_um=z_um)
    return with_focus(read_positions_csv(positions_csv), z_um)


def _unstained_positions(source: str | Path) -> np.ndarray:
    """The fields of the unstained pass: its scan file, or a positions CSV."""
    if not Path(source).exists():
        raise ScanError(
            f"--pass stained images the unstained pass's positions, but {source} "
            "does not exist (scan --pass unstained first, or give --positions-from)"
        )
    if str(source).endswith(".csv"):
        return read_positions_csv(source)
    return positions_from_scan(Path(source))


def with_focus(positions: np.ndarray, z_um: float) -> np.ndarray:
    """Fields without z (NaN) take ``z_um``, the operator's focus — never 0."""
    positions = np.array(positions, dtype=np.float64)
    missing = np.isnan(positions[:, 2])
    positions[missing, 2] = z_um
    return positions
