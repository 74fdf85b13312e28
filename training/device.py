"""Device and numeric-precision choices shared by training, evaluation and staining."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Callable

import torch

from training.errors import TrainingError


def resolve_device(name: str, *, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but PyTorch sees no CUDA GPU")
    return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX-512 BF16 (bf16 convolutions 3-5x faster than fp32)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(precision: str, device: torch.device, *, inference: bool) -> bool:
    """Resolve ``auto``/``fp32``/``bf16``.

    ``auto`` is bf16 on CUDA GPUs that support it; on CPUs it is bf16 for inference when the
    CPU has fast bf16 units, and fp32 for training (CPU training serves small experiments,
    where bf16 rounding is not worth the speed).
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise TrainingError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return inference and cpu_has_fast_bf16()


def default_channels_last(device: torch.device, bf16: bool) -> bool:
    """Whether activations default to channels-last: bf16 on a CPU only.

    On CUDA the plain NCHW layout is faster for these networks: measured on an NVIDIA H200
    (torch 2.11, cuDNN 9.19, bf16), NCHW trains the thesis RRDB at 552 samples/s against 376
    channels-last and stains a 1920x1200 field eagerly in 0.42 s against 0.92 s. Its channel
    counts (132 + 32k) are not multiples of 8, and cuDNN's NHWC kernels pad the channels of
    every convolution's input (a quarter of the step in a profile). Even computed in padded
    widths (:func:`default_compute_multiple`) eager channels-last stays slower there (465
    against 598 samples/s, 0.84 against 0.40 s per field); compiled, the two layouts tie.
    On CPUs oneDNN's bf16 kernels work in blocked channels-last layouts, so bf16 keeps it
    there.
    """
    return bf16 and device.type == "cpu"


def default_compute_multiple(device: torch.device) -> int:
    """The channel granularity an RRDB generator computes in on ``device``: 8 on CUDA, else 1.

    cuDNN's bf16 tensor-core convolutions take channel counts in multiples of 8; the thesis
    network's 132 + 32k channels are padded to 136 + 32k on the fly (exact: the added
    channels stay zero, parameters and checkpoints keep their shapes). Measured on an NVIDIA
    H200 (torch 2.11, bf16, NCHW): training 566 → 598 samples/s eager (batch 256), 718
    compiled; a compiled 1920x1200 stain 0.345 → 0.243 s. CPUs keep the network as built
    (not measured there).
    """
    return 8 if device.type == "cuda" else 1


def compute_on(generator: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``generator`` set to compute in ``device``'s channel granularity (RRDB only).

    Other generators (the U-Net) are returned as they are. Returns ``generator``.
    """
    multiple = default_compute_multiple(device)
    if hasattr(generator, "compute_in"):
        generator.compute_in(multiple)
    return generator


def autocast_factory(
    device: torch.device, bf16: bool
) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument factory of bf16 autocast contexts (a null context for fp32)."""
    if not bf16:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"


#: glibc ``mallopt`` parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep large freed blocks instead of unmapping them (Linux only).

    Whole-field inference allocates and frees activations of hundreds of MB per layer. With
    glibc's defaults each one is a fresh ``mmap`` that the kernel fills page by page: measured
    on a 1024x1024 RRDB block, 6.8 M page faults and 10.6 s of system time against 11 s of
    compute. Raising the mmap and trim thresholds lets freed blocks be reused (1.2 s of
    system time). Freed memory then stays with the process until
    :func:`release_freed_memory` hands it back (after each field). Returns whether the
    setting was applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    except (OSError, AttributeError):
        return False


def release_freed_memory() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Called after each whole-field pass on CPU: with :func:`keep_freed_memory` the heap would
    otherwise keep every block it ever held and, fragmented by differently sized activations,
    grow from field to field.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def proc_bytes(path: str, key: str) -> int | None:
    """A ``key: N kB`` line of a /proc file, in bytes (None where the file or line is missing)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo (or total physical memory elsewhere)."""
    found = proc_bytes("/proc/meminfo", "MemAvailable")
    if found is not None:
        return found
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resident_bytes() -> int:
    """This process's resident memory now (``VmRSS``; 0 where /proc is missing)."""
    return proc_bytes("/proc/self/status", "VmRSS") or 0
