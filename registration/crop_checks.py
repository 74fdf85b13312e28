"""Checks of one cell's crops: objects in one pass only, artifacts and precipitate, clipping.

:func:`one_pass_objects` looks at one cell (``input_only_object``, ``target_only_color``
directly, and the figures the slide-level checks need); :func:`ghost_cells` and
:func:`blue_speck_cells` decide over a whole slide; :func:`saturated_fraction` feeds
``saturated_target``. The thresholds are :class:`registration.qc_options.QcOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from registration.qc_options import QcOptions


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
