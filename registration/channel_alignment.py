"""Is a PLS image of a field shifted against its brightfield image? (``pls_misaligned``)

:class:`ChannelAligner` measures each channel's offset against the field's brightfield
image — Laplacians for brightfield-like channels, intensity against edges for darkfield ones —
and :func:`misaligned_channels` decides over all fields of a slide under a model of
per-channel systematic offsets and per-ring radial/tangential shifts. Channels with trusted
neighbours are judged by those instead (:mod:`registration.neighbour_pairs`).
"""

from __future__ import annotations

import numpy as np

from acquisition.vocabulary import ChannelKind
from registration.correlate import correlation, match_peak, parabola_peak


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
        self.references = {
            ChannelKind.PLS: _laplacian(grey),
            ChannelKind.DARKFIELD: _gradient(grey),
        }

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
        dark = kind == ChannelKind.DARKFIELD
        probe = g if dark else _laplacian(g)
        reference = self.references[ChannelKind.DARKFIELD if dark else ChannelKind.PLS]
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
        if out[1, 0] != out[1, 0] and not halves_agree(reference, probe, search_px=r):
            # A glitch shifts the whole image: both halves of the frame move alike. When they
            # disagree the peak is an artefact of the content (dim, one-sided darkfield
            # glow), so this measurement cannot judge the channel either way.
            return np.full((2, 2), np.nan), float("nan")
        return out, best


#: The two halves of a frame must agree this closely (px) for an offset to be trusted.
HALVES_AGREE_PX = 1.5


def halves_agree(reference: np.ndarray, probe: np.ndarray, *, search_px: int = 16) -> bool:
    """Do the left and right halves of ``probe`` find the same offset in ``reference``?

    A glitch shifts a whole image, so both halves of the frame move alike (within
    :data:`HALVES_AGREE_PX`); when they disagree, the correlation peak is an artefact of the
    content (one-sided darkfield glow, two oblique images that defocus made look different)
    and the measurement cannot judge the image either way. True when a half is too small or
    flat to measure.
    """
    r = int(search_px)
    w = probe.shape[1]
    found = []
    for sl in (slice(0, w // 2 + r), slice(w // 2 - r, w)):
        p, ref = probe[:, sl], reference[:, sl]
        if min(p.shape) <= 2 * r + 8:
            return True
        tpl = p[r:-r, r:-r]
        if float(tpl.std()) == 0.0:
            return True
        peak = match_peak(ref, tpl)
        found.append((r - peak.x, r - peak.y))
    a, b = np.asarray(found)
    return bool(np.hypot(*(a - b)) <= HALVES_AGREE_PX)


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
    radial, tangential, rings = _led_rings(th, ph)
    res = _residuals(o, valid, tol, radial, tangential, rings)
    if n_f >= _MIN_FIELDS_FOR_NOISE:
        tol = np.maximum(tol, _channel_noise_tolerance(res, valid))
    out[valid] = (res > tol)[valid]
    return out


def _led_rings(
    theta_deg: np.ndarray, phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(radial, tangential, rings)``: each channel's ``(C, 2)`` unit vectors (zero for
    multi-LED channels) and the channels of each ring of LEDs at one angle seen from at
    least three azimuths (``phi`` in radians)."""
    radial = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    tangential = np.stack([-np.sin(phi), np.cos(phi)], axis=1)
    radial[~np.isfinite(radial)] = 0.0
    tangential[~np.isfinite(tangential)] = 0.0
    rings: list[np.ndarray] = []
    finite_th = np.isfinite(theta_deg)
    for t in np.unique(np.round(theta_deg[finite_th])):
        members = np.flatnonzero(finite_th & (np.round(theta_deg) == t))
        if len(set(np.round(np.degrees(phi[members])))) >= 3:  # at least three azimuths
            rings.append(members)
    return radial, tangential, rings


def _residuals(
    o: np.ndarray,
    valid: np.ndarray,
    tol: np.ndarray,
    radial: np.ndarray,
    tangential: np.ndarray,
    rings: list[np.ndarray],
) -> np.ndarray:
    """``(F, C)`` distance of each image's nearest candidate offset from the model
    ``e_c + a_fr · r̂_c + b_fr · t̂_c`` (see :func:`misaligned_channels`), fitted by
    alternating medians over the images within ``tol`` of it."""
    n_f, n_c = o.shape[:2]
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
    return res


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
