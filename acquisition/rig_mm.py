"""The Micro-Manager backends: ``mmcore`` (pymmcore-plus loads the lab's configuration
file, ``#py`` Python-device lines included) and ``micromanager`` (pycromanager attached to a
running Micro-Manager over ZMQ). The LED array is opened by :mod:`acquisition.led_open`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from acquisition.led_open import open_any_leds
from acquisition.micromanager import MicroManagerRig
from hardware_profiles import HardwareProfile
from hardware_profiles.errors import ScopeError
from hardware_profiles.schema import Connection

if TYPE_CHECKING:
    from acquisition.rig import Rig


def load_mm_config(mm_config: str | Path) -> Any:
    """A UniMMCore with the lab's configuration loaded (``#py`` lines work too)."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    cfg = Path(mm_config)
    if not cfg.is_file():
        raise ScopeError(f"Micro-Manager configuration {str(cfg)!r} does not exist")
    core = UniMMCore()
    try:
        core.loadSystemConfiguration(str(cfg))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScopeError(f"cannot load Micro-Manager configuration {cfg}: {first}") from None
    return core


def open_mmcore(profile: HardwareProfile, conn: Connection, *, verify: bool = True) -> Rig:
    """pymmcore-plus with the lab's Micro-Manager configuration file."""
    from acquisition.rig import Rig

    core = load_mm_config(str(conn.mm_config))
    closers: list = [core.unloadAllDevices]
    try:
        mm = MicroManagerRig(core, camera=profile.camera)
        leds = open_any_leds(core, conn, profile, verify)
    except BaseException:
        core.unloadAllDevices()
        raise
    closers.append(leds.close)
    return Rig(mm=mm, leds=leds, profile=profile, backend="mmcore", _closers=closers)


def pycromanager_core(mm_port: int) -> Any:
    """pycromanager's ``Core()``: a running Micro-Manager's core over ZMQ (or the Python
    core ``start_headless(python_backend=True)`` made in this process)."""
    import io
    from contextlib import redirect_stderr

    try:
        from pycromanager import Core
    except ImportError as err:
        raise ScopeError(f"pycromanager is not importable: {err}") from None
    try:
        with redirect_stderr(io.StringIO()):  # it prints a thread traceback when nothing answers
            return Core(port=mm_port)
    except Exception:
        raise ScopeError(
            f"no Micro-Manager answers on port {mm_port}: start Micro-Manager and enable "
            "Tools > Options > 'Run server on port 4827' (or pass --mm-port)"
        ) from None


def open_micromanager(profile: HardwareProfile, conn: Connection, *, verify: bool = True) -> Rig:
    """pycromanager attached to a running Micro-Manager (GUI or headless)."""
    from acquisition.rig import Rig

    core = pycromanager_core(conn.mm_port)
    mm = MicroManagerRig(core, camera=profile.camera)
    leds = open_any_leds(mm.core, conn, profile, verify)
    return Rig(mm=mm, leds=leds, profile=profile, backend="micromanager", _closers=[leds.close])


__all__ = ["load_mm_config", "open_micromanager", "open_mmcore", "pycromanager_core"]
