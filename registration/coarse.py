"""Coarse registration of the stained pass onto the unstained pass (thesis §3.1.3, step 1).

Per field, the stained brightfield image is cropped by a physical margin (77 µm, the thesis's
264 px at 0.293 µm/px, at most 40 % of the frame's smaller side); Canny edges of both images
are correlated with OpenCV's normalised correlation coefficient (``TM_CCOEFF_NORMED``). The
search runs at half resolution over the whole margin, then at full resolution around the
peak, with a parabola through the peak for sub-pixel precision; the template is then cut into
tiles matched locally, so each field also yields point pairs that carry rotation.

Beyond the thesis: the slide moved as one rigid body between the passes, so
:func:`fit_slide_transform` fits one rotation + translation (stained-pass stage µm →
unstained-pass stage µm) to the tile pairs of every field, robustly; fields whose own match
disagrees with it are marked ``outlier``, fields whose own correlation is weak ``weak`` (they
are rescued by the fit). :meth:`SlideFit.predict` then seeds every cell's fine search.

Conventions: a displacement ``(dx, dy)`` means stained pixel ``(x, y)`` shows what unstained
pixel ``(x + dx, y + dy)`` shows (same field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hardware_profiles.errors import ScopeError
from registration.correlate import correlation, parabola_offsets

#: The thesis's margin: 264 px at 0.293 µm/px — the largest re-placement the search absorbs.
DEFAULT_MARGIN_UM = 77.0
MAX_MARGIN_FRACTION = 0.4
#: Smallest side of a tile matched on its own (px).
MIN_TILE_PX = 160


class RegistrationError(ScopeError):
    """Two passes cannot be registered (no field matched, inputs unusable)."""


# -- rigid transforms -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RigidTransform:
    """``dst = R(theta) · src + t`` in the plane (µm or pixels)."""

    theta_rad: float = 0.0
    tx: float = 0.0
    ty: float = 0.0

    @property
    def theta_deg(self) -> float:
        return math.degrees(self.theta_rad)

    @property
    def matrix(self) -> np.ndarray:
        """``(2, 3)`` affine matrix."""
        c, s = math.cos(self.theta_rad), math.sin(self.theta_rad)
        return np.array([[c, -s, self.tx], [s, c, self.ty]])

    @classmethod
    def from_matrix(cls, m: np.ndarray) -> RigidTransform:
        """The rigid part of a ``(2, 3)`` affine matrix (rotation from its first column)."""
        m = np.asarray(m, dtype=np.float64)
        return cls(math.atan2(m[1, 0], m[0, 0]), float(m[0, 2]), float(m[1, 2]))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` points."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return p @ m[:, :2].T + m[:, 2]

    def inverse(self) -> RigidTransform:
        c, s = math.cos(self.theta_rad), math.sin(self.theta_rad)
        tx = -(c * self.tx + s * self.ty)
        ty = -(-s * self.tx + c * self.ty)
        return RigidTransform(-self.theta_rad, tx, ty)

    def compose(self, other: RigidTransform) -> RigidTransform:
        """``self ∘ other`` (apply ``other`` first)."""
        m = self.matrix
        o = other.matrix
        full = m[:, :2] @ o
        full[:, 2] += m[:, 2]
        return RigidTransform.from_matrix(full)


def fit_rigid(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> RigidTransform:
    """Weighted least-squares rotation + translation ``dst ≈ R src + t`` (2-D Kabsch).

    With a single point (or all points coincident) the rotation is 0.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    cs = (w[:, None] * src).sum(0)
    cd = (w[:, None] * dst).sum(0)
    a = src - cs
    b = dst - cd
    num = (w * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])).sum()
    den = (w * (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1])).sum()
    theta = math.atan2(num, den) if (abs(num) + abs(den)) > 1e-12 else 0.0
    r = RigidTransform(theta).matrix[:, :2]
    t = cd - r @ cs
    return RigidTransform(theta, float(t[0]), float(t[1]))


# -- per-field edge correlation -------------------------------------------------------------------
def to_grey(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 luminance of an RGB or grey image."""
    import cv2

    image = np.asarray(image)
    if image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return image


def edge_map(
    image: np.ndarray, *, pixel_size_um: float, smooth_um: float = 0.5, spread_um: float = 1.2
) -> np.ndarray:
    """Canny edges, spread by a Gaussian: ``(H, W) float32`` in [0, 1].

    The image is smoothed (``smooth_um``) to suppress camera noise; the Canny thresholds adapt
    to the image (90th and 40th percentiles of its gradient magnitude), so unstained and
    stained images of different contrast give edge maps of similar density. Spreading the
    thin edges (``spread_um``) makes the correlation peak tolerant to small rotations and to
    edges that sit a pixel apart in the two modalities.
    """
    import cv2

    grey = to_grey(image)
    sigma = smooth_um / pixel_size_um
    blurred = cv2.GaussianBlur(grey, (0, 0), sigma) if sigma >= 0.3 else grey
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    high = float(np.percentile(mag[::4, ::4], 90))
    if high <= 0:
        return np.zeros(grey.shape, dtype=np.float32)
    edges = cv2.Canny(blurred, 0.4 * high, high, L2gradient=True).astype(np.float32) / 255.0
    spread = spread_um / pixel_size_um
    if spread >= 0.3:
        edges = cv2.GaussianBlur(edges, (0, 0), spread)
    return edges


def margin_px(
    frame_hw: tuple[int, int], *, pixel_size_um: float, margin_um: float = DEFAULT_MARGIN_UM
) -> int:
    """The search margin in pixels: ``margin_um`` capped at 40 % of the smaller frame side."""
    if margin_um <= 0:
        raise RegistrationError(f"the coarse margin must be positive; got {margin_um} µm.")
    return int(
        min(round(margin_um / pixel_size_um), math.floor(MAX_MARGIN_FRACTION * min(frame_hw)))
    )


def _second_peak(c: np.ndarray, y: int, x: int, radius: int) -> float:
    c2 = c.copy()
    c2[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = -np.inf
    return float(c2.max()) if np.isfinite(c2).any() else float("nan")


@dataclass(frozen=True)
class CoarseMatch:
    """One field's coarse match.

    Attributes
    ----------
    dx_px, dy_px
        Displacement (stained → unstained pixels) at the stained frame centre.
    score
        ``TM_CCOEFF_NORMED`` of the whole template at the peak (−1…1).
    distinctness
        ``1 − second peak / peak`` of the correlation surface (0 = ambiguous, 1 = unique).
    tiles
        ``(n, 5)`` float: stained ``x, y`` of a tile centre, matched unstained ``x, y``, score.
    margin_px
        The margin the search used.
    """

    dx_px: float
    dy_px: float
    score: float
    distinctness: float
    tiles: np.ndarray = field(repr=False)
    margin_px: int = 0

    def reliable(self, *, min_score: float, min_distinctness: float) -> bool:
        return bool(
            np.isfinite(self.score)
            and self.score >= min_score
            and self.distinctness >= min_distinctness
        )


def coarse_match(
    unstained: np.ndarray,
    stained: np.ndarray,
    *,
    pixel_size_um: float,
    margin_um: float = DEFAULT_MARGIN_UM,
    tiles: tuple[int, int] = (3, 3),
    downsample: int = 2,
) -> CoarseMatch:
    """Match one field's stained brightfield image onto its unstained one.

    Parameters
    ----------
    unstained, stained
        ``(H, W, 3) uint8`` RGB (or ``(H, W)`` grey) brightfield images of the same field.
    pixel_size_um
        Pixel size at the sample (µm).
    margin_um
        Crop margin of the stained template on every side; the largest displacement found.
    tiles
        ``(rows, columns)`` of template tiles matched locally (0 disables).
    downsample
        Factor of the first, whole-margin search (1 = full resolution).
    """
    import cv2

    if unstained.shape[:2] != stained.shape[:2]:
        raise RegistrationError(
            f"the unstained ({unstained.shape[1]}x{unstained.shape[0]}) and stained "
            f"({stained.shape[1]}x{stained.shape[0]}) frames differ in size."
        )
    h, w = unstained.shape[:2]
    m = margin_px((h, w), pixel_size_um=pixel_size_um, margin_um=margin_um)
    if m < 4:
        raise RegistrationError(f"frames of {w}x{h} pixels are too small to register.")
    eu = edge_map(unstained, pixel_size_um=pixel_size_um)
    es = edge_map(stained, pixel_size_um=pixel_size_um)
    template = es[m : h - m, m : w - m]
    if float(template.std()) == 0.0 or float(eu.std()) == 0.0:
        return CoarseMatch(0.0, 0.0, float("nan"), 0.0, np.zeros((0, 5)), m)

    f = max(1, int(downsample))
    if f > 1 and m // f >= 4:
        eu_s = cv2.resize(eu, (w // f, h // f), interpolation=cv2.INTER_AREA)
        ms = m // f
        tpl_s = cv2.resize(es, (w // f, h // f), interpolation=cv2.INTER_AREA)[
            ms : h // f - ms, ms : w // f - ms
        ]
    else:
        f, eu_s, tpl_s, ms = 1, eu, template, m
    corr = correlation(eu_s, tpl_s)
    _, peak, _, (px, py) = cv2.minMaxLoc(corr)
    second = _second_peak(corr, py, px, radius=max(2, round(3.0 / (pixel_size_um * f))))
    distinct = 0.0 if peak <= 0 or not np.isfinite(second) else max(0.0, 1.0 - second / peak)
    dx0, dy0 = (px - ms) * f, (py - ms) * f

    # full-resolution refinement around the coarse peak
    r = f + 2
    score, fx, fy = _local_match(eu, template, m + dx0, m + dy0, r)
    if not np.isfinite(score):
        return CoarseMatch(float(dx0), float(dy0), float(peak), distinct, np.zeros((0, 5)), m)
    dx, dy = fx - m, fy - m

    # tiles: local shifts that carry rotation
    rows = []
    # a tile away from the centre moves by up to (rotation x distance) beyond the global shift
    tile_radius = 3 + math.ceil(math.radians(0.5) * max(template.shape) / 2)
    # tiles of at least MIN_TILE_PX a side, so each holds a few cells' worth of edges
    ty = min(tiles[0], template.shape[0] // MIN_TILE_PX)
    tx = min(tiles[1], template.shape[1] // MIN_TILE_PX)
    if ty > 0 and tx > 0 and ty * tx > 1:
        th, tw = template.shape[0] // ty, template.shape[1] // tx
        for i in range(ty):
            for j in range(tx):
                tile = template[i * th : (i + 1) * th, j * tw : (j + 1) * tw]
                if tile.std() < 1e-4:
                    continue
                x0, y0 = m + j * tw, m + i * th  # tile top-left in the stained frame
                s_t, fx, fy = _local_match(eu, tile, x0 + dx, y0 + dy, tile_radius)
                if not np.isfinite(s_t):
                    continue
                half_w, half_h = (tw - 1) / 2, (th - 1) / 2
                rows.append((x0 + half_w, y0 + half_h, fx + half_w, fy + half_h, s_t))
    tiles_arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return CoarseMatch(float(dx), float(dy), float(score), float(distinct), tiles_arr, m)


def _local_match(
    image: np.ndarray, template: np.ndarray, x: float, y: float, radius: int
) -> tuple[float, float, float]:
    """Match ``template`` with its top-left within ``±radius`` px of ``(x, y)`` in ``image``.

    Returns ``(score, found_x, found_y)``: the peak ``TM_CCOEFF_NORMED`` and the sub-pixel
    top-left of the match in ``image``; ``(nan, 0, 0)`` when the window leaves the image.
    """
    import cv2

    th, tw = template.shape
    h, w = image.shape
    xi, yi = round(x), round(y)
    x0, y0 = xi - radius, yi - radius
    x1, y1 = xi + radius + tw, yi + radius + th
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, w), min(y1, h)
    if cx1 - cx0 < tw + 2 or cy1 - cy0 < th + 2:
        return float("nan"), 0.0, 0.0
    window = image[cy0:cy1, cx0:cx1]
    c = correlation(window, template)
    _, peak, _, (px, py) = cv2.minMaxLoc(c)
    ox, oy = parabola_offsets(c, py, px)
    return float(peak), float(cx0 + px + ox), float(cy0 + py + oy)


# -- one rigid transform for the whole slide ------------------------------------------------------
def robust_fit_rigid(
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    min_threshold: float,
    n_sigma: float = 3.0,
    max_iter: int = 10,
    n_trials: int = 300,
    seed: int = 0,
) -> tuple[RigidTransform, np.ndarray, np.ndarray]:
    """:func:`fit_rigid` that ignores outlying pairs (least median of squares, then refits).

    Candidate transforms from random pairs of points are scored by their median squared
    residual; the best one picks the inliers — residual at most
    ``max(min_threshold, n_sigma · σ)``, σ its robust scale — and the transform is refitted on
    them until the inliers stop changing. Up to half the pairs may be outliers (a slipped
    field, a wrong match). Returns ``(transform, inlier mask, residuals)``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    n = len(src)
    best = fit_rigid(src, dst, w)
    if n >= 3:
        rng = np.random.default_rng(seed)
        best_med = np.inf
        pairs = rng.integers(0, n, size=(n_trials, 2))
        for a, b in pairs:
            if a == b or np.allclose(src[a], src[b]):
                continue
            cand = fit_rigid(src[[a, b]], dst[[a, b]])
            med = float(np.median(np.sum((cand.apply(src) - dst) ** 2, axis=1)))
            if med < best_med:
                best, best_med = cand, med
        sigma = 1.4826 * (1 + 5 / max(n - 2, 1)) * math.sqrt(best_med)
    else:
        sigma = 0.0
    transform = best
    res = np.linalg.norm(transform.apply(src) - dst, axis=1)
    keep = res <= max(min_threshold, n_sigma * sigma)
    for _ in range(max_iter):
        if keep.sum() == 0:
            keep = np.ones(n, dtype=bool)
        transform = fit_rigid(src[keep], dst[keep], w[keep])
        res = np.linalg.norm(transform.apply(src) - dst, axis=1)
        sigma = 1.4826 * float(np.median(res[keep]))
        new = res <= max(min_threshold, n_sigma * sigma)
        if np.array_equal(new, keep):
            break
        keep = new
    return transform, keep, res


@dataclass(frozen=True)
class FieldGeometry:
    """Where each field of the two passes was taken: frame size, pixel size, stage centres."""

    width: int
    height: int
    pixel_size_um: float
    stained_centres_um: np.ndarray  # (n_fields, 2)
    unstained_centres_um: np.ndarray  # (n_fields, 2)

    def to_stage(self, xy_px: np.ndarray, centre_um: np.ndarray) -> np.ndarray:
        c = np.array([(self.width - 1) / 2, (self.height - 1) / 2])
        return (
            np.asarray(centre_um) + (np.asarray(xy_px, dtype=np.float64) - c) * self.pixel_size_um
        )

    def to_pixel(self, xy_um: np.ndarray, centre_um: np.ndarray) -> np.ndarray:
        c = np.array([(self.width - 1) / 2, (self.height - 1) / 2])
        return (
            np.asarray(xy_um, dtype=np.float64) - np.asarray(centre_um)
        ) / self.pixel_size_um + c


@dataclass(frozen=True)
class SlideFit:
    """The slide's rigid motion between the passes, and how each field agrees with it.

    Attributes
    ----------
    transform
        Stained-pass stage µm → unstained-pass stage µm.
    status
        Per field: ``inlier`` (its own match agrees), ``outlier`` (a reliable match that
        disagrees: a stage slip or a wrong match; its own offset is kept as a correction),
        ``weak`` (its own correlation too weak; rescued by the fit).
    residual_px
        Per field, median distance (px) between its own tile matches and the fit.
    correction_px
        ``(n_fields, 2)`` shift added to the fit's prediction in that field (outliers only).
    rms_px
        Root-mean-square residual of the pairs kept by the fit (px).
    """

    transform: RigidTransform
    geometry: FieldGeometry
    status: np.ndarray
    residual_px: np.ndarray
    correction_px: np.ndarray
    rms_px: float
    n_pairs: int

    def predict(self, field_index: int, stained_xy_px: np.ndarray) -> np.ndarray:
        """Unstained-frame pixels ``(N, 2)`` of stained-frame pixels of one field."""
        g = self.geometry
        stage_s = g.to_stage(np.reshape(stained_xy_px, (-1, 2)), g.stained_centres_um[field_index])
        stage_u = self.transform.apply(stage_s)
        return (
            g.to_pixel(stage_u, g.unstained_centres_um[field_index])
            + self.correction_px[field_index]
        )


def fit_slide_transform(
    matches: list[CoarseMatch | None],
    geometry: FieldGeometry,
    *,
    min_score: float = 0.05,
    min_distinctness: float = 0.15,
    outlier_px: float = 3.0,
) -> SlideFit:
    """Fit one rigid transform to the coarse matches of every field.

    Parameters
    ----------
    matches
        One :class:`CoarseMatch` per field (``None`` for a field not matched, e.g. blank).
    geometry
        Frame size, pixel size and the stage centres of each field in both passes.
    min_score, min_distinctness
        A field's own match counts only when its peak score and distinctness reach these.
    outlier_px
        A reliable field whose tiles sit farther than this (median, px) from the fit is an
        ``outlier``; pairs farther than this (or 3 σ) are excluded from the fit.

    Raises
    ------
    RegistrationError
        When no field has a reliable match.
    """
    n = len(matches)
    p = geometry.pixel_size_um
    reliable = np.array(
        [
            m is not None and m.reliable(min_score=min_score, min_distinctness=min_distinctness)
            for m in matches
        ]
    )
    if not reliable.any():
        raise RegistrationError(
            "no field could be matched between the unstained and stained passes (edge "
            "correlation too weak everywhere): are these scans of the same slide and region?"
        )
    src, dst, w, owner = [], [], [], []
    centre = np.array([(geometry.width - 1) / 2, (geometry.height - 1) / 2])
    for i, m in enumerate(matches):
        if not reliable[i]:
            continue
        pairs = m.tiles
        if len(pairs) == 0:
            pairs = np.array([[*centre, centre[0] + m.dx_px, centre[1] + m.dy_px, m.score]])
        src.append(geometry.to_stage(pairs[:, :2], geometry.stained_centres_um[i]))
        dst.append(geometry.to_stage(pairs[:, 2:4], geometry.unstained_centres_um[i]))
        w.append(np.clip(pairs[:, 4], 1e-3, None))
        owner.append(np.full(len(pairs), i))
    src_a, dst_a = np.concatenate(src), np.concatenate(dst)
    w_a, owner_a = np.concatenate(w), np.concatenate(owner)
    transform, keep, res = robust_fit_rigid(src_a, dst_a, w_a, min_threshold=outlier_px * p)
    res_px = res / p
    status = np.array(["weak"] * n, dtype=object)
    residual = np.full(n, np.nan)
    correction = np.zeros((n, 2))
    for i in range(n):
        if not reliable[i]:
            continue
        sel = owner_a == i
        residual[i] = float(np.median(res_px[sel]))
        if residual[i] > outlier_px:
            status[i] = "outlier"
            predicted = geometry.to_pixel(
                transform.apply(src_a[sel]), geometry.unstained_centres_um[i]
            )
            measured = geometry.to_pixel(dst_a[sel], geometry.unstained_centres_um[i])
            correction[i] = np.median(measured - predicted, axis=0)
        else:
            status[i] = "inlier"
    rms = float(np.sqrt(np.mean(res_px[keep] ** 2))) if keep.any() else float("nan")
    return SlideFit(
        transform, geometry, status.astype(str), residual, correction, rms, int(keep.sum())
    )


def stage_transform_between(
    unstained_slide_to_stage: np.ndarray, stained_slide_to_stage: np.ndarray
) -> RigidTransform:
    """Stained-pass stage → unstained-pass stage from the two placements (``(2, 3)`` each)."""

    def full(m: np.ndarray) -> np.ndarray:
        out = np.eye(3)
        out[:2] = np.asarray(m, dtype=np.float64)
        return out

    composed = full(unstained_slide_to_stage) @ np.linalg.inv(full(stained_slide_to_stage))
    return RigidTransform.from_matrix(composed[:2])
