"""Open formats: scans and datasets to OME-Zarr / OME-TIFF, read back by reference readers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from acquisition.export_scan import export_scan
from acquisition.ome_image import ExportError
from acquisition.scanfile import ScanWriter, pixel_to_stage

HW = (30, 40)
POSITIONS = np.array([[100.0, 200.0, 5.0], [600.0, 200.0, 6.0], [1100.0, 700.0, 7.0]])


@pytest.fixture
def profile(pls43):
    return pls43.with_stack(pls43.stack[:3])


def _frame(field: int, channel: int) -> np.ndarray:
    rng = np.random.default_rng(100 * field + channel)
    return rng.integers(0, 256, (*HW, 3), dtype=np.uint8)


@pytest.fixture
def scan(tmp_path, profile):
    """Fields 0 and 2 acquired, field 1 pending."""
    path = tmp_path / "s1.unstained.scan.h5"
    w = ScanWriter(
        path,
        slide="s1",
        pass_="unstained",
        profile=profile,
        positions=POSITIONS,
        objective_name="20x",
    )
    for f in (0, 2):
        fw = w.new_field(f, HW)
        for c in range(len(w.channels)):
            meta = {"exposure_ms": 1.0, "gain": 1.0, "stage_x_um": 0.0, "stage_y_um": 0.0,
                    "stage_z_um": 0.0, "time": 0.0}  # fmt: skip
            fw.add(c, _frame(f, c), meta)
        w.field_done(fw.commit(z_um=float(POSITIONS[f, 2])))
    return path


def _expected_origin(f: int, pixel_size: float) -> tuple[float, float]:
    x, y = pixel_to_stage(0, 0, field_x_um=POSITIONS[f, 0], field_y_um=POSITIONS[f, 1],
                          width=HW[1], height=HW[0], pixel_size_um=pixel_size)  # fmt: skip
    return float(x), float(y)


def test_scan_to_ome_zarr_reads_back_with_ome_zarr_py(scan, profile, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = tmp_path / "s1.ome.zarr"
    path, n, raw = export_scan(scan, out, to="ome-zarr")
    assert (path, n, raw) == (out, 2, 2 * 3 * HW[0] * HW[1] * 3)
    root = json.loads((out / ".zattrs").read_text())
    assert root["bioformats2raw.layout"] == 3
    pixel = profile.scan_objective.pixel_size_um
    names = [ch.name for ch in profile.stack]
    for series, field in ((0, 0), (1, 2)):
        nodes = list(Reader(parse_url(str(out / str(series))))())
        image = nodes[0]
        data = np.asarray(image.data[0])
        assert data.shape == (9, *HW)
        expected = np.stack([_frame(field, c) for c in range(3)])  # (3, H, W, 3)
        np.testing.assert_array_equal(data, np.moveaxis(expected, -1, 1).reshape(9, *HW))
        meta = image.metadata
        assert meta["channel_names"] == [f"{n} {c}" for n in names for c in "RGB"]
        assert [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
        scale, translation = meta["coordinateTransformations"][0]
        assert scale["scale"] == pytest.approx([1.0, pixel, pixel])
        x0, y0 = _expected_origin(field, pixel)
        assert translation["translation"] == pytest.approx([0.0, y0, x0])
    # the OME-XML beside the images carries LED ids, angles, exposure and gain per channel
    from ome_types import from_xml

    ome = from_xml((out / "OME" / "METADATA.ome.xml").read_text(), validate=True)
    assert [img.name for img in ome.images] == ["s1 unstained field 0", "s1 unstained field 2"]
    assert ome.images[1].pixels.planes[0].position_z == pytest.approx(7.0)
    assert json.loads((out / "OME" / ".zattrs").read_text())["series"] == ["0", "1"]
    _check_channel_annotations(ome, profile)


def _check_channel_annotations(ome, profile) -> None:
    anns = {a.id: {m.k: m.value for m in a.value.ms} for a in ome.structured_annotations}
    ch = ome.images[0].pixels.channels[3]  # second stack image, R plane
    stack = profile.stack[1]
    values = anns[ch.annotation_refs[0].id]
    assert values["leds"] == ",".join(str(i) for i in stack.leds)
    assert float(values["exposure_ms"]) == pytest.approx(stack.exposure_ms)
    assert "theta_deg" in values and "phi_deg" in values
    assert ch.detector_settings.gain == pytest.approx(stack.gain)
    plane = ome.images[0].pixels.planes[3]
    assert plane.exposure_time == pytest.approx(stack.exposure_ms)


def test_scan_to_ome_tiff_reads_back_with_tifffile(scan, profile, tmp_path):
    import tifffile
    from ome_types import from_xml

    out = tmp_path / "s1.ome.tif"
    export_scan(scan, out, to="ome-tiff")
    pixel = profile.scan_objective.pixel_size_um
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome
        assert [(s.shape, s.axes) for s in tf.series] == [((9, *HW), "CYX")] * 2
        np.testing.assert_array_equal(tf.series[1].asarray()[3:6], np.moveaxis(_frame(2, 1), -1, 0))
        ome = from_xml(tf.ome_metadata, validate=True)
        res = tf.series[0].pages[0].tags["XResolution"].value
        assert res[0] / res[1] == pytest.approx(1e4 / pixel, rel=1e-6)
    px = ome.images[1].pixels
    assert px.physical_size_x == pytest.approx(pixel)
    assert [c.name for c in px.channels][:3] == [f"{profile.stack[0].name} {c}" for c in "RGB"]
    x0, y0 = _expected_origin(2, pixel)
    assert (px.planes[0].position_x, px.planes[0].position_y) == pytest.approx((x0, y0))
    _check_channel_annotations(ome, profile)


def test_export_refuses_unacquired_fields_and_foreign_targets(scan, tmp_path):
    with pytest.raises(ExportError, match=r"fields \[1\] were not acquired"):
        export_scan(scan, tmp_path / "a.ome.zarr", to="ome-zarr", fields=[1])
    foreign = tmp_path / "notes.ome.tif"
    foreign.write_text("mine")
    with pytest.raises(ExportError, match="not a ome-tiff export of scope; choose another --out"):
        export_scan(scan, foreign, to="ome-tiff")
    assert foreign.read_text() == "mine"
    # an export of scope is replaced in place
    out = tmp_path / "b.ome.zarr"
    export_scan(scan, out, to="ome-zarr", fields=[0])
    export_scan(scan, out, to="ome-zarr")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["0", "1", "OME"]


@pytest.mark.parametrize(("to", "name"), [("ome-zarr", "p.ome.zarr"), ("ome-tiff", "p.ome.tif")])
def test_export_streams_with_progress(scan, tmp_path, to, name):
    from acquisition.export_ome import EXPORT_BAR
    from acquisition.progress import NullProgress

    class Recorder(NullProgress):
        def __init__(self):
            self.calls = []

        def start(self, key, total, *, label=None, done=0):
            self.calls.append(("start", key, total))

        def advance(self, key, n=1, *, info=None):
            self.calls.append(("advance", key, info))

    rec = Recorder()
    export_scan(scan, tmp_path / name, to=to, progress=rec)
    frame_mb = HW[0] * HW[1] * 3 / 1e6
    assert rec.calls[0] == ("start", EXPORT_BAR, 6)  # one step per RGB frame, 6 in the scan
    advances = rec.calls[1:]
    assert [c[:2] for c in advances] == [("advance", EXPORT_BAR)] * 6
    total = f"{6 * frame_mb:,.0f} MB"
    assert all(f"of {total}" in c[2] and c[2].endswith("MB/s") for c in advances)
    assert advances[-1][2].startswith(f"{6 * frame_mb:,.0f} of")


def test_dataset_to_ome_zarr_has_one_image_per_cell_with_targets(tmp_path, pls43):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from registration.dataset import CELL_COLUMNS, DatasetWriter
    from registration.export_dataset import export_dataset

    table = pls43.channel_table()[:2]
    rng = np.random.default_rng(3)
    inputs = rng.integers(0, 256, (3, 2, 8, 8, 3), dtype=np.uint8)
    targets = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    rows = []
    for i in range(3):
        row = dict.fromkeys(CELL_COLUMNS, 0.0)
        row.update(slide="s", position=i, x_um=50.0 * i, y_um=10.0, qc_flags="", split="train",
                   has_highres=False)  # fmt: skip
        rows.append(row)
    ds = tmp_path / "d.dataset.h5"
    with DatasetWriter(ds, channels=list(table), crop_size=8, profile=pls43) as w:
        w.add(inputs, targets, rows)
    out = tmp_path / "d.ome.zarr"
    _, n, _ = export_dataset(ds, out, to="ome-zarr")
    assert n == 3
    image = next(iter(Reader(parse_url(str(out / "2")))()))
    data = np.asarray(image.data[0])
    assert data.shape == (12, 8, 8)
    np.testing.assert_array_equal(data[6:9], np.moveaxis(targets[2], -1, 0))
    np.testing.assert_array_equal(data[:3], np.moveaxis(inputs[2, 0], -1, 0))
    assert image.metadata["channel_names"][6:] == [
        "stained R", "stained G", "stained B", "stained 100x R", "stained 100x G",
        "stained 100x B",
    ]  # fmt: skip
    p = pls43.scan_objective.pixel_size_um
    scale, translation = image.metadata["coordinateTransformations"][0]
    assert scale["scale"] == pytest.approx([1.0, p, p])
    assert translation["translation"][1:] == pytest.approx([10.0 - 3.5 * p, 100.0 - 3.5 * p])


def test_a_missing_extra_is_one_line_naming_the_pip_install(monkeypatch):
    import sys

    from acquisition.extras import MissingExtra, require

    monkeypatch.setitem(sys.modules, "zarr", None)  # what an absent package looks like
    with pytest.raises(MissingExtra) as err:
        require("zarr", "formats", what="OME-Zarr export")
    assert "pip install 'scope-pls[formats]'" in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_exports_a_scan_and_errors_in_one_line(scan, tmp_path, capsys):
    from scope.cli import main

    out = tmp_path / "cli.ome.zarr"
    assert main(["export", "scan", str(scan), "--to", "ome-zarr", "--out", str(out), "-q"]) == 0
    assert "2 images" in capsys.readouterr().out
    assert (out / "1" / ".zattrs").is_file()
    missing = tmp_path / "nope.scan.h5"
    code = main(["export", "scan", str(missing), "--to", "ome-tiff", "--out", str(out) + ".tif"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_stain_images_carry_the_pixel_size(tmp_path, suffix):
    from acquisition.scaled_image import write_scaled_image

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = write_scaled_image(tmp_path / f"f{suffix}", rgb, 0.25)
    if suffix == ".tif":
        import tifffile

        with tifffile.TiffFile(path) as tf:
            assert tf.is_imagej and tf.imagej_metadata["unit"] in ("um", "micron")
            num, den = tf.pages[0].tags["XResolution"].value
            assert num / den == pytest.approx(4.0)
            np.testing.assert_array_equal(tf.asarray(), rgb)
    else:
        from PIL import Image

        with Image.open(path) as im:
            dpi = im.info["dpi"][0]  # Pillow converts pHYs (per metre) to dots per inch
            assert dpi == pytest.approx(0.0254 / 0.25e-6, rel=1e-4)
            np.testing.assert_array_equal(np.asarray(im), rgb)
