"""How ``bench_qc.py`` scores the quality flags of one matched slide against the truth.

PLS glitches are scored per field and per cell from the simulator's fault list; one-pass
objects per crop, from what they change in the image: each pass is scanned a second time
with the one-pass objects switched off (see ``bench_qc.py``), and a crop holds a *visible*
object where enough of it changes by ``visible_dn`` or more, a *faint* one where it changes
by 4 DN or more, less than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from acquisition.vocabulary import QcFlag

#: A change of at least this many DN counts as a faint object.
FAINT_DN = 4


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


def changed(a: np.ndarray, b: np.ndarray, *, dn: float) -> np.ndarray:
    """``(h, w) bool``: pixels where any colour differs by at least ``dn``."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) >= dn).any(-1)


def score_pls(fu, cells: np.ndarray, flags: list[set], scores: Scores) -> np.ndarray:
    """Tally ``pls_misaligned`` against the planted PLS shifts of the unstained scan ``fu``;
    returns ``(cells,) bool``: whether each cell's field holds one."""
    channels_leds = {
        str(r) for r in fu.channels["leds"] if "," not in str(r)
    }  # single-LED channels of the stack
    cxy = np.stack([fu.positions["x_um"], fu.positions["y_um"]], axis=1)
    glitched = np.zeros(fu.n_positions, dtype=bool)
    for f in fu.truth()["faults"]:
        if str(f["kind"]) == "pls_shift" and str(f["leds"]) in channels_leds:
            glitched[int(np.argmin(np.linalg.norm(cxy - [f["x_um"], f["y_um"]], axis=1)))] = True
    pls = np.array([QcFlag.PLS_MISALIGNED in f for f in flags], dtype=bool)
    field_flag = np.zeros(fu.n_positions, dtype=bool)
    for k, f in enumerate(cells["position"]):
        field_flag[int(f)] |= pls[k]
    has_cells = np.isin(np.arange(fu.n_positions), cells["position"])
    scores.pls_fields.add(glitched & has_cells, field_flag)
    scores.pls_clean_fields.add(~glitched & has_cells, field_flag)
    in_glitch = glitched[cells["position"]]
    scores.pls_cells.add(in_glitch, pls)
    scores.pls_clean_cells.add(~in_glitch, pls)
    return in_glitch


class FrameCache:
    """The last few frames read, by (scan, field, channel)."""

    def __init__(self) -> None:
        self.frames: dict = {}

    def __call__(self, scan, i: int, ch: int) -> np.ndarray:
        key = (id(scan), i, ch)
        if key not in self.frames:
            if len(self.frames) > 8:
                self.frames.clear()
            self.frames[key] = scan.image(i, ch)
        return self.frames[key]


def object_in_crop(
    faulty: np.ndarray, clean: np.ndarray, *, visible_dn: float, min_px: float
) -> tuple[bool, bool]:
    """``(visible, faint)``: whether a one-pass object shows in a crop (against its clean twin)."""
    visible = changed(faulty, clean, dn=visible_dn).sum() >= min_px
    faint = (changed(faulty, clean, dn=FAINT_DN).sum() >= min_px) & ~visible
    return visible, faint


def score_crops(scans: dict, ds, flags: list[set], in_glitch: np.ndarray, *, seed: int,
                visible_dn: float, min_px: float, scores: Scores, pairs: list) -> None:  # fmt: skip
    """Tally ``target_only_color`` and ``input_only_object`` on every crop away from the frame
    edge, by whether a one-pass object shows in it (``scans``: ``{faulty,clean}_{un,st}``)."""
    from registration.crops import cut

    cells, c = ds.cells, ds.crop_size
    fu, fs, cu, cs = (scans[k] for k in ("faulty_un", "faulty_st", "clean_un", "clean_st"))
    bf = fu.brightfield_index()
    frame = FrameCache()
    for k in range(len(cells)):
        fl = flags[k]
        if QcFlag.NEAR_EDGE in fl:
            continue
        scores.checked += 1
        i = int(cells["position"][k])
        tx, ty = (round(float(cells[n][k])) - c // 2 for n in ("stained_x_px", "stained_y_px"))
        ux, uy = (round(float(cells[n][k])) - c // 2 for n in ("x_px", "y_px"))
        t_vis, t_faint = object_in_crop(
            cut(frame(fs, i, 0), tx, ty, c), cut(frame(cs, i, 0), tx, ty, c),
            visible_dn=visible_dn, min_px=min_px,
        )  # fmt: skip
        u_vis, u_faint = object_in_crop(
            cut(frame(fu, i, bf), ux, uy, c), cut(frame(cu, i, 0), ux, uy, c),
            visible_dn=visible_dn, min_px=min_px,
        )  # fmt: skip
        _tally(scores, QcFlag.TARGET_ONLY_COLOR in fl, t_vis, t_faint, target=True)
        _tally(scores, QcFlag.INPUT_ONLY_OBJECT in fl, u_vis, u_faint, target=False)
        if not (t_vis or t_faint or u_vis or u_faint or in_glitch[k]):
            scores.clean_cells.add(np.array([True]), np.array([bool(fl)]))
        pairs.append((seed, k, int(t_vis), int(u_vis), ",".join(sorted(fl))))


def _tally(scores: Scores, flagged: bool, visible: bool, faint: bool, *, target: bool) -> None:
    """One crop's flag, counted under what its pass holds (visible, faint or nothing)."""
    if visible:
        tally = scores.artifact_visible if target else scores.dirt_visible
    elif faint:
        tally = scores.artifact_faint if target else scores.dirt_faint
    else:
        tally = scores.clean_target if target else scores.clean_input
    tally.add(np.array([True]), np.array([flagged]))
