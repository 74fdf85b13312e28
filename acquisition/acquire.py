"""The scan engine's field loop: image every pending field, keep every finished one.

For each pending field: move, settle, read the stage back; for each stack channel light its
LEDs, set exposure and gain, snap, and hand the frame to the storage thread; then commit the
field. On Ctrl-C, a camera failing three fields in a row, a full disk or any other error the
field in progress is abandoned and every finished field stays saved, so ``--resume``
continues where the scan stopped. :func:`acquisition.scan.run_scan` calls :func:`acquire`.

Progress goes to an :class:`acquisition.progress.Progress` on two bars, :data:`FIELDS_BAR`
(advanced per field committed) and :data:`IMAGES_BAR` (per frame, with the MB/s handed to
storage as its detail); a failed field is a warning note.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from acquisition.files import guard_space, is_disk_full
from acquisition.micromanager import CameraError
from acquisition.progress import Progress, Throughput
from acquisition.rig import Rig
from acquisition.scan_plan import ScanError, ScanPlan
from acquisition.scanfile import ScanWriter
from acquisition.storage import StorageThread

#: The progress bar of fields (total: the plan's fields; starts at those already done).
FIELDS_BAR = "fields"
#: The progress bar of frames taken this run (detail: MB/s handed to storage).
IMAGES_BAR = "images"
#: Fields failing in a row (camera errors) that stop the scan.
MAX_CONSECUTIVE_FAILURES = 3


class ScanInterrupted(ScanError):
    """Ctrl-C: the current field was abandoned, finished fields are safe."""

    exit_code = 130


def _image_field(
    rig: Rig,
    plan: ScanPlan,
    storage: StorageThread,
    i: int,
    xyz: tuple,
    progress: Progress,
    rate: Throughput,
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
        progress.advance(IMAGES_BAR, info=rate.add(image.nbytes))
    rig.leds.clear()
    return stage.z_um


def acquire(
    plan: ScanPlan,
    rig: Rig,
    writer: ScanWriter,
    storage: StorageThread,
    z_plan: np.ndarray,
    frame_wh: tuple[int, int],
    progress: Progress,
) -> list[int]:
    """Image every pending field and close the storage thread; the fields that failed.

    On any exception the field in progress is abandoned and every finished one stays saved.
    """
    path = plan.path
    field_bytes = len(plan.profile.stack) * frame_wh[0] * frame_wh[1] * 3
    failed: list[int] = []
    current: int | None = None
    consecutive_failures = 0
    rate = Throughput()
    try:
        for i in writer.pending:
            current = i
            x, y, _ = writer.positions[i]
            guard_space(path, field_bytes)  # stop before HDF5 can meet a full disk
            try:
                z_um = _image_field(rig, plan, storage, i, (x, y, z_plan[i]), progress, rate)
            except CameraError as err:
                storage.fail(i)
                failed.append(i)
                consecutive_failures += 1
                progress.note(f"field {i} failed: {err}", warning=True)
                if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                    raise ScanError(
                        f"{MAX_CONSECUTIVE_FAILURES} fields in a row failed (last: {err}); "
                        "stopping. Finished fields are saved: fix the camera and run again "
                        "with --resume"
                    ) from None
                continue
            storage.commit(i, z_um=z_um)
            consecutive_failures = 0
            current = None
            progress.advance(FIELDS_BAR)
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


__all__ = ["FIELDS_BAR", "IMAGES_BAR", "MAX_CONSECUTIVE_FAILURES", "ScanInterrupted", "acquire"]
