"""`scope info FILE`: what any scope file is, its shape, its status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def info(
    path: Annotated[Path, typer.Argument(help="A scan file, dataset file or training run folder.")],
) -> None:
    """Describe a scope file: scan (.scan.h5), dataset (.dataset.h5) or run folder."""
    from rich.console import Console

    from hardware_profiles.errors import ScopeError

    console = Console()
    if path.is_dir():
        try:
            from training import describe_run
        except ImportError:
            raise ScopeError(f"{path} is a folder, but training is not installed") from None
        console.print(describe_run(path))
        return
    if not path.exists():
        raise ScopeError(f"{path} does not exist")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except OSError:
        raise ScopeError(f"{path} is not an HDF5 file scope knows") from None
    if fmt == "scope-scan":
        from scope.describe import describe_scan

        console.print(describe_scan(path))
    elif fmt == "scope-dataset":
        from registration import describe_dataset

        console.print(describe_dataset(path))
    else:
        raise ScopeError(f"{path} is HDF5 but not a scope file (format attribute {fmt!r})")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
