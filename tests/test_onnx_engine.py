"""Models out of PyTorch: ONNX export and ``scope stain --engine onnx`` equal to PyTorch."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from acquisition.scanfile import ScanWriter
from training.checkpoint import model_info, save_checkpoint
from training.models import build_generator

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

HW = (40, 56)


@pytest.fixture(scope="module")
def run(tmp_path_factory, pls43):
    """A run folder holding a (randomly initialised) 3-image RRDB generator."""
    names = [ch.name for ch in pls43.stack[:3]]
    torch.manual_seed(0)
    kwargs = {"blocks": 1, "features": 8, "growth": 8}
    gen = build_generator("rrdb", 9, **kwargs)
    info = model_info(generator="rrdb", generator_kwargs={**kwargs, "padding": "reflect"},
                      in_channels=9, channel_names=names, stack="custom", target="stained",
                      crop_size=32, pixel_size_um=pls43.scan_objective.pixel_size_um)  # fmt: skip
    folder = tmp_path_factory.mktemp("runs") / "tiny"
    save_checkpoint(
        folder / "checkpoints" / "best.pt",
        {"epoch": 3, "model": info, "generator": gen.state_dict()},
    )
    return folder


@pytest.fixture(scope="module")
def scan(tmp_path_factory, pls43):
    prof = pls43.with_stack(pls43.stack[:3])
    path = tmp_path_factory.mktemp("scan") / "o.unstained.scan.h5"
    w = ScanWriter(path, slide="o", pass_="unstained", profile=prof,
                   positions=np.array([[0.0, 0.0, 0.0], [90.0, 0.0, 0.0]]),
                   objective_name="20x")  # fmt: skip
    rng = np.random.default_rng(0)
    meta = {"exposure_ms": 1.0, "gain": 1.0, "stage_x_um": 0.0, "stage_y_um": 0.0,
            "stage_z_um": 0.0, "time": 0.0}  # fmt: skip
    for f in range(2):
        fw = w.new_field(f, HW)
        for c in range(3):
            fw.add(c, rng.integers(0, 256, (*HW, 3), dtype=np.uint8), meta)
        w.field_done(fw.commit(z_um=0.0))
    return path


@pytest.mark.slow  # torch.onnx export
def test_exported_model_is_one_file_with_dynamic_size_and_opset(run, tmp_path):
    import onnx
    import onnxruntime as ort

    from training.checkpoint import generator_from_checkpoint, load_checkpoint
    from training.export_onnx import export_onnx

    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    gen = generator_from_checkpoint(ckpt)
    out = export_onnx(gen, tmp_path / "m.onnx", model_info=ckpt["model"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no external data file
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == [1, 9] and all(isinstance(d, str) for d in dims[2:])
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scope.opset"] == "18" and "pls_00" in meta["scope.channel_names"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for h, w in ((37, 51), (64, 48)):  # sizes other than the export sample
        x = torch.rand(1, 9, h, w)
        (y,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(y, gen(x).numpy(), atol=1e-4)


@pytest.mark.slow  # torch.onnx export
def test_stain_with_onnx_equals_pytorch_and_caches_the_export(run, scan, tmp_path):
    from training import stain_scan

    outs = {}
    for engine in ("torch", "onnx"):
        h5 = stain_scan(run, scan, tmp_path / engine, formats=(), engine=engine, device="cpu",
                        precision="fp32", tile=32, progress=None)  # fmt: skip
        with h5py.File(h5, "r") as f:
            outs[engine] = f["images"][()].astype(int)
    assert outs["torch"].shape == (2, *HW, 3)
    # uint8 outputs: equal within 1e-3 before rounding means at most one level apart
    assert np.abs(outs["onnx"] - outs["torch"]).max() <= 1
    assert np.mean(outs["onnx"] != outs["torch"]) < 0.01
    cached = run / "export" / "best.onnx"
    stamp = cached.stat().st_mtime_ns
    stain_scan(run, scan, tmp_path / "again", formats=(), engine="onnx", device="cpu",
               progress=None)  # fmt: skip
    assert cached.stat().st_mtime_ns == stamp  # reused, not exported again


@pytest.mark.slow  # torch.onnx export
def test_onnx_field_equals_pytorch_within_1e3(run, scan):
    from acquisition.scanfile import ScanFile
    from training.export_onnx import OnnxGenerator, cached_onnx
    from training.infer import load_generator, stain_field

    gen, _ckpt, _dev, _bf16 = load_generator(run, device="cpu", precision="fp32")
    onnx_gen = OnnxGenerator(cached_onnx(run), gen)
    with ScanFile(scan) as sf:
        stack = sf.stack(1)
    ref = stain_field(gen, stack, tile=32, dtype=np.float32)
    got = stain_field(onnx_gen, stack, tile=32, dtype=np.float32)
    assert np.abs(got - ref).max() < 1e-3


def test_engine_choice(run):
    from training.errors import TrainingError
    from training.export_onnx import CPU_DEFAULT_ENGINE, resolve_engine

    assert resolve_engine("auto", torch.device("cpu")) == CPU_DEFAULT_ENGINE
    assert resolve_engine("auto", torch.device("cuda")) == "torch"
    with pytest.raises(TrainingError, match="--engine onnx runs on the CPU"):
        resolve_engine("onnx", torch.device("cuda"))


@pytest.mark.slow  # torch.onnx export
def test_cli_exports_a_model(run, tmp_path, capsys):
    from scope.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "model", str(run), "--to", "onnx", "--out", str(out)]) == 0
    assert "opset 18" in capsys.readouterr().out and out.is_file()


@pytest.mark.slow  # torch.onnx export and bioimage.io validation
def test_bioimageio_package_validates_offline_and_its_weights_reproduce_the_test(run, tmp_path):
    pytest.importorskip("bioimageio.spec", reason="the bioimageio extra is not installed")
    import onnxruntime as ort
    import yaml

    from scope.cli import main
    from training.bioimageio_package import validate

    out = tmp_path / "pkg"
    args = ["export", "model", str(run), "--to", "bioimageio", "--out", str(out),
            "--author", "A. Lab", "--cite", "https://example.org/scope"]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "model.onnx", "rdf.yaml", "test_input.npy", "test_output.npy",
    ]  # fmt: skip
    assert validate(out / "rdf.yaml") in ("valid-format", "passed")
    desc = yaml.safe_load((out / "rdf.yaml").read_text())
    axes = desc["inputs"][0]["axes"]
    assert axes[1]["channel_names"][:3] == ["brightfield R", "brightfield G", "brightfield B"]
    assert desc["outputs"][0]["axes"][2]["halo"] == 18  # the 1-block RRDB's receptive radius
    x = np.load(out / "test_input.npy")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": x / 255.0})
    np.testing.assert_allclose(np.clip(y, 0, 1), np.load(out / "test_output.npy"), atol=1e-3)
    assert main(["export", "model", str(run), "--to", "bioimageio", "--out", str(out)]) == 1
