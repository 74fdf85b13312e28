"""`scope info FILE`: what any scope file is, its shape, its status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def info(
    path: Annotated[
        Path,
        typer.Argument(
            help="A scan, dataset, virtual-stain output (.h5), hardware profile (.yaml) or "
            "training run folder."
        ),
    ],
) -> None:
    """Describe any file scope writes: scan, dataset, run folder, virtual-stain output, profile."""
    from rich.console import Console

    from acquisition.files import file_kind
    from hardware_profiles.errors import ScopeError

    console = Console()
    kind = file_kind(path)
    if kind is None:
        raise ScopeError(f"{path} does not exist")
    if kind == "run":
        try:
            from scope.describe import describe_run_table
        except ImportError:
            raise ScopeError(f"{path} is a run folder, but training is not installed") from None
        console.print(describe_run_table(path))
    elif kind == "scope-scan":
        from scope.describe import describe_scan

        console.print(describe_scan(path))
    elif kind == "scope-dataset":
        from registration import describe_dataset
        from scope.dataset_tables import render_description

        console.print(render_description(describe_dataset(path)))
    elif kind == "scope-stained":
        from scope.describe import describe_stained

        console.print(describe_stained(path))
    elif kind == "profile":
        from scope.describe import describe_profile

        console.print(describe_profile(path))
    elif kind == "folder":
        raise ScopeError(f"{path} is a folder but not a training run (no config.yaml)")
    elif path.parent.name.endswith(".fields") and path.name.startswith("field_"):
        scan = path.parent.name.removesuffix(".fields") + ".scan.h5"
        raise ScopeError(f"{path} is one field of a scan; give the scan file, {scan}")
    elif path.suffix == ".h5" or (kind == "other" and _is_hdf5(path)):
        raise ScopeError(f"{path} is HDF5 but not a file scope wrote (no scope format attribute)")
    else:
        raise ScopeError(
            f"{path} is not an HDF5 file scope knows, nor a profile or run folder "
            "(scope info reads .scan.h5, .dataset.h5, .stained-virtual.h5, profiles, runs)"
        )


def _is_hdf5(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def register(app: typer.Typer) -> None:
    app.command("info")(info)
