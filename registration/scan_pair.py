"""The two scans ``scope match`` pairs: opened, checked to belong together, described.

:func:`open_pair` refuses scans of the wrong pass, of different slides, positions, frame or
pixel sizes, or incomplete ones, each with a one-line :class:`MatchError`; :class:`ScanPair`
is what the per-field steps need to know about the pair (picklable, holds no open file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.vocabulary import Pass
from hardware_profiles.errors import ScopeError
from registration.scans import field_centres
from registration.slide_fit import PairGeometry


class MatchError(ScopeError):
    """The two scans cannot be matched (they do not belong together, or hold no cells)."""


@dataclass(frozen=True)
class ScanPair:
    """What the workers need to know about the two scans (picklable)."""

    unstained: str
    stained: str
    slide: str
    pixel_size_um: float
    width: int
    height: int
    n_fields: int
    bf_unstained: int
    bf_stained: int
    centres_unstained: np.ndarray
    centres_stained: np.ndarray

    @property
    def geometry(self) -> PairGeometry:
        return PairGeometry(
            self.width,
            self.height,
            self.pixel_size_um,
            self.centres_stained,
            self.centres_unstained,
        )


def open_pair(unstained: str | Path, stained: str | Path) -> tuple[ScanPair, Any, Any]:
    """Open and check two scans; returns the pair description and both (open) scan files.

    Raises
    ------
    MatchError
        When the files are of the wrong pass, different slides, different positions, frame
        sizes or pixel sizes, or incomplete.
    """
    from acquisition.scanfile import ScanFile

    u_path, s_path = Path(unstained), Path(stained)
    if u_path.resolve() == s_path.resolve():
        raise MatchError(f"the unstained and stained scans are the same file: {u_path}")
    u = ScanFile(u_path)
    try:
        s = ScanFile(s_path)
    except BaseException:
        u.close()
        raise
    try:
        pair = _check_pair(u, s)
    except BaseException:
        u.close()
        s.close()
        raise
    return pair, u, s


def _check_pair(u: Any, s: Any) -> ScanPair:
    if u.pass_ != Pass.UNSTAINED:
        hint = " (give the unstained scan first)" if u.pass_ == Pass.STAINED else ""
        raise MatchError(f"{u.path} is a {u.pass_!r} scan, not an unstained one{hint}")
    if s.pass_ != Pass.STAINED:
        raise MatchError(f"{s.path} is a {s.pass_!r} scan, not a stained one")
    if u.slide != s.slide:
        raise MatchError(
            f"the scans are of different slides: {u.path.name} is slide {u.slide!r}, "
            f"{s.path.name} is slide {s.slide!r}"
        )
    for scan in (u, s):
        scan.verify()  # a done field whose file is missing or damaged: refuse, never black crops
        if not scan.complete:
            raise MatchError(
                f"{scan.path} is incomplete ({len(scan.done)} of {scan.n_positions} fields "
                "done); finish it with `scope scan ... --resume` first"
            )
    if u.n_positions != s.n_positions:
        raise MatchError(
            f"the scans image different positions: {u.n_positions} fields in {u.path.name}, "
            f"{s.n_positions} in {s.path.name}"
        )
    uxy = np.stack([u.positions["x_um"], u.positions["y_um"]], axis=1)
    sxy = np.stack([s.positions["x_um"], s.positions["y_um"]], axis=1)
    off = np.abs(uxy - sxy).max()
    if off > 1.0:
        raise MatchError(
            f"the scans image different positions (up to {off:.1f} µm apart); scan the "
            "stained pass at the unstained pass's positions"
        )
    if abs(u.pixel_size_um - s.pixel_size_um) > 1e-9:
        raise MatchError(
            f"the scans have different pixel sizes ({u.pixel_size_um} and {s.pixel_size_um} "
            "µm): both passes must use the scan objective"
        )
    if u.frame_shape != s.frame_shape:
        raise MatchError(
            f"the scans have different frame sizes ({u.frame_shape[1]}x{u.frame_shape[0]} and "
            f"{s.frame_shape[1]}x{s.frame_shape[0]})"
        )
    bf_u, bf_s = u.brightfield_index(), s.brightfield_index()
    h, w = u.frame_shape
    return ScanPair(
        unstained=str(u.path.resolve()),
        stained=str(s.path.resolve()),
        slide=u.slide,
        pixel_size_um=u.pixel_size_um,
        width=int(w),
        height=int(h),
        n_fields=u.n_positions,
        bf_unstained=bf_u,
        bf_stained=bf_s,
        centres_unstained=field_centres(u, bf_u),
        centres_stained=field_centres(s, bf_s),
    )
