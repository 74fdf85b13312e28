"""The scan engine behind ``scope scan``.

For each pending field: move, settle, read the stage back; for each stack channel light its
LEDs, set exposure and gain, snap, and hand the frame to the storage thread; then commit the
field. A field is marked done only after its file is durable (see :mod:`acquisition.scanfile`),
so a scan interrupted at any moment resumes without re-imaging finished fields.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acquisition.files import (
    WriteLock,
    check_slide_name,
    check_space,
    clean_stale,
    guard_space,
    is_disk_full,
)
from acquisition.geometry import FieldGeometry
from acquisition.micromanager import CameraError
from acquisition.positions import (
    check_field_count,
    grid_positions,
    parse_grid,
    parse_region,
    read_cells_csv,
    read_positions_csv,
    region_positions,
)
from acquisition.rig import Rig
from acquisition.scanfile import (
    MAX_STAGE_UM,
    PASSES,
    ScanFile,
    ScanWriter,
    check_positions,
    fields_dir,
    scan_path,
)
from acquisition.storage import StorageThread
from acquisition.tables import DEFAULT_COMPRESSION
from hardware_profiles import HardwareProfile, select_channels
from hardware_profiles.errors import ScopeError

#: Lossless compression of noisy 8-bit frames, measured on simulated and real frames: ~1.3x.
_EXPECTED_RATIO = {"none": 1.0, "lz4": 1.0}
_DEFAULT_RATIO = 1.2


class ScanError(ScopeError):
    """A scan cannot start or continue."""


class ScanInterrupted(ScanError):
    """Ctrl-C: the current field was abandoned, finished fields are safe."""

    exit_code = 130


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


@dataclass
class ScanSummary:
    path: Path
    n_fields: int
    done_before: int
    done_now: int
    failed: list[int]
    n_images: int
    bytes_raw: int
    bytes_on_disk: int
    seconds: float
    frame_wh: tuple[int, int] | None
    notes: list[str] = field(default_factory=list)
    simulated: bool = False

    @property
    def complete(self) -> bool:
        return self.done_before + self.done_now == self.n_fields


@dataclass
class ScanEvents:
    """Callbacks for progress displays (all optional)."""

    on_start: Callable[[int, int, int], None] | None = None  # fields, done, images per field
    on_image: Callable[[int, int, int], None] | None = None  # field, channel, bytes
    on_field: Callable[[int, str], None] | None = None  # field, status
    on_note: Callable[[str], None] | None = None


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
    bf = stack_profile(profile, "brightfield")
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


def _estimate_bytes(n_fields: int, n_channels: int, frame_wh: tuple[int, int], comp: str) -> int:
    raw = n_fields * n_channels * frame_wh[0] * frame_wh[1] * 3
    return int(raw / _EXPECTED_RATIO.get(comp, _DEFAULT_RATIO))


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


def _check_disk(path: Path, need: int, n_fields: int, n_images: int) -> None:
    check_space(
        path.parent,
        need,
        what=f"the scan ({n_fields:,} fields x {n_images} images, about {need / 1e9:.2f} GB)",
    )


def estimate_scan_bytes(plan: ScanPlan, frame_wh: tuple[int, int]) -> int:
    """About how many bytes the whole scan of ``plan`` takes on disk (printed before it starts)."""
    return _estimate_bytes(len(plan.positions), len(plan.profile.stack), frame_wh, plan.compression)


def disk_usage(path: Path) -> int:
    total = path.stat().st_size if path.exists() else 0
    fd = fields_dir(path)
    if fd.exists():
        with os.scandir(fd) as entries:  # one directory read, no path objects: 10,000 fields
            total += sum(e.stat().st_size for e in entries if e.name.endswith(".h5"))
    return total


def run_scan(
    plan: ScanPlan,
    rig: Rig,
    *,
    resume: bool = False,
    events: ScanEvents | None = None,
    software_version: str = "",
) -> ScanSummary:
    """Acquire every pending field of ``plan`` with ``rig``; returns a summary.

    Raises :class:`ScanInterrupted` on Ctrl-C (after abandoning the current field and
    storing every finished one).
    """
    if plan.pass_ not in PASSES:
        raise ScanError(f"unknown pass {plan.pass_!r}; choose one of {', '.join(PASSES)}")
    check_slide_name(plan.slide)
    check_exposures(plan.profile)
    plan.out.mkdir(parents=True, exist_ok=True)
    clean_stale(plan.out)
    with WriteLock(plan.path, what=f"scan {plan.path}"):
        return _run_scan(plan, rig, resume=resume, events=events, software_version=software_version)


def _pending_count(path: Path, n: int, resume: bool) -> int:
    """Fields still to image (before any file is created or changed)."""
    if not (resume and path.exists()):
        return n
    with ScanFile(path) as sf:
        return n - (len(sf.done) - len(sf.field_state()))


def _run_scan(
    plan: ScanPlan,
    rig: Rig,
    *,
    resume: bool,
    events: ScanEvents | None,
    software_version: str,
) -> ScanSummary:
    ev = events or ScanEvents()
    note = ev.on_note or (lambda _msg: None)
    path = plan.path
    cam = plan.profile.camera
    frame_wh = rig.mm.frame_size
    notes: list[str] = []
    if frame_wh != (cam.sensor_width_px, cam.sensor_height_px):
        msg = (
            f"the camera delivers {frame_wh[0]}x{frame_wh[1]} frames, the profile says "
            f"{cam.sensor_width_px}x{cam.sensor_height_px}: using the camera's size"
        )
        notes.append(msg)
        note(msg)
    rig.prepare_pass(plan.pass_)

    channels = plan.profile.stack
    if path.exists() and not resume:
        raise ScanError(
            f"{path} already exists; pass --resume to continue it, or choose another --out or "
            "--slide (an existing scan is never overwritten)"
        )
    n_todo = _pending_count(path, len(plan.positions), resume)
    _check_disk(
        path,
        _estimate_bytes(n_todo, len(channels), frame_wh, plan.compression),
        n_todo,
        len(channels),
    )
    writer = ScanWriter(
        path,
        slide=plan.slide,
        pass_=plan.pass_,
        profile=plan.profile,
        positions=plan.positions,
        objective_name=plan.objective_name,
        compression=plan.compression,
        resume=resume,
        software_version=software_version,
        extra_attrs={
            **plan.extra_attrs,
            "backend": rig.backend,
            "simulated": rig.simulated,
            **({"cell_ids": ",".join(plan.cell_ids)} if plan.cell_ids else {}),
        },
    )
    done_before = len(writer.done)
    pending = writer.pending
    if done_before and pending:
        note(f"resuming: {done_before} of {len(writer.positions)} fields already done")
    field_bytes = len(channels) * frame_wh[0] * frame_wh[1] * 3

    z_plan = writer.positions[:, 2].copy()
    if plan.focus == "map" and pending:
        from acquisition.focus import focus_map

        bf = next(c for c in channels if c.kind == "brightfield")
        z_all, refs = focus_map(rig, writer.positions, bf)
        z_plan[pending] = z_all[pending]
        note(
            f"focus map from {len(refs)} reference fields: z {z_all.min():.1f}…{z_all.max():.1f} µm"
        )
    elif plan.focus not in ("none", "map"):
        raise ScanError(f"unknown --focus {plan.focus!r}; choose none or map")

    if ev.on_start:
        ev.on_start(len(writer.positions), done_before, len(channels))
    storage = StorageThread(writer)
    failed: list[int] = []
    t0 = time.perf_counter()
    current: int | None = None
    consecutive_failures = 0
    try:
        for i in pending:
            current = i
            x, y, _ = writer.positions[i]
            guard_space(path, field_bytes)  # stop before HDF5 can meet a full disk
            try:
                rig.mm.move_xy(x, y)
                rig.mm.move_z(z_plan[i])
                rig.mm.wait_for_stages()
                stage = rig.mm.read_stage()
                for c, ch in enumerate(channels):
                    rig.leds.light(ch.leds, ch.brightness)
                    exposure = rig.mm.set_exposure(ch.exposure_ms)
                    gain = rig.mm.set_gain(ch.gain)
                    image = rig.mm.snap()
                    storage.frame(
                        i,
                        c,
                        image,
                        {
                            "exposure_ms": exposure,
                            "gain": gain,
                            "stage_x_um": stage.x_um,
                            "stage_y_um": stage.y_um,
                            "stage_z_um": stage.z_um,
                            "time": time.time(),
                        },
                    )
                    if ev.on_image:
                        ev.on_image(i, c, image.nbytes)
                rig.leds.clear()
            except CameraError as err:
                storage.fail(i)
                failed.append(i)
                consecutive_failures += 1
                note(f"field {i} failed: {err}")
                if ev.on_field:
                    ev.on_field(i, "failed")
                if consecutive_failures >= 3:
                    raise ScanError(
                        f"3 fields in a row failed (last: {err}); stopping. Finished fields "
                        "are saved: fix the camera and run again with --resume"
                    ) from None
                continue
            storage.commit(i, z_um=stage.z_um)
            consecutive_failures = 0
            current = None
            if ev.on_field:
                ev.on_field(i, "done")
    except KeyboardInterrupt:
        if current is not None:
            storage.abandon(current)
        storage.close()
        try:
            rig.leds.clear()
        except Exception:
            pass
        n_done = len(writer.done)
        raise ScanInterrupted(
            f"interrupted: {n_done} of {len(writer.positions)} fields are saved in {path}; "
            "run the same command with --resume to continue"
        ) from None
    except BaseException as err:
        if current is not None:
            try:
                storage.abandon(current)
            except BaseException:
                pass
        try:
            storage.close()
        except BaseException as storage_err:
            err = storage_err if is_disk_full(storage_err) else err
            if not is_disk_full(err):
                raise
        if is_disk_full(err):
            raise _disk_full_error(writer, path) from None
        raise
    try:
        storage.close()
    except BaseException as err:
        if is_disk_full(err):
            raise _disk_full_error(writer, path) from None
        raise
    seconds = time.perf_counter() - t0
    if len(writer.done) == len(writer.positions):
        centres = [tuple(p[:2]) for p in writer.positions]
        truth = rig.scan_truth(plan.pass_, centres, frame_wh[0], frame_wh[1])
        if truth is not None:
            writer.set_truth(truth)
    return ScanSummary(
        path=path,
        n_fields=len(writer.positions),
        done_before=done_before,
        done_now=storage.stats.fields_committed,
        failed=failed,
        n_images=storage.stats.frames,
        bytes_raw=storage.stats.bytes_raw,
        bytes_on_disk=disk_usage(path),
        seconds=seconds,
        frame_wh=frame_wh,
        notes=notes,
        simulated=rig.simulated,
    )


def _disk_full_error(writer: ScanWriter, path: Path) -> ScanError:
    for partial in writer.fields_dir.glob("*.partial"):
        partial.unlink(missing_ok=True)
    return ScanError(
        f"the disk holding {path.parent} is full: {len(writer.done)} of "
        f"{len(writer.positions)} fields are saved in {path}; free some space and run the "
        "same command with --resume"
    )


# -- planning ------------------------------------------------------------------------------
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
    if pass_ == "highres":
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
        if pass_ == "stained":
            if stack not in (None, "brightfield"):
                raise ScanError(
                    "--pass stained takes one brightfield image per field; drop --stack"
                )
            prof = brightfield_profile(profile)
            if given:
                positions = _explicit_positions(
                    grid,
                    region,
                    positions_csv,
                    profile,
                    objective,
                    frame_wh,
                    stage_xy,
                    overlap,
                    z_um,
                    plan,
                )
            else:
                source = positions_from or scan_path(out, slide, "unstained")
                if not Path(source).exists():
                    raise ScanError(
                        f"--pass stained images the unstained pass's positions, but {source} "
                        "does not exist (scan --pass unstained first, or give --positions-from)"
                    )
                positions = (
                    read_positions_csv(source)
                    if str(source).endswith(".csv")
                    else positions_from_scan(Path(source))
                )
                positions[:, 2] = z_um
        else:
            prof = stack_profile(profile, stack)
            if not given:
                raise ScanError(
                    "--pass unstained needs --grid NXxNY, --region, --positions or --plan"
                )
            positions = _explicit_positions(
                grid,
                region,
                positions_csv,
                profile,
                objective,
                frame_wh,
                stage_xy,
                overlap,
                z_um,
                plan,
            )
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
    profile: HardwareProfile,
    objective: str,
    frame_wh: tuple[int, int],
    stage_xy: tuple[float, float],
    overlap: float,
    z_um: float,
    plan: Path | None = None,
) -> np.ndarray:
    fov = field_of_view_um(profile, objective, frame_wh)
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


def with_focus(positions: np.ndarray, z_um: float) -> np.ndarray:
    """Fields without z (NaN) take ``z_um``, the operator's focus — never 0."""
    positions = np.array(positions, dtype=np.float64)
    missing = np.isnan(positions[:, 2])
    positions[missing, 2] = z_um
    return positions
