"""Where a scan goes: grids, regions, position lists, and the cells of a 100x pass."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from hardware_profiles.errors import ScopeError


class PositionError(ScopeError):
    """A grid, region or position list is malformed or empty."""


#: The most fields one scan file plans (a 75 x 25 mm slide at 20x is about 40 000 fields).
MAX_FIELDS = 100_000


def check_field_count(nx: int, ny: int, what: str) -> None:
    """Refuse a plan of more than :data:`MAX_FIELDS` fields before anything is allocated."""
    if nx * ny > MAX_FIELDS:
        raise PositionError(
            f"{what} plans {nx} x {ny} = {nx * ny:,} fields; one scan holds at most "
            f"{MAX_FIELDS:,} (a whole slide is about 40,000): scan a smaller grid or region"
        )


def parse_grid(text: str) -> tuple[int, int]:
    """``"3x2"`` → ``(3, 2)`` fields in x and y."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        nx, ny = (int(p) for p in parts)
    except ValueError:
        raise PositionError(f"--grid must look like NXxNY (e.g. 3x2), got {text!r}") from None
    if nx < 1 or ny < 1:
        raise PositionError(f"--grid needs at least one field each way, got {text!r}")
    return nx, ny


def parse_region(text: str) -> tuple[float, float, float, float]:
    """``"X0,Y0,X1,Y1"`` (µm) → a rectangle with x0 < x1, y0 < y1."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise PositionError(f"--region must be X0,Y0,X1,Y1 in µm, got {text!r}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise PositionError(f"--region {text!r} must be four finite numbers (µm)")
    if x1 <= x0 or y1 <= y0:
        raise PositionError(f"--region {text!r} is empty: need X0 < X1 and Y0 < Y1")
    return x0, y0, x1, y1


def _serpentine(xs: np.ndarray, ys: np.ndarray, z: float) -> np.ndarray:
    rows = []
    for j, y in enumerate(ys):
        row_x = xs if j % 2 == 0 else xs[::-1]  # boustrophedon: short stage moves
        rows.extend((x, y, z) for x in row_x)
    return np.asarray(rows, dtype=np.float64)


def grid_positions(
    nx: int,
    ny: int,
    *,
    center_um: tuple[float, float],
    field_um: tuple[float, float],
    overlap: float = 0.0,
    z_um: float = 0.0,
) -> np.ndarray:
    """``(nx*ny, 3)`` field centres of a grid around ``center_um``, serpentine order.

    ``field_um`` is the field of view (width, height) in µm; neighbouring fields overlap by
    the fraction ``overlap`` of it.
    """
    if not 0.0 <= overlap < 0.9:
        raise PositionError(f"--overlap must be in [0, 0.9), got {overlap}")
    check_field_count(nx, ny, "--grid")
    step_x = field_um[0] * (1.0 - overlap)
    step_y = field_um[1] * (1.0 - overlap)
    xs = center_um[0] + (np.arange(nx) - (nx - 1) / 2) * step_x
    ys = center_um[1] + (np.arange(ny) - (ny - 1) / 2) * step_y
    return _serpentine(xs, ys, z_um)


def region_positions(
    region_um: tuple[float, float, float, float],
    *,
    field_um: tuple[float, float],
    overlap: float = 0.0,
    z_um: float = 0.0,
) -> np.ndarray:
    """Fields covering the rectangle ``(x0, y0, x1, y1)`` (µm), serpentine order."""
    nx, ny = region_size(region_um, field_um=field_um, overlap=overlap)
    x0, y0, x1, y1 = region_um
    return grid_positions(
        nx,
        ny,
        center_um=((x0 + x1) / 2, (y0 + y1) / 2),
        field_um=field_um,
        overlap=overlap,
        z_um=z_um,
    )


def region_size(
    region_um: tuple[float, float, float, float],
    *,
    field_um: tuple[float, float],
    overlap: float = 0.0,
) -> tuple[int, int]:
    """Fields in x and y covering a region (no allocation; refuses huge regions)."""
    x0, y0, x1, y1 = region_um
    nx = max(1, math.ceil(((x1 - x0) - field_um[0]) / (field_um[0] * (1 - overlap)) + 1 - 1e-9))
    ny = max(1, math.ceil(((y1 - y0) - field_um[1]) / (field_um[1] * (1 - overlap)) + 1 - 1e-9))
    check_field_count(nx, ny, "--region")
    return nx, ny


def read_positions_csv(path: str | Path) -> np.ndarray:
    """``x_um,y_um[,z_um]`` CSV with a header → ``(N, 3)``.

    A field without z (no ``z_um`` column, or an empty cell) gets NaN: the scan gives it the
    operator's focus (the current stage Z, or the focus map), never 0.
    """
    path = Path(path)
    if not path.is_file():
        raise PositionError(f"positions file {str(path)!r} does not exist")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "x_um" not in cols or "y_um" not in cols:
            raise PositionError(f"{path}: expected columns x_um,y_um[,z_um]; found {cols}")
        rows = []
        for n, row in enumerate(reader, start=2):
            try:
                z = row.get("z_um")
                z_um = float(z) if z is not None and z.strip() else math.nan
                rows.append((float(row["x_um"]), float(row["y_um"]), z_um))
            except (TypeError, ValueError):
                raise PositionError(f"{path} line {n}: not a number in {dict(row)}") from None
    if not rows:
        raise PositionError(f"{path} lists no positions")
    return np.asarray(rows, dtype=np.float64)


def read_cells_csv(path: str | Path, *, slide: str | None = None) -> tuple[list[str], np.ndarray]:
    """``cell_id,slide,x_um,y_um`` (stained-pass stage µm) → ids and ``(N, 2)`` positions.

    With ``slide``, only that slide's cells are kept (a merged CSV may list several).
    """
    path = Path(path)
    if not path.is_file():
        raise PositionError(f"cells file {str(path)!r} does not exist")
    ids, xy = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        need = {"cell_id", "x_um", "y_um"}
        if not need <= set(cols):
            raise PositionError(f"{path}: expected columns cell_id,slide,x_um,y_um; found {cols}")
        for n, row in enumerate(reader, start=2):
            if slide is not None and row.get("slide") not in (None, "", slide):
                continue
            try:
                xy.append((float(row["x_um"]), float(row["y_um"])))
            except (TypeError, ValueError):
                raise PositionError(f"{path} line {n}: not a number in {dict(row)}") from None
            ids.append(str(row["cell_id"]))
    if not ids:
        which = f" for slide {slide!r}" if slide else ""
        raise PositionError(f"{path} lists no cells{which}")
    return ids, np.asarray(xy, dtype=np.float64)
