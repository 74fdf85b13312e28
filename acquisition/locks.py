"""Write locks, and the clean-up of what killed processes left behind.

- :class:`WriteLock`: an exclusive advisory lock (``fcntl.flock``) on a file or folder
  being written; a second writer is refused with the holder's pid (:func:`lock_holder`
  reads it).
- :func:`clean_stale`: temp files (``*.tmpPID``), spill folders (``.match-PID-*``) and
  unheld lock files of processes that no longer run are removed, never read.

Part of scope's output policy (:mod:`acquisition.files`, which re-exports these names).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from pathlib import Path

_TMP = re.compile(r"\.tmp(\d+)(\.[A-Za-z0-9]{1,5})?$")
_SPILL = re.compile(r"^\.match-(\d+)-")
_LEGACY_SPILL = re.compile(r"^\.match-[A-Za-z0-9_]+$")


# -- stale leftovers ----------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: str | Path, *, legacy_age_s: float = 3600.0) -> list[Path]:
    """Remove temp files and spill folders of dead processes in ``folder``; returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.search(p.name) or _SPILL.match(p.name)
        stale = False
        if p.name.endswith(".lock") and p.is_file():
            if _remove_unheld_lock(p):
                removed.append(p)
            continue
        if m is not None:
            stale = int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1)))
        elif _LEGACY_SPILL.match(p.name) and p.is_dir():
            with contextlib.suppress(OSError):
                stale = time.time() - p.stat().st_mtime > legacy_age_s
        if not stale:
            continue
        with contextlib.suppress(OSError):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def _remove_unheld_lock(path: Path) -> bool:
    """Remove a lock file nobody holds (its writer was killed); True when removed.

    It is unlinked while locked here, and a writer re-checks the file's identity after
    locking (:meth:`WriteLock.acquire`), so two writers can never both hold the lock.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
        return True
    except (BlockingIOError, FileNotFoundError):
        return False
    finally:
        os.close(fd)


def spill_folder(near: str | Path) -> Path:
    """A fresh ``.match-PID-XXXX`` folder beside ``near`` (removed by the caller)."""
    import tempfile

    parent = Path(near).parent
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".match-{os.getpid()}-", dir=parent))


# -- locks --------------------------------------------------------------------------------------
def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target / ".scope.lock" if target.is_dir() else target.with_name(target.name + ".lock")


class WriteLock:
    """Exclusive advisory lock on ``target`` (a file about to be written, or a folder).

    The lock file holds the owner's pid; it is removed on release. A second writer gets
    :class:`OutputError` naming the pid. Use as a context manager.
    """

    def __init__(self, target: str | Path, *, what: str | None = None) -> None:
        self.target = Path(target)
        self.path = lock_path(self.target)
        self.what = what or str(self.target)
        self._fd: int | None = None

    def acquire(self) -> WriteLock:
        from acquisition.files import OutputError  # which re-exports this module

        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise OutputError(
                    f"{self.what} is being written by another scope process (pid {holder}); "
                    "wait for it to finish or stop it, then run again"
                ) from None
            try:  # the file we locked must still be the one at self.path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise OutputError(f"cannot lock {self.what}: its lock file keeps changing")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriteLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode().strip() or "?"
    except OSError:
        return "?"


def lock_holder(target: str | Path) -> int | None:
    """The pid holding ``target``'s lock, or None when nobody writes it."""
    path = lock_path(target)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            return int(pid) if pid.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


__all__ = [
    "WriteLock",
    "clean_stale",
    "lock_holder",
    "lock_path",
    "pid_alive",
    "spill_folder",
]
