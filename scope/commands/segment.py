"""`scope segment IMAGE --pixel-size-um P`: find white blood cells in any stained image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _read_image(path: Path):
    import cv2
    import numpy as np

    from hardware_profiles.errors import ScopeError

    if not path.is_file():
        raise ScopeError(f"{path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ScopeError(f"{path} is not an image OpenCV can read (PNG, TIFF, JPEG, BMP ...)")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def parse_wbc_params(items: list[str] | None) -> dict:
    """``["hue_min=110", ...]`` → keyword overrides of :class:`registration.segment.WbcParams`."""
    import dataclasses

    from hardware_profiles.errors import ScopeError
    from registration.segment import WbcParams

    overrides: dict = {}
    types = {f.name: f.type for f in dataclasses.fields(WbcParams)}
    for item in items or []:
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in types or not value:
            raise ScopeError(f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(types)}")
        try:
            overrides[name] = (
                value.strip().lower() in ("1", "true", "yes")
                if types[name] in (bool, "bool")
                else float(value)
            )
        except ValueError:
            raise ScopeError(f"{item!r}: {value!r} is not a number") from None
    return overrides


def segment(
    image: Annotated[Path, typer.Argument(help="An RGB image of a stained smear.")],
    pixel_size_um: Annotated[
        float, typer.Option("--pixel-size-um", min=1e-4, help="Pixel size at the sample, µm.")
    ],
    overlay: Annotated[
        Path | None, typer.Option("--overlay", help="Save a PNG with outlines and numbers.")
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Save x,y centroids (px).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Override a segmentation parameter, NAME=VALUE "
            "(e.g. hue_min=110; see docs/registration.md).",
        ),
    ] = None,
) -> None:
    """Detect WBCs by colour (HSV); print their centroids, areas and a count."""
    import cv2
    from rich.console import Console
    from rich.table import Table

    from acquisition.files import check_target, guard_output, write_image, write_text
    from hardware_profiles.errors import ScopeError
    from registration.segment import overlay as draw
    from registration.segment import segment_wbcs

    overrides = parse_wbc_params(param)
    for target, kind, opt in ((csv, "centroids-csv", "--csv"), (overlay, "image", "--overlay")):
        if target is not None:
            guard_output(target, option=opt)
            if target.resolve() == image.resolve():
                raise ScopeError(f"{opt} {target} is the input image; choose another file")
            check_target(target, kind, command="scope segment", option=opt)
    img = _read_image(image)
    seg = segment_wbcs(img, pixel_size_um=pixel_size_um, **overrides)
    console = Console()
    n = len(seg.centroids)
    table = Table(title=f"{image.name}: {n} white blood cell{'' if n == 1 else 's'}")
    for col in ("#", "x (px)", "y (px)", "cell µm²", "nucleus µm²"):
        table.add_column(col, justify="right")
    for i, ((x, y), a, na) in enumerate(
        zip(seg.centroids, seg.areas_um2, seg.nucleus_areas_um2, strict=True)
    ):
        table.add_row(str(i), f"{x:.1f}", f"{y:.1f}", f"{a:.0f}", f"{na:.0f}")
    console.print(table)
    if csv is not None:
        lines = ["x_px,y_px,area_um2,nucleus_area_um2"] + [
            f"{x:.2f},{y:.2f},{a:.2f},{na:.2f}"
            for (x, y), a, na in zip(
                seg.centroids, seg.areas_um2, seg.nucleus_areas_um2, strict=True
            )
        ]
        write_text(csv, "\n".join(lines) + "\n")
        console.print(f"centroids written to {csv}")
    if overlay is not None:
        write_image(overlay, cv2.cvtColor(draw(img, seg), cv2.COLOR_RGB2BGR))
        console.print(f"overlay written to {overlay}")


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)
