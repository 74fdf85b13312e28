"""The ghost check of ``bench_qc.py``, audited cell by cell.

Each checked cell's nucleus edge ratio is recomputed as ``scope match`` computes it, and the
truth says whether the detection is a WBC and whether another check flags it too.
"""

from __future__ import annotations

import numpy as np
from qc_scoring import Tally

from acquisition.vocabulary import QcFlag


def audit_ghosts(seed: int, fu, fs, ds, flags: list[set], no_wbc: set[int]) -> list[tuple]:
    """Each checked cell's nucleus edge ratio, whether it is a WBC, and whether any check
    other than the ghost check flags it — recomputed as ``scope match`` computes them."""
    from registration.crops import cut
    from registration.qc import QcOptions, blue_speck_cells, image_noise, one_pass_objects
    from registration.segment import background_colour, segment_wbcs

    cells, c, p = ds.cells, ds.crop_size, fs.pixel_size_um
    bf = fu.brightfield_index()
    opt = QcOptions()
    rows, seen = [], {}
    for k in range(len(cells)):
        if QcFlag.NEAR_EDGE in flags[k]:
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
        labels = cut(seg.labels, x0, y0, c)
        found = one_pass_objects(
            ds.targets[k],
            ds.inputs[k, bf],
            cut(seg.cell_labels, x0, y0, c) > 0,
            labels > 0,
            own_nucleus=(labels == own) if own else None,
            target_background=bg_s,
            input_background=bg_u,
            input_noise=noise,
            pixel_size_um=p,
            options=opt,
        )
        others = (flags[k] - {QcFlag.TARGET_ONLY_COLOR}) or found.target_only
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
