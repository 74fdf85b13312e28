"""Train/val/test assignment that keeps correlated crops together.

Neighbouring crops share pixels, stain and focus, so a validation crop next to a training crop
flatters the model (Hassan et al., "Cross-modality transformations in biological microscopy
enabled by deep learning": decorrelate validation from training by slide or region).

- :func:`split_by_slide` — whole slides per split; used when a dataset holds ≥ 5 slides
  (:data:`MIN_SLIDES_BY_SLIDE`: with 3 or 4, one slide per held-out split would leave one or
  two slides to train on, so fewer slides are split by blocks within each slide).
- :func:`split_by_blocks` — within a slide: cells are grouped by square blocks of the slide
  (``block_um``), and groups whose crops overlap are merged, so no two overlapping crops ever
  land in different splits. If the blocks are too coarse to give every split a group, they
  are halved until they do (down to single crops).

Both assign whole groups greedily, largest first, to the split furthest below its target
fraction (8:1:1 by default) after a seeded shuffle, and make every split non-empty when there
are at least three groups. A group's size counts its *usable* cells (``usable``: those without
QC flags, which training skips), so every split gets usable cells whenever at least three
exist — a split filled only with flagged cells would stop ``scope train``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from acquisition.vocabulary import SPLITS
from hardware_profiles.errors import ScopeError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_BLOCK_UM = 400.0
#: Fewest slides for a split by whole slides (``by="auto"`` picks blocks below this).
MIN_SLIDES_BY_SLIDE = 5


class SplitError(ScopeError, ValueError):
    """Split fractions or inputs are unusable."""


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions and normalise them to sum to 1."""
    f = tuple(float(x) for x in fractions)
    if len(f) != 3 or any(not np.isfinite(x) or x < 0 for x in f) or sum(f) <= 0:
        raise SplitError(
            f"split fractions must be three non-negative numbers (train, val, test) with a "
            f"positive sum; got {fractions}."
        )
    s = sum(f)
    return (f[0] / s, f[1] / s, f[2] / s)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"8:1:1"`` or ``"0.8,0.1,0.1"`` → normalised fractions."""
    parts = text.replace(":", ",").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise SplitError(
            f"cannot read split fractions {text!r}; write them as 8:1:1 or 0.8,0.1,0.1."
        ) from None
    return check_fractions(values)


def assign_groups(
    group_sizes: np.ndarray, *, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> np.ndarray:
    """Assign groups (of the given sizes) to splits; returns split indices ``(n_groups,)``.

    Groups are visited in a seeded random order (stable by size: largest first) and each goes
    to the split whose count is furthest below ``fraction × total``. Every split with a
    positive fraction gets at least one group when there are enough groups.
    """
    f = np.array(check_fractions(fractions))
    sizes = np.asarray(group_sizes, dtype=np.float64)
    n = len(sizes)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    order = order[np.argsort(-sizes[order], kind="stable")]
    total = sizes.sum()
    counts = np.zeros(3)
    wanted = [k for k in range(3) if f[k] > 0]
    # the smallest splits first get one group each, so no split stays empty
    if n >= len(wanted):
        for k in sorted(wanted, key=lambda k: f[k]):
            if k == int(np.argmax(f)):
                continue
            # the smallest group not yet assigned that still leaves groups for the rest
            g = order[::-1][0]
            order = order[order != g]
            out[g] = k
            counts[k] += sizes[g]
    for g in order:
        deficit = f * total - counts
        deficit[f == 0] = -np.inf
        k = int(np.argmax(deficit))
        out[g] = k
        counts[k] += sizes[g]
    return out


def _group_sizes(groups: np.ndarray, n_groups: int, usable: np.ndarray | None) -> np.ndarray:
    """Cells per group, counting only usable cells when any group has some."""
    if usable is not None:
        sizes = np.bincount(groups, weights=usable.astype(np.float64), minlength=n_groups)
        if sizes.sum() > 0:
            return sizes
    return np.bincount(groups, minlength=n_groups).astype(np.float64)


def _usable_mask(usable: Sequence[bool] | None, n: int) -> np.ndarray | None:
    if usable is None:
        return None
    mask = np.asarray(usable, dtype=bool).ravel()
    if len(mask) != n:
        raise SplitError(f"usable has {len(mask)} entries for {n} cells.")
    return mask


def _assign_usable_first(sizes: np.ndarray, *, fractions: Sequence[float], seed: int) -> np.ndarray:
    """:func:`assign_groups` over the groups with usable cells; the others follow by count."""
    out = np.zeros(len(sizes), dtype=np.int64)
    has = sizes > 0
    out[has] = assign_groups(sizes[has], fractions=fractions, seed=seed)
    # groups of flagged cells only: spread in the same proportions (they are never trained on)
    empty = np.flatnonzero(~has)
    if len(empty):
        f = np.array(check_fractions(fractions))
        counts = np.zeros(3)
        for g in empty:
            k = int(np.argmax(f * (counts.sum() + 1) - counts))
            out[g] = k
            counts[k] += 1
    return out


def split_by_slide(
    slides: Sequence[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    usable: Sequence[bool] | None = None,
) -> np.ndarray:
    """``(N,)`` split names, whole slides per split (sized by their usable cells)."""
    slides = np.asarray([str(s) for s in slides])
    _names, inverse = np.unique(slides, return_inverse=True)
    inverse = inverse.ravel()
    sizes = _group_sizes(inverse, len(_names), _usable_mask(usable, len(slides)))
    groups = _assign_usable_first(sizes, fractions=fractions, seed=seed)
    return np.array(SPLITS)[groups[inverse]]


def _union_find_groups(keys: np.ndarray, xy: np.ndarray, link_um: float) -> np.ndarray:
    """Group ids: same block key, or crops closer than ``link_um`` (transitively)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(xy)
    _, block = np.unique(keys, axis=0, return_inverse=True)
    block = block.ravel()
    rows = [np.arange(n)]
    cols = [block + n]  # cell -> block node
    if link_um > 0 and n > 1:
        pairs = cKDTree(xy).query_pairs(link_um, output_type="ndarray")
        if len(pairs):
            rows.append(pairs[:, 0])
            cols.append(pairs[:, 1])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    size = n + int(block.max()) + 1
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    _, group = np.unique(labels[:n], return_inverse=True)
    return group.ravel()


def split_by_blocks(
    x_um: np.ndarray,
    y_um: np.ndarray,
    *,
    crop_um: float,
    block_um: float = DEFAULT_BLOCK_UM,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    slides: Sequence[str] | None = None,
    usable: Sequence[bool] | None = None,
) -> np.ndarray:
    """``(N,)`` split names by spatial blocks of each slide.

    Parameters
    ----------
    x_um, y_um
        Cell positions on the slide (stage µm of one pass), ``(N,)``.
    crop_um
        Side of a crop in µm: cells closer than this (per axis: their crops overlap) always
        share a split.
    block_um
        Side of the square blocks cells are grouped by.
    slides
        Slide of each cell (blocks never span slides); ``None``: one slide.
    usable
        ``(N,)`` bool, cells training will use (no QC flag); groups are sized by these, and
        blocks are halved until every split can get usable cells. ``None``: all usable.
    """
    x = np.asarray(x_um, dtype=np.float64)
    y = np.asarray(y_um, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.array([], dtype="<U5")
    if block_um <= 0 or crop_um < 0:
        raise SplitError(f"block_um must be > 0 and crop_um ≥ 0; got {block_um} and {crop_um}.")
    slide_ids = (
        np.zeros(n, dtype=np.int64)
        if slides is None
        else np.unique(np.asarray([str(s) for s in slides]), return_inverse=True)[1].ravel()
    )
    f = check_fractions(fractions)
    n_wanted = sum(v > 0 for v in f)
    mask = _usable_mask(usable, n)
    if mask is not None and not mask.any():
        mask = None
    n_use = n if mask is None else int(mask.sum())
    xy = np.stack([x + slide_ids * 1e9, y], axis=1)  # slides never link
    # crops overlap when both axis distances are below crop_um: link within crop_um·√2
    link = crop_um * np.sqrt(2)
    size = float(block_um)
    while True:
        keys = np.stack([slide_ids, np.floor(x / size), np.floor(y / size)], axis=1)
        groups = _union_find_groups(keys, xy, link)
        n_groups = int(groups.max()) + 1
        n_usable_groups = n_groups if mask is None else len(np.unique(groups[mask]))
        if n_usable_groups >= min(n_wanted, n_use) or size <= crop_um / 2:
            break
        size /= 2
    if n_usable_groups < min(n_wanted, n_use):
        # crops chained together over the whole slide: fall back to single cells
        groups = np.arange(n)
        n_groups = n
    sizes = _group_sizes(groups, n_groups, mask)
    assigned = _assign_usable_first(sizes, fractions=f, seed=seed)
    return np.array(SPLITS)[assigned[groups]]


def default_split(
    x_um: np.ndarray,
    y_um: np.ndarray,
    slides: Sequence[str],
    *,
    crop_um: float,
    block_um: float = DEFAULT_BLOCK_UM,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    by: str = "auto",
    usable: Sequence[bool] | None = None,
) -> np.ndarray:
    """By slide with ≥ 5 slides (``by="auto"``), else by spatial blocks; or force ``by``.

    ``usable`` marks the cells training will use (no QC flag): splits are balanced on them.
    """
    slides = [str(s) for s in slides]
    mode = split_mode(slides, by)
    if mode == "slide":
        return split_by_slide(slides, fractions=fractions, seed=seed, usable=usable)
    return split_by_blocks(
        x_um,
        y_um,
        crop_um=crop_um,
        block_um=block_um,
        fractions=fractions,
        seed=seed,
        slides=slides,
        usable=usable,
    )


def split_mode(slides: Sequence[str], by: str = "auto") -> str:
    """``"slide"`` or ``"blocks"``: what :func:`default_split` does for these slides."""
    if by not in ("auto", "slide", "blocks"):
        raise SplitError(f"unknown split mode {by!r}; choose auto, slide or blocks.")
    n_slides = len({str(s) for s in slides})
    if by == "slide" and n_slides < MIN_SLIDES_BY_SLIDE:
        raise SplitError(
            f"splitting by slide needs at least {MIN_SLIDES_BY_SLIDE} slides (with fewer, one "
            f"slide per held-out split leaves too few to train on); this dataset has "
            f"{n_slides}: use --by blocks."
        )
    if by == "auto":
        return "slide" if n_slides >= MIN_SLIDES_BY_SLIDE else "blocks"
    return by


def describe_mode(mode: str, n_slides: int) -> str:
    """How a split was chosen, for a one-line summary: ``"split by blocks within each …"``."""
    if mode == "slide":
        return f"split by slide: whole slides per split ({n_slides} slides)"
    why = (
        f"; {n_slides} slide{'s' if n_slides != 1 else ''}, by-slide splits need "
        f"{MIN_SLIDES_BY_SLIDE}"
        if n_slides < MIN_SLIDES_BY_SLIDE
        else ""
    )
    return f"split by blocks within each slide{why}"
