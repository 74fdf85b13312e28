"""Single-LED images checked against their neighbours: one LED up the arm, the ring, the
other exposure (``pls_misaligned`` where a channel has trusted neighbours).

:func:`channel_pairs` picks the pairs, :class:`PairMeasurer` measures their offsets as a
field's stack is read, and :func:`misaligned_pairs` decides over all fields of a slide.
"""

from __future__ import annotations

import numpy as np

from acquisition.vocabulary import ChannelKind
from registration.channel_alignment import halves_agree
from registration.correlate import match_peak


def channel_pairs(channels: np.ndarray) -> np.ndarray:
    """``(P, 2)`` channel indices of single-LED images that must show the field in place.

    An oblique or darkfield image is not a shifted brightfield image: relief casts shadows
    that invert through focus and edges glow on one side, so its offset against the
    brightfield image is ambiguous by a few pixels. Two LEDs neighbouring in one arm (same
    azimuth, adjacent angles, same kind and exposure level) light the sample from nearly the
    same direction, so their images agree almost pixel for pixel; so do the exposures of one
    LED. Pairs: each channel with the next angle up its arm and with the other exposures of
    its LED; a channel left without a partner is paired with its nearest neighbour on its
    ring (same angle, kind and level).
    """
    kind = np.asarray(channels["kind"]).astype(str)
    leds = np.asarray(channels["leds"]).astype(str)
    level = np.asarray(channels["exposure_level"]).astype(str)
    th = np.asarray(channels["theta_deg"], dtype=np.float64)
    ph = np.asarray(channels["phi_deg"], dtype=np.float64)
    single = np.isin(kind, (ChannelKind.PLS, ChannelKind.DARKFIELD)) & (np.char.find(leds, ",") < 0)
    single &= np.isfinite(th) & np.isfinite(ph)
    idx = np.flatnonzero(single)
    pairs: set[tuple[int, int]] = set()

    def dphi(a: int, others: np.ndarray) -> np.ndarray:
        return np.abs((ph[others] - ph[a] + 180.0) % 360.0 - 180.0)

    for a in idx:
        same = idx[(kind[idx] == kind[a]) & (level[idx] == level[a]) & (leds[idx] != leds[a])]
        pairs |= {(min(a, b), max(a, b)) for b in idx if b != a and leds[b] == leds[a]}
        arm = same[(dphi(a, same) < 1.0) & (th[same] > th[a] + 0.5)]
        if len(arm):
            nxt = arm[np.isclose(th[arm], th[arm].min(), atol=0.5)]
            pairs |= {(min(a, b), max(a, b)) for b in nxt}
    for a in idx:
        same = idx[(kind[idx] == kind[a]) & (level[idx] == level[a]) & (leds[idx] != leds[a])]
        ring = same[np.abs(th[same] - th[a]) < 0.5]
        if len(ring):
            d = dphi(a, ring)
            pairs |= {(min(a, int(b)), max(a, int(b))) for b in ring[np.isclose(d, d.min())]}
    return np.asarray(sorted((int(a), int(b)) for a, b in pairs), dtype=np.int64).reshape(-1, 2)


def same_direction_pairs(channels: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(P,) bool``: pairs of one LED or of one arm (same azimuth), whose images coincide.

    Ring pairs (different azimuths) have systematic offsets of up to ~15 px (relief and glow
    fall on different sides), learnt from the slide's fields; pairs along one direction
    agree within ~0.5 px, so they can be judged even in a scan of one or two fields.
    """
    ph = np.asarray(channels["phi_deg"], dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    d = np.abs((ph[pairs[:, 0]] - ph[pairs[:, 1]] + 180.0) % 360.0 - 180.0)
    return np.asarray(d < 1.0)


def pair_offset(a: np.ndarray, b: np.ndarray, *, search_px: int = 16) -> tuple[np.ndarray, float]:
    """``((dx, dy), score)``: where ``b``'s content sits against ``a``'s (grey regions).

    Both are blurred grey images of the same region (:meth:`ChannelAligner.grey`); the
    score is the normalised correlation peak (NaN offsets when ``b`` is flat). When the two
    halves of the region disagree on the offset (:func:`halves_agree`) the images do not
    differ by a shift — a glitch moves a whole image — but by their content (a 10° and an
    18° image of a defocused field: the correlation splits into near-equal peaks a few
    pixels apart), so the pair cannot judge this field: offsets and score are NaN.
    """
    r = int(search_px)
    if min(a.shape) <= 2 * r + 8:
        return np.full(2, np.nan), float("nan")
    tpl = b[r:-r, r:-r]
    if float(tpl.std()) == 0.0 or float(a.std()) == 0.0:
        return np.full(2, np.nan), 0.0
    p = match_peak(a, tpl)
    if not halves_agree(a, b, search_px=r):
        return np.full(2, np.nan), float("nan")
    return np.array([r - p.x, r - p.y]), p.score


class PairMeasurer:
    """Measures :func:`pair_offset` of every pair as the stack's images arrive.

    Feed each paired channel's grey region once (:meth:`add`, in any order); a pair is
    measured as soon as both of its images are in, and an image is released once all its
    pairs are measured, so a field's stack is never held whole.
    """

    def __init__(self, pairs: np.ndarray, *, search_px: int = 16):
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.search = int(search_px)
        self.offsets = np.full((len(self.pairs), 2), np.nan)
        self.scores = np.full(len(self.pairs), np.nan)
        self._pending: dict[int, set[int]] = {}
        for p, (a, b) in enumerate(self.pairs):
            self._pending.setdefault(int(a), set()).add(p)
            self._pending.setdefault(int(b), set()).add(p)
        self._greys: dict[int, np.ndarray] = {}

    def wants(self, channel: int) -> bool:
        return int(channel) in self._pending

    @property
    def held(self) -> int:
        """How many grey images are held, waiting for a partner."""
        return len(self._greys)

    def add(self, channel: int, grey: np.ndarray) -> None:
        c = int(channel)
        if c not in self._pending:
            return
        self._greys[c] = grey
        for p in sorted(self._pending[c]):
            a, b = (int(x) for x in self.pairs[p])
            if a in self._greys and b in self._greys:
                self.offsets[p], self.scores[p] = pair_offset(
                    self._greys[a], self._greys[b], search_px=self.search
                )
                for x in (a, b):
                    self._pending[x].discard(p)
                    if not self._pending[x]:
                        self._greys.pop(x, None)


def misaligned_pairs(
    offsets: np.ndarray,
    scores: np.ndarray,
    pairs: np.ndarray,
    n_channels: int,
    *,
    tolerance_px: float = 1.5,
    min_score: float = 0.3,
    same_direction: np.ndarray | None = None,
    max_tolerance_px: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Which (field, channel) images moved against their neighbours.

    Parameters
    ----------
    offsets
        ``(F, P, 2)`` offsets (px) of each pair of :func:`channel_pairs` per field.
    scores
        ``(F, P)`` their correlation peaks.
    pairs
        ``(P, 2)`` channel indices.
    same_direction
        ``(P,) bool`` (:func:`same_direction_pairs`): with fewer than three fields only these
        pairs are judged, against a zero offset. All pairs when omitted.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(F, n_channels) bool`` misaligned images and ``(n_channels,) bool`` channels this
        check can judge. A pair is trusted when its correlation (median over fields) reaches
        ``min_score`` — neighbours that look too different (a 10° and an 18° LED near the
        objective's NA) correlate weakly and are left out. A pair's expected offset is its
        median over fields (zero with fewer than three); it departs when it misses that by
        more than ``tolerance_px`` (for a noisy pair, by more than four times its median
        departure). A pair whose tolerance grew beyond ``max_tolerance_px`` (ring neighbours
        whose relief offsets wander from field to field) would miss a glitch of a few pixels,
        so it cannot vouch for a channel: it counts only in the fields where it departs, and
        a channel with no sharper pair is judged against brightfield instead. A channel is
        misaligned when more than half of its counted trusted pairs depart:
        a glitched image breaks all its pairs, its neighbours keep their other ones; a
        channel with one pair shares the blame with its partner (the field is flagged either
        way).
    """
    import warnings

    s = np.asarray(scores, dtype=np.float64)
    n_f = s.shape[0]
    out = np.zeros((n_f, n_channels), dtype=bool)
    judged = np.zeros(n_channels, dtype=bool)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs) or not n_f:
        return out, judged
    s = s.reshape(n_f, len(pairs))
    o = np.asarray(offsets, dtype=np.float64).reshape(n_f, len(pairs), 2)
    measured = np.isfinite(o).all(-1) & np.isfinite(s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs never measured: all NaN
        typical_score = np.nanmedian(np.where(measured, s, np.nan), axis=0)
        trusted = np.nan_to_num(typical_score) >= min_score
        if n_f < 3 and same_direction is not None:
            trusted &= np.asarray(same_direction, dtype=bool)
        valid = measured & trusted[None, :] & (s >= 0.5 * np.nan_to_num(typical_score)[None, :])
        expected = (
            np.nanmedian(np.where(valid[..., None], o, np.nan), axis=0)
            if n_f >= 3
            else np.zeros((len(pairs), 2))
        )
        res = np.linalg.norm(o - np.nan_to_num(expected)[None], axis=-1)
        tol = np.full((1, len(pairs)), float(tolerance_px))
        if n_f >= 3:
            # a noisy pair widens its own tolerance; the median ignores the rare glitch,
            # which an upper percentile of a few fields would not
            typical = np.nanmedian(np.where(valid, res, np.nan), axis=0)
            tol = np.maximum(tol, _PAIR_SPREAD_FACTOR * np.nan_to_num(typical)[None, :])
    bad = valid & (res > tol)
    # a pair so noisy that a glitch could hide in its tolerance cannot vouch for its
    # channels: it counts only when it departs
    sharp = tol[0] <= max(float(max_tolerance_px), float(tolerance_px))
    n_bad = np.zeros((n_f, n_channels))
    n_valid = np.zeros((n_f, n_channels))
    for p, (a, b) in enumerate(pairs):
        if not trusted[p]:
            continue
        if sharp[p]:
            judged[[a, b]] = True
        for c in (a, b):
            n_bad[:, c] += bad[:, p]
            n_valid[:, c] += valid[:, p] & (sharp[p] | bad[:, p])
    return (n_bad > 0) & (n_bad > n_valid / 2), judged


#: A pair departs beyond this multiple of its median residual over fields.
_PAIR_SPREAD_FACTOR = 4.0
