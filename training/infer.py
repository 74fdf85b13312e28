"""``scope stain``: virtually stain whole unstained fields, fully convolutionally.

The RRDB generator has no layer that sees more than :attr:`receptive_radius` pixels away
(63 for 4 blocks), so a field is cut into large tiles that each carry a *halo* of at least
that radius: every pixel of a tile's core is then computed from exactly the inputs a
single pass over the whole field would use, and the cores (overlapping by ``blend`` pixels,
joined with linear ramps) reproduce the single-pass image. With a smaller halo the ramps hide
the seams. On a GPU, or with memory to spare, one tile covers a whole 1920x1200 field.

The pix2pix U-Net is not translation-equivariant beyond its training crop (its bottleneck is
1x1 for 64x64 inputs), so it is applied to crop-sized windows overlapping by a quarter and
blended the same way (tiled inference with alpha blending, as in VirFluoNet).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
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
from training.device import (
    autocast_factory,
    available_memory_bytes,
    keep_freed_memory,
    release_freed_memory,
    resident_bytes,
    resolve_device,
    use_bf16,
)
from training.errors import TrainingError
from training.models import RRDBGenerator

STAINED_FORMAT = "scope-stained"
STAINED_FORMAT_VERSION = 1
DEFAULT_BLEND = 16
#: Pixel-size mismatch between the model's training data and a scan that is still accepted.
PIXEL_SIZE_RTOL = 0.05


def _starts(length: int, core: int, blend: int) -> list[int]:
    """Start of each core along one axis: stride ``core - blend``, the last flush with the end."""
    if core >= length:
        return [0]
    stride = max(1, core - blend)
    starts = list(range(0, length - core, stride))
    starts.append(length - core)
    return starts


def _ramp(length: int, lo_blend: int, hi_blend: int) -> np.ndarray:
    """Weights along a core: linear ramps over its overlaps with neighbours, 1 elsewhere."""
    w = np.ones(length, np.float32)
    if lo_blend > 0:
        w[:lo_blend] = (np.arange(lo_blend, dtype=np.float32) + 0.5) / lo_blend
    if hi_blend > 0:
        w[-hi_blend:] = np.minimum(
            w[-hi_blend:], (np.arange(hi_blend, 0, -1, dtype=np.float32) - 0.5) / hi_blend
        )
    return w


def tile_plan(
    height: int, width: int, *, tile: int, blend: int
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Cores ``(y0, y1, x0, x1, weight)`` covering an image; ``weight`` is ``(h, w)`` float32."""
    ys = _starts(height, tile, blend)
    xs = _starts(width, tile, blend)
    plan = []
    for i, y0 in enumerate(ys):
        y1 = min(height, y0 + tile)
        wy = _ramp(
            y1 - y0,
            (ys[i - 1] + tile - y0) if i > 0 else 0,
            (y1 - ys[i + 1]) if i + 1 < len(ys) else 0,
        )
        for j, x0 in enumerate(xs):
            x1 = min(width, x0 + tile)
            wx = _ramp(
                x1 - x0,
                (xs[j - 1] + tile - x0) if j > 0 else 0,
                (x1 - xs[j + 1]) if j + 1 < len(xs) else 0,
            )
            plan.append((y0, y1, x0, x1, np.outer(wy, wx)))
    return plan


def _plain(generator: nn.Module) -> nn.Module:
    """The module inside a ``torch.compile`` wrapper (for its architecture attributes)."""
    return getattr(generator, "_orig_mod", generator)


def _free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory_bytes()


#: ``scope stain`` on a CPU keeps its resident memory under this by default (tiles shrink).
CPU_MEMORY_LIMIT = 4 * 2**30
#: Measured peak bytes per tile pixel on a CPU over the dense-block estimate (oneDNN's
#: reordered copies, bf16 casts, and the freed blocks :func:`keep_freed_memory` keeps):
#: thesis ``full-nohe`` network, 256x256 and 512x512 tiles, 11.9 KB/px bf16 (estimate 2.6),
#: 9.2 KB/px fp32 (estimate 4.7). ``benchmarks/bench_stain.py`` measures the whole field.
CPU_OVERHEAD = {True: 4.6, False: 2.0}


def tile_bytes_per_px(generator: nn.Module, *, bf16: bool, device: torch.device) -> float:
    """Peak memory per pixel of a tile (core + halo) during one RRDB pass."""
    g = _plain(generator)
    elt = 2 if bf16 else 4
    per_px = elt * (g.in_channels + 3 * g.features + 2 * (g.features + 4 * g.growth))
    per_px += 4 * g.in_channels
    return per_px * (CPU_OVERHEAD[bf16] if device.type == "cpu" else 1.0)


def default_tile(
    device: torch.device,
    generator: nn.Module,
    *,
    height: int,
    width: int,
    bf16: bool,
    n_images: int | None = None,
) -> tuple[int, int]:
    """``(tile, halo)``: one pass over the whole field when it fits, else square cores.

    On a GPU the pass may use 40 % of the free memory. On a CPU it may also use 40 % of the
    available memory, and the whole process stays under :data:`CPU_MEMORY_LIMIT`: what it
    holds already and the field's own arrays (the stack once more as a tensor, the blended
    output) come off the limit first. Peak memory per pixel is :func:`tile_bytes_per_px`.
    Otherwise square cores as large as fit (multiples of 16, at least 128), with a halo of
    the receptive radius (exact interiors).
    """
    generator = _plain(generator)
    if not isinstance(generator, RRDBGenerator):
        return getattr(generator, "receptive_radius", 64), 0
    halo = generator.receptive_radius
    per_px = tile_bytes_per_px(generator, bf16=bf16, device=device)
    budget = 0.4 * _free_memory_bytes(device)
    if device.type == "cpu":
        n_in = generator.in_channels if n_images is None else 3 * n_images
        field_arrays = height * width * (n_in + 32)  # uint8 stack tensor, float sums, output
        # 85 %: the per-pixel figure is an average over measured tiles, not a bound
        budget = min(budget, 0.85 * (CPU_MEMORY_LIMIT - resident_bytes() - field_arrays))
    budget_px = max(budget, 0) / per_px
    if height * width <= budget_px:
        return max(height, width), halo
    side = int(math.sqrt(budget_px)) - 2 * halo
    return max(128, side // 16 * 16), halo


@torch.no_grad()
def stain_field(
    generator: nn.Module,
    stack: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool | None = None,
    tile: int | None = None,
    halo: int | None = None,
    blend: int = DEFAULT_BLEND,
    dtype: type = np.uint8,
) -> np.ndarray:
    """Stain one field.

    Parameters
    ----------
    generator
        A trained generator (eval mode), already on ``device``.
    stack
        ``(n_images, H, W, 3) uint8``: the model's stack channels of one unstained field.
    device, bf16, channels_last
        Where and how to compute (``channels_last`` defaults to ``bf16``).
    tile
        Core size in pixels (default: :func:`default_tile`).
    halo
        Context added around each core (default: the generator's receptive radius, which
        makes cores exact).
    blend
        Overlap of neighbouring cores joined by linear ramps.
    dtype
        ``numpy.uint8`` (rounded) or ``numpy.float32`` (in [0, 1], for numerical use).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` stained field.
    """
    if dtype not in (np.uint8, np.float32):
        raise ValueError(f"dtype must be numpy.uint8 or numpy.float32, got {dtype}")
    device = torch.device(device)
    arr = torch.as_tensor(np.asarray(stack)) if not isinstance(stack, torch.Tensor) else stack
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != torch.uint8:
        raise ValueError(
            f"stack must be (n_images, H, W, 3) uint8, got {tuple(arr.shape)} {arr.dtype}"
        )
    n, h, w, _ = arr.shape
    in_ch = getattr(_plain(generator), "in_channels", 3 * n)
    if in_ch != 3 * n:
        raise ValueError(f"the generator takes {in_ch // 3} images, the stack has {n}")
    d_tile, d_halo = default_tile(device, generator, height=h, width=w, bf16=bf16, n_images=n)
    tile = d_tile if tile is None else int(tile)
    halo = d_halo if halo is None else int(halo)
    if tile < 1 or halo < 0 or blend < 0:
        raise ValueError(f"tile must be ≥ 1 and halo, blend ≥ 0; got {tile}, {halo}, {blend}")
    is_unet = not isinstance(_plain(generator), RRDBGenerator)
    if is_unet and (h < tile or w < tile):
        raise ValueError(f"the U-Net stains windows of {tile} px; the field is {w}x{h}")
    blend = min(blend, tile // 2) if not is_unet else max(blend, tile // 4)
    cl = bf16 if channels_last is None else channels_last
    autocast = autocast_factory(device, bf16)
    in_dtype = torch.bfloat16 if bf16 else torch.float32
    if device.type == "cpu":
        keep_freed_memory()
    # (n, H, W, 3) → (3n, H, W) float in [0, 1] on the device, image-major channels
    x = arr.to(device).permute(0, 3, 1, 2).reshape(3 * n, h, w)
    acc = torch.zeros((3, h, w), dtype=torch.float32, device=device)
    wsum = torch.zeros((1, h, w), dtype=torch.float32, device=device)
    for y0, y1, x0, x1, weight in tile_plan(h, w, tile=tile, blend=blend):
        iy0, iy1 = max(0, y0 - halo), min(h, y1 + halo)
        ix0, ix1 = max(0, x0 - halo), min(w, x1 + halo)
        # bf16 models get bf16 inputs straight away (autocast would cast them anyway)
        inp = x[:, iy0:iy1, ix0:ix1].unsqueeze(0).to(in_dtype).div_(255.0)
        if cl:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = generator(inp)
        core = out[0, :, y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0].float()
        wt = torch.from_numpy(weight).to(device)
        acc[:, y0:y1, x0:x1] += core * wt
        wsum[:, y0:y1, x0:x1] += wt
    img = (acc / wsum).clamp_(0, 1)
    if dtype == np.uint8:
        img = img.mul_(255.0).round_().to(torch.uint8)
    result = img.permute(1, 2, 0).cpu().numpy()
    if device.type == "cpu":
        del x, acc, wsum, img
        release_freed_memory()
    return result


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
    gen = generator_from_checkpoint(ckpt).to(dev)
    if bf16:
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
    formats: Sequence[str] = ("png",),
    compile: bool = False,
    progress: Progress | None = None,
    on_field: Callable[[int, int], None] | None = None,
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

    for fmt in formats:
        if fmt not in ("png", "tif", "tiff"):
            raise TrainingError(f"unknown image format {fmt!r}; choose png or tif")
    gen, ckpt, dev, bf16 = load_generator(
        run_dir, checkpoint=checkpoint, device=device, precision=precision
    )
    info = ckpt["model"]
    from training.export_onnx import resolve_engine

    use_onnx = resolve_engine(engine, dev, bf16=bf16) == "onnx"
    if compile and not use_onnx:
        gen = torch.compile(gen, dynamic=False)
    out = Path(out_dir)
    with ScanFile(scan_path) as scan:
        if scan.pass_ != "unstained":
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
                    progress=or_null(progress),
                    on_field=on_field,
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
    progress: Progress
    on_field: Callable[[int, int], None] | None


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
        )
        images[k] = img
        for fmt in job.formats:
            target = job.out / f"field_{pos:05d}.{fmt}"
            with atomic_output(target, keep_suffix=True) as part:
                write_scaled_image(part, img, scan.pixel_size_um)
            written.append(target)
        job.progress.advance("fields")
        if job.on_field is not None:
            job.on_field(k + 1, len(todo))


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
