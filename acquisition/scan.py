"""The scan engine behind ``scope scan``.

For each pending field: move, settle, read the stage back; for each stack channel light its
LEDs, set exposure and gain, snap, and hand the frame to the storage thread; then commit the
field. A field is marked done only after its file is durable (see :mod:`acquisition.scanfile`),
so a scan interrupted at any moment resumes without re-imaging finished fields.
"""

from __future__ import annotations

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
from acquisition.micromanager import CameraError
from acquisition.rig import Rig
from acquisition.scan_plan import (
    MAX_EXPOSURE_MS,
    ScanError,
    ScanPlan,
    brightfield_profile,
    check_exposures,
    field_of_view_um,
    plan_scan,
    positions_from_scan,
    stack_profile,
    with_focus,
)
from acquisition.scanfile import ScanFile, ScanWriter, fields_dir
from acquisition.storage import StorageThread
from acquisition.vocabulary import PASSES, ChannelKind

#: Lossless compression of noisy 8-bit frames, measured on simulated and real frames: ~1.3x.
_EXPECTED_RATIO = {"none": 1.0, "lz4": 1.0}
_DEFAULT_RATIO = 1.2


class ScanInterrupted(ScanError):
    """Ctrl-C: the current field was abandoned, finished fields are safe."""

    exit_code = 130


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
    """Callbacks for progress displays (all optional).

    The libraries are moving to one progress protocol (``acquisition/progress.py``); when it
    lands, ``on_start``/``on_field`` map onto its start/advance and ``on_note`` onto its
    messages, and :class:`scope.progress.ScanProgress` renders it like any other stage.
    """

    on_start: Callable[[int, int, int], None] | None = None  # fields, done, images per field
    on_image: Callable[[int, int, int], None] | None = None  # field, channel, bytes
    on_field: Callable[[int, str], None] | None = None  # field, status
    on_note: Callable[[str], None] | None = None


def _estimate_bytes(n_fields: int, n_channels: int, frame_wh: tuple[int, int], comp: str) -> int:
    raw = n_fields * n_channels * frame_wh[0] * frame_wh[1] * 3
    return int(raw / _EXPECTED_RATIO.get(comp, _DEFAULT_RATIO))


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
    frame_wh = rig.mm.frame_size
    notes = _frame_size_notes(plan, frame_wh)
    for msg in notes:
        note(msg)
    rig.prepare_pass(plan.pass_)
    writer = _open_writer(plan, rig, frame_wh, resume=resume, software_version=software_version)
    done_before = len(writer.done)
    pending = writer.pending
    if done_before and pending:
        note(f"resuming: {done_before} of {len(writer.positions)} fields already done")
    z_plan = _focus_plan(plan, rig, writer, pending, note)
    if ev.on_start:
        ev.on_start(len(writer.positions), done_before, len(plan.profile.stack))
    storage = StorageThread(writer)
    t0 = time.perf_counter()
    failed = _acquire(plan, rig, writer, storage, z_plan, frame_wh, ev, note)
    seconds = time.perf_counter() - t0
    if len(writer.done) == len(writer.positions):
        centres = [tuple(p[:2]) for p in writer.positions]
        truth = rig.scan_truth(plan.pass_, centres, frame_wh[0], frame_wh[1])
        if truth is not None:
            writer.set_truth(truth)
    return ScanSummary(
        path=plan.path,
        n_fields=len(writer.positions),
        done_before=done_before,
        done_now=storage.stats.fields_committed,
        failed=failed,
        n_images=storage.stats.frames,
        bytes_raw=storage.stats.bytes_raw,
        bytes_on_disk=disk_usage(plan.path),
        seconds=seconds,
        frame_wh=frame_wh,
        notes=notes,
        simulated=rig.simulated,
    )


def _frame_size_notes(plan: ScanPlan, frame_wh: tuple[int, int]) -> list[str]:
    """A note when the camera's frames differ from the profile's sensor (the camera wins)."""
    cam = plan.profile.camera
    if frame_wh == (cam.sensor_width_px, cam.sensor_height_px):
        return []
    return [
        f"the camera delivers {frame_wh[0]}x{frame_wh[1]} frames, the profile says "
        f"{cam.sensor_width_px}x{cam.sensor_height_px}: using the camera's size"
    ]


def _open_writer(
    plan: ScanPlan, rig: Rig, frame_wh: tuple[int, int], *, resume: bool, software_version: str
) -> ScanWriter:
    """The scan file, new or resumed, after checking it may be written and the disk holds it."""
    path = plan.path
    n_channels = len(plan.profile.stack)
    if path.exists() and not resume:
        raise ScanError(
            f"{path} already exists; pass --resume to continue it, or choose another --out or "
            "--slide (an existing scan is never overwritten)"
        )
    n_todo = _pending_count(path, len(plan.positions), resume)
    need = _estimate_bytes(n_todo, n_channels, frame_wh, plan.compression)
    _check_disk(path, need, n_todo, n_channels)
    return ScanWriter(
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


def _focus_plan(
    plan: ScanPlan, rig: Rig, writer: ScanWriter, pending: list[int], note: Callable[[str], None]
) -> np.ndarray:
    """Each field's z: the planned one, or the focus map's for pending fields (``--focus map``)."""
    z_plan = writer.positions[:, 2].copy()
    if plan.focus == "map" and pending:
        from acquisition.focus import focus_map

        bf = next(c for c in plan.profile.stack if c.kind == ChannelKind.BRIGHTFIELD)
        z_all, refs = focus_map(rig, writer.positions, bf)
        z_plan[pending] = z_all[pending]
        note(
            f"focus map from {len(refs)} reference fields: z {z_all.min():.1f}…{z_all.max():.1f} µm"
        )
    elif plan.focus not in ("none", "map"):
        raise ScanError(f"unknown --focus {plan.focus!r}; choose none or map")
    return z_plan


def _image_field(
    rig: Rig, plan: ScanPlan, storage: StorageThread, i: int, xyz: tuple, ev: ScanEvents
) -> float:
    """Move to field ``i``, take every channel, hand the frames to storage; the stage's z."""
    x, y, z = xyz
    rig.mm.move_xy(x, y)
    rig.mm.move_z(z)
    rig.mm.wait_for_stages()
    stage = rig.mm.read_stage()
    for c, ch in enumerate(plan.profile.stack):
        rig.leds.light(ch.leds, ch.brightness)
        exposure = rig.mm.set_exposure(ch.exposure_ms)
        gain = rig.mm.set_gain(ch.gain)
        image = rig.mm.snap()
        meta = {
            "exposure_ms": exposure,
            "gain": gain,
            "stage_x_um": stage.x_um,
            "stage_y_um": stage.y_um,
            "stage_z_um": stage.z_um,
            "time": time.time(),
        }
        storage.frame(i, c, image, meta)
        if ev.on_image:
            ev.on_image(i, c, image.nbytes)
    rig.leds.clear()
    return stage.z_um


def _acquire(
    plan: ScanPlan,
    rig: Rig,
    writer: ScanWriter,
    storage: StorageThread,
    z_plan: np.ndarray,
    frame_wh: tuple[int, int],
    ev: ScanEvents,
    note: Callable[[str], None],
) -> list[int]:
    """Image every pending field and close the storage thread; the fields that failed.

    On any exception the field in progress is abandoned and every finished one stays saved.
    """
    path = plan.path
    field_bytes = len(plan.profile.stack) * frame_wh[0] * frame_wh[1] * 3
    failed: list[int] = []
    current: int | None = None
    consecutive_failures = 0
    try:
        for i in writer.pending:
            current = i
            x, y, _ = writer.positions[i]
            guard_space(path, field_bytes)  # stop before HDF5 can meet a full disk
            try:
                z_um = _image_field(rig, plan, storage, i, (x, y, z_plan[i]), ev)
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
            storage.commit(i, z_um=z_um)
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
        raise ScanInterrupted(
            f"interrupted: {len(writer.done)} of {len(writer.positions)} fields are saved in "
            f"{path}; run the same command with --resume to continue"
        ) from None
    except BaseException as err:
        _stop_storage(storage, current, err, writer, path)
        raise
    try:
        storage.close()
    except BaseException as err:
        if is_disk_full(err):
            raise _disk_full_error(writer, path) from None
        raise
    return failed


def _stop_storage(
    storage: StorageThread, current: int | None, err: BaseException, writer: ScanWriter, path
) -> None:
    """After an error: abandon the field in progress, close storage; a full disk says so."""
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


def _disk_full_error(writer: ScanWriter, path: Path) -> ScanError:
    for partial in writer.fields_dir.glob("*.partial"):
        partial.unlink(missing_ok=True)
    return ScanError(
        f"the disk holding {path.parent} is full: {len(writer.done)} of "
        f"{len(writer.positions)} fields are saved in {path}; free some space and run the "
        "same command with --resume"
    )


__all__ = [
    "MAX_EXPOSURE_MS",
    "ScanError",
    "ScanEvents",
    "ScanInterrupted",
    "ScanPlan",
    "ScanSummary",
    "brightfield_profile",
    "check_exposures",
    "disk_usage",
    "estimate_scan_bytes",
    "field_of_view_um",
    "plan_scan",
    "positions_from_scan",
    "run_scan",
    "stack_profile",
    "with_focus",
]
