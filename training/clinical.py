"""The measures of ``scope evaluate`` that ask whether a virtual stain can be read like the
chemical one: label-free morphology agreement, the VirFluoNet tolerance level, hallucinated or
lost nucleus parts, and, where cell types are known, differential agreement.

:class:`ClinicalMeasures` collects them batch by batch (uint8 predictions and targets);
:meth:`ClinicalMeasures.summary` summarises them overall and per cell type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.differential import (
    MIN_TARGET_ACCURACY,
    TYPES,
    cohen_kappa,
    confusion,
    features,
    fit_classifier,
)
from training.morphology import compare, granules_agree
from training.tolerance import tolerance_levels

#: Per-cell CSV columns, in order (``type_*`` only when labels exist).
COLUMNS = (
    "nucleus_iou",
    "lobes_virtual",
    "lobes_target",
    "nc_ratio_virtual",
    "nc_ratio_target",
    "nc_ratio_error",
    "granularity_virtual",
    "granularity_target",
    "hallucination",
    "tolerance_level",
    "tolerance_threshold",
    "tolerance_level_r",
    "tolerance_level_g",
    "tolerance_level_b",
)
TYPE_COLUMNS = ("type_true", "type_on_target", "type_on_virtual")
#: Fewest labelled training cells (and types) for a classifier worth reporting.
MIN_LABELLED = 10
#: At most this many labelled training cells train the classifier (a seeded sample, every
#: type kept): its cost stays bounded on large datasets.
MAX_TRAIN_CELLS = 2000


def _mean_std(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(x.mean()), "std": float(x.std())}


class ClinicalMeasures:
    """Per-cell measures of ``n`` test cells, filled by :meth:`add`."""

    def __init__(self, n: int, *, with_features: bool = False) -> None:
        self.n = n
        f = np.full
        self.iou = f(n, np.nan)
        self.lobes_v = np.zeros(n, np.int64)
        self.lobes_t = np.zeros(n, np.int64)
        self.ratio_v = f(n, np.nan)
        self.ratio_t = f(n, np.nan)
        self.gran_v = f(n, np.nan)
        self.gran_t = f(n, np.nan)
        self.spurious = np.zeros(n, np.int64)
        self.missing = np.zeros(n, np.int64)
        self.tol: dict[str, np.ndarray] = {}
        self.with_features = with_features
        self.feat_v: list[np.ndarray | None] = [None] * n
        self.feat_t: list[np.ndarray | None] = [None] * n
        self.type_true = np.full(n, "", dtype=object)
        self.type_on_target = np.full(n, "", dtype=object)
        self.type_on_virtual = np.full(n, "", dtype=object)
        self.differential: dict[str, Any] | None = None

    def add(self, positions: Sequence[int], pred: np.ndarray, target: np.ndarray) -> None:
        """Measure cells at ``positions``: ``pred``, ``target`` are ``(b, h, w, 3) uint8``."""
        tol = tolerance_levels(pred, target)
        for k, v in tol.items():
            self.tol.setdefault(k, np.full(self.n, np.nan))[positions] = v
        for j, i in enumerate(positions):
            a = compare(pred[j], target[j])
            self.iou[i] = a.nucleus_iou
            self.lobes_v[i] = a.lobes_virtual
            self.lobes_t[i] = a.lobes_target
            self.ratio_v[i] = a.ratio_virtual
            self.ratio_t[i] = a.ratio_target
            self.gran_v[i] = a.granularity_virtual
            self.gran_t[i] = a.granularity_target
            self.spurious[i] = a.spurious_parts
            self.missing[i] = a.missing_parts
            if self.with_features:
                self.feat_v[i] = features(pred[j], a.virtual)
                self.feat_t[i] = features(target[j], a.target)  # its own thresholds

    def hallucination(self) -> np.ndarray:
        out = np.full(self.n, "", dtype=object)
        for i in range(self.n):
            found = (("spurious", self.spurious[i]), ("missing", self.missing[i]))
            out[i] = "+".join(name for name, k in found if k)
        return out

    def classify(
        self, train_features: np.ndarray, train_labels: Sequence[str], test_labels: Sequence[str]
    ) -> dict[str, Any]:
        """Train on labelled chemical stains, read the test cells' targets and virtual stains."""
        clf = fit_classifier(train_features, train_labels)
        self.type_true[:] = [str(s) for s in test_labels]
        self.type_on_target[:] = clf.predict(np.stack(self.feat_t))
        self.type_on_virtual[:] = clf.predict(np.stack(self.feat_v))
        known = np.array([bool(s) for s in self.type_true])
        t = self.type_true[known]
        on_t = self.type_on_target[known]
        on_v = self.type_on_virtual[known]
        acc_t = float((on_t == t).mean()) if known.any() else math.nan
        acc_v = float((on_v == t).mean()) if known.any() else math.nan
        classes = list(clf.classes)
        self.differential = {
            "classes": classes,
            "train_cells": len(train_labels),
            "test_cells": int(known.sum()),
            "accuracy_target": acc_t,
            "accuracy_virtual": acc_v,
            "kappa": cohen_kappa(self.type_on_target, self.type_on_virtual),
            "confusion_virtual": confusion(t, on_v, classes),
            "confusion_target": confusion(t, on_t, classes),
            "reliable": bool(acc_t >= MIN_TARGET_ACCURACY),
        }
        return self.differential

    def columns(self, *, with_types: bool) -> dict[str, list[str]]:
        """Per-cell CSV values (strings), :data:`COLUMNS` then, with labels, the types."""
        cols: dict[str, list[str]] = {
            "nucleus_iou": [f"{v:.4f}" for v in self.iou],
            "lobes_virtual": [str(v) for v in self.lobes_v],
            "lobes_target": [str(v) for v in self.lobes_t],
            "nc_ratio_virtual": [f"{v:.4f}" for v in self.ratio_v],
            "nc_ratio_target": [f"{v:.4f}" for v in self.ratio_t],
            "nc_ratio_error": [f"{v:.4f}" for v in np.abs(self.ratio_v - self.ratio_t)],
            "granularity_virtual": [f"{v:.4f}" for v in self.gran_v],
            "granularity_target": [f"{v:.4f}" for v in self.gran_t],
            "hallucination": list(self.hallucination()),
        }
        for k in ("tolerance_level", "tolerance_threshold"):
            cols[k] = [f"{v:.4g}" for v in self.tol[k]]
        for c in "rgb":
            cols[f"tolerance_level_{c}"] = [f"{v:.4g}" for v in self.tol[f"tolerance_level_{c}"]]
        if with_types:
            cols["type_true"] = list(self.type_true)
            cols["type_on_target"] = list(self.type_on_target)
            cols["type_on_virtual"] = list(self.type_on_virtual)
        return cols

    def _measures(self, sel: np.ndarray) -> dict[str, Any]:
        return {
            "cells": int(sel.sum()),
            "nucleus_iou": _mean_std(self.iou[sel]),
            "lobe_agreement": _mean_std(self.lobes_v[sel] == self.lobes_t[sel]),
            "nc_ratio_error": _mean_std(np.abs(self.ratio_v - self.ratio_t)[sel]),
            "granule_agreement": _mean_std(granules_agree(self.gran_v[sel], self.gran_t[sel])),
            "tolerance_level": _mean_std(self.tol["tolerance_level"][sel]),
            "tolerance_threshold": _mean_std(self.tol["tolerance_threshold"][sel]),
            "hallucinated_cells": int(((self.spurious > 0) | (self.missing > 0))[sel].sum()),
        }

    def summary(self, types: Sequence[str] | None = None) -> dict[str, Any]:
        """Overall and per-type (``types``: one per cell, "" unknown) means and spreads."""
        everything = np.ones(self.n, bool)
        out: dict[str, Any] = {"all": self._measures(everything)}
        if types is not None:
            types = np.asarray([str(t) for t in types])
            per = {}
            for t in [*TYPES, *sorted(set(types) - set(TYPES) - {""})]:
                sel = types == t
                if sel.any():
                    per[t] = self._measures(sel)
            out["per_type"] = per
        if self.differential is not None:
            out["differential"] = self.differential
        return out

    def hallucination_order(self) -> np.ndarray:
        """Cells with spurious or missing nucleus parts, lowest nucleus IoU first."""
        bad = np.flatnonzero((self.spurious > 0) | (self.missing > 0))
        return bad[np.argsort(self.iou[bad], kind="stable")]


def mask_overlay(target: np.ndarray, virtual_nucleus: np.ndarray, target_nucleus: np.ndarray):
    """The target crop with nucleus masks: both (white), virtual only (red), target only (green)."""
    out = (np.asarray(target, np.float64) * 0.5).astype(np.uint8)
    out[virtual_nucleus & target_nucleus] = (255, 255, 255)
    out[virtual_nucleus & ~target_nucleus] = (230, 30, 30)
    out[~virtual_nucleus & target_nucleus] = (30, 200, 30)
    return out
