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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine
from real_stain_qc import REAL_SETS, real_colour_flags, real_colour_signals


@dataclass
class Tally:
    """Counts of one check over crops (or fields)."""

    n: int = 0
    flagged: int = 0

    def add(self, holds: np.ndarray, flagged: np.ndarray) -> None:
        self.n += int(holds.sum())
        self.flagged += int((holds & flagged).sum())

    def __str__(self) -> str:
        return f"{self.flagged}/{self.n}" + (f" ({self.flagged / self.n:.0%})" if self.n else "")


@dataclass
class Scores:
    cells: int = 0
    checked: int = 0  # not near_edge
    pls_fields: Tally = field(default_factory=Tally)
    pls_clean_fields: Tally = field(default_factory=Tally)
    pls_cells: Tally = field(default_factory=Tally)
    pls_clean_cells: Tally = field(default_factory=Tally)
    artifact_visible: Tally = field(default_factory=Tally)
    artifact_faint: Tally = field(default_factory=Tally)
    dirt_visible: Tally = field(default_factory=Tally)
    dirt_faint: Tally = field(default_factory=Tally)
    clean_target: Tally = field(default_factory=Tally)  # flagged target_only_color, nothing there
    clean_input: Tally = field(default_factory=Tally)
    clean_cells: Tally = field(default_factory=Tally)  # any flag on a cell with no fault at all
    precision: list = field(default_factory=list)
    # per checked cell, for the ghost check: (seed, edge ratio, is a WBC, flagged otherwise)
    ghost_audit: list = field(default_factory=list)


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
            ("unstained", {"grid": grid, "stack": stack if faults else "brightfield"}),
            ("stained", {}),
        ):
            rig.set_pass(pass_)
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


def changed(a: np.ndarray, b: np.ndarray, *, dn: float) -> np.ndarray:
    """``(h, w) bool``: pixels where any colour differs by at least ``dn``."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) >= dn).any(-1)


def score_slide(
    work: Path, seed: int, args: argparse.Namespace, scores: Scores, pairs: list
) -> None:
    from acquisition.scanfile import ScanFile
    from registration.crops import cut as _cut
    from registration.dataset import Dataset
    from registration.match import MatchOptions, match_scans
    from registration.truth import evaluate_match

    sensor = tuple(int(v) for v in args.sensor.lower().split("x"))
    kw = {"seed": seed, "grid": args.grid, "sensor": sensor, "stack": args.stack}
    scans = {}
    for name, faults in (("faults", True), ("clean", False)):
        done = {p: work / name / f"qc.{p}.scan.h5" for p in ("unstained", "stained")}
        if args.reuse and all(p.exists() for p in done.values()):
            scans[name] = done  # scanned by an earlier run with --keep
        else:
            scans[name] = scan_slide(work / name, faults=faults, **kw)
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
        c = ds.crop_size
        p = fu.pixel_size_um
        min_px = args.visible_area / p**2
        flags = [set(str(x).split(",")) - {""} for x in cells["qc_flags"]]
        # PLS glitches per field
        channels_leds = {
            str(r) for r in fu.channels["leds"] if "," not in str(r)
        }  # single-LED channels of the stack
        cxy = np.stack([fu.positions["x_um"], fu.positions["y_um"]], axis=1)
        glitched = np.zeros(fu.n_positions, dtype=bool)
        for f in fu.truth()["faults"]:
            if str(f["kind"]) == "pls_shift" and str(f["leds"]) in channels_leds:
                glitched[int(np.argmin(np.linalg.norm(cxy - [f["x_um"], f["y_um"]], axis=1)))] = (
                    True
                )
        pls = np.array(["pls_misaligned" in f for f in flags], dtype=bool)
        field_flag = np.zeros(fu.n_positions, dtype=bool)
        for k, f in enumerate(cells["position"]):
            field_flag[int(f)] |= pls[k]
        has_cells = np.isin(np.arange(fu.n_positions), cells["position"])
        scores.pls_fields.add(glitched & has_cells, field_flag)
        scores.pls_clean_fields.add(~glitched & has_cells, field_flag)
        in_glitch = glitched[cells["position"]]
        scores.pls_cells.add(in_glitch, pls)
        scores.pls_clean_cells.add(~in_glitch, pls)

        # one-pass objects: what they change in each crop
        bf = fu.brightfield_index()
        frames: dict = {}

        def frame(scan, i, ch):
            key = (id(scan), i, ch)
            if key not in frames:
                frames.clear() if len(frames) > 8 else None
                frames[key] = scan.image(i, ch)
            return frames[key]

        scores.cells += len(cells)
        scores.ghost_audit += audit_ghosts(seed, fu, fs, ds, flags, set(e.no_wbc_rows))
        for k in range(len(cells)):
            fl = flags[k]
            if "near_edge" in fl:
                continue
            scores.checked += 1
            i = int(cells["position"][k])
            tx, ty = (round(float(cells[n][k])) - c // 2 for n in ("stained_x_px", "stained_y_px"))
            ux, uy = (round(float(cells[n][k])) - c // 2 for n in ("x_px", "y_px"))
            t_diff = changed(
                _cut(frame(fs, i, 0), tx, ty, c),
                _cut(frame(cs, i, 0), tx, ty, c),
                dn=args.visible_dn,
            )
            t_any = changed(
                _cut(frame(fs, i, 0), tx, ty, c), _cut(frame(cs, i, 0), tx, ty, c), dn=4
            )
            u_diff = changed(
                _cut(frame(fu, i, bf), ux, uy, c),
                _cut(frame(cu, i, 0), ux, uy, c),
                dn=args.visible_dn,
            )
            u_any = changed(
                _cut(frame(fu, i, bf), ux, uy, c), _cut(frame(cu, i, 0), ux, uy, c), dn=4
            )
            t_vis, u_vis = t_diff.sum() >= min_px, u_diff.sum() >= min_px
            t_faint, u_faint = (t_any.sum() >= min_px) & ~t_vis, (u_any.sum() >= min_px) & ~u_vis
            t_flag = "target_only_color" in fl
            u_flag = "input_only_object" in fl
            one = np.array([True])
            if t_vis:
                scores.artifact_visible.add(one, np.array([t_flag]))
            elif t_faint:
                scores.artifact_faint.add(one, np.array([t_flag]))
            else:
                scores.clean_target.add(one, np.array([t_flag]))
            if u_vis:
                scores.dirt_visible.add(one, np.array([u_flag]))
            elif u_faint:
                scores.dirt_faint.add(one, np.array([u_flag]))
            else:
                scores.clean_input.add(one, np.array([u_flag]))
            if not (t_vis or t_faint or u_vis or u_faint or in_glitch[k]):
                scores.clean_cells.add(one, np.array([bool(fl)]))
            pairs.append((seed, k, int(t_vis), int(u_vis), ",".join(sorted(fl))))


def audit_ghosts(seed: int, fu, fs, ds, flags: list[set], no_wbc: set[int]) -> list[tuple]:
    """Each checked cell's nucleus edge ratio, whether it is a WBC, and whether any check
    other than the ghost check flags it — recomputed as ``scope match`` computes them."""
    from registration.crops import cut as _cut
    from registration.qc import QcOptions, blue_speck_cells, image_noise, one_pass_objects
    from registration.segment import background_colour, segment_wbcs

    cells, c, p = ds.cells, ds.crop_size, fs.pixel_size_um
    bf = fu.brightfield_index()
    opt = QcOptions()
    rows, seen = [], {}
    for k in range(len(cells)):
        if "near_edge" in flags[k]:
            continue
        i = int(cells["position"][k])
        if i not in seen:
            st, un = fs.image(i, 0), fu.image(i, bf)
            seen.clear()
            seen[i] = (
                segment_wbcs(st, pixel_size_um=p),
                background_colour(st),
                background_colour(un),
                image_noise(un),
            )
        seg, bg_s, bg_u, noise = seen[i]
        x0, y0 = (round(float(cells[n][k])) - c // 2 for n in ("stained_x_px", "stained_y_px"))
        cx, cy = (round(float(cells[n][k])) for n in ("stained_x_px", "stained_y_px"))
        h, w = seg.cell_labels.shape
        own = int(seg.cell_labels[min(max(cy, 0), h - 1), min(max(cx, 0), w - 1)])
        labels = _cut(seg.labels, x0, y0, c)
        found = one_pass_objects(
            ds.targets[k],
            ds.inputs[k, bf],
            _cut(seg.cell_labels, x0, y0, c) > 0,
            labels > 0,
            own_nucleus=(labels == own) if own else None,
            target_background=bg_s,
            input_background=bg_u,
            input_noise=noise,
            pixel_size_um=p,
            options=opt,
        )
        others = (flags[k] - {"target_only_color"}) or found.target_only
        rows.append([seed, found.edge_ratio, k not in no_wbc, bool(others), found.speck_gap])
    gaps = np.array([r[4] for r in rows])
    for r, speck in zip(
        rows,
        blue_speck_cells(gaps, floor=opt.speck_gap_floor, spread=opt.speck_gap_spread),
        strict=True,
    ):
        r[3] = r[3] or bool(speck)
    return [tuple(r[:4]) for r in rows]


def ghost_rows(audit: list[tuple]) -> list[str]:
    """Table rows: what the ghost check (edge ratio below ``ghost_floor``) catches."""
    from registration.qc import QcOptions, ghost_cells

    if not audit:
        return []
    seed = np.array([a[0] for a in audit])
    ratio = np.array([a[1] for a in audit], dtype=np.float64)
    wbc = np.array([a[2] for a in audit], dtype=bool)
    other = np.array([a[3] for a in audit], dtype=bool)
    opt = QcOptions()
    ghost = np.zeros(len(audit), dtype=bool)
    old = np.zeros(len(audit), dtype=bool)
    for s in np.unique(seed):
        m = seed == s  # one slide each
        ghost[m] = ghost_cells(ratio[m], fraction=opt.ghost_fraction, floor=opt.ghost_floor)
        old[m] = ghost_cells(ratio[m], fraction=0.4, floor=opt.ghost_floor)

    def rng(x: np.ndarray) -> str:
        x = x[np.isfinite(x)]
        return f"{x.min():.2f}–{x.max():.2f}" if len(x) else "–"

    t = Tally()
    t.add(~wbc, ghost)
    t_only = Tally()
    t_only.add(~wbc & ~other, ghost)
    f = Tally()
    f.add(wbc, ghost)
    f_only = Tally()
    f_only.add(wbc & ~other, ghost)
    return [
        f"| detections that are no WBC → ghost (edge ratio < {opt.ghost_floor:g}) | {t} | all |",
        f"| … of them flagged by no other check → ghost | {t_only} | |",
        f"| WBCs → ghost (a false flag) | {f} | none |",
        f"| … of them flagged by no other check | {f_only} | |",
        f"| edge ratios: WBCs / no WBC | {rng(ratio[wbc])} / {rng(ratio[~wbc])} | |",
        f"| ghost with the former relative rule (also < 0.4 x the slide median) | "
        f"{int(old.sum())} (WBCs {int((old & wbc).sum())}) | |",
    ]


def real_stain_specks(data: Path, pixel_size_um: float = 0.293) -> list[str]:
    """Table rows: how often the colour checks fire on real stained WBCs (all false flags).

    See :func:`real_colour_signals`. ``target_only_color`` is flagged by loose dye or dark
    dye specks the input does not explain, a blue speck
    (:func:`registration.qc.blue_speck_cells`) or a ghost (:func:`registration.qc.ghost_cells`,
    nucleus outline missing from the input).
    """
    rows = []
    for name, pixel in REAL_SETS.items():
        sig = real_colour_signals(data, name, pixel, pixel_size_um=pixel_size_um)
        if sig is None:
            rows.append(f"| {name} | (not found under {data}) | | | | |")
            continue
        fl = real_colour_flags(sig)

        def pct(x: np.ndarray) -> str:
            return f"{int(x.sum())} ({x.mean():.1%})"

        rows.append(
            f"| {name} ({pixel} µm/px) | {len(fl['any'])} | {pct(fl['loose'])} | "
            f"{pct(fl['speck'])} | {pct(fl['ghost'])} | {pct(fl['any'])} |"
        )
    return rows


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
