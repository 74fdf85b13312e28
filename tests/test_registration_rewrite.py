"""Slide-level dedup and the dataset rewrites (100x, merge) on controlled inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from registration.cell_match import CellMatch
from registration.dataset import Dataset, DatasetWriter, compression_name
from registration.highres_dataset import rewrite_dataset
from registration.scan_pair import ScanPair
from registration.slide_qc import dedup_cells


def _pair(width: int = 640, height: int = 400) -> ScanPair:
    centres = np.zeros((1, 2))
    return ScanPair("u.h5", "s.h5", "s1", 0.3, width, height, 1, 0, 0, centres, centres)


def _reference_dedup(cells, xy, pair, radius):
    """The plain definition: clusters by pairwise distance (union-find), best of each."""
    n = len(cells)
    parent = list(range(n))

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    for a in range(n):
        for b in range(a + 1, n):
            if np.hypot(*(xy[a] - xy[b])) <= radius:
                parent[root(a)] = root(b)

    def quality(k):
        cm = cells[k]
        x, y = cm.stained_xy
        edge = min(x, y, pair.width - 1 - x, pair.height - 1 - y)
        return ("near_edge" not in cm.flags, -len(cm.flags), edge, cm.ssim)

    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(root(k), []).append(k)
    return sorted(max(members, key=quality) for members in groups.values())


def test_dedup_keeps_the_best_detection_of_each_cluster():
    rng = np.random.default_rng(3)
    pair = _pair()
    n = 400
    # clusters of 1-3 detections (a cell seen in overlapping fields), some exact ties
    centres = rng.uniform(0, 2000, size=(n // 2, 2))
    xy = np.concatenate([centres, centres[: n // 2] + rng.normal(0, 1.5, size=(n // 2, 2))])
    flags = [set() if rng.random() > 0.3 else {"near_edge"} for _ in range(n)]
    cells = [
        CellMatch(
            field=0,
            stained_xy=(float(rng.uniform(0, 640)), float(rng.uniform(0, 400))),
            unstained_xy=(0.0, 0.0),
            ssim=float(np.round(rng.uniform(0, 1), 1)),  # ties: the first detection wins
            input_origin=(0, 0),
            target_origin=(0, 0),
            flags=flags[k],
        )
        for k in range(n)
    ]
    keep = dedup_cells(cells, xy, pair, 5.0)
    assert list(keep) == _reference_dedup(cells, xy, pair, 5.0)
    assert len(keep) < n  # there were duplicates to drop
    assert len(dedup_cells([], np.zeros((0, 2)), pair, 5.0)) == 0


def _dataset(path, *, compression: str, dtype=np.uint16, c_in: int = 1) -> None:
    led = {"exposure_level": "normal", "exposure_ms": 10.0, "gain": 1.0, "brightness": 255}
    channels = [
        {"name": "bf", "kind": "brightfield", "leds": "0", "theta_deg": 0.0, "phi_deg": 0.0},
        {"name": "p1", "kind": "pls", "leds": "1", "theta_deg": 10.0, "phi_deg": 0.0},
    ]
    channels = [{**c, **led} for c in channels]
    rows = [
        {
            "slide": "s1",
            "position": 0,
            "x_px": 10.0,
            "y_px": 10.0,
            "stained_x_px": 10.0,
            "stained_y_px": 10.0,
            "x_um": float(k),
            "y_um": 0.0,
            "stained_x_um": float(k),
            "stained_y_um": 0.0,
            "coarse_score": 0.5,
            "ssim": 0.5,
            "has_highres": False,
            "highres_score": math.nan,
            "highres_scale": math.nan,
            "qc_flags": "",
            "split": "train",
        }
        for k in range(3)
    ]
    rng = np.random.default_rng(0)
    with DatasetWriter(
        path,
        channels=channels,
        crop_size=16,
        compression=compression,
        input_components=c_in,
        input_dtype=dtype,
        target_dtype=dtype,
    ) as w:
        w.add(
            rng.integers(0, 4000, size=(3, 2, 16, 16, c_in)).astype(dtype),
            rng.integers(0, 4000, size=(3, 16, 16, 3)).astype(dtype),
            rows,
        )


@pytest.mark.parametrize("compression", ["gzip", "none", "zstd"])
def test_highres_rewrite_keeps_the_source_layout(tmp_path, compression):
    src, out = tmp_path / "a.dataset.h5", tmp_path / "b.dataset.h5"
    _dataset(src, compression=compression)
    with Dataset(src) as ds:
        cells = ds.cells.copy()
        assert compression_name(ds.inputs) == compression
        inputs = ds.inputs[:]
    cells["has_highres"][1] = True
    target = np.full((16, 16, 3), 1234, np.uint16)
    rewrite_dataset(src, out, cells, {1: target}, {"note": "x"}, "test")
    with Dataset(out) as ds:
        assert compression_name(ds.inputs) == compression
        assert compression_name(ds.targets_highres) == compression
        assert ds.inputs.dtype == np.uint16 and ds.input_components == 1
        np.testing.assert_array_equal(ds.inputs[:], inputs)
        np.testing.assert_array_equal(ds.targets_highres[1], target)
        assert not ds.targets_highres[0].any() and list(ds.cells["has_highres"]) == [0, 1, 0]


def test_merge_keeps_the_source_compression(tmp_path):
    from registration.manage import resplit_dataset

    src = tmp_path / "a.dataset.h5"
    _dataset(src, compression="gzip", dtype=np.uint8, c_in=3)
    resplit_dataset(src, out=tmp_path / "b.dataset.h5", seed=1)
    with Dataset(tmp_path / "b.dataset.h5") as ds:
        assert compression_name(ds.inputs) == "gzip"
