"""How well `scope match`'s quality checks find planted faults, against the simulator's truth.

Scans simulated slides with planted faults — PLS images shifted 3–8 px (the thesis's
hardware glitch), stain artifacts in the stained pass only (precipitate, water marks) and
dirt in the unstained pass only — matches them, and scores every QC flag against the truth.

Which crops "hold" a one-pass object is measured, not guessed: each pass is scanned a second
time with the same seed and the one-pass objects switched off (every other object, the
placements and the camera noise are identical), so the difference of the two frames is what
the object does to the image. A crop holds a *visible* object when at least
``--visible-area`` µm² of it change by ``--visible-dn`` or more in some colour channel; a
faint one changes less (a water mark is nearly a pure phase film: it barely shows in a
stained brightfield image, and a model cannot be misled by what it cannot see).

The ghost check is audited cell by cell: each checked cell's nucleus edge ratio is recomputed
as ``scope match`` computes it, and the truth says whether the detection is a WBC and whether
another check flags it too. ``--real-only`` scores the colour checks on the public real stains
(see :func:`real_colour_signals`), in seconds.

    .venv/bin/python benchmarks/bench_qc.py [--grid 4x3] [--sensor 1280x800] [--stack full]
        [--seeds 1 2 3 4] [--keep DIR [--reuse]] [--out FILE] [--real-only]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine
from qc_ghosts import audit_ghosts, ghost_rows
from qc_scoring import Scores, score_crops, score_pls
from real_stain_qc import real_stain_specks

from acquisition.vocabulary import Pass


def scan_slide(out: Path, *, seed: int, grid: str, sensor, stack: str, faults: bool) -> dict:
    import hardware_profiles as hp
    from acquisition.rig import SimOptions, open_sim
    from acquisition.scan import plan_scan, run_scan
    from acquisition.simulator.config import Faults, SimConfig

    prof = hp.load("pls43")
    cfg = SimConfig(
        wbc_per_field=20.0,
        faults=Faults(
            pls_shift_probability=0.005 if faults else 0.0,
            stained_artifacts_per_field=6.0 if faults else 0.0,
            unstained_dirt_per_field=6.0 if faults else 0.0,
        ),
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    with open_sim(prof, SimOptions(slide="qc", seed=seed, sensor_wh=sensor, config=cfg)) as rig:
        for pass_, kw in (
            (Pass.UNSTAINED, {"grid": grid, "stack": stack if faults else "brightfield"}),
            (Pass.STAINED, {}),
        ):
            rig.prepare_pass(pass_)
            plan = plan_scan(
                slide="qc",
                pass_=pass_,
                profile=prof,
                out=out,
                frame_wh=sensor,
                z_um=rig.mm.read_stage().z_um,
                overlap=0.1,
                **kw,
            )
            paths[pass_] = run_scan(plan, rig).path
    return paths


def _scans(work: Path, seed: int, args: argparse.Namespace) -> dict[str, dict]:
    """``{"faults": {pass: path}, "clean": ...}``: the slide with its planted faults and its
    twin without one-pass objects (reused from an earlier ``--keep`` run with ``--reuse``)."""
    sensor = tuple(int(v) for v in args.sensor.lower().split("x"))
    kw = {"seed": seed, "grid": args.grid, "sensor": sensor, "stack": args.stack}
    scans = {}
    for name, faults in (("faults", True), ("clean", False)):
        done = {p: work / name / f"qc.{p}.scan.h5" for p in (Pass.UNSTAINED, Pass.STAINED)}
        if args.reuse and all(p.exists() for p in done.values()):
            scans[name] = done  # scanned by an earlier run with --keep
        else:
            scans[name] = scan_slide(work / name, faults=faults, **kw)
    return scans


def score_slide(
    work: Path, seed: int, args: argparse.Namespace, scores: Scores, pairs: list
) -> None:
    from acquisition.scanfile import ScanFile
    from registration.dataset import Dataset
    from registration.match import MatchOptions, match_scans
    from registration.truth import evaluate_match

    scans = _scans(work, seed, args)
    faulty, clean = scans["faults"], scans["clean"]
    ds_path = work / "qc.dataset.h5"
    ds_path.unlink(missing_ok=True)
    match_scans(
        faulty["unstained"], faulty["stained"], ds_path, options=MatchOptions(workers=args.workers)
    )
    e = evaluate_match(ds_path, faulty["unstained"], faulty["stained"])
    scores.precision.append((e.precision_unflagged, e.n_unflagged, e.recall))
    with (
        ScanFile(faulty["unstained"]) as fu,
        ScanFile(faulty["stained"]) as fs,
        ScanFile(clean["unstained"]) as cu,
        ScanFile(clean["stained"]) as cs,
        Dataset(ds_path) as ds,
    ):
        cells = ds.cells
        flags = [set(str(x).split(",")) - {""} for x in cells["qc_flags"]]
        in_glitch = score_pls(fu, cells, flags, scores)
        scores.cells += len(cells)
        scores.ghost_audit += audit_ghosts(seed, fu, fs, ds, flags, set(e.no_wbc_rows))
        score_crops(
            {"faulty_un": fu, "faulty_st": fs, "clean_un": cu, "clean_st": cs},
            ds, flags, in_glitch, seed=seed, visible_dn=args.visible_dn,
            min_px=args.visible_area / fu.pixel_size_um**2, scores=scores, pairs=pairs,
        )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="4x3")
    ap.add_argument("--sensor", default="1280x800")
    ap.add_argument("--stack", default="full")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--visible-dn", type=float, default=20.0)
    ap.add_argument("--visible-area", type=float, default=1.0, help="µm²")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/wbc-stains",
        help="the public stained-WBC sets (real stains)",
    )
    ap.add_argument("--keep", type=Path, help="keep the scans and datasets here")
    ap.add_argument(
        "--reuse", action="store_true", help="match the scans an earlier --keep run left there"
    )
    ap.add_argument("--out", help="also write the markdown tables to this file")
    ap.add_argument(
        "--real-only", action="store_true", help="only the real-stain table (no simulated scans)"
    )
    args = ap.parse_args()
    if args.real_only:
        emit(
            "\n".join(
                [
                    f"## Colour quality checks on real stains ({machine()})",
                    "",
                    "| set | cells | loose dye / dark specks | blue speck on the cell | ghost "
                    "| any |",
                    "|---|---|---|---|---|---|",
                    *real_stain_specks(args.data),
                ]
            ),
            args.out,
        )
        return

    scores = Scores()
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            work = (args.keep or Path(tmp)) / f"seed{seed}"
            score_slide(work, seed, args, scores, rows)
    prec = ", ".join(f"{pr:.3f} ({n})" for pr, n, _ in scores.precision)
    rec = ", ".join(f"{r:.3f}" for _, _, r in scores.precision)
    s = scores
    lines = [
        f"## Quality checks on the simulator ({machine()})",
        "",
        f"{len(args.seeds)} slides (seeds {', '.join(map(str, args.seeds))}) of {args.grid} "
        f"fields of {args.sensor} px, stack `{args.stack}`; planted: PLS shifts of 3–8 px "
        "(0.5 % of single-LED images), 6 stain artifacts and 6 dirt particles per field in one "
        f"pass only. {s.cells} cells, {s.checked} away from the frame edge (`near_edge` crops "
        "are not checked for one-pass objects). A crop holds a visible object where "
        f"≥ {args.visible_area:g} µm² change by ≥ {args.visible_dn:g} DN; faint: changes of "
        "4 DN or more, less than that.",
        "",
        "| check | flagged | wanted |",
        "|---|---|---|",
        f"| fields with a planted PLS shift | {s.pls_fields} | all |",
        f"| fields without one | {s.pls_clean_fields} | none |",
        f"| cells in fields with a PLS shift | {s.pls_cells} | all |",
        f"| cells in fields without one | {s.pls_clean_cells} | none |",
        f"| crops with a visible target-only artifact → `target_only_color` | "
        f"{s.artifact_visible} | all |",
        f"| crops with a faint one | {s.artifact_faint} | |",
        f"| crops with none → `target_only_color` | {s.clean_target} | none |",
        f"| crops with visible input-only dirt → `input_only_object` | {s.dirt_visible} | all |",
        f"| crops with faint dirt | {s.dirt_faint} | |",
        f"| crops with none → `input_only_object` | {s.clean_input} | none |",
        f"| cells with no planted fault → any flag but `near_edge` | {s.clean_cells} | few |",
        f"| WBC recall / precision over unflagged cells | {rec} / {prec} | ≥ 0.98 |",
        *ghost_rows(s.ghost_audit),
        "",
        "Real stains (clean cells, no precipitate): cells the colour checks flag "
        "(`target_only_color`; wanted under 3 %; the unstained input is stood in for by the "
        "stained image's grey, see `real_stain_specks`)",
        "",
        "| set | cells | loose dye / dark specks | blue speck on the cell | ghost | any |",
        "|---|---|---|---|---|---|",
        *real_stain_specks(args.data),
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
