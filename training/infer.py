"""``scope stain``: virtually stain the fields of a scan into images and one HDF5 file.

How one field is stained (tiles, halos) is :mod:`training.tiling`, its memory planning
:mod:`training.stain_memory`; this
module finds the model and the scan's channels, and writes the output crash-safely.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acquisition.progress import Progress, or_null
from training.checkpoint import (
    generator_from_checkpoint,
    load_checkpoint,
    require_rgb_stain_model,
    resolve_checkpoint,
)
from training.defaults import DEFAULT_BLEND
from training.device import compute_on, default_channels_last, resolve_device, use_bf16
from training.errors import TrainingError
from training.tiling import cpu_bf16_generator, stain_field

STAINED_FORMAT = "scope-stained"
STAINED_FORMAT_VERSION = 1
#: Pixel-size mismatch between the model's training data and a scan that is still accepted.
PIXEL_SIZE_RTOL = 0.05


def load_generator(
    run_or_checkpoint: str | Path,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    precision: str = "auto",
) -> tuple[nn.Module, dict[str, Any], torch.device, bool]:
    """``(generator on device, checkpoint dict, device, bf16)`` for inference."""
    path = resolve_checkpoint(run_or_checkpoint, checkpoint)
    ckpt = load_checkpoint(path)
    require_rgb_stain_model(ckpt["model"], source=str(path), what="staining scans")
    dev = resolve_device(device)
    bf16 = use_bf16(precision, dev, inference=True)
    gen = compute_on(generator_from_checkpoint(ckpt), dev).to(dev)
    if default_channels_last(dev, bf16):
        gen = gen.to(memory_format=torch.channels_last)
    return gen, ckpt, dev, bf16


def scan_channel_indices(
    scan_channels: np.ndarray, names: Sequence[str], *, source: str
) -> list[int]:
    """Positions of the model's stack channels in a scan's channel table (by name)."""
    have = [str(n) for n in scan_channels["name"]]
    missing = [n for n in names if n not in have]
    if missing:
        raise TrainingError(
            f"{source} lacks {len(missing)} of the model's {len(names)} stack images "
            f"({', '.join(missing[:4])}{', …' if len(missing) > 4 else ''}); stain a scan taken "
            "with the model's stack"
        )
    return [have.index(n) for n in names]


def stain_scan(
    run_dir: str | Path,
    scan_path: str | Path,
    out_dir: str | Path,
    *,
    positions: Sequence[int] | None = None,
    checkpoint: str = "best",
    device: str = "auto",
    precision: str = "auto",
    tile: int | None = None,
    halo: int | None = None,
    blend: int = DEFAULT_BLEND,
    max_memory: float | None = None,
    formats: Sequence[str] = ("png",),
    compile: bool = False,
    progress: Progress | None = None,
    skip_unreadable: bool = False,
    warn: Callable[[str], None] | None = None,
    force: bool = False,
    engine: str = "torch",
) -> Path:
    """Virtually stain the fields of an unstained scan with a trained run.

    Parameters
    ----------
    run_dir
        Run folder (or checkpoint file).
    scan_path
        ``<slide>.unstained.scan.h5`` taken with (at least) the model's stack.
    out_dir
        Output folder: ``field_NNNNN.<fmt>`` per field and ``<slide>.stained-virtual.h5``.
    positions
        Field indices to stain (default: every acquired field).
    formats
        Image formats per field: any of ``png``, ``tif``; empty for HDF5 only.
    tile, halo, blend
        Tiling (see :func:`stain_field`).
    max_memory
        Memory bound in GiB that sets the default tile (see
        :func:`training.stain_memory.default_tile`): on a CPU the whole process's resident
        peak (default :data:`training.stain_memory.CPU_MEMORY_LIMIT`), on a GPU the
        memory one pass may take. Ignored when ``tile`` is given.
    compile
        ``torch.compile`` the generator (pays off over many fields of one size).
    force
        Replace a stain output written by another scope version or command.
    engine
        ``torch``, ``onnx`` (onnxruntime on the CPU, from the run's cached ONNX export) or
        ``auto`` (the faster for the device: see :func:`training.export_onnx.resolve_engine`).
    skip_unreadable
        Skip done fields whose file is missing or damaged (with a warning) instead of
        refusing; they are never stained as black images.

    Returns
    -------
    pathlib.Path
        The HDF5 file: ``images (n, H, W, 3) uint8``, ``positions`` table (``position``,
        ``x_um``, ``y_um``, ``z_um``), attrs ``format="scope-stained"``, ``scan``, ``run``,
        ``epoch``, ``model`` (JSON), ``pixel_size_um``.
    """
    from acquisition.files import WriteLock, check_target, clean_stale
    from acquisition.scanfile import ScanFile
    from acquisition.vocabulary import Pass  # not at the top: it loads the profile schema

    for fmt in formats:
        if fmt not in ("png", "tif", "tiff"):
            raise TrainingError(f"unknown image format {fmt!r}; choose png or tif")
    gen, ckpt, dev, bf16 = load_generator(
        run_dir, checkpoint=checkpoint, device=device, precision=precision
    )
    info = ckpt["model"]
    from training.export_onnx import resolve_engine

    use_onnx = resolve_engine(engine, dev, bf16=bf16) == "onnx"
    if bf16 and dev.type == "cpu" and not use_onnx:
        gen = cpu_bf16_generator(gen)  # same values as autocast, half the memory (tiling.py)
    if compile and not use_onnx:
        gen = torch.compile(gen, dynamic=False)
    out = Path(out_dir)
    with ScanFile(scan_path) as scan:
        if scan.pass_ != Pass.UNSTAINED:
            raise TrainingError(
                f"{scan_path} is a {scan.pass_!r} scan; virtual staining needs an unstained one"
            )
        px = info.get("pixel_size_um")
        if px and abs(scan.pixel_size_um - px) > PIXEL_SIZE_RTOL * px:
            raise TrainingError(
                f"the model was trained at {px:g} µm/px but {scan_path} has "
                f"{scan.pixel_size_um:g} µm/px; stain scans taken with the same objective"
            )
        idx = scan_channel_indices(scan.channels, info["channel_names"], source=str(scan_path))
        done = {int(i) for i in scan.done}
        todo = sorted(done) if positions is None else [int(p) for p in positions]
        bad = [p for p in todo if p not in done]
        if bad:
            raise TrainingError(f"{scan_path}: fields {bad[:5]} were not acquired")
        unreadable = [p for p in todo if p in scan.field_state()]
        if unreadable and not skip_unreadable:
            raise TrainingError(
                scan.integrity_problem() + "; or pass --skip-missing to stain the others"
            )
        if unreadable:
            todo = [p for p in todo if p not in unreadable]
            if warn is not None:
                warn(f"skipping fields {unreadable[:10]}: their files are missing or damaged")
        if not todo:
            raise TrainingError(f"{scan_path} has no acquired fields to stain")
        h5_path = out / f"{scan.slide}.stained-virtual.h5"
        images_out = [out / f"field_{pos:05d}.{fmt}" for pos in todo for fmt in formats]
        check_target(h5_path, "scope-stained", command="scope stain", force=force)
        for p in images_out:
            check_target(p, "image", command="scope stain", force=force)
        out.mkdir(parents=True, exist_ok=True)
        clean_stale(out)
        if use_onnx:  # after every check: the first use exports the run once
            gen, bf16 = _onnx_engine(run_dir, checkpoint, gen, strict=engine == "onnx", warn=warn)
        with WriteLock(h5_path, what=f"stain output {h5_path}"):
            _stain_fields(
                _StainJob(
                    scan=scan,
                    gen=gen,
                    ckpt=ckpt,
                    device=dev,
                    bf16=bf16,
                    todo=todo,
                    channel_index=idx,
                    out=out,
                    h5_path=h5_path,
                    formats=formats,
                    run_dir=Path(run_dir),
                    scan_path=Path(scan_path),
                    tile=tile,
                    halo=halo,
                    blend=blend,
                    max_memory=max_memory,
                    progress=or_null(progress),
                )
            )
    return h5_path


def _onnx_engine(
    run_dir: str | Path,
    checkpoint: str,
    gen: nn.Module,
    *,
    strict: bool,
    warn: Callable[[str], None] | None,
) -> tuple[nn.Module, bool]:
    """``(onnxruntime generator, bf16=False)``; with ``auto`` a failed export falls back."""
    from training.export_onnx import OnnxGenerator, cached_onnx

    try:
        return OnnxGenerator(cached_onnx(run_dir, checkpoint), gen), False
    except TrainingError as err:
        if strict:
            raise
        if warn is not None:
            warn(f"{err}; staining with PyTorch instead")
        return gen, False


@dataclass
class _StainJob:
    """One ``scope stain`` call: what to stain and where."""

    scan: Any
    gen: Any
    ckpt: dict
    device: Any
    bf16: bool
    todo: list[int]
    channel_index: list[int]
    out: Path
    h5_path: Path
    formats: Sequence[str]
    run_dir: Path
    scan_path: Path
    tile: int | None
    halo: int | None
    blend: int
    max_memory: float | None
    progress: Progress


def _stain_fields(job: _StainJob) -> None:
    """Stain ``job.todo`` into a temp HDF5 file and per-field images: all or nothing."""
    from acquisition.files import (
        Interrupted,
        commit_temp,
        disk_full,
        is_disk_full,
        temp_path,
    )

    tmp = temp_path(job.h5_path)
    written: list[Path] = []
    existed = {p for p in job.out.glob("field_*") if p.is_file()}
    try:
        _stain_into(job, tmp, written)
        commit_temp(tmp, job.h5_path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        for p in written:
            if p not in existed:
                p.unlink(missing_ok=True)
        if isinstance(err, KeyboardInterrupt):
            raise Interrupted(
                f"interrupted: the partial stain output in {job.out} was removed; run the same "
                "command again"
            ) from None
        if is_disk_full(err):
            raise disk_full(job.h5_path, "no partial images were kept") from None
        raise


def _stain_into(job: _StainJob, tmp: Path, written: list[Path]) -> None:
    import h5py

    from acquisition.files import close_h5, is_disk_full, quarantine
    from acquisition.tables import write_table

    f = h5py.File(tmp, "w")
    try:
        f.attrs.update(
            {
                "format": STAINED_FORMAT,
                "format_version": STAINED_FORMAT_VERSION,
                "scan": str(Path(job.scan_path).resolve()),
                "run": str(Path(job.run_dir).resolve()),
                "epoch": int(job.ckpt["epoch"]),
                "model": json.dumps(job.ckpt["model"]),
                "pixel_size_um": job.scan.pixel_size_um,
                "slide": job.scan.slide,
                "written_by": "scope stain",
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
        )
        _stain_each(job, f, written)
        write_table(f, "positions", _positions_table(job.scan, job.todo))
    except BaseException as err:
        if is_disk_full(err):
            quarantine(f)  # HDF5 crashes if a file that met a full disk is closed
        else:
            f.close()
        raise
    close_h5(f)


def _stain_each(job: _StainJob, f: Any, written: list[Path]) -> None:
    """Stain every field into ``f["images"]`` and, per format, an image file."""
    from acquisition.files import atomic_output, guard_space
    from acquisition.scaled_image import write_scaled_image

    scan, todo = job.scan, job.todo
    hh, ww = scan.frame_shape
    order = np.argsort(job.channel_index)
    inverse = np.argsort(order)
    sorted_idx = [job.channel_index[i] for i in order]
    images = f.create_dataset(
        "images", shape=(len(todo), hh, ww, 3), dtype=np.uint8, chunks=(1, hh, ww, 3)
    )
    job.progress.start("fields", len(todo), label="staining fields")
    for k, pos in enumerate(todo):
        guard_space(job.h5_path, 2 * hh * ww * 3)  # stop before HDF5 meets a full disk
        stack = scan.images[pos, sorted_idx][inverse]  # h5py wants increasing indices
        img = stain_field(
            job.gen,
            stack,
            device=job.device,
            bf16=job.bf16,
            tile=job.tile,
            halo=job.halo,
            blend=job.blend,
            max_memory=job.max_memory,
        )
        images[k] = img
        for fmt in job.formats:
            target = job.out / f"field_{pos:05d}.{fmt}"
            with atomic_output(target, keep_suffix=True) as part:
                write_scaled_image(part, img, scan.pixel_size_um)
            written.append(target)
        job.progress.advance("fields")


def _positions_table(scan: Any, todo: list[int]) -> np.ndarray:
    table = np.zeros(
        len(todo),
        dtype=[("position", np.int64), ("x_um", np.float64), ("y_um", np.float64),
               ("z_um", np.float64)],
    )  # fmt: skip
    table["position"] = todo
    for col in ("x_um", "y_um", "z_um"):
        table[col] = scan.positions[col][todo]
    return table
