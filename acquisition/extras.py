"""Optional dependencies: import one or say, in one line, which ``pip install`` brings it.

The base install stays lean; open formats, ONNX, napari and TensorBoard live in extras of the
``scope-pls`` package (``pyproject.toml``). Every layer (acquisition, registration, training,
the CLI) asks for them through :func:`require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hardware_profiles.errors import ScopeError


class MissingExtra(ScopeError):
    """An optional dependency is not installed."""


def require(module: str, extra: str, *, what: str) -> ModuleType:
    """``import module`` or raise :class:`MissingExtra` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(
            f"{what} needs the Python package {module.split('.')[0]!r} ({err.msg}); "
            f"install it with: pip install 'scope-pls[{extra}]'"
        ) from None
