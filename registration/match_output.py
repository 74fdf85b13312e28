"""Phase 6 of ``scope match``: the dataset and its cells CSV, written from the spilled crops.

:func:`write_dataset` assigns the default split (once every flag is known), writes the
dataset through :class:`registration.dataset.DatasetWriter` (a temporary file renamed at the
end) and renames ``NAME.cells.csv`` into place only after the dataset commits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from acquisition.progress import Progress
from acquisition.vocabulary import Pass
from registration.cell_match import CellMatch, stage_xy
from registration.cells_csv import cells_csv_path, write_cells_csv
from registration.crops import FieldCrops
from registration.errors import RegistrationError
from registration.parallel import start_phase
from registration.qc import join_flags
from registration.scan_pair import ScanPair
from registration.slide_fit import PairGeometry, SlideFit
from registration.splits import default_split
from registration.survey import FieldSurvey

if TYPE_CHECKING:
    from registration.match_options import MatchOptions


@dataclass(frozen=True)
class MatchOutput:
    """What the dataset's header records beside the crops."""

    path: Path
    channels: np.ndarray
    profile_json: str
    simulated: bool
    hashes: dict[str, str]
    software_version: str


def write_dataset(
    progress: Progress,
    pair: ScanPair,
    cells: list[CellMatch],
    stained_stage: np.ndarray,
    surveys: list[FieldSurvey],
    crops: list[FieldCrops],
    by_field: dict[int, list[int]],
    order: list[int],
    output: MatchOutput,
    fit: SlideFit,
    opt: MatchOptions,
) -> None:
    """The dataset from the spilled crops, then the cells CSV renamed into place beside it."""
    from registration.dataset import DatasetWriter

    unstained_stage = stage_xy(pair, cells, stained=False)
    # the split once every flag is known: each split gets unflagged cells
    split = default_split(
        unstained_stage[:, 0],
        unstained_stage[:, 1],
        [pair.slide] * len(cells),
        crop_um=opt.crop_size * pair.pixel_size_um,
        block_um=opt.block_um,
        fractions=opt.fractions,
        seed=opt.seed,
        by="blocks",
        usable=[not cm.flags for cm in cells],
    )
    out = output.path
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = DatasetWriter(
        out,
        channels=output.channels,
        crop_size=opt.crop_size,
        profile=output.profile_json or None,
        provenance=_provenance(pair, output, fit, opt),
        compression=opt.compression,
        software_version=output.software_version,
        written_by="scope match",
    )
    csv_path = cells_csv_path(out)
    # ids: the row index in this dataset; the CSV is renamed into place only after
    # the dataset commits, and removed if anything fails
    tmp_csv = write_cells_csv(
        csv_path.with_name(csv_path.name + f".tmp{os.getpid()}"),
        pair.slide,
        stained_stage[order, 0],
        stained_stage[order, 1],
        (str(k) for k in range(len(cells))),
    )
    types = _truth_types(pair, stained_stage) if output.simulated else None
    try:
        with writer:
            start_phase(progress, "write", len(crops))
            for fc in crops:
                with np.load(fc.spill) as data:
                    rows = [
                        _row(pair, cells[k], pair.geometry, split[k], surveys)
                        for k in by_field[fc.index]
                    ]
                    if types is not None:
                        for row, k in zip(rows, by_field[fc.index], strict=True):
                            row["type"] = types[k]
                    writer.add(data["inputs"], data["targets"], rows)
                progress.advance("write")
        os.replace(tmp_csv, csv_path)
    finally:
        tmp_csv.unlink(missing_ok=True)


def _provenance(pair: ScanPair, output: MatchOutput, fit: SlideFit, opt: MatchOptions) -> dict:
    return {
        Pass.UNSTAINED: {"path": pair.unstained, "sha256_index": output.hashes[Pass.UNSTAINED]},
        Pass.STAINED: {"path": pair.stained, "sha256_index": output.hashes[Pass.STAINED]},
        "options": opt.as_dict(),
        "slide_transform": {
            "theta_deg": fit.transform.theta_deg,
            "tx_um": fit.transform.tx,
            "ty_um": fit.transform.ty,
            "matrix": fit.transform.matrix.tolist(),
            "rms_px": fit.rms_px,
            "meaning": "stained-pass stage µm -> unstained-pass stage µm",
        },
        "field_status": [str(x) for x in fit.status],
        "software_version": output.software_version,
        "simulated": output.simulated,
    }


def _truth_types(pair: ScanPair, stained_stage: np.ndarray) -> np.ndarray | None:
    """The simulator's WBC type of each matched cell (None when the scan has no truth)."""
    from registration.truth import truth_types

    try:
        return truth_types(
            {pair.slide: pair.stained},
            np.full(len(stained_stage), pair.slide),
            stained_stage[:, 0],
            stained_stage[:, 1],
        )
    except RegistrationError:
        return None


def _row(
    pair: ScanPair, cm: CellMatch, g: PairGeometry, split: str, surveys: list[FieldSurvey]
) -> dict[str, Any]:
    su = g.to_stage(np.array(cm.unstained_xy), pair.centres_unstained[cm.field])
    ss = g.to_stage(np.array(cm.stained_xy), pair.centres_stained[cm.field])
    coarse = surveys[cm.field].coarse
    return {
        "slide": pair.slide,
        "position": cm.field,
        "x_px": cm.unstained_xy[0],
        "y_px": cm.unstained_xy[1],
        "stained_x_px": cm.stained_xy[0],
        "stained_y_px": cm.stained_xy[1],
        "x_um": su[0],
        "y_um": su[1],
        "stained_x_um": ss[0],
        "stained_y_um": ss[1],
        "coarse_score": coarse.score if coarse is not None else float("nan"),
        "ssim": cm.ssim,
        "has_highres": False,
        "highres_score": float("nan"),
        "highres_scale": float("nan"),
        "qc_flags": join_flags(cm.flags),
        "split": split,
    }
