"""Differential agreement: does the virtual stain lead to the same white-cell type as the
chemical stain?

A small classifier (multinomial logistic regression on morphology and colour features, numpy,
deterministic) is trained on the chemically stained targets of the labelled training cells and
applied unchanged to the targets and to the virtual stains of the test cells. Reported: the
accuracy on each against the labels, Cohen's κ between the two predictions, and the confusion
of the types read on the virtual stain against the true types.

The classifier is a measuring instrument, not a diagnosis: when its accuracy on the chemical
stain is below :data:`MIN_TARGET_ACCURACY`, agreement measured with it means little, and the
summary says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acquisition.vocabulary import CELL_TYPES
from training.morphology import CellMorphology, optical_density

TYPES = CELL_TYPES  # the differential count's order
MIN_TARGET_ACCURACY = 0.95
FEATURE_NAMES = (
    "nucleus_fraction",
    "nucleus_area",
    "cell_area",
    "lobes",
    "granularity",
    "nucleus_od_r",
    "nucleus_od_g",
    "nucleus_od_b",
    "cytoplasm_od_r",
    "cytoplasm_od_g",
    "cytoplasm_od_b",
    "cytoplasm_od_std",
    "nucleus_solidity",
)


def features(rgb: np.ndarray, m: CellMorphology) -> np.ndarray:
    """Feature vector of one crop from its morphology (:data:`FEATURE_NAMES`)."""
    od = optical_density(rgb)
    h, w = m.nucleus.shape
    area = float(h * w)
    nuc = m.nucleus
    cyto = m.cell & ~nuc
    n_od = od[nuc].mean(axis=0) if nuc.any() else np.zeros(3)
    c_od = od[cyto].mean(axis=0) if cyto.sum() >= 4 else np.zeros(3)
    c_std = float(od[cyto].sum(axis=-1).std()) if cyto.sum() >= 4 else 0.0
    solidity = 0.0
    if nuc.any():
        from skimage.morphology import convex_hull_image

        solidity = float(nuc.sum()) / max(1.0, float(convex_hull_image(nuc).sum()))
    return np.array(
        [
            m.nucleus_fraction,
            nuc.sum() / area,
            m.cell.sum() / area,
            float(m.lobes),
            m.granularity,
            *n_od,
            *c_od,
            c_std,
            solidity,
        ],
        np.float64,
    )


@dataclass
class TypeClassifier:
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (n_features + 1, n_classes)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        logits = np.c_[z, np.ones(len(z))] @ self.weights
        return np.asarray(self.classes, dtype=object)[logits.argmax(axis=1)]


def fit_classifier(
    x: np.ndarray, labels: Sequence[str], *, l2: float = 0.1, steps: int = 500
) -> TypeClassifier:
    """Multinomial logistic regression (full-batch gradient descent, standardised features)."""
    labels = np.asarray([str(s) for s in labels])
    classes = tuple(t for t in TYPES if t in set(labels)) + tuple(sorted(set(labels) - set(TYPES)))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[s] for s in labels])
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.c_[(x - mean) / scale, np.ones(len(x))]
    onehot = np.eye(len(classes))[y]
    w = np.zeros((z.shape[1], len(classes)))
    lr = 0.5
    for _ in range(steps):
        logits = z @ w
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = z.T @ (p - onehot) / len(z) + l2 * np.r_[w[:-1], np.zeros((1, w.shape[1]))]
        w -= lr * grad
    return TypeClassifier(classes, mean, scale, w)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's κ between two labelings of the same items (1: identical; 0: chance)."""
    a = np.asarray([str(s) for s in a])
    b = np.asarray([str(s) for s in b])
    if len(a) == 0:
        return float("nan")
    cats = sorted(set(a) | set(b))
    po = float((a == b).mean())
    pe = sum(float((a == c).mean()) * float((b == c).mean()) for c in cats)
    if pe >= 1.0:
        return 1.0 if po == 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def confusion(true: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> list[list[int]]:
    """Counts: rows true type, columns predicted type, in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), np.int64)
    for t, p in zip(true, pred, strict=True):
        if t in index and p in index:
            out[index[t], index[p]] += 1
    return out.tolist()
