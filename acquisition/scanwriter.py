"""Write a scan file crash-safely: per-field files, the journal, the index rebuilt atomically.

How the pieces stay consistent through ``kill -9`` is told in :mod:`acquisition.scanfile`;
the layout is in :mod:`acquisition.scan_layout` and docs/formats.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for every reader)
import numpy as np

from acquisition.fieldwriter import FieldData, FieldWriter
from acquisition.index_schedule import IndexSchedule
from acquisition.scan_index import ensure_images_file, fill_index, write_index_file
from acquisition.scan_layout import (
    FORMAT,
    FORMAT_VERSION,
    FRAME_DTYPE,
    IMAGES_NAME,
    POSITION_FIELDS,
    ScanFileError,
    check_positions,
    field_name,
    fields_dir,
    fsync_path,
    now_iso,
)
from acquisition.scanjournal import Journal, quick_field_state, read_journal
from acquisition.tables import (
    DEFAULT_COMPRESSION,
    compression_options,
    h5_dtype,
)
from hardware_profiles import HardwareProfile


class ScanWriter:
    """Creates or resumes a scan file and keeps its index consistent after every field.

    Parameters
    ----------
    path
        ``DIR/<slide>.<pass>.scan.h5``.
    slide, pass_
        Slide name and pass (``unstained``, ``stained``, ``highres``).
    profile
        The resolved hardware profile; its ``stack`` is exactly the channels this scan takes.
    positions
        ``(N, 3)`` float array of field centres ``x_um, y_um, z_um`` (stage).
    objective_name
        Key of the objective in ``profile.optics.objectives`` used for this pass.
    compression
        A key of :data:`acquisition.tables.COMPRESSIONS`.
    resume
        Continue an existing scan (its profile, stack and positions must match), or start
        one when none exists. Without it an existing scan is never overwritten.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        slide: str,
        pass_: str,
        profile: HardwareProfile,
        positions: np.ndarray,
        objective_name: str,
        compression: str = DEFAULT_COMPRESSION,
        resume: bool = False,
        software_version: str = "",
        extra_attrs: dict[str, Any] | None = None,
    ) -> None:
        compression_options(compression)  # validate early
        from acquisition.files import check_slide_name

        check_slide_name(slide)
        self.path = Path(path)
        self.fields_dir = fields_dir(self.path)
        self.slide = slide
        self.pass_ = str(pass_)  # a Pass member or its text; stored as plain text
        self.profile = profile
        self.channels = profile.channel_table()
        self.compression = compression
        self.objective_name = objective_name
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
            raise ScanFileError(
                f"positions must be a non-empty (N, 3) array of x_um, y_um, z_um; "
                f"got shape {positions.shape}"
            )
        self.positions = check_positions(positions)
        self.status = ["pending"] * len(positions)
        self.acquired_at = [""] * len(positions)
        self.z_done = positions[:, 2].copy()
        self.file_bytes = np.zeros(len(positions), dtype=np.int64)
        self.frames_by_field: dict[int, np.ndarray] = {}
        self._journal: Journal | None = None
        self._frames_cache: tuple[list[int], np.ndarray | None] = ([], None)
        self._images_shape: tuple[int, ...] | None = None
        self.schedule = IndexSchedule(len(positions))  # when the index is rebuilt
        self.frame_hw: tuple[int, int] | None = None
        self.truth: dict[str, Any] | None = None
        self._attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "slide": slide,
            "pass": self.pass_,
            "objective": objective_name,
            "objective_magnification": profile.optics.objectives[objective_name].magnification,
            "objective_na": profile.optics.objectives[objective_name].na,
            "pixel_size_um": profile.optics.objectives[objective_name].pixel_size_um,
            "profile": profile.model_dump_json(),
            "compression": compression,
            "created": now_iso(),
            "software_version": software_version,
            **(extra_attrs or {}),
        }
        if self.path.exists():
            if not resume:
                raise ScanFileError(
                    f"{self.path} already exists; pass --resume to continue it, or choose "
                    "another --out or --slide (an existing scan is never overwritten)"
                )
            self._load_existing()
        else:
            self.fields_dir.mkdir(parents=True, exist_ok=True)
            self._adopt_finished_fields()
            self.write_index()
        self.schedule.last_rebuild_s = 0.0  # the first finished field is indexed at once

    # -- resume -------------------------------------------------------------------------------
    def _load_existing(self) -> None:
        from acquisition.scanfile import ScanFile  # the reader re-exports this module

        existing = ScanFile(self.path)
        if existing.attrs["slide"] != self.slide or existing.attrs["pass"] != self.pass_:
            raise ScanFileError(
                f"cannot resume {self.path}: it is slide {existing.attrs['slide']!r} pass "
                f"{existing.attrs['pass']!r}, not slide {self.slide!r} pass {self.pass_!r}"
            )
        old = existing.profile
        if old.model_dump(exclude={"stack"}) != self.profile.model_dump(exclude={"stack"}):
            raise ScanFileError(
                f"cannot resume {self.path}: the hardware profile differs from the one it "
                "was started with"
            )
        if [c.model_dump() for c in old.stack] != [c.model_dump() for c in self.profile.stack]:
            raise ScanFileError(
                f"cannot resume {self.path}: its stack has {len(old.stack)} channels "
                f"({old.stack[0].name}...), the requested stack differs"
            )
        pos = existing.positions
        old_xy = np.stack([pos["x_um"], pos["y_um"]], axis=1)
        if old_xy.shape != self.positions[:, :2].shape or not np.allclose(
            old_xy, self.positions[:, :2], atol=1e-6
        ):
            raise ScanFileError(
                f"cannot resume {self.path}: its {len(old_xy)} positions differ from the "
                f"{len(self.positions)} requested"
            )
        self.positions[:, 2] = pos["z_um"]
        self.z_done = pos["z_um"].astype(np.float64).copy()
        self._attrs["created"] = existing.attrs.get("created", self._attrs["created"])
        self.compression = existing.attrs.get("compression", self.compression)
        self._attrs["compression"] = self.compression
        self.truth = existing.truth()
        if "images" in existing._f:
            self.frame_hw = tuple(existing.frame_shape)
        existing.close()
        self.fields_dir.mkdir(parents=True, exist_ok=True)
        self._adopt_finished_fields()
        self.write_index()

    def _adopt_finished_fields(self) -> None:
        """Mark every complete field file as done; delete leftovers of interrupted fields.

        Fields in the journal whose file has the recorded size are adopted without opening
        them; any other field file is opened, adopted (and journalled) or, when damaged, set
        aside as ``.damaged`` and imaged anew.
        """
        journal = read_journal(self.fields_dir, FRAME_DTYPE)
        on_disk: dict[int, str] = {}
        with os.scandir(self.fields_dir) as it:
            for entry in it:
                name = entry.name
                if name.endswith(".partial") or name.startswith(f"{IMAGES_NAME}.tmp"):
                    Path(entry.path).unlink(missing_ok=True)  # leftovers: the scan is locked
                elif name.startswith("field_") and name.endswith(".h5") and name[6:-3].isdigit():
                    i = int(name[6:-3])
                    if i < len(self.positions):
                        on_disk[i] = entry.path
        self._journal = Journal(self.fields_dir)
        n_ch = len(self.channels)
        for i in sorted(on_disk):
            f = on_disk[i]
            e = journal.get(i)
            if (
                e is not None
                and len(e["frames"]) == n_ch
                and quick_field_state(f, e["file_bytes"]) == "ok"
            ):
                self._mark_done(
                    FieldData(i, e["z_um"], e["acquired_at"], e["frames"], e["file_bytes"])
                )
                continue
            try:
                with h5py.File(f, "r") as h:
                    frames = h["frames"][()]
                    frame_hw = tuple(h["images"].shape[1:3])
                    z = float(h.attrs["z_um"])
                    acquired = str(h.attrs["acquired_at"])
                    n_file = h["images"].shape[0]
            except (OSError, KeyError, ValueError, TypeError):
                # a damaged field is set aside (never read again) and imaged anew
                os.replace(f, f + ".damaged")
                continue
            self.frame_hw = frame_hw
            if n_file != n_ch:
                raise ScanFileError(f"field file {f} has {n_file} channels, the scan {n_ch}")
            data = FieldData(i, z, acquired, frames, os.stat(f).st_size)
            self._mark_done(data)
            self._journal_append(data)
        if self.frame_hw is None and self.done:
            with h5py.File(self.fields_dir / field_name(self.done[0]), "r") as h:
                self.frame_hw = tuple(h["images"].shape[1:3])

    # -- progress -----------------------------------------------------------------------------
    @property
    def done(self) -> list[int]:
        return [i for i, s in enumerate(self.status) if s == "done"]

    @property
    def pending(self) -> list[int]:
        return [i for i, s in enumerate(self.status) if s != "done"]

    def new_field(self, index: int, shape_hw: tuple[int, int]) -> FieldWriter:
        if self.status[index] == "done":
            raise ScanFileError(f"field {index} is already done; it is never re-imaged")
        if self.frame_hw is not None and tuple(shape_hw) != self.frame_hw:
            raise ScanFileError(
                f"field {index}: the camera delivers {shape_hw[1]}x{shape_hw[0]} frames, "
                f"earlier fields are {self.frame_hw[1]}x{self.frame_hw[0]}"
            )
        return FieldWriter(self, index, shape_hw)

    def _mark_done(self, data: FieldData) -> None:
        i = data.index
        self.status[i] = "done"
        self.acquired_at[i] = data.acquired_at
        self.z_done[i] = data.z_um
        self.file_bytes[i] = data.file_bytes
        self.frames_by_field[i] = data.frames.astype(FRAME_DTYPE, copy=False)

    def _journal_append(self, data: FieldData) -> None:
        if self._journal is None:
            self._journal = Journal(self.fields_dir)
        self._journal.append(
            data.index,
            z_um=data.z_um,
            acquired_at=data.acquired_at,
            file_bytes=data.file_bytes,
            frames=data.frames.astype(FRAME_DTYPE, copy=False),
        )

    def field_done(self, data: FieldData) -> None:
        """Record a committed field: one journal line; the index is rebuilt when it is due."""
        self._mark_done(data)
        if self.frame_hw is None:
            with h5py.File(self.fields_dir / field_name(data.index), "r") as h:
                self.frame_hw = tuple(h["images"].shape[1:3])
        self._journal_append(data)
        self._changed()

    def field_failed(self, index: int) -> None:
        if self.status[index] != "done":
            self.status[index] = "failed"
            self._changed()

    def set_truth(self, truth: dict[str, Any]) -> None:
        self.truth = truth
        self.write_index()

    # -- when the index is rebuilt ------------------------------------------------------------
    def _changed(self) -> None:
        self.schedule.changed()
        if self.schedule.due():
            self.write_index()

    def index_due(self) -> bool:
        """Whether the index should be rebuilt now (see :class:`IndexSchedule`)."""
        return self.schedule.due()

    def flush(self) -> None:
        """Rebuild the index if any field finished since the last rebuild."""
        if self.schedule.dirty:
            self.write_index()

    def close(self) -> None:
        """Rebuild the index if needed and close the journal."""
        try:
            self.flush()
        finally:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    # -- the index ----------------------------------------------------------------------------
    def write_index(self) -> None:
        """Rewrite the scan file atomically from the in-memory state."""
        t0 = time.perf_counter()
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        n = len(self.positions)
        rows = np.empty(n, dtype=h5_dtype(POSITION_FIELDS))
        rows["x_um"] = self.positions[:, 0]
        rows["y_um"] = self.positions[:, 1]
        rows["z_um"] = self.z_done
        rows["status"] = np.array(self.status, dtype=object)
        rows["acquired_at"] = np.array(self.acquired_at, dtype=object)
        rows["file_bytes"] = self.file_bytes
        frames = self._frames_table()
        try:
            write_index_file(tmp, lambda f: self._fill_index(f, rows, frames))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(tmp)
        os.replace(tmp, self.path)
        # no fsync of the folder: a rename lost in a power cut leaves the previous index,
        # and the journal and field files give --resume everything since
        self.schedule.rebuilt(time.perf_counter() - t0)

    def _frames_table(self) -> np.ndarray:
        """Every done field's ``frames`` rows in field order; appends to the last rebuild's
        table when the new fields come after it (the usual case), so a rebuild does not
        re-concatenate thousands of small arrays."""
        keys = sorted(self.frames_by_field)
        old_keys, old = self._frames_cache
        if old is not None and keys[: len(old_keys)] == old_keys:
            parts = [old] + [self.frames_by_field[i] for i in keys[len(old_keys) :]]
        else:
            parts = [self.frames_by_field[i] for i in keys]
        # same dtype throughout: joining raw bytes is ~20x faster than np.concatenate here
        table = np.frombuffer(b"".join(p.tobytes() for p in parts), dtype=FRAME_DTYPE)
        self._frames_cache = (keys, table)
        return table

    def _ensure_images_file(self) -> None:
        """``<fields>/images.h5`` once per writer (see :func:`ensure_images_file`)."""
        h, w = self.frame_hw
        shape = (len(self.positions), len(self.channels), h, w, 3)
        if self._images_shape != shape:
            ensure_images_file(self.fields_dir, shape)
            self._images_shape = shape

    def _fill_index(self, f: h5py.File, rows: np.ndarray, frames: np.ndarray) -> None:
        done = self.done
        attrs = {
            **self._attrs,
            "n_done": len(done),
            "complete": len(done) == len(self.positions),
            "updated": now_iso(),
        }
        images = None
        if self.frame_hw is not None:
            self._ensure_images_file()
            images = f"{self.fields_dir.name}/{IMAGES_NAME}"
        fill_index(f, attrs, self.channels, rows, frames, images=images, truth=self.truth)


__all__ = ["FieldData", "FieldWriter", "ScanWriter"]
