"""Models out of PyTorch: ONNX export of a run's generator and an onnxruntime engine.

``export_onnx`` writes one self-contained ``.onnx`` file (weights inside, never an external
``.data`` file) whose input ``input`` is ``(1, 3 x n_images, height, width)`` float32 in
[0, 1] with dynamic height and width, and whose output ``output`` is ``(1, 3, height,
width)``. The opset and the stack channel names are recorded in the model's metadata.

``scope stain --engine onnx`` needs only the run: :func:`cached_onnx` reuses
``RUN/export/<checkpoint>.onnx`` while the checkpoint is unchanged, else exports it again.
:class:`OnnxGenerator` wraps an onnxruntime session behind the generator interface that
:func:`training.tiling.stain_field` tiles, so both engines share the tiling and blending.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.errors import TrainingError

DEFAULT_OPSET = 18
ENGINES = ("auto", "torch", "onnx")
#: ``--engine auto`` on an fp32 CPU. benchmarks/bench_onnx.py (docs/benchmarks.md) found no
#: clear winner on 2 loaded cores (onnxruntime 14-28 % less wall time, PyTorch 3-6 % less
#: CPU time), so the tie goes to PyTorch, which needs no export; set "onnx" when a re-run on an
#: unloaded machine shows onnxruntime faster. On a GPU: PyTorch (onnxruntime here is CPU-only).
CPU_DEFAULT_ENGINE = "torch"


def _require_onnx(what: str) -> None:
    from acquisition.extras import require

    require("onnx", "onnx", what=what)
    require("onnxscript", "onnx", what=what)


def export_onnx(
    generator: nn.Module,
    out: str | Path,
    *,
    model_info: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    sample_hw: tuple[int, int] = (64, 64),
) -> Path:
    """Export ``generator`` (any device; exported on the CPU in float32) to ``out``."""
    _require_onnx("ONNX export")
    import onnx

    from acquisition.files import atomic_output

    out = Path(out)
    plain = getattr(generator, "_orig_mod", generator)
    in_ch = int(getattr(plain, "in_channels", 3))
    model = _cpu_copy(plain)
    sample = torch.rand(1, in_ch, *sample_hw)
    out.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    with atomic_output(out, keep_suffix=True) as part, warnings.catch_warnings():
        # torch.export's own deprecation notices and log lines are not the user's to act on
        warnings.simplefilter("ignore")
        quiet.setLevel(logging.ERROR)
        try:
            torch.onnx.export(
                model,
                (sample,),
                str(part),
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes={"x": {2: torch.export.Dim("height"), 3: torch.export.Dim("width")}},
                opset_version=opset,
                external_data=False,
                dynamo=True,
                verbose=False,
            )
        except Exception as err:
            raise TrainingError(f"ONNX export failed: {type(err).__name__}: {err}") from None
        finally:
            quiet.setLevel(level)
        proto = onnx.load(str(part))  # loads external data too, if any was written
        side = [Path(str(part) + ".data"), part.with_suffix(".onnx.data")]
        meta = {
            "scope.opset": str(opset),
            "scope.torch": torch.__version__,
            **{f"scope.{k}": json.dumps(v) for k, v in (model_info or {}).items()},
        }
        del proto.metadata_props[:]
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(part), save_as_external_data=False)
        for p in side:
            p.unlink(missing_ok=True)
        onnx.checker.check_model(str(part))
    return out


def _cpu_copy(generator: nn.Module) -> nn.Module:
    import copy

    model = copy.deepcopy(generator).float().cpu().eval()
    return model.to(memory_format=torch.contiguous_format)


def cached_onnx(run_dir: str | Path, checkpoint: str = "best", *, opset: int = DEFAULT_OPSET):
    """``RUN/export/<checkpoint>.onnx``, exported again when the checkpoint changed."""
    from training.checkpoint import generator_from_checkpoint, load_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(run_dir, checkpoint)
    folder = (Path(run_dir) if Path(run_dir).is_dir() else ckpt_path.parent) / "export"
    target = folder / f"{ckpt_path.stem}.onnx"
    stamp_path = target.with_name(target.name + ".json")
    st = ckpt_path.stat()
    stamp = {"checkpoint": str(ckpt_path.resolve()), "size": st.st_size,
             "mtime_ns": st.st_mtime_ns, "opset": opset}  # fmt: skip
    try:
        if target.is_file() and json.loads(stamp_path.read_text()) == stamp:
            return target
    except (OSError, ValueError):
        pass
    ckpt = load_checkpoint(ckpt_path)
    gen = generator_from_checkpoint(ckpt)
    info = {**ckpt["model"], "epoch": int(ckpt["epoch"])}
    export_onnx(gen, target, model_info=info, opset=opset)
    from acquisition.files import write_text

    write_text(stamp_path, json.dumps(stamp))
    return target


class OnnxGenerator(nn.Module):
    """An onnxruntime session that :func:`training.tiling.stain_field` calls like a generator.

    ``_orig_mod`` holds the PyTorch generator for its architecture only (receptive radius,
    input channels: the tiling), as for a ``torch.compile`` wrapper; it never computes.
    """

    def __init__(self, path: str | Path, architecture: nn.Module, threads: int | None = None):
        super().__init__()
        from acquisition.extras import require

        ort = require("onnxruntime", "onnx", what="scope stain --engine onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._orig_mod = architecture
        self.in_channels = getattr(architecture, "in_channels", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        (y,) = self.session.run(["output"], {"input": arr})
        return torch.from_numpy(y)


def resolve_engine(engine: str, device: torch.device, *, bf16: bool = False) -> str:
    """``torch`` or ``onnx`` for ``--engine`` on ``device``.

    ``auto``: PyTorch on a GPU, and on a CPU that computes in bf16 (AMX: onnxruntime's CPU
    provider runs the model in fp32); else :data:`CPU_DEFAULT_ENGINE` when the ``onnx`` extra
    is installed (the faster measured, docs/benchmarks.md).
    """
    if engine not in ENGINES:
        raise TrainingError(f"unknown engine {engine!r}; choose {', '.join(ENGINES)}")
    if engine == "onnx" and device.type != "cpu":
        raise TrainingError(
            f"--engine onnx runs on the CPU; pass --device cpu, or --engine torch for {device}"
        )
    if engine != "auto":
        return engine
    if device.type != "cpu" or bf16:
        return "torch"
    import importlib.util

    have = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))
    return CPU_DEFAULT_ENGINE if have else "torch"
