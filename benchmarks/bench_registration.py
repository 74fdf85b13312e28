"""Registration speed and accuracy on a simulated slide (`scope match`, `--highres`).

Scans one simulated slide — unstained (a chosen stack), stained and, from the cells CSV, at
100x — with planted PLS shifts and one-pass dirt and stain artifacts, then times each step on
1920x1200 field pairs and measures the dataset against the simulator's truth.

    .venv/bin/python benchmarks/bench_registration.py [--grid 2x2] [--sensor 1920x1200]
        [--stack le36-nohe] [--seed 7] [--workers 2] [--out FILE]

Speed targets (2 cores, per 1920x1200 field pair): coarse ≤ 0.3 s, segmentation ≤ 0.1 s,
fine ≤ 20 ms per cell, 100x ≤ 0.2 s per cell. Other jobs on a shared machine make the
figures pessimistic.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine


def simulate(out: Path, *, seed: int, grid: str, sensor: tuple[int, int], stack: str) -> dict:
    import hardware_profiles as hp
    from acquisition.rig import SimOptions, open_sim
    from acquisition.scan import plan_scan, run_scan
    from acquisition.simulator.config import Faults, SimConfig, smudges_per_field
    from registration.match import MatchOptions, match_scans

    prof = hp.load("pls43")
    cfg = SimConfig(
        wbc_per_field=20.0,
        smudge_per_field=smudges_per_field(20.0),  # 2 %: a normal smear's upper bound
        faults=Faults(
            pls_shift_probability=0.02,
            stained_artifacts_per_field=6.0,
            unstained_dirt_per_field=6.0,
        ),
    )
    paths: dict = {}
    times: dict = {}

    def scan(rig, pass_: str, **kw) -> Path:
        rig.set_pass(pass_)
        plan = plan_scan(
            slide="bench",
            pass_=pass_,
            profile=prof,
            out=out,
            frame_wh=sensor,
            z_um=rig.mm.read_stage().z_um,
            **kw,
        )
        t0 = time.perf_counter()
        path = run_scan(plan, rig).path
        times[f"scan {pass_}"] = time.perf_counter() - t0
        return path

    with open_sim(prof, SimOptions(slide="bench", seed=seed, sensor_wh=sensor, config=cfg)) as rig:
        paths["unstained"] = scan(rig, "unstained", grid=grid, stack=stack, overlap=0.1)
        paths["stained"] = scan(rig, "stained")
        t0 = time.perf_counter()
        summary = match_scans(
            paths["unstained"],
            paths["stained"],
            out / "bench.dataset.h5",
            options=MatchOptions(workers=1),
        )
        times["match (1 worker)"] = time.perf_counter() - t0
        paths["summary"] = summary
        paths["highres"] = scan(rig, "highres", cells_csv=summary.cells_csv)
    paths["times"] = times
    return paths


def step_timings(paths: dict, repeat: int = 3) -> dict:
    """Per-step timings on the slide's first fields (median of repeats)."""
    from acquisition.scanfile import ScanFile
    from registration.coarse import coarse_match, to_grey
    from registration.dataset import Dataset
    from registration.fine import FineMatchError, fine_match
    from registration.highres import match_highres
    from registration.segment import segment_wbcs

    out: dict = {"coarse": [], "segment": [], "fine": [], "highres": []}
    with (
        ScanFile(paths["unstained"]) as u,
        ScanFile(paths["stained"]) as s,
        ScanFile(paths["highres"]) as h,
        Dataset(paths["summary"].dataset) as ds,
    ):
        p = u.pixel_size_um
        hgt, wid = u.frame_shape
        cells = ds.cells
        hxy = np.stack([h.positions["x_um"], h.positions["y_um"]], axis=1)
        for f in range(min(2, u.n_positions)):
            a, b = u.image(f, u.brightfield_index()), s.image(f, 0)
            for _ in range(repeat):
                t0 = time.perf_counter()
                coarse_match(a, b, pixel_size_um=p)
                out["coarse"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                segment_wbcs(b, pixel_size_um=p)
                out["segment"].append(time.perf_counter() - t0)
            ga, gb = to_grey(a), to_grey(b)
            cx, cy = s.positions["x_um"][f], s.positions["y_um"][f]
            for k in np.flatnonzero(cells["position"] == f)[:10]:
                sxy = (float(cells["stained_x_px"][k]), float(cells["stained_y_px"][k]))
                uxy = (float(cells["x_px"][k]), float(cells["y_px"][k]))
                try:
                    t0 = time.perf_counter()
                    fine_match(ga, gb, sxy, uxy)
                    out["fine"].append(time.perf_counter() - t0)
                except FineMatchError:
                    pass
                j = int(
                    np.argmin(
                        np.linalg.norm(
                            hxy - [cells["stained_x_um"][k], cells["stained_y_um"][k]], axis=1
                        )
                    )
                )
                exp = ((hxy[j, 0] - cx) / p + (wid - 1) / 2, (hxy[j, 1] - cy) / p + (hgt - 1) / 2)
                hr = h.image(j, 0)
                t0 = time.perf_counter()
                match_highres(b, hr, exp, pixel_size_um=p, nominal_ratio=p / h.pixel_size_um)
                out["highres"].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) if v else float("nan") for k, v in out.items()}


def highres_accuracy(paths: dict, workers: int) -> tuple[object, np.ndarray, float, float]:
    from registration.highres_dataset import add_highres
    from registration.highres_truth import highres_placement_errors

    t0 = time.perf_counter()
    hr = add_highres(paths["summary"].dataset, paths["highres"], workers=workers)
    seconds = time.perf_counter() - t0
    errors, ratio = highres_placement_errors(hr, paths["highres"], paths["stained"])
    return hr, errors, ratio, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="2x2")
    ap.add_argument("--sensor", default="1920x1200")
    ap.add_argument("--stack", default="le36-nohe")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="also write the markdown tables to this file")
    ap.add_argument("--keep", type=Path, help="write the scans and datasets here (kept)")
    args = ap.parse_args()
    sensor = tuple(int(v) for v in args.sensor.lower().split("x"))

    from registration.match import MatchOptions, match_scans
    from registration.truth import evaluate_match

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.keep is not None:
            out = args.keep
            out.mkdir(parents=True, exist_ok=True)
        paths = simulate(out, seed=args.seed, grid=args.grid, sensor=sensor, stack=args.stack)
        t = step_timings(paths)
        t0 = time.perf_counter()
        match_scans(
            paths["unstained"],
            paths["stained"],
            out / "w.dataset.h5",
            options=MatchOptions(workers=args.workers),
        )
        t_workers = time.perf_counter() - t0
        e = evaluate_match(paths["summary"].dataset, paths["unstained"], paths["stained"])
        hr, hr_err, true_ratio, t_hr = highres_accuracy(paths, args.workers)
        s = paths["summary"]

    lines = [
        f"## Registration on the simulator ({machine()})",
        "",
        f"Slide: {args.grid} fields of {args.sensor} px, stack `{args.stack}` "
        f"({s.n_fields} fields), seed {args.seed}; planted PLS shifts, one-pass dirt and "
        "artifacts.",
        "",
        "| step (per 1920x1200 field pair unless noted) | measured | target |",
        "|---|---|---|",
        f"| coarse match | {1000 * t['coarse']:.0f} ms | ≤ 300 ms |",
        f"| WBC segmentation | {1000 * t['segment']:.0f} ms | ≤ 100 ms |",
        f"| fine match, per cell | {1000 * t['fine']:.1f} ms | ≤ 20 ms |",
        f"| 100x alignment, per cell | {1000 * t['highres']:.0f} ms | ≤ 200 ms |",
        f"| `match_scans`, whole slide, 1 worker | {paths['times']['match (1 worker)']:.1f} s | |",
        f"| `match_scans`, whole slide, {args.workers} workers | {t_workers:.1f} s | |",
        f"| `add_highres`, {hr.n_imaged} cells, {args.workers} workers | {t_hr:.1f} s | |",
        "",
        "| accuracy against the truth | measured | target |",
        "|---|---|---|",
        f"| WBC recall (≥ 45 px inside a field) | {e.recall:.3f} ({e.n_found}/{e.n_truth_wbc}) "
        "| ≥ 0.98 |",
        f"| precision over unflagged cells | {e.precision_unflagged:.3f} ({e.n_unflagged} cells)"
        " | ≥ 0.98 |",
        f"| fine match error, median | {e.fine_median_px:.2f} px | ≤ 0.5 px |",
        f"| fine match error, 99th percentile | {e.fine_p99_px:.2f} px | ≤ 1 px |",
        f"| slide transform, worst field centre | {e.transform_error_px:.2f} px | ≤ 1 px |",
        f"| slide transform, rotation | {e.transform_error_deg:.4f}° | ≤ 0.05° |",
        f"| 100x position, median / max | {np.median(hr_err):.2f} / {np.max(hr_err):.2f} px"
        " | ≤ 1 px |",
        f"| 100x scale vs truth | {100 * (hr.ratio / true_ratio - 1):+.3f} % "
        f"({hr.ratio:.4f} vs {true_ratio:.4f}) | within 0.3 % |",
        f"| cells with a 100x target | {hr.n_matched}/{hr.n_imaged} | |",
        f"| cells in fields with a planted PLS shift, flagged | "
        f"{e.pls_fault_cells_flagged}/{e.pls_fault_cells} | all |",
        f"| cells flagged pls_misaligned without a shift | {e.pls_false_flags} | |",
    ]
    for kind, (n, flagged) in e.one_pass.items():
        what = "stain artifact (target only)" if kind == "artifact" else "dirt (input only)"
        lines.append(
            f"| crops with a one-pass {what} centred in them (visible or not; "
            f"see bench_qc), flagged | {flagged}/{n} | |"
        )
    lines.append(
        f"| cells flagged one-pass without such an object | {e.one_pass_false_flags} "
        f"of {s.n_cells} | |"
    )
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
