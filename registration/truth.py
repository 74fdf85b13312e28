"""Measure a dataset against the simulator's ground truth (scan files' ``/truth``).

Used by the registration tests and benchmarks, and handy after ``scope demo``: how many WBCs
were found, how precisely they were matched, whether planted faults were flagged. Real scans
have no truth; :func:`evaluate_match` then raises.

Coordinates (docs/formats.md): each pass places the slide as ``stage = R·slide + t``; a
dataset cell's ``x_um, y_um`` are unstained-pass stage µm of the matched stained centroid.
Staining also moves each cell a little on its own, and the truth of each pass lists every
cell at its own position in that pass (same ``id``), so the truth for a found cell is its own
unstained position, not the slide's rigid motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acquisition.vocabulary import CELL_TYPES, QcFlag
from registration.errors import RegistrationError
from registration.rigid import RigidTransform, stage_transform_between

#: The white-cell types (:data:`acquisition.vocabulary.CELL_TYPES`), under the name tests and
#: benchmarks import.
WBC_TYPES = CELL_TYPES


@dataclass
class MatchEvaluation:
    """Figures of one matched slide against the truth (pixels are the scan's pixels)."""

    n_truth_wbc: int  # distinct WBCs at least `inset_px` inside some field
    n_found: int
    recall: float
    n_unflagged: int
    precision_unflagged: float
    fine_error_px: np.ndarray = field(repr=False)  # per unflagged cell
    fine_median_px: float = float("nan")
    fine_p99_px: float = float("nan")
    transform_error_px: float = float("nan")  # worst over field centres
    transform_error_deg: float = float("nan")
    pls_fault_fields: int = 0
    pls_fault_cells: int = 0
    pls_fault_cells_flagged: int = 0
    pls_false_flags: int = 0
    one_pass: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (n, flagged)
    one_pass_false_flags: int = 0
    one_pass_false_rows: list[int] = field(default_factory=list)  # dataset rows
    no_wbc_rows: list[int] = field(default_factory=list)  # detections that are no WBC (rows)


def placed(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(N, 2)`` stage µm of slide points ``(x, y)`` under a placement ``a`` (``(2, 3)``)."""
    a = np.asarray(a, dtype=np.float64)
    return np.stack([x, y], axis=1) @ a[:, :2].T + a[:, 2]


def evaluate_match(
    dataset: str | Path,
    unstained: str | Path,
    stained: str | Path,
    *,
    inset_px: float = 45.0,
) -> MatchEvaluation:
    """Compare ``dataset`` (written by ``scope match``) with the truth of its two scans."""
    from acquisition.scanfile import ScanFile
    from registration.dataset import Dataset

    with ScanFile(unstained) as u, ScanFile(stained) as s, Dataset(dataset) as ds:
        tu, ts = u.truth(), s.truth()
        if tu is None or ts is None:
            raise RegistrationError("these scans carry no simulator truth to compare with")
        p = u.pixel_size_um
        frame_hw = u.frame_shape
        cu = np.stack([u.positions["x_um"], u.positions["y_um"]], axis=1)
        cs = np.stack([s.positions["x_um"], s.positions["y_um"]], axis=1)
        cells = ds.cells
        channels = ds.channels
        prov = ds.provenance
        crop_um = ds.crop_size * u.pixel_size_um
    t_true = stage_transform_between(tu["slide_to_stage"], ts["slide_to_stage"])
    flags = [{f for f in str(x).split(",") if f} for x in cells["qc_flags"]]
    unflagged = np.array([not f for f in flags], dtype=bool)
    found_s = np.stack([cells["stained_x_um"], cells["stained_y_um"]], axis=1)
    found_u = np.stack([cells["x_um"], cells["y_um"]], axis=1)
    det = _Detections.of(ts, found_s, cs, p, frame_hw, inset_px)
    n_truth = int(det.inside.sum())
    n_unf = int(unflagged.sum())
    fine = _fine_errors(tu, ts, t_true, det, found_s, found_u, p)[unflagged]
    t_err_px, t_err_deg = _transform_error(prov, t_true, cs, p)
    bad_fields = _pls_fault_fields(tu["faults"], channels, cu)
    in_bad = np.isin(cells["position"], sorted(bad_fields))
    pls_flag = np.array([QcFlag.PLS_MISALIGNED in f for f in flags], dtype=bool)
    one_pass, has_object = _one_pass_objects(tu, ts, flags, found_s, found_u, crop_um)
    one_pass_flags = np.array(
        [bool(f & {QcFlag.TARGET_ONLY_COLOR, QcFlag.INPUT_ONLY_OBJECT}) for f in flags],
        dtype=bool,
    )
    return MatchEvaluation(
        n_truth_wbc=n_truth,
        n_found=int(det.hit[det.inside].sum()),
        recall=float(det.hit[det.inside].mean()) if n_truth else float("nan"),
        n_unflagged=n_unf,
        precision_unflagged=float(det.true_det[unflagged].mean()) if n_unf else float("nan"),
        fine_error_px=fine,
        fine_median_px=float(np.median(fine)) if len(fine) else float("nan"),
        fine_p99_px=float(np.percentile(fine, 99)) if len(fine) else float("nan"),
        transform_error_px=t_err_px,
        transform_error_deg=t_err_deg,
        pls_fault_fields=len(bad_fields),
        pls_fault_cells=int(in_bad.sum()),
        pls_fault_cells_flagged=int((in_bad & pls_flag).sum()),
        pls_false_flags=int((~in_bad & pls_flag).sum()),
        one_pass=one_pass,
        one_pass_false_flags=int((one_pass_flags & ~has_object).sum()),
        one_pass_false_rows=[int(k) for k in np.flatnonzero(one_pass_flags & ~has_object)],
        no_wbc_rows=[int(k) for k in np.flatnonzero(~det.true_det)],
    )


@dataclass(frozen=True)
class _Detections:
    """The truth's WBCs against the found cells (stained-pass stage µm)."""

    wbc: np.ndarray  # the truth's WBCs of both passes
    wbc_stage: np.ndarray  # (n, 2) their stained-pass stage µm
    dist: np.ndarray  # (n, found) distances, µm
    inside: np.ndarray  # (n,) at least inset_px inside some field
    hit: np.ndarray  # (n,) found
    true_det: np.ndarray  # (found,) a found cell on a WBC

    @classmethod
    def of(cls, ts, found_s, centres, p, frame_hw, inset_px) -> _Detections:
        truth = ts["cells"]
        wbc = truth[np.isin(truth["type"], CELL_TYPES) & (truth["pass"] == "")]
        wbc_stage = placed(ts["slide_to_stage"], wbc["x_um"], wbc["y_um"])
        h, w = frame_hw
        half = np.array([(w - 1) / 2, (h - 1) / 2])
        inside = np.zeros(len(wbc), dtype=bool)
        for c in centres:
            px = (wbc_stage - c) / p + half
            inside |= (
                (px[:, 0] >= inset_px)
                & (px[:, 0] <= w - 1 - inset_px)
                & (px[:, 1] >= inset_px)
                & (px[:, 1] <= h - 1 - inset_px)
            )
        d = (
            np.linalg.norm(wbc_stage[:, None] - found_s[None], axis=2)
            if len(found_s)
            else (np.zeros((len(wbc), 0)))
        )
        within = d <= wbc["radius_um"][:, None]
        hit = within.any(1) if d.shape[1] else np.zeros(len(wbc), bool)
        true_det = within.any(0) if len(wbc) else np.zeros(len(found_s), bool)
        return cls(wbc, wbc_stage, d, inside, hit, true_det)


def _fine_errors(tu, ts, t_true, det: _Detections, found_s, found_u, p) -> np.ndarray:
    """Per found cell, px between its match and the truth.

    Staining moves each cell on its own, so the truth for a found cell is its own unstained
    position (same id in both passes' truth), plus the found point's offset from the stained
    centre carried by the passes' rotations; cells the truth cannot pair fall back to the
    slide's rigid motion.
    """
    expected_u = t_true.apply(found_s)
    by_id_u = {int(r["id"]): r for r in tu["cells"]}
    if len(det.wbc) and len(found_s):
        nearest = np.argmin(det.dist, axis=0)
        rot = np.asarray(tu["slide_to_stage"])[:, :2] @ np.linalg.inv(
            np.asarray(ts["slide_to_stage"])[:, :2]
        )
        for k in np.flatnonzero(det.true_det):
            row = det.wbc[nearest[k]]
            twin = by_id_u.get(int(row["id"]))
            if twin is None:
                continue
            centre_u = placed(
                tu["slide_to_stage"], np.array([twin["x_um"]]), np.array([twin["y_um"]])
            )[0]
            expected_u[k] = centre_u + rot @ (found_s[k] - det.wbc_stage[nearest[k]])
    return np.linalg.norm(found_u - expected_u, axis=1) / p


def _transform_error(prov, t_true, centres, p) -> tuple[float, float]:
    """The fitted slide transform's worst error over field centres (px) and its angle's."""
    st = prov.get("slide_transform", {})
    if "matrix" not in st:
        return float("nan"), float("nan")
    fitted = RigidTransform.from_matrix(np.asarray(st["matrix"]))
    err_px = float(np.max(np.linalg.norm(fitted.apply(centres) - t_true.apply(centres), axis=1)))
    return err_px / p, abs(fitted.theta_deg - t_true.theta_deg)


def _pls_fault_fields(faults, channels, centres) -> set[int]:
    """Fields with a planted PLS shift of an LED the stack images."""
    stack_leds = {
        int(x)
        for row in channels["leds"]
        for x in str(row).split(",")
        if len(str(row).split(",")) == 1
    }
    bad_fields = set()
    for f in faults:
        if str(f["kind"]) == "pls_shift" and int(str(f["leds"]) or -1) in stack_leds:
            k = int(np.argmin(np.linalg.norm(centres - [f["x_um"], f["y_um"]], axis=1)))
            bad_fields.add(k)
    return bad_fields


def _one_pass_objects(tu, ts, flags, found_s, found_u, crop_um):
    """``({kind: (objects in a crop, of them flagged)}, (found,) crop holds one)``."""
    one_pass: dict[str, tuple[int, int]] = {}
    has_object = np.zeros(len(flags), dtype=bool)
    for pass_truth, kind, flag, a_pass, centre in (
        (ts, "artifact", QcFlag.TARGET_ONLY_COLOR, ts["slide_to_stage"], found_s),
        (tu, "dirt", QcFlag.INPUT_ONLY_OBJECT, tu["slide_to_stage"], found_u),
    ):
        objs = pass_truth["cells"]
        one = (objs["pass"] != "") & (objs["type"] == kind)
        if kind == "dirt":
            # cells the staining washed off are objects of the input only, too
            one |= (objs["pass"] == "") & ~np.isin(objs["id"], ts["cells"]["id"])
        objs = objs[one]
        if not len(objs):
            continue
        stage = placed(a_pass, objs["x_um"], objs["y_um"])
        # an object counts for a crop when any part of it lies inside the crop
        reach = crop_um / 2 + np.asarray(objs["radius_um"], dtype=np.float64)[None, :, None]
        near = (np.abs(centre[:, None, :] - stage[None]) <= reach).all(-1).any(1)
        near &= np.array([QcFlag.NEAR_EDGE not in f for f in flags])
        has_object |= near
        flagged = np.array([flag in f for f in flags], dtype=bool)
        one_pass[kind] = (int(near.sum()), int((near & flagged).sum()))
    return one_pass, has_object


def truth_types(
    stained_scans: dict[str, str | Path],
    slides: np.ndarray,
    stained_x_um: np.ndarray,
    stained_y_um: np.ndarray,
) -> np.ndarray:
    """The simulator's WBC type of each dataset cell ("" where none lies within its radius).

    Parameters
    ----------
    stained_scans
        Slide name → its stained scan (the cells' ``stained_x_um, stained_y_um`` are that
        pass's stage µm).
    slides, stained_x_um, stained_y_um
        Per cell, from a dataset's (or an evaluation's) cell table.
    """
    from acquisition.scanfile import ScanFile

    slides = np.asarray([str(s) for s in slides])
    found = np.stack([stained_x_um, stained_y_um], axis=1).astype(np.float64)
    out = np.full(len(slides), "", dtype=object)
    for slide, path in stained_scans.items():
        sel = np.flatnonzero(slides == slide)
        if not len(sel):
            continue
        with ScanFile(path) as s:
            ts = s.truth()
        if ts is None:
            raise RegistrationError(f"{path} carries no simulator truth")
        truth = ts["cells"]
        wbc = truth[np.isin(truth["type"], CELL_TYPES) & (truth["pass"] == "")]
        if not len(wbc):
            continue
        stage = placed(ts["slide_to_stage"], wbc["x_um"], wbc["y_um"])
        d = np.linalg.norm(found[sel][:, None] - stage[None], axis=2)
        best = d.argmin(axis=1)
        ok = d[np.arange(len(sel)), best] <= wbc["radius_um"][best]
        out[sel[ok]] = [str(t) for t in wbc["type"][best[ok]]]
    return out
