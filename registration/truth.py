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

from registration.errors import RegistrationError
from registration.rigid import RigidTransform, stage_transform_between

WBC_TYPES = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")


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


def _placed(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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
        h, w = u.frame_shape
        cu = np.stack([u.positions["x_um"], u.positions["y_um"]], axis=1)
        cs = np.stack([s.positions["x_um"], s.positions["y_um"]], axis=1)
        cells = ds.cells
        channels = ds.channels
        prov = ds.provenance
        faults = tu["faults"]
        crop_um = ds.crop_size * u.pixel_size_um
    t_true = stage_transform_between(tu["slide_to_stage"], ts["slide_to_stage"])
    flags = [{f for f in str(x).split(",") if f} for x in cells["qc_flags"]]
    unflagged = np.array([not f for f in flags], dtype=bool)
    found_s = np.stack([cells["stained_x_um"], cells["stained_y_um"]], axis=1)
    found_u = np.stack([cells["x_um"], cells["y_um"]], axis=1)

    # detection
    truth = ts["cells"]
    wbc = truth[np.isin(truth["type"], WBC_TYPES) & (truth["pass"] == "")]
    wbc_stage = _placed(ts["slide_to_stage"], wbc["x_um"], wbc["y_um"])
    half = np.array([(w - 1) / 2, (h - 1) / 2])
    inside = np.zeros(len(wbc), dtype=bool)
    for c in cs:
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
    hit = (d <= wbc["radius_um"][:, None]).any(1) if d.shape[1] else np.zeros(len(wbc), bool)
    true_det = (d <= wbc["radius_um"][:, None]).any(0) if len(wbc) else np.zeros(len(found_s), bool)
    n_truth = int(inside.sum())
    recall = float(hit[inside].mean()) if n_truth else float("nan")
    n_unf = int(unflagged.sum())
    precision = float(true_det[unflagged].mean()) if n_unf else float("nan")

    # fine matches, cell by cell: staining moves each cell on its own, so the truth for a
    # found cell is its own unstained position (same id in both passes' truth), plus the
    # found point's offset from the stained centre carried by the passes' rotations; cells
    # the truth cannot pair fall back to the slide's rigid motion
    expected_u = t_true.apply(found_s)
    by_id_u = {int(r["id"]): r for r in tu["cells"]}
    if len(wbc) and len(found_s):
        nearest = np.argmin(d, axis=0)
        rot = np.asarray(tu["slide_to_stage"])[:, :2] @ np.linalg.inv(
            np.asarray(ts["slide_to_stage"])[:, :2]
        )
        for k in np.flatnonzero(true_det):
            row = wbc[nearest[k]]
            twin = by_id_u.get(int(row["id"]))
            if twin is None:
                continue
            centre_u = _placed(
                tu["slide_to_stage"], np.array([twin["x_um"]]), np.array([twin["y_um"]])
            )[0]
            expected_u[k] = centre_u + rot @ (found_s[k] - wbc_stage[nearest[k]])
    err = np.linalg.norm(found_u - expected_u, axis=1) / p
    fine = err[unflagged]

    # fitted transform
    st = prov.get("slide_transform", {})
    if "matrix" in st:
        fitted = RigidTransform.from_matrix(np.asarray(st["matrix"]))
        t_err_px = float(np.max(np.linalg.norm(fitted.apply(cs) - t_true.apply(cs), axis=1)) / p)
        t_err_deg = abs(fitted.theta_deg - t_true.theta_deg)
    else:
        t_err_px = t_err_deg = float("nan")

    # planted PLS shifts: fields with a shifted LED that the stack images
    stack_leds = {
        int(x)
        for row in channels["leds"]
        for x in str(row).split(",")
        if len(str(row).split(",")) == 1
    }
    bad_fields = set()
    for f in faults:
        if str(f["kind"]) == "pls_shift" and int(str(f["leds"]) or -1) in stack_leds:
            k = int(np.argmin(np.linalg.norm(cu - [f["x_um"], f["y_um"]], axis=1)))
            bad_fields.add(k)
    in_bad = np.isin(cells["position"], sorted(bad_fields))
    pls_flag = np.array(["pls_misaligned" in f for f in flags], dtype=bool)

    # one-pass objects inside a crop
    one_pass: dict[str, tuple[int, int]] = {}
    has_object = np.zeros(len(cells), dtype=bool)
    for pass_truth, kind, flag, a_pass, centre in (
        (ts, "artifact", "target_only_color", ts["slide_to_stage"], found_s),
        (tu, "dirt", "input_only_object", tu["slide_to_stage"], found_u),
    ):
        objs = pass_truth["cells"]
        one = (objs["pass"] != "") & (objs["type"] == kind)
        if kind == "dirt":
            # cells the staining washed off are objects of the input only, too
            one |= (objs["pass"] == "") & ~np.isin(objs["id"], ts["cells"]["id"])
        objs = objs[one]
        if not len(objs):
            continue
        stage = _placed(a_pass, objs["x_um"], objs["y_um"])
        # an object counts for a crop when any part of it lies inside the crop
        reach = crop_um / 2 + np.asarray(objs["radius_um"], dtype=np.float64)[None, :, None]
        near = (np.abs(centre[:, None, :] - stage[None]) <= reach).all(-1).any(1)
        near &= np.array(["near_edge" not in f for f in flags])
        has_object |= near
        flagged = np.array([flag in f for f in flags], dtype=bool)
        one_pass[kind] = (int(near.sum()), int((near & flagged).sum()))
    one_pass_flags = np.array(
        [bool(f & {"target_only_color", "input_only_object"}) for f in flags], dtype=bool
    )
    return MatchEvaluation(
        n_truth_wbc=n_truth,
        n_found=int(hit[inside].sum()),
        recall=recall,
        n_unflagged=n_unf,
        precision_unflagged=precision,
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
        no_wbc_rows=[int(k) for k in np.flatnonzero(~true_det)],
    )


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
        wbc = truth[np.isin(truth["type"], WBC_TYPES) & (truth["pass"] == "")]
        if not len(wbc):
            continue
        stage = _placed(ts["slide_to_stage"], wbc["x_um"], wbc["y_um"])
        d = np.linalg.norm(found[sel][:, None] - stage[None], axis=2)
        best = d.argmin(axis=1)
        ok = d[np.arange(len(sel)), best] <= wbc["radius_um"][best]
        out[sel[ok]] = [str(t) for t in wbc["type"][best[ok]]]
    return out
