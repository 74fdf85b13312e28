"""``--help`` without a ``<bool>`` label beside every on/off flag.

typer (0.29) prints a type for each option, ``<bool>`` included, although a flag takes no
value; the label suggests ``--yes true``. Flags show no type here; every other option keeps
its label. Imported by :mod:`scope.commands`, before any command is registered.
"""

from __future__ import annotations

from typing import Any

import typer.core

_display_type_rich = typer.core.TyperOption.display_type_rich


def _display_type_rich_no_flags(self: Any, ctx: Any) -> str | None:
    if getattr(self, "is_flag", False) and self.metavar is None:
        return None
    return _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _display_type_rich_no_flags  # type: ignore[method-assign]
