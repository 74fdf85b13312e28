"""A bioimage.io model package of a run: ``rdf.yaml`` + ONNX weights + test tensors.

``scope export model RUN --to bioimageio --out DIR --author NAME --cite URL`` writes ``DIR/``:
``rdf.yaml`` (model spec 0.5), ``model.onnx`` (:func:`training.export_onnx.export_onnx`),
``test_input.npy`` / ``test_output.npy`` (a deterministic 64x64 stack, values 0..255, and
the PyTorch generator's answer) and ``README.md``. The input takes the stack images
image-major RGB with values 0..255 (``scale_linear`` by 1/255 as preprocessing), named
``<image> R/G/B``, at the run's pixel size; the output is RGB in [0, 1] (``clip``). The RRDB
generator takes any size of at least 64 px with a halo of its receptive radius; the U-Net its
crop size. The package is validated offline with ``bioimageio.spec`` before it is kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.errors import TrainingError

FORMAT_VERSION = "0.5.4"
TEST_SIZE = 64


def _space(axis: str, size: Any, scale: float | None, halo: int | None = None) -> dict:
    out: dict[str, Any] = {"type": "space", "id": axis, "size": size}
    if scale:
        out.update(unit="micrometer", scale=float(scale))
    if halo:
        out["halo"] = int(halo)
    return out


def rdf(info: dict[str, Any], *, author: str, cite: str, license: str, name: str) -> dict:
    """The model description (a dict ready for YAML) for a checkpoint's ``model`` info."""
    names = [f"{n} {c}" for n in info["channel_names"] for c in "RGB"]
    p = info.get("pixel_size_um")
    if info["generator"] == "rrdb":
        kw = info.get("generator_kwargs", {})
        halo = 15 * int(kw.get("blocks", 4)) + 3
        in_size: Any = {"min": TEST_SIZE, "step": 16}
    else:
        halo, in_size = None, int(info["crop_size"])
    out_size = (lambda a: {"tensor_id": "input", "axis_id": a}) if halo else (lambda a: in_size)
    cite_entry = {"text": f"{name} (trained with scope)"}
    cite_entry["doi" if cite.startswith("10.") else "url"] = cite
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": "Virtual Romanowsky staining of an unstained blood smear from LED-array "
        f"(point-light-source) images: stack {info.get('stack')}, target {info.get('target')}.",
        "authors": [{"name": author}],
        "cite": [cite_entry],
        "license": license,
        "documentation": "README.md",
        "tags": ["virtual-staining", "blood-smear", "led-array", "brightfield", "2d"],
        "inputs": [
            {
                "id": "input",
                "description": "stack images, image-major RGB, values 0..255",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": names},
                    _space("y", in_size, p),
                    _space("x", in_size, p),
                ],
                "test_tensor": {"source": "test_input.npy"},
                "data": {"type": "float32"},
                "preprocessing": [
                    {"id": "scale_linear", "kwargs": {"gain": 1.0 / 255.0, "offset": 0.0}}
                ],
            }
        ],
        "outputs": [
            {
                "id": "output",
                "description": "virtually stained RGB in [0, 1]",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["R", "G", "B"]},
                    _space("y", out_size("y"), p, halo),
                    _space("x", out_size("x"), p, halo),
                ],
                "test_tensor": {"source": "test_output.npy"},
                "data": {"type": "float32"},
                "postprocessing": [{"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}],
            }
        ],
        "weights": {"onnx": {"source": "model.onnx", "opset_version": 18}},
    }


def _readme(info: dict[str, Any], name: str) -> str:
    return (
        f"# {name}\n\nA virtual-staining generator trained with scope on LED-array images of "
        "unstained blood smears.\n\n"
        f"- stack images (in order): {', '.join(info['channel_names'])}\n"
        f"- target: {info.get('target')}; pixel size {info.get('pixel_size_um')} µm\n"
        f"- generator: {info['generator']} {info.get('generator_kwargs')}\n\n"
        "## Validation\n\nThe test tensors are a deterministic random stack and the PyTorch "
        "generator's output; the ONNX weights reproduce it within 1e-3. Validate the model on "
        "held-out slides with `scope evaluate` before use.\n"
    )


def write_bioimageio(
    run: str | Path,
    out: str | Path,
    *,
    author: str,
    cite: str,
    license: str = "CC-BY-4.0",
    checkpoint: str = "best",
    name: str | None = None,
) -> Path:
    """Write and validate the package folder ``out``; returns ``out/rdf.yaml``."""
    from acquisition.extras import require

    require("bioimageio.spec", "bioimageio", what="the bioimage.io export")
    import yaml

    from training.checkpoint import generator_from_checkpoint, load_checkpoint, resolve_checkpoint
    from training.export_onnx import export_onnx

    if not author.strip() or not cite.strip():
        raise TrainingError("a bioimage.io package needs --author NAME and --cite URL or DOI")
    from training.checkpoint import require_rgb_stain_model

    ckpt_path = resolve_checkpoint(run, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    info = ckpt["model"]
    require_rgb_stain_model(info, source=str(ckpt_path), what="the bioimage.io package")
    gen = generator_from_checkpoint(ckpt).float().eval()
    name = name or f"scope {Path(run).name} {info.get('stack')}"
    out = Path(out)
    if out.exists() and not (out / "rdf.yaml").is_file():
        raise TrainingError(f"{out} exists and is not a bioimage.io package; choose another --out")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        export_onnx(gen, tmp / "model.onnx", model_info=info)
        size = TEST_SIZE if info["generator"] == "rrdb" else int(info["crop_size"])
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (1, int(info["in_channels"]), size, size)).astype(np.float32)
        with torch.no_grad():
            y = gen(torch.from_numpy(x / 255.0)).clamp(0, 1).numpy().astype(np.float32)
        np.save(tmp / "test_input.npy", x)
        np.save(tmp / "test_output.npy", y)
        (tmp / "README.md").write_text(_readme(info, name), encoding="utf-8")
        desc = rdf(info, author=author, cite=cite, license=license, name=name)
        (tmp / "rdf.yaml").write_text(yaml.safe_dump(desc, sort_keys=False), encoding="utf-8")
        validate(tmp / "rdf.yaml")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "rdf.yaml"


def validate(path: str | Path) -> str:
    """Validate a package offline with ``bioimageio.spec``; returns its status."""
    import gc
    import warnings

    from bioimageio.spec import load_description

    with warnings.catch_warnings():
        # bioimageio.spec leaves the files it checks to the garbage collector
        warnings.simplefilter("ignore", ResourceWarning)
        desc = load_description(Path(path), perform_io_checks=True)
        summary = desc.validation_summary
        status = str(summary.status)
        problem = ""
        if status not in ("valid-format", "passed"):
            errors = [e for d in summary.details for e in (getattr(d, "errors", None) or [])]
            problem = str(errors[0]) if errors else summary.format()
        del desc, summary
        gc.collect()
    if problem:
        raise TrainingError(f"the bioimage.io package {path} does not validate: {problem}")
    return status
