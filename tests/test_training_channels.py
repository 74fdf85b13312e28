"""Beyond RGB stains: dataset format 2, BSCCM import, fluorescence targets, pix2pix.

The BSCCM test folder is built exactly as the ``bsccm`` package's reader expects it (the
package has no writer): ``BSCCM_global_metadata.json``, ``BSCCM_index.csv`` (index column
``global_index`` with ``data_path``, ``batch``, ``slide_replicate``, ``antibodies``,
``has_matched_histology_cell``), ``BSCCM_images.zarr`` (zarr format 2, like the published
data) with ``{data_path}/led_array/cell_{i}`` and ``{data_path}/fluor/cell_{i}`` arrays, and
``BSCCM_surface_markers.csv`` with ten ``…selection_gated`` columns. The real package reads it.
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from registration.dataset import Dataset, DatasetError, DatasetWriter
from training import evaluate, train

LED = ["Brightfield", "DF_50", "DPC_Left", "LED119"]
FLUOR = ["Fluor_426-446", "Fluor_690-"]
N_CELLS = 24
SIZE = 32
TINY = {"features": 8, "batch_size": 4, "lr": 1e-3, "samples": 2, "patience": None}


def write_bsccm_folder(root, n=N_CELLS, size=SIZE, seed=0):
    """A tiny BSCCM folder: bright nuclei in both fluorescence channels, visible in the LEDs."""
    import pandas as pd
    import zarr

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "BSCCM_global_metadata.json").write_text(
        json.dumps(
            {
                "name": "BSCCM-scope-test",
                "led_array": {"channel_names": LED},
                "fluorescence": {"channel_names": FLUOR},
            }
        )
    )
    g = zarr.open_group(str(root / "BSCCM_images.zarr"), mode="w", zarr_format=2)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        path = f"batch_0/slide_{i % 2}"
        cy, cx = rng.uniform(8, size - 8, 2)
        nucleus = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
        led = np.stack(
            [1000 + 2000 * nucleus * (k + 1) + rng.normal(0, 20, nucleus.shape) for k in range(4)]
        ).astype(np.uint16)
        fl = np.stack([200 + 3000 * nucleus, 100 + 800 * nucleus]).astype(np.uint16)
        g.create_array(f"{path}/led_array/cell_{i}", data=led)
        g.create_array(f"{path}/fluor/cell_{i}", data=fl)
        rows.append(
            {
                "global_index": i,
                "data_path": path,
                "batch": 0,
                "slide_replicate": 0,
                "antibodies": "all",
                "has_matched_histology_cell": False,
                "position_in_fov_x_pix": 100.0 + i,
                "position_in_fov_y_pix": 200.0,
            }
        )
    pd.DataFrame(rows).to_csv(root / "BSCCM_index.csv", index=False)
    gated = {
        f"population_{k}_selection_gated": [(i % 10) == k for i in range(n)] for k in range(10)
    }
    pd.DataFrame({"global_index": range(n), **gated}).to_csv(
        root / "BSCCM_surface_markers.csv", index=False
    )
    return root


@pytest.fixture(scope="module")
def bsccm_dataset(tmp_path_factory):
    pytest.importorskip("bsccm")
    from registration.import_bsccm import import_bsccm

    tmp = tmp_path_factory.mktemp("bsccm")
    root = write_bsccm_folder(tmp / "BSCCM-tiny")
    progress = CellCounter()
    path = import_bsccm(root, tmp / "bsccm.dataset.h5", seed=0, progress=progress)
    with Dataset(path) as ds:  # the import reports every cell it writes, on one bar
        assert progress.started == [("cells", len(ds))] and progress.advanced == len(ds)
    return path


class CellCounter:
    """A progress (the shared protocol) that records the ``cells`` bar."""

    def __init__(self):
        self.started, self.advanced = [], 0

    def start(self, key, total, *, label=None, done=0):
        self.started.append((key, total))

    def advance(self, key, n=1, *, info=None):
        assert key == "cells"
        self.advanced += n

    def note(self, text, *, warning=False):
        pass

    def close(self):
        pass


def test_simulated_dataset_reports_each_cell_rendered(tmp_path):
    from training.simulated import simulate_dataset

    progress = CellCounter()
    simulate_dataset(
        tmp_path / "s.dataset.h5",
        slides=("sim-p",),
        cells_per_slide=2,
        crop_size=32,
        highres=False,
        progress=progress,
    )
    assert progress.started == [("cells", 2)] and progress.advanced == 2


def test_bsccm_import_keeps_channels_dtype_and_labels(bsccm_dataset):
    with Dataset(bsccm_dataset) as ds:
        assert ds.inputs.shape == (N_CELLS, 4, SIZE, SIZE, 1)
        assert ds.inputs.dtype == np.uint16 and ds.targets.dtype == np.uint16
        assert ds.targets.shape == (N_CELLS, SIZE, SIZE, 2)
        assert ds.target_names == FLUOR
        assert not ds.rgb_stain_target
        assert list(ds.channels["kind"]) == ["brightfield", "darkfield", "pls", "pls"]
        assert math.isclose(float(ds.channels["theta_deg"][1]), 30.0, abs_tol=1e-6)
        # stack presets work on the LED metadata: le36 keeps the 30° darkfield ring only
        from hardware_profiles.presets import select_channels

        assert select_channels(ds.channels, "le36") == [0, 1]
        assert select_channels(ds.channels, "full") == [0, 1, 2, 3]
        assert list(ds.target_channels["wavelength_nm"]) == [436.0, 690.0]
        # the reader's values, unchanged (cell 3: the raw zarr array)
        root = bsccm_dataset.parent / "BSCCM-tiny"
        import zarr

        raw = zarr.open_group(str(root / "BSCCM_images.zarr"), mode="r")
        row = int(np.flatnonzero(ds.cells["position"] == 3)[0])
        np.testing.assert_array_equal(
            ds.inputs[row, :, :, :, 0], raw["batch_0/slide_1/led_array/cell_3"][:]
        )
        np.testing.assert_array_equal(
            np.moveaxis(ds.targets[row], -1, 0), raw["batch_0/slide_1/fluor/cell_3"][:]
        )
        # labels: population k gated for cells i % 10 == k; 3 classes {0}, {1,2,3}, {7,8,9}
        ten = ds.cells["bsccm_class10"]
        assert list(ten) == [int(p) % 10 for p in ds.cells["position"]]
        three = ds.cells["bsccm_class3"]
        expect = {0: 0, 1: 1, 2: 1, 3: 1, 7: 2, 8: 2, 9: 2}
        assert list(three) == [expect.get(int(t), -1) for t in ten]
        assert set(ds.cells["split"]) == {"train", "val", "test"}


def test_bsccm_import_names_unknown_channels(tmp_path):
    pytest.importorskip("bsccm")
    from registration.import_bsccm import import_bsccm

    root = write_bsccm_folder(tmp_path / "b", n=3)
    with pytest.raises(DatasetError, match="no fluorescence channel Fluor_999"):
        import_bsccm(root, tmp_path / "x.dataset.h5", targets=["Fluor_999"])
    with pytest.raises(DatasetError, match="not a BSCCM folder"):
        import_bsccm(tmp_path, tmp_path / "x.dataset.h5")


def test_pix2pix_trains_and_evaluates_on_bsccm(bsccm_dataset, tmp_path):
    run = tmp_path / "p2p"
    result = train(
        {
            "dataset": bsccm_dataset,
            "out": run,
            "preset": "pix2pix",
            "stack": "full",
            "epochs": 2,
            "device": "cpu",
            **TINY,
        },
        progress=None,
    )
    assert result.epochs_done == 2
    cfg = json.loads(json.dumps(result.history[-1]))
    assert math.isfinite(cfg["train_gan"]) and math.isfinite(cfg["train_d"])
    from training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(result.best_checkpoint)
    info = ckpt["model"]
    assert info["generator"] == "unet" and info["in_channels"] == 4
    assert info["target_names"] == FLUOR
    # uint16 scales measured on the training cells: far below 65535, above the background
    assert all(400 < s < 65535 for s in info["target_scale"])
    summary = evaluate(run, split="test", device="cpu", progress=None)
    assert summary["cells"] > 0 and 0 <= summary["mae"] <= 1
    doc = json.loads((summary["dir"] / "summary.json").read_text())
    assert set(doc["mean"]) >= {f"mae_{t}" for t in FLUOR}
    assert doc["clinical"] is None and "not a stained RGB image" in doc["notes"][0]
    assert (summary["dir"] / "best_8.png").is_file()
    # whole-scan staining is for RGB stain models: a one-line refusal, not wrong colours
    from training.errors import CheckpointError
    from training.infer import load_generator

    with pytest.raises(CheckpointError, match="RGB stain models only"):
        load_generator(run, device="cpu")


@pytest.mark.slow  # simulates, trains and evaluates end to end
def test_simulated_fluorescence_target_trains_and_evaluates(tmp_path):
    from training.simulated import simulate_dataset

    path = simulate_dataset(
        tmp_path / "fl.dataset.h5",
        slides=("sim-a",),
        cells_per_slide=16,
        crop_size=32,
        seed=0,
        target="fluorescence",
    )
    with Dataset(path) as ds:
        assert ds.targets.shape == (16, 32, 32, 1) and ds.targets.dtype == np.uint16
        assert ds.target_names == ["DNA"]
        t = ds.targets[:].astype(float)
        # nuclei (bright, shot noise) over a dim background; nuclei fill about half of a
        # 32-pixel crop centred on a cell (a third of a neutrophil's area, most of a
        # lymphocyte's), so the background is the darkest tenth, not the median
        assert t.max() > 10 * np.percentile(t, 10)
    run = tmp_path / "fl"
    result = train(
        {
            "dataset": path,
            "out": run,
            "preset": "maePFNET",  # perceptual term must switch itself off (one channel)
            "stack": "brightfield",
            "epochs": 2,
            "device": "cpu",
            "blocks": 1,
            **TINY,
        },
        progress=None,
    )
    assert "train_perceptual" not in result.history[-1]
    summary = evaluate(run, split="val", device="cpu", progress=None)
    assert summary["cells"] > 0 and summary["vgg"] is None


def test_nuclear_stain_is_blurred_shot_noise():
    from acquisition.simulator.fluorescence import nuclear_stain

    dna = np.zeros((64, 64))
    dna[24:40, 24:40] = 1.0
    img = nuclear_stain(dna, np.random.default_rng(0), peak_photons=1000, background_photons=10)
    assert img.dtype == np.uint16
    inside, outside = img[28:36, 28:36].astype(float), img[:10, :10].astype(float)
    assert abs(inside.mean() - 1010) < 30 and abs(outside.mean() - 10) < 2
    assert abs(inside.var() / inside.mean() - 1) < 0.35  # Poisson: variance ≈ mean
    assert 10 < img[32, 24] < 1010  # the edge is blurred


#: a one-channel table, as a dataset writer takes it
BF_CHANNEL = {
    "name": "bf",
    "leds": "0",
    "kind": "brightfield",
    "exposure_level": "single",
    "theta_deg": 0.0,
    "phi_deg": 0.0,
    "exposure_ms": 1.0,
    "gain": 1.0,
    "brightness": 1,
}


def test_format_1_files_still_read(tmp_path):
    path = tmp_path / "old.dataset.h5"
    chans = [dict(BF_CHANNEL)]
    with DatasetWriter(path, channels=chans, crop_size=8) as w:
        assert w.c_in == 3 and w.c_out == 3
    with h5py.File(path, "r+") as f:  # what a format-1 writer left: no target_channels table
        del f["target_channels"]
        f.attrs["format_version"] = 1
    with Dataset(path) as ds:
        assert ds.target_names == ["R", "G", "B"] and ds.rgb_stain_target
        assert ds.input_components == 3


def test_writer_refuses_wrong_shapes(tmp_path):
    chans = [dict(BF_CHANNEL)]
    with pytest.raises(DatasetError, match="uint8 or uint16"):
        DatasetWriter(
            tmp_path / "a.dataset.h5", channels=chans, crop_size=8, target_dtype=np.float32
        )
    w = DatasetWriter(
        tmp_path / "b.dataset.h5",
        channels=chans,
        crop_size=8,
        input_components=1,
        target_channels=[{"name": "DNA"}],
        target_dtype=np.uint16,
    )
    with pytest.raises(DatasetError, match=r"targets must be \(1, 8, 8, 1\) uint16"):
        w.add(np.zeros((1, 1, 8, 8, 1), np.uint8), np.zeros((1, 8, 8, 3), np.uint8), [{}])
    w.abort()
