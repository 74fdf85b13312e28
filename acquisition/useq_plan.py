"""Acquisition plans as useq-schema ``MDASequence`` files (pymmcore-plus, napari-micromanager).

``scope scan --plan plan.yaml`` takes the fields from a plan's stage positions and grid plans
(top level and per position), exactly where pymmcore-plus would move the stage; a grid
without a field of view (or with useq's 1 x 1 µm placeholder) gets the objective's. A scan
stores one z per position and takes its channels from the stack, so plans with a z plan, a
time plan or channels are refused.
``scope scan --save-plan PATH`` writes the fields a scan images as such a plan.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.positions import MAX_FIELDS, PositionError

SUFFIXES = (".yaml", ".yml", ".json")
#: useq's default grid field of view (µm): a plan written with every default carries it.
PLACEHOLDER_FOV = (1.0, 1.0)


def _refuse_axes(seq: Any, source: str) -> None:
    for attr, what in (("z_plan", "a z plan"), ("time_plan", "a time plan")):
        if getattr(seq, attr, None) is not None:
            raise PositionError(
                f"{source} has {what}; a scan stores one z per position and one time point: "
                f"remove {attr} from the plan"
            )
    if seq.channels:
        names = ", ".join(str(c.config) for c in seq.channels[:4])
        raise PositionError(
            f"{source} lists channels ({names}); scope takes its channels from the stack "
            "(--stack): remove channels from the plan"
        )


def _fov_filled(data: dict[str, Any], fov: tuple[float, float]) -> dict[str, Any]:
    """The plan (as a dict) with the objective's field of view where a grid gives none."""
    grid = data.get("grid_plan")
    given = (grid or {}).get("fov_width"), (grid or {}).get("fov_height")
    if isinstance(grid, dict) and given in ((None, None), PLACEHOLDER_FOV):
        data["grid_plan"] = {**grid, "fov_width": fov[0], "fov_height": fov[1]}
    positions = []
    for pos in data.get("stage_positions") or ():
        if isinstance(pos, dict) and isinstance(pos.get("sequence"), dict):
            pos = {**pos, "sequence": _fov_filled(dict(pos["sequence"]), fov)}
        positions.append(pos)
    if positions:
        data["stage_positions"] = positions
    return data


def read_plan(path: str | Path) -> Any:
    """Load a ``useq.MDASequence`` from YAML or JSON (one clear line when it is not one)."""
    import useq
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise PositionError(f"plan file {str(path)!r} does not exist")
    if path.suffix.lower() not in SUFFIXES:
        raise PositionError(f"--plan {path}: use a .yaml or .json useq-schema MDASequence")
    try:
        return useq.MDASequence.from_file(path)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise PositionError(
            f"{path} is not a valid useq-schema MDASequence: {where}: {first.get('msg')}"
        ) from None
    except Exception as err:  # YAML/JSON syntax
        raise PositionError(
            f"{path} is not a readable plan ({type(err).__name__}: {err})"
        ) from None


def plan_positions(
    seq: Any,
    *,
    field_um: tuple[float, float],
    stage_xy: tuple[float, float] = (0.0, 0.0),
    source: str = "the plan",
) -> np.ndarray:
    """``(N, 3)`` stage positions (µm; z NaN where the plan gives none) of a plan's fields."""
    import useq

    _refuse_axes(seq, source)
    for pos in seq.stage_positions:
        if pos.sequence is not None:
            _refuse_axes(pos.sequence, f"{source} (position {pos.name or ''})".replace(" )", ")"))
    seq = useq.MDASequence.model_validate(_fov_filled(seq.model_dump(exclude_unset=True), field_um))
    _check_count(seq, source)
    rows = []
    relative_to_here = not seq.stage_positions
    for event in seq:
        x = stage_xy[0] if event.x_pos is None else float(event.x_pos)
        y = stage_xy[1] if event.y_pos is None else float(event.y_pos)
        if relative_to_here and seq.grid_plan is not None and seq.grid_plan.is_relative:
            x, y = x + stage_xy[0], y + stage_xy[1]
        z = math.nan if event.z_pos is None else float(event.z_pos)
        rows.append((x, y, z))
    if not rows:
        raise PositionError(f"{source} has no stage positions and no grid plan: no fields")
    return np.asarray(rows, dtype=np.float64)


def _n_grid(grid: Any) -> int:
    return 1 if grid is None else int(grid.num_positions())


def _check_count(seq: Any, source: str) -> None:
    n = 0
    for pos in seq.stage_positions or [None]:
        sub = pos.sequence if pos is not None and pos.sequence is not None else None
        n += _n_grid(seq.grid_plan) * (_n_grid(sub.grid_plan) if sub is not None else 1)
        if n > MAX_FIELDS:
            raise PositionError(
                f"{source} plans more than {MAX_FIELDS:,} fields (one scan's limit; a whole "
                "slide is about 40,000): plan a smaller grid"
            )


def positions_plan(positions: np.ndarray, *, metadata: dict[str, Any] | None = None) -> Any:
    """The ``useq.MDASequence`` that visits ``positions`` (``(N, 3)`` µm, z NaN = none)."""
    import useq

    stage = [
        useq.Position(
            x=float(x), y=float(y), z=None if math.isnan(z) else float(z), name=f"field {i}"
        )
        for i, (x, y, z) in enumerate(np.asarray(positions, dtype=np.float64))
    ]
    return useq.MDASequence(stage_positions=stage, metadata={"scope": dict(metadata or {})})


def save_plan(path: str | Path, positions: np.ndarray, *, metadata: dict | None = None) -> Path:
    """Write ``positions`` as a useq-schema plan (YAML or JSON by extension), atomically."""
    from acquisition.files import write_text

    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise PositionError(f"--save-plan {path}: name it .yaml or .json")
    seq = positions_plan(positions, metadata=metadata)
    text = seq.yaml() if path.suffix.lower() in (".yaml", ".yml") else seq.model_dump_json()
    return write_text(path, text)
