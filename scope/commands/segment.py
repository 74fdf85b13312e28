"""`scope segment IMAGE --pixel-size-um P`: find white blood cells in any stained image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from registration.wbc_params import WbcParams
from scope.options import model_options, with_options


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


#: the detection parameters a lab most often adjusts (docs/registration.md, "Checking
#: detection on a new lab's slides"), as typed options; every other one through -p NAME=VALUE
DETECTION_NAMES = (
    "saturation_min",
    "saturation_scale",
    "body_saturation_min",
    "nucleus_hue",
    "min_nucleus_contrast",
    "min_dye_fraction",
    "nucleus_dye_um2",
)
DETECTION_OPTIONS = model_options(WbcParams, DETECTION_NAMES, unset=True)


def parse_wbc_params(items: list[str] | None) -> dict:
    """``["hue_min=110", ...]`` → keyword overrides of :class:`registration.segment.WbcParams`
    (names and types from the model; ranges are checked when the parameters are made)."""
    from registration.wbc_params import WbcParams
    from scope.options import parse_assignments

    return parse_assignments(items, WbcParams, option="--param")


def detection_params(items: list[str] | None, options: dict[str, Any]):
    """The :class:`WbcParams` of a command: the typed detection options given (``options``,
    None when not given) and the ``NAME=VALUE`` overrides ``items``; one-line errors."""
    from hardware_profiles.errors import ScopeError
    from registration.wbc_params import make_params

    given = {k: v for k, v in options.items() if v is not None}
    extra = parse_wbc_params(items)
    both = sorted(k for k in set(given) & set(extra) if given[k] != extra[k])
    if both:
        flag = "--" + both[0].replace("_", "-")
        raise ScopeError(f"{both[0]} is given twice ({flag} and NAME=VALUE); give it once")
    return make_params(**given, **extra)


@with_options(DETECTION_OPTIONS)
def segment(
    images: Annotated[
        list[Path],
        typer.Argument(help="RGB images of one stained smear (several: fields of one slide)."),
    ],
    pixel_size_um: Annotated[
        float, typer.Option("--pixel-size-um", min=1e-4, help="Pixel size at the sample, µm.")
    ],
    overlay: Annotated[
        Path | None,
        typer.Option(
            "--overlay",
            help="Save a PNG with outlines and numbers (with several images: a folder).",
        ),
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Save x,y centroids (px).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Override a segmentation parameter, NAME=VALUE "
            "(any field of WbcParams, e.g. max_cell_radius_um=11; see docs/registration.md).",
        ),
    ] = None,
    **detection: Any,
) -> None:
    """Detect WBCs by colour, adapted to the stain; print centroids, areas and counts.

    With several images (fields of one slide) the stain is measured over all of them and
    the same colour boxes are used in each; the cells per image are reported, with a
    one-line warning when the slide looks unlike what detection expects.
    """
    import cv2
    from rich.console import Console
    from rich.table import Table

    from acquisition.files import check_target, guard_output, write_image, write_text
    from hardware_profiles.errors import ScopeError
    from registration.detection_report import detection_warnings, per_field_line
    from registration.segment import for_slide, segment_wbcs, slide_stain_of
    from registration.segment import overlay as draw

    # every option but these is a detection parameter (DETECTION_OPTIONS)
    params = detection_params(param, detection)
    several = len(images) > 1
    for target, kind, opt in ((csv, "centroids-csv", "--csv"), (overlay, "image", "--overlay")):
        if target is None or (target is overlay and several):
            continue
        guard_output(target, option=opt)
        if any(target.resolve() == path.resolve() for path in images):
            raise ScopeError(f"{opt} {target} is an input image; choose another file")
        check_target(target, kind, command="scope segment", option=opt)
    if overlay is not None and several:
        if overlay.exists() and not overlay.is_dir():
            raise ScopeError(f"--overlay {overlay} is a file; with several images give a folder")
    imgs = [_read_image(path) for path in images]
    stain = slide_stain_of(imgs, pixel_size_um=pixel_size_um, params=params)
    if several:
        params = for_slide(params, stain)
    if overlay is not None and several:
        overlay.mkdir(parents=True, exist_ok=True)
    console = Console()
    counts = []
    lines = ["image,x_px,y_px,area_um2,nucleus_area_um2"]
    for path, img in zip(images, imgs, strict=True):
        seg = segment_wbcs(img, pixel_size_um=pixel_size_um, params=params)
        n = len(seg.centroids)
        counts.append(n)
        table = Table(title=f"{path.name}: {n} white blood cell{'' if n == 1 else 's'}")
        for col in ("#", "x (px)", "y (px)", "cell µm²", "nucleus µm²"):
            table.add_column(col, justify="right")
        rows = zip(seg.centroids, seg.areas_um2, seg.nucleus_areas_um2, strict=True)
        for i, ((x, y), a, na) in enumerate(rows):
            table.add_row(str(i), f"{x:.1f}", f"{y:.1f}", f"{a:.0f}", f"{na:.0f}")
            lines.append(f"{path.name},{x:.2f},{y:.2f},{a:.2f},{na:.2f}")
        console.print(table)
        if overlay is not None:
            target = overlay / f"{path.stem}.overlay.png" if several else overlay
            if several:
                check_target(target, "image", command="scope segment", option="--overlay")
            write_image(target, cv2.cvtColor(draw(img, seg), cv2.COLOR_RGB2BGR))
            console.print(f"overlay written to {target}")
    if several:
        console.print(per_field_line(counts), markup=False)
    for warning in detection_warnings(counts, stain):
        console.print(warning, style="yellow", markup=False)
    if csv is not None:
        write_text(csv, "\n".join(lines) + "\n")
        console.print(f"centroids written to {csv}")


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)
