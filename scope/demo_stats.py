"""The demo's model comparison: paired per-cell SSIM, a bootstrap interval, per cell type.

Both models are evaluated on the same test cells, so the comparison is paired: the mean of
the per-cell differences (PLS − brightfield) with a percentile bootstrap interval over test
cells. The difference is called significant only when the 95 % interval excludes zero.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

N_BOOTSTRAP = 4000
MIN_CELLS_PER_TYPE = 3


@dataclass(frozen=True)
class Comparison:
    """PLS against brightfield on a set of test cells (SSIM, paired)."""

    label: str
    n: int
    pls: float
    brightfield: float
    diff: float
    lo: float
    hi: float

    @property
    def significant(self) -> bool:
        return self.n >= MIN_CELLS_PER_TYPE and (self.lo > 0 or self.hi < 0)

    def verdict(self) -> str:
        if self.n < MIN_CELLS_PER_TYPE:
            return "too few cells to compare"
        if not self.significant:
            return "no significant difference"
        return "PLS better" if self.diff > 0 else "brightfield better"


@dataclass
class DemoComparison:
    overall: Comparison
    by_type: list[Comparison] = field(default_factory=list)
    types: dict[int, str] = field(default_factory=dict)  # dataset row -> WBC type


def read_cells(path: Path) -> dict[int, dict[str, str]]:
    """An evaluation's ``cells.csv`` keyed by dataset row."""
    with path.open(encoding="utf-8", newline="") as fh:
        return {int(r["row"]): r for r in csv.DictReader(fh)}


def bootstrap_interval(
    diff: np.ndarray, *, n: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diff`` (resampling cells)."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def compare(label: str, pls: np.ndarray, bf: np.ndarray, *, seed: int = 0) -> Comparison:
    d = np.asarray(pls, np.float64) - np.asarray(bf, np.float64)
    lo, hi = bootstrap_interval(d, seed=seed)
    return Comparison(
        label,
        len(d),
        float(np.mean(pls)) if len(d) else float("nan"),
        float(np.mean(bf)) if len(d) else float("nan"),
        float(d.mean()) if len(d) else float("nan"),
        lo,
        hi,
    )


def compare_runs(
    pls_cells: Path, bf_cells: Path, stained_scans: dict[str, Path] | None = None
) -> DemoComparison:
    """Paired comparison of two evaluations of the same split, overall and per WBC type.

    ``stained_scans`` (slide → stained scan) supplies the simulator's truth types; without
    it (or for real scans, which carry none) only the overall comparison is made.
    """
    a, b = read_cells(pls_cells), read_cells(bf_cells)
    rows = sorted(set(a) & set(b))
    ssim_a = np.array([float(a[r]["ssim"]) for r in rows])
    ssim_b = np.array([float(b[r]["ssim"]) for r in rows])
    result = DemoComparison(compare("all test cells", ssim_a, ssim_b))
    if not stained_scans or not rows:
        return result
    from acquisition.vocabulary import CELL_TYPES
    from registration.coarse import RegistrationError
    from registration.truth import truth_types

    try:
        types = truth_types(
            {k: str(v) for k, v in stained_scans.items()},
            np.array([a[r]["slide"] for r in rows]),
            np.array([float(a[r]["stained_x_um"]) for r in rows]),
            np.array([float(a[r]["stained_y_um"]) for r in rows]),
        )
    except RegistrationError:
        return result
    result.types = {r: str(t) for r, t in zip(rows, types, strict=True)}
    for t in (*CELL_TYPES, ""):
        sel = types == t
        if sel.any():
            result.by_type.append(compare(t or "unknown", ssim_a[sel], ssim_b[sel]))
    return result
