"""Quality checks of matched cells: every problem is recorded in ``qc_flags``, never dropped.

The thesis's error analysis (Table 4.3) found, among the worst test predictions, PLS images
misaligned with the brightfield image (a hardware glitch), stain artifacts present only in the
target, dirt present only in the input, and true mismatches. The checks here catch them:

``pls_misaligned``
    A single-LED image of the field is shifted against the rest of its stack. Each image is
    compared with its neighbours (:func:`channel_pairs`: the next LED up its arm, the
    nearest LEDs on its ring, the other exposure of its LED), whose images agree almost pixel
    for pixel; a pair's usual offset is its median over fields, and an image is misaligned
    when most of its trusted pairs depart from theirs (:func:`misaligned_pairs`). Images
    without a trusted neighbour are compared with the brightfield image instead (Laplacians
    for brightfield-like channels, intensity against edges for darkfield ones) under a model
    of per-channel systematic offsets and per-ring radial/tangential shifts
    (:func:`misaligned_channels`). All cells of such a field are flagged.
``low_ssim``
    The fine match is unreliable: SSIM below ``min_ssim`` or the peak on the border of the
    search window.
``fine_residual``
    The fine match lies more than ``max_fine_residual_px`` from the slide's rigid motion
    refitted from all fine matches.
``target_only_color``
    Dye in the target where the input shows no object at all (stain precipitate, dirt
    picked up during staining), dark dye specks off the cells or — compared with the whole
    slide — much bluer than the cell's nucleus (:func:`blue_speck_cells`), or a detection
    whose nucleus outline the input does not show (:func:`ghost_cells`).
``input_only_object``
    A dark object in the input that the target lacks in some colour (dirt blown away
    before staining).
``saturated_target``
    More than ``max_saturated_fraction`` of the target crop's pixels are clipped at 255.
``coarse_outlier``
    The cell's field disagreed with the slide's rigid motion (stage slip, wrong match).
``near_edge``
    The crop or its search window left a frame; the crop is padded with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acquisition.vocabulary import QC_FLAGS
from registration.correlate import correlation, match_peak, parabola_peak

FLAG_ORDER = QC_FLAGS  # the order flags are written in


@dataclass(frozen=True)
class QcOptions:
    """Thresholds of the quality checks (see the module docstring)."""

    min_ssim: float = 0.2
    max_fine_residual_px: float = 1.5
    pls_tolerance_px: float = 2.0
    darkfield_tolerance_px: float = 2.5
    pair_tolerance_px: float = 1.5
    pair_max_tolerance_px: float = 3.0
    pair_min_score: float = 0.3
    pair_region_px: int = 512
    pls_tolerance_single_px: float = 4.5
    pls_min_score: float = 0.05
    pls_search_px: int = 16
    pls_region_px: int = 768
    input_structure_min: float = 3.0
    one_pass_min_area_um2: float = 0.5
    speck_contrast_dn: float = 25.0
    cell_speck_contrast_dn: float = 30.0
    speck_gap_floor: float = 18.0
    speck_gap_spread: float = 5.0
    speck_min_area_um2: float = 0.15
    speck_explained_od: float = 0.3
    ghost_fraction: float = 0.0  # off: see ghost_cells
    ghost_floor: float = 1.1
    dirt_od_min: float = 0.15
    max_saturated_fraction: float = 0.02


def join_flags(flags: set[str] | list[str]) -> str:
    """Comma-separated flags in a fixed order (unknown ones last, sorted)."""
    flags = set(flags)
    known = [f for f in FLAG_ORDER if f in flags]
    return ",".join(known + sorted(flags - set(FLAG_ORDER)))


# -- PLS / brightfield alignment ------------------------------------------------------------------
def _grey32(image: np.ndarray) -> np.ndarray:
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), 1.0)


def _gradient(grey: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def central_region(shape_hw: tuple[int, int], size: int) -> tuple[slice, slice]:
    h, w = shape_hw
    sh, sw = min(h, size), min(w, size)
    y0, x0 = (h - sh) // 2, (w - sw) // 2
    return slice(y0, y0 + sh), slice(x0, x0 + sw)


def _laplacian(grey: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Laplacian(grey, cv2.CV_32F, ksize=5)


class ChannelAligner:
    """Measures each channel's offset against the brightfield image of one field.

    Create it with the brightfield frame, then call :meth:`offset` with every other channel.
    Brightfield-like (``pls``) channels are compared by their Laplacians, which oblique
    relief barely moves; darkfield channels, where edges shine, by their intensity against
    the brightfield's gradient magnitude. The comparison uses a central region
    (``region_px``) and a ``±search_px`` search.
    """

    def __init__(self, brightfield: np.ndarray, *, region_px: int = 768, search_px: int = 16):
        self.region = central_region(brightfield.shape[:2], region_px)
        self.search = int(search_px)
        grey = self.grey(brightfield)
        self.references = {"pls": _laplacian(grey), "darkfield": _gradient(grey)}

    def grey(self, image: np.ndarray) -> np.ndarray:
        """The blurred grey central region of a frame, as the comparisons use it."""
        return _grey32(image[self.region])

    def offset(
        self, image: np.ndarray, kind: str, *, grey: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Where the channel's content sits against the brightfield image.

        ``grey`` is :meth:`grey` of ``image`` when the caller has it already.

        Returns ``(candidates, score)``: ``candidates`` is ``(2, 2)`` — the best offset
        ``(dx, dy)`` and, when the correlation has a second peak nearly as high (oblique
        relief makes some channels bistable), that one too (else NaN); ``score`` is the best
        peak's correlation.
        """
        out = np.full((2, 2), np.nan)
        g = self.grey(image) if grey is None else grey
        dark = kind == "darkfield"
        probe = g if dark else _laplacian(g)
        reference = self.references["darkfield" if dark else "pls"]
        r = self.search
        if min(probe.shape) <= 2 * r + 8:
            return out, float("nan")
        tpl = probe[r:-r, r:-r]
        if float(tpl.std()) == 0.0:
            return out, 0.0
        c = correlation(reference, tpl)
        iy, ix, ox, oy = parabola_peak(c)
        best = float(c[iy, ix])
        out[0] = (r - ix - ox, r - iy - oy)
        masked = c.copy()
        masked[max(0, iy - 2) : iy + 3, max(0, ix - 2) : ix + 3] = -2.0  # below any correlation
        jy, jx, px, py = parabola_peak(masked)
        if masked[jy, jx] >= SECOND_PEAK_FRACTION * best:
            # keep it only if it is a peak of its own, not the shoulder of the first
            local = c[max(0, jy - 1) : jy + 2, max(0, jx - 1) : jx + 2]
            if c[jy, jx] >= local.max():
                out[1] = (r - jx - px, r - jy - py)
        if out[1, 0] != out[1, 0] and not self._halves_agree(probe, reference, out[0]):
            # A glitch shifts the whole image: both halves of the frame move alike. When they
            # disagree the peak is an artefact of the content (dim, one-sided darkfield
            # glow), so this measurement cannot judge the channel either way.
            return np.full((2, 2), np.nan), float("nan")
        return out, best

    def _halves_agree(self, probe: np.ndarray, reference: np.ndarray, offset: np.ndarray) -> bool:
        r = self.search
        w = probe.shape[1]
        found = []
        for sl in (slice(0, w // 2 + r), slice(w // 2 - r, w)):
            p, ref = probe[:, sl], reference[:, sl]
            if min(p.shape) <= 2 * r + 8:
                return True
            tpl = p[r:-r, r:-r]
            if float(tpl.std()) == 0.0:
                return True
            p = match_peak(ref, tpl)
            found.append((r - p.x, r - p.y))
        a, b = np.asarray(found)
        return bool(np.hypot(*(a - b)) <= HALVES_AGREE_PX)


#: The two halves of a frame must agree this closely (px) for an offset to be trusted.
HALVES_AGREE_PX = 1.5

#: A second correlation peak at least this fraction of the first is a candidate offset too.
SECOND_PEAK_FRACTION = 0.85


def misaligned_channels(
    offsets: np.ndarray,
    scores: np.ndarray,
    theta_deg: np.ndarray,
    phi_deg: np.ndarray,
    *,
    tolerance_px: float | np.ndarray = 2.0,
    tolerance_single_px: float = 4.5,
    min_score: float = 0.05,
) -> np.ndarray:
    """Which (field, channel) images are shifted against their field's brightfield.

    Parameters
    ----------
    offsets
        ``(F, C, K, 2)`` candidate offsets (px) per field and channel, best first (see
        :meth:`ChannelAligner.offset`); NaN where absent. ``(F, C, 2)`` is one candidate.
    scores
        ``(F, C)`` correlation peaks of the measurements.
    theta_deg, phi_deg
        ``(C,)`` LED angles of each channel (NaN for multi-LED channels).
    tolerance_px
        Largest residual (px) of an aligned image: one value, or ``(C,)`` per channel.

    Returns
    -------
    numpy.ndarray
        ``(F, C) bool``. With at least three fields, the expected offset of channel ``c`` in
        field ``f`` is ``e_c + a_fr · r̂_c + b_fr · t̂_c``: the channel's systematic offset
        (oblique relief, one-sided scattering; its median over fields) plus, for its ring
        ``r`` of LEDs at one angle, a radial and a tangential shift common to the ring in that
        field (defocus parallax, relief that inverts through focus), each the median over the
        ring so one glitched LED cannot pull it. The candidate offset nearest the model
        counts. With fewer fields, offsets are compared with zero at ``tolerance_single_px``.
    """
    o = np.asarray(offsets, dtype=np.float64)
    if o.ndim == 3:
        o = o[:, :, None, :]
    s = np.asarray(scores, dtype=np.float64)
    th = np.asarray(theta_deg, dtype=np.float64)
    ph = np.radians(np.asarray(phi_deg, dtype=np.float64))
    n_f, n_c = o.shape[:2]
    tol = np.broadcast_to(np.asarray(tolerance_px, dtype=np.float64), (n_c,))[None, :]
    valid = np.isfinite(o[:, :, 0]).all(-1) & np.isfinite(s) & (s >= min_score)
    out = np.zeros((n_f, n_c), dtype=bool)
    if not valid.any():
        return out
    if n_f < 3:
        dist = np.linalg.norm(o, axis=-1)
        nearest = np.min(np.where(np.isfinite(dist), dist, np.inf), axis=-1)
        out[valid] = nearest[valid] > tolerance_single_px
        return out
    radial = np.stack([np.cos(ph), np.sin(ph)], axis=1)
    tangential = np.stack([-np.sin(ph), np.cos(ph)], axis=1)
    radial[~np.isfinite(radial)] = 0.0
    tangential[~np.isfinite(tangential)] = 0.0
    ring_of = np.full(n_c, -1)
    rings: list[np.ndarray] = []
    finite_th = np.isfinite(th)
    for t in np.unique(np.round(th[finite_th])):
        members = np.flatnonzero(finite_th & (np.round(th) == t))
        if len(set(np.round(np.degrees(ph[members])))) >= 3:  # at least three azimuths
            ring_of[members] = len(rings)
            rings.append(members)
    obs = o[:, :, 0].copy()
    ring_shift = np.zeros((n_f, n_c, 2))
    keep = valid.copy()
    e = np.zeros((n_c, 2))
    res = np.zeros((n_f, n_c))
    for _ in range(8):
        for c in range(n_c):
            sel = keep[:, c]
            e[c] = np.median(obs[sel, c] - ring_shift[sel, c], axis=0) if sel.any() else 0.0
        ring_shift[:] = 0.0
        for f in range(n_f):
            d = obs[f] - e
            for members in rings:
                m = members[keep[f, members]]
                if len(m) < 3:
                    continue
                a = np.median((d[m] * radial[m]).sum(-1))
                b = np.median((d[m] * tangential[m]).sum(-1))
                ring_shift[f, members] = a * radial[members] + b * tangential[members]
        model = e[None] + ring_shift
        # the candidate nearest the model (a bistable channel may have flipped)
        dist = np.linalg.norm(o - model[:, :, None, :], axis=-1)
        dist = np.where(np.isfinite(dist), dist, np.inf)
        pick = np.argmin(dist, axis=-1)
        obs = np.take_along_axis(o, pick[..., None, None], axis=2)[:, :, 0]
        res = np.take_along_axis(dist, pick[..., None], axis=2)[..., 0]
        new = valid & (res <= tol)
        if np.array_equal(new, keep):
            break
        keep = new
    if n_f >= _MIN_FIELDS_FOR_NOISE:
        tol = np.maximum(tol, _channel_noise_tolerance(res, valid))
    out[valid] = (res > tol)[valid]
    return out


# -- darkfield pairs ------------------------------------------------------------------------------
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
    single = np.isin(kind, ("pls", "darkfield")) & (np.char.find(leds, ",") < 0)
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
    score is the normalised correlation peak (NaN offsets when ``b`` is flat).
    """
    r = int(search_px)
    if min(a.shape) <= 2 * r + 8:
        return np.full(2, np.nan), float("nan")
    tpl = b[r:-r, r:-r]
    if float(tpl.std()) == 0.0 or float(a.std()) == 0.0:
        return np.full(2, np.nan), 0.0
    p = match_peak(a, tpl)
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

#: With this many fields a channel's own measurement spread can be estimated.
_MIN_FIELDS_FOR_NOISE = 6
#: A glitch lies beyond this multiple of the 80th percentile of the channel's residuals.
_SPREAD_FACTOR = 1.6


def _channel_noise_tolerance(res: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(1, C)`` tolerances from each channel's own residual spread across fields.

    Offsets of dim, high-angle darkfield images are measured less precisely: edges glow on
    one side, the correlation is broad, and on small frames some channels flip between two
    offsets 2–4 px apart in fields with no glitch at all. A glitch is rare (a few fields in a
    hundred) and far outside the channel's usual spread, so the tolerance grows with the
    80th percentile of the channel's residuals, which a rare glitch does not move.
    """
    import warnings

    res = np.where(valid & np.isfinite(res), res, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # channels never measured: all NaN
        spread = np.nanpercentile(res, 80, axis=0)
    return np.nan_to_num(_SPREAD_FACTOR * spread, nan=0.0)[None, :]


# -- crop checks ----------------------------------------------------------------------------------
def optical_density(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` float32 optical density ``log10(background / I)`` (negative: brighter)."""
    img = np.maximum(np.asarray(image, dtype=np.float32), 1.0)
    return np.log10(np.maximum(np.asarray(background, dtype=np.float32), 1.0) / img)


def local_contrast(image: np.ndarray, *, noise: float, window: int = 5) -> np.ndarray:
    """Local standard deviation of the grey image in noise units: ``(h, w)`` float32.

    Empty glass and flat interiors read about 1; edges and textured objects far more.
    """
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    m = cv2.blur(g, (window, window))
    v = np.maximum(cv2.blur(g * g, (window, window)) - m * m, 0.0)
    return np.sqrt(v) / max(float(noise), 1e-3)


def image_noise(image: np.ndarray) -> float:
    """A robust noise level of a frame's grey image (MAD of a second difference), DN."""
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    d = g[1:-1, 1:-1] * 2 - g[:-2, 1:-1] - g[2:, 1:-1]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(6) + 1e-3)


def dye_mask(target: np.ndarray) -> np.ndarray:
    """Blue-purple dye (azure, methylene blue, precipitate) pixels of a stained crop."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(target), cv2.COLOR_RGB2HSV)
    return cv2.inRange(
        hsv, np.array([95, 70, 0], np.uint8), np.array([155, 255, 225], np.uint8)
    ).astype(bool)


def _blobs(mask: np.ndarray, min_px: float) -> np.ndarray:
    import cv2

    _, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[lab]


@dataclass(frozen=True)
class OnePass:
    """What :func:`one_pass_objects` found in one cell's crops."""

    target_only: bool  # dye the input does not explain (flag at once)
    input_only: bool  # a dark object the target lacks (flag at once)
    edge_ratio: float  # nucleus outline strength in the input (see ghost_cells)
    speck_gap: float  # hue units the bluest dark speck on the cell is bluer than its nucleus


def _touching(mask: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` whose connected blob overlaps ``region``."""
    import cv2

    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    hit = np.zeros(n, dtype=bool)
    hit[np.unique(lab[region & mask])] = True
    hit[0] = False
    return hit[lab]


def one_pass_objects(
    target: np.ndarray,
    input_brightfield: np.ndarray,
    cell_mask: np.ndarray,
    nucleus_mask: np.ndarray,
    *,
    own_nucleus: np.ndarray | None = None,
    target_background: np.ndarray,
    input_background: np.ndarray,
    input_noise: float,
    pixel_size_um: float,
    options: QcOptions,
) -> OnePass:
    """Objects in one pass only, for one cell's crops (see :class:`OnePass`).

    Parameters
    ----------
    target
        ``(h, w, 3) uint8`` stained crop.
    input_brightfield
        ``(h, w, 3) uint8`` unstained brightfield crop at the matched place.
    cell_mask, nucleus_mask
        ``(h, w) bool``: the detected WBCs (bodies and nuclei) in the stained crop.
    own_nucleus
        ``(h, w) bool``: the nucleus of the cell the crop is centred on.
    target_background, input_background
        ``(3,)`` background colours of the two fields.
    input_noise
        Noise level of the unstained brightfield frame (DN).

    Dye specks: blue-purple dye outside every detected WBC where the input is flat, or small
    dark dye specks beside a nucleus that no small feature of the input explains
    (precipitate). Input-only object: a dark object in the input much darker than anything
    at the same place in the target (dirt gone before staining). Nucleus edge ratio: the
    input's edge strength along the cell's nucleus outline over its median in the crop — a
    real nucleus shows its outline in the unstained image (phase relief), an artifact taken
    for a cell does not (:func:`ghost_cells` decides over a whole slide). NaN without a
    nucleus.
    """
    import cv2

    px2 = pixel_size_um**2
    min_px = options.one_pass_min_area_um2 / px2
    tol = max(1, round(1.0 / pixel_size_um))  # 1 µm of slack for small misregistration
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    contrast = local_contrast(input_brightfield, noise=input_noise)
    od_u = optical_density(input_brightfield, input_background).mean(-1)
    structured = (contrast >= options.input_structure_min) | (np.abs(od_u) >= 0.05)
    seen = cv2.dilate(structured.astype(np.uint8), kernel) > 0
    cells = cv2.dilate(cell_mask.astype(np.uint8), kernel) > 0
    dye = dye_mask(target)
    # dye where the input is flat, in blobs apart from every cell (pale cytoplasm that the
    # body mask missed, sky-blue in lymphocytes, touches its cell)
    loose = _blobs(dye & ~seen, min_px) & ~_touching(dye & ~seen, cells)
    specks = bool(loose.any())
    # precipitate: small dark dye specks where the input shows no dark spot (an object in
    # both passes). Granules make real cells' cytoplasm grainy, so specks count off the cell
    # bodies, or on a nucleus when clearly bluer than it (precipitate is azure-rich,
    # chromatin purple).
    r_speck = max(1, round(0.8 / pixel_size_um))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_speck + 1, 2 * r_speck + 1))
    g_t = cv2.cvtColor(np.ascontiguousarray(target), cv2.COLOR_RGB2GRAY)
    spot = cv2.morphologyEx(g_t, cv2.MORPH_BLACKHAT, disk)
    g_u = cv2.cvtColor(np.ascontiguousarray(input_brightfield), cv2.COLOR_RGB2GRAY)
    input_dark = cv2.morphologyEx(g_u, cv2.MORPH_BLACKHAT, disk) >= 4 * input_noise
    input_dark = cv2.dilate(input_dark.astype(np.uint8), kernel) > 0
    nuclei = nucleus_mask.astype(bool)
    ring = np.ones((3, 3), np.uint8)
    outside = ~(cv2.dilate(cell_mask.astype(np.uint8), ring) > 0)
    speck_px = max(2.0, options.speck_min_area_um2 / px2)
    off_cells = (spot >= options.speck_contrast_dn) & dye & outside & ~input_dark
    specks |= _blobs(off_cells, speck_px).any()
    # on a cell: how much bluer than the nucleus its bluest dark dye speck is (slide-level
    # outliers are flagged by blue_speck_cells). The input's relief cannot vouch for a speck
    # here: a cell's own edge, nucleus outline and granules put an input dark spot within
    # the 1 µm slack of 93-99 % of every cell body on the simulator, precipitate included.
    # Unstained cells are nearly transparent (input optical density under ~0.2), so only an
    # absorbing object in the input (dirt in both passes) explains a speck on a cell.
    gap = 0.0
    if nuclei.sum() >= min_px:
        hue = cv2.cvtColor(np.ascontiguousarray(target), cv2.COLOR_RGB2HSV)[..., 0]
        nucleus_hue = float(np.median(hue[nuclei]))
        absorber = (od_u >= options.speck_explained_od).astype(np.uint8)
        explained = cv2.dilate(absorber, kernel) > 0
        on_cells = (spot >= options.cell_speck_contrast_dn) & dye & ~explained
        on_cells &= nuclei | cell_mask.astype(bool)
        n, lab = cv2.connectedComponents(on_cells.astype(np.uint8), connectivity=8)
        k = int(speck_px)
        for label in range(1, n):
            h = hue[lab == label]
            if h.size >= k:
                gap = max(gap, nucleus_hue - float(np.median(np.sort(h)[:k])))
    ratio = float("nan")
    if own_nucleus is not None and own_nucleus.sum() >= min_px:
        grad = cv2.morphologyEx(g_u, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        band = (
            cv2.morphologyEx(
                own_nucleus.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)
            )
            > 0
        )
        ratio = float(grad[band].mean()) / max(float(np.median(grad)), 1.0)
    # Stain only adds absorbance, so an object still on the slide keeps the target at least
    # as dark as the input in every colour; dirt gone before staining leaves some colour
    # (the one the stain passes) much lighter. Compare per colour, against the darkest
    # target pixel within the registration slack.
    od_uc = optical_density(input_brightfield, input_background)
    od_tc = cv2.dilate(optical_density(target, target_background), kernel)
    deficit = (od_uc - od_tc).max(-1)
    dark = (od_u >= options.dirt_od_min) & (deficit >= options.dirt_od_min * 0.7)
    input_only = _blobs(dark, min_px).any()
    return OnePass(bool(specks), bool(input_only), ratio, gap)


def ghost_cells(ratios: np.ndarray, *, fraction: float = 0.0, floor: float = 1.1) -> np.ndarray:
    """Which detections are artifacts taken for cells, from their nucleus edge ratios.

    A detection with no counterpart in the unstained input has no outline there: the input's
    edge strength along its nucleus outline is the crop's usual edge strength, a ratio of
    about 1, however sharply the slide shows real nuclei. So a ratio below ``floor`` is a
    ghost. ``fraction`` > 0 also flags ratios below that fraction of the slide's median (a
    relative rule); it is off by default: on the two public stain sets it flagged 6.7 % and
    7 % of the clean cells (monocytes, eosinophils, neutrophils whose granular cytoplasm
    blurs a still clear outline, ratios 1.9-3.2 against a slide median near 8), while every
    real cell there read at least 1.9, far above ``floor``, and on the simulator the slide
    median stays below 2.75, where the relative rule never binds.
    """
    r = np.asarray(ratios, dtype=np.float64)
    ok = np.isfinite(r)
    out = np.zeros(len(r), dtype=bool)
    if not ok.any():
        return out
    threshold = max(floor, fraction * float(np.median(r[ok])))
    out[ok] = r[ok] < threshold
    return out


def blue_speck_cells(gaps: np.ndarray, *, floor: float = 18.0, spread: float = 5.0) -> np.ndarray:
    """Which cells carry a dark speck much bluer than their nucleus (stain precipitate).

    ``gaps`` are :attr:`OnePass.speck_gap` of a slide's cells. How blue dark spots on clean
    cells get depends on the stain (azure-rich chromatin, basophil granules), so the
    threshold is the slide's median plus ``spread`` robust deviations (1.4826 MAD), and at
    least ``floor`` hue units: on the two public stain sets this flags 2 % of the cells (with
    the adaptive WBC detection; 3.3 % with 4 deviations);
    on the simulator it catches the precipitate clusters lying on cells (their bluest specks
    18.5-28 hue units bluer than the nucleus; clean cells there up to 16).
    """
    g = np.asarray(gaps, dtype=np.float64)
    ok = np.isfinite(g)
    out = np.zeros(len(g), dtype=bool)
    if not ok.any():
        return out
    med = float(np.median(g[ok]))
    mad = 1.4826 * float(np.median(np.abs(g[ok] - med)))
    out[ok] = g[ok] > max(floor, med + spread * mad)
    return out


def saturated_fraction(target: np.ndarray) -> float:
    """Fraction of pixels with any channel at 255."""
    return float((np.asarray(target) >= 255).any(-1).mean())
