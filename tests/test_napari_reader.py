"""The napari reader, exercised headless through npe2's API (no napari, no GUI)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from acquisition.scanfile import ScanWriter, pixel_to_stage

MANIFEST = Path(__file__).resolve().parents[1] / "scope" / "napari.yaml"
HW = (24, 32)


@pytest.fixture(scope="module")
def npe2_read():
    """``read(path)`` through npe2 with scope's manifest registered."""
    with warnings.catch_warnings():  # npe2 still uses pydantic-1 idioms
        warnings.simplefilter("ignore", DeprecationWarning)
        npe2 = pytest.importorskip("npe2", reason="npe2 (the napari extra) is not installed")
        pm = npe2.PluginManager.instance()  # npe2 runs commands through its global manager
        manifest = npe2.PluginManifest.from_file(MANIFEST)
        pm.discover()  # an installed scope-pls registers itself through its entry point
        if manifest.name not in {m.name for m in pm.iter_manifests()}:
            pm.register(manifest)

    def read(path: Path) -> list:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            readers = list(pm.iter_compatible_readers([str(path)]))
            assert [r.command for r in readers] == ["scope-pls.get_reader"]
            return npe2.read([str(path)], stack=False, plugin_name="scope-pls")

    return read


def _frame(f: int, c: int) -> np.ndarray:
    return np.random.default_rng(10 * f + c).integers(0, 256, (*HW, 3), dtype=np.uint8)


def test_scan_opens_as_one_layer_per_field_in_um(npe2_read, pls43, tmp_path):
    prof = pls43.with_stack(pls43.stack[:2])
    path = tmp_path / "n.unstained.scan.h5"
    positions = np.array([[50.0, 80.0, 0.0], [500.0, 80.0, 0.0]])
    w = ScanWriter(path, slide="n", pass_="unstained", profile=prof, positions=positions,
                   objective_name="20x")  # fmt: skip
    meta = {"exposure_ms": 1.0, "gain": 1.0, "stage_x_um": 0.0, "stage_y_um": 0.0,
            "stage_z_um": 0.0, "time": 0.0}  # fmt: skip
    for f in range(2):
        fw = w.new_field(f, HW)
        for c in range(2):
            fw.add(c, _frame(f, c), meta)
        w.field_done(fw.commit(z_um=0.0))
    layers = npe2_read(path)
    assert [kw["name"] for _, kw, _ in layers] == ["n unstained field 0", "n unstained field 1"]
    data, kw, kind = layers[1]
    p = pls43.scan_objective.pixel_size_um
    assert kind == "image" and kw["rgb"] and data.shape == (2, *HW, 3)
    np.testing.assert_array_equal(data[1], _frame(1, 1))
    np.testing.assert_array_equal(np.asarray(data), np.stack([_frame(1, 0), _frame(1, 1)]))
    assert kw["metadata"]["channel_names"] == [ch.name for ch in prof.stack]
    assert kw["scale"] == pytest.approx((1.0, p, p))
    x0, y0 = pixel_to_stage(0, 0, field_x_um=500.0, field_y_um=80.0, width=HW[1],
                            height=HW[0], pixel_size_um=p)  # fmt: skip
    assert kw["translate"] == pytest.approx((0.0, float(y0), float(x0)))


def test_dataset_and_stain_outputs_open_with_scale(npe2_read, pls43, tmp_path):
    import h5py

    from acquisition.tables import write_table
    from registration.dataset import CELL_COLUMNS, DatasetWriter

    table = pls43.channel_table()[:2]
    inputs = np.random.default_rng(0).integers(0, 256, (2, 2, 8, 8, 3), dtype=np.uint8)
    targets = inputs[:, 0].copy()
    rows = [dict(dict.fromkeys(CELL_COLUMNS, 0.0), slide="s", position=i, qc_flags="",
                 split="train", has_highres=False) for i in range(2)]  # fmt: skip
    ds = tmp_path / "d.dataset.h5"
    with DatasetWriter(ds, channels=list(table), crop_size=8, profile=pls43) as wr:
        wr.add(inputs, targets, rows)
    layers = npe2_read(ds)
    p = pls43.scan_objective.pixel_size_um
    assert [kw["name"] for _, kw, _ in layers] == ["d inputs", "d stained", "d stained 100x"]
    data, kw, _ = layers[0]
    assert data.shape == (2, 2, 8, 8, 3) and kw["scale"] == pytest.approx((1, 1, p, p))
    assert kw["metadata"]["channel_names"] == [str(r["name"]) for r in table]
    np.testing.assert_array_equal(layers[1][0][1], targets[1])

    stained = tmp_path / "s.stained-virtual.h5"
    with h5py.File(stained, "w") as f:
        f.attrs.update({"format": "scope-stained", "pixel_size_um": 0.5})
        f["images"] = inputs[:, 0]
        pos = np.zeros(2, dtype=[("position", np.int64), ("x_um", np.float64),
                                 ("y_um", np.float64), ("z_um", np.float64)])  # fmt: skip
        pos["position"], pos["x_um"] = [3, 7], [10.0, 20.0]
        write_table(f, "positions", pos)
    layers = npe2_read(stained)
    assert [kw["name"] for _, kw, _ in layers] == ["stained field 3", "stained field 7"]
    data, kw, _ = layers[1]
    np.testing.assert_array_equal(np.asarray(data), inputs[1, 0])
    assert kw["translate"] == pytest.approx((-3.5 * 0.5, 20.0 - 3.5 * 0.5))


def test_other_files_are_left_to_other_readers():
    from scope.napari import get_reader

    assert get_reader("image.tif") is None
    assert get_reader(["a.scan.h5", "b.png"]) is None
    assert get_reader("x.scan.h5") is not None
