"""Scope's one output policy: every command writes its files through this module.

- :func:`atomic_output`: write to a temp file beside the target, fsync, rename. An error,
  Ctrl-C or a full disk removes the temp file and leaves the target as it was.
- :func:`check_target`: a file that exists is replaced only when it is the same kind of
  scope file and was written by the same command; ``--force`` replaces a same-kind file
  written by another command; a file of another kind is never replaced.
- :class:`WriteLock`: an advisory lock (``fcntl.flock``) on a file or folder being written;
  a second writer is refused with the holder's pid (in :mod:`acquisition.locks`).
- :func:`check_space` states its safety margin; :func:`guard_space` runs before each large
  write so a filling disk stops the command before HDF5 sees ENOSPC.
- :func:`clean_stale`: temp files (``*.tmpPID``) and spill folders (``.match-PID-*``) of
  processes that no longer run are removed, never read (in :mod:`acquisition.locks`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from acquisition.locks import (  # part of the policy, re-exported: commands import it here
    WriteLock,
    clean_stale,
    lock_holder,
    lock_path,
    pid_alive,
    spill_folder,
)
from hardware_profiles.errors import ScopeError

#: Free space kept on top of every estimate (stated in every refusal).
SAFETY_MARGIN_BYTES = 256 * 1024**2
#: A large write stops when less than this would remain free (checked before each write).
GUARD_BYTES = 64 * 1024**2

KIND_NAMES = {
    "scope-scan": "scan file",
    "scope-dataset": "dataset file",
    "scope-stained": "virtual-stain output",
    "profile": "hardware profile",
    "cells-csv": "cells CSV of scope match",
    "centroids-csv": "centroids CSV of scope segment",
    "image": "image",
    "run": "training run folder",
    "folder": "folder",
    "other": "file scope did not write",
}


class OutputError(ScopeError):
    """An output cannot be written as asked (exists, locked, no space)."""


class DiskFullError(OutputError):
    """The disk filled up during a write; the partial output was removed."""


class Interrupted(ScopeError):
    """Ctrl-C: the message says what was kept and how to continue."""

    exit_code = 130


# -- kinds --------------------------------------------------------------------------------------
def file_kind(path: str | Path) -> str | None:
    """What an existing path is: a key of :data:`KIND_NAMES`, or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        return "run" if (path / "config.yaml").is_file() else "folder"
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return "other"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        try:
            import h5py

            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            return str(fmt) if fmt in KIND_NAMES else "other"
        except (OSError, KeyError):
            return "other"
    if head.startswith((b"\x89PNG", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff")):
        return "image"
    text = head.decode("utf-8", errors="replace")
    first = text.splitlines()[0].strip() if text.strip() else ""
    if first.startswith("cell_id,slide,x_um,y_um"):
        return "cells-csv"
    if first.startswith(("x_px,y_px", "image,x_px,y_px")):
        return "centroids-csv"
    if path.suffix in (".yaml", ".yml", ".json") and "camera" in text and "stack" in text:
        return "profile"
    return "other"


def hdf5_open_problem(path: str | Path, err: OSError, expected: str) -> str:
    """One line for an HDF5 file h5py cannot open: not HDF5 at all, or damaged."""
    if "signature not found" in str(err):
        return f"{path} is not an HDF5 file (expected a {expected})"
    return f"{path} is damaged or truncated (HDF5 cannot open it); restore it from a copy"


def kind_name(kind: str | None) -> str:
    return KIND_NAMES.get(kind or "other", kind or "file")


def written_by(path: str | Path) -> str:
    """The ``written_by`` attribute of a scope HDF5 file ('' when absent)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            value = f.attrs.get("written_by", "")
    except (OSError, KeyError):
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def check_target(
    path: str | Path,
    kind: str,
    *,
    command: str,
    force: bool = False,
    flag: str = "--force",
    option: str = "--out",
) -> None:
    """Refuse to replace ``path`` unless it is ``kind`` and ``command``'s own output.

    ``kind`` is what the command writes; ``command`` (``"scope match"``) is compared with
    the ``written_by`` attribute of HDF5 outputs; text outputs of the right kind count as
    the command's own. ``force`` replaces a same-kind file written by another command.
    """
    path = Path(path)
    existing = file_kind(path)
    if existing is None:
        return
    if existing != kind:
        raise OutputError(
            f"{path} exists and is a {kind_name(existing)}, not a {kind_name(kind)}; "
            f"choose another {option} (scope never replaces a file of another kind)"
        )
    if force:
        return
    if kind.startswith("scope-"):
        by = written_by(path)
        if by != command:
            who = f"by `{by}`" if by else "by another command or an older scope"
            raise OutputError(
                f"{path} exists and was written {who}; choose another {option} or pass "
                f"{flag} to replace it"
            )


def guard_output(path: str | Path, *, option: str = "--out") -> Path:
    """Refuse an output path that names a folder or sits under a file; returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{option} {path}: {parent} is a file, not a folder")
    return path


# -- atomic writes ------------------------------------------------------------------------------
def temp_path(path: str | Path, *, keep_suffix: bool = False) -> Path:
    """``NAME.tmpPID`` beside ``path`` (the pattern :func:`clean_stale` recognises).

    ``keep_suffix`` gives ``.NAME.tmpPID.png`` for writers that pick the format by extension.
    """
    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    with contextlib.suppress(OSError):  # not every platform fsyncs folders
        fsync_path(path)


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also when HDF5 wraps it in an OSError message."""
    if isinstance(err, DiskFullError):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err).lower()
    return isinstance(err, OSError | RuntimeError) and (
        "no space left" in text or "disk quota" in text
    )


_QUARANTINE: list = []


def quarantine(*objects: object) -> None:
    """Keep the h5py objects of a file that met ENOSPC alive until the process ends.

    After a failed write HDF5 crashes (segmentation fault) when such a file is closed or its
    objects are freed, so they are never touched again: the caller removes the file's name,
    and ``scope`` leaves with ``os._exit`` once its message is out (:func:`quarantined`).
    """
    _QUARANTINE.extend(objects)


def quarantined() -> bool:
    """True when an HDF5 file met a full disk in this process (see :func:`quarantine`)."""
    return bool(_QUARANTINE)


def close_h5(f: object, *objects: object) -> None:
    """Close an h5py file, or quarantine it (and ``objects``) when the disk is full."""
    try:
        f.close()
    except BaseException as err:
        if is_disk_full(err):
            quarantine(f, *objects)
        raise


def disk_full(path: str | Path, kept: str = "") -> DiskFullError:
    where = Path(path).parent
    return DiskFullError(
        f"the disk holding {where} is full: the unfinished {Path(path).name} was removed"
        + (f"; {kept}" if kept else "")
        + "; free some space and run the command again"
    )


def commit_temp(tmp: str | Path, path: str | Path) -> Path:
    """fsync ``tmp`` and rename it onto ``path`` (atomically), fsync the folder."""
    tmp, path = Path(tmp), Path(path)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, *, kept: str = "", keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync and rename it onto ``path``.

    Any exception (Ctrl-C included) removes the temp file; ENOSPC becomes
    :class:`DiskFullError` (one line). ``path`` is untouched until the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        commit_temp(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(err):
            raise disk_full(path, kept) from None
        raise


def write_image(path: str | Path, bgr) -> Path:
    """Write an image atomically with OpenCV (format by extension: .png, .tif, .jpg)."""
    import cv2

    path = Path(path)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"cannot write {path} (use a .png, .tif or .jpg name)")
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(buf.tobytes())
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a small text file atomically."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


# -- disk space ---------------------------------------------------------------------------------
def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def check_space(folder: str | Path, need: int, *, what: str) -> None:
    """Refuse up front when ``need`` bytes plus the stated safety margin are not free."""
    free = free_bytes(folder)
    total = int(need) + SAFETY_MARGIN_BYTES
    if total > free:
        raise OutputError(
            f"not enough disk space in {folder}: {what} needs {_gb(total)} including a "
            f"{_gb(SAFETY_MARGIN_BYTES)} safety margin, {_gb(free)} are free; free some space "
            "or choose another --out"
        )


def guard_space(path: str | Path, need: int = 0, *, kept: str = "") -> None:
    """Before a large write: raise :class:`DiskFullError` when the disk is (nearly) full."""
    if free_bytes(Path(path).parent) < int(need) + GUARD_BYTES:
        raise disk_full(path, kept)


# -- names --------------------------------------------------------------------------------------
_SLIDE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_slide_name(name: str) -> str:
    """A slide name is used in file names: letters, digits, ``. _ -``; 1-64 characters."""
    if not isinstance(name, str) or not _SLIDE.match(name) or ".." in name:
        raise ScopeError(
            f"--slide {name!r} is not a usable slide name: use 1-64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (it becomes part of file names)"
        )
    return name


__all__ = [
    "GUARD_BYTES",
    "KIND_NAMES",
    "SAFETY_MARGIN_BYTES",
    "DiskFullError",
    "Interrupted",
    "OutputError",
    "WriteLock",
    "atomic_output",
    "check_slide_name",
    "check_space",
    "check_target",
    "clean_stale",
    "close_h5",
    "commit_temp",
    "disk_full",
    "file_kind",
    "free_bytes",
    "fsync_dir",
    "fsync_path",
    "guard_output",
    "guard_space",
    "hdf5_open_problem",
    "is_disk_full",
    "kind_name",
    "lock_holder",
    "lock_path",
    "pid_alive",
    "quarantine",
    "quarantined",
    "spill_folder",
    "temp_path",
    "write_image",
    "write_text",
    "written_by",
]
