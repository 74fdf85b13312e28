"""The ways ``gpu_bench.py`` runs the stain pass: eager, compiled, channel-padded, CUDA graph.

Each variant is one row of the GPU report and goes through the same correctness check. Like
``gpu_bench.py`` this imports only torch and the network (GPU machines have nothing else).

- compiled: ``torch.compile(dynamic=False)``: one static graph per input shape;
- channels padded: :meth:`training.models.RRDBGenerator.compute_in` (trunk 132 -> 136; exact);
- CUDA graph: :class:`GraphedForward` captures one fixed-shape forward and replays it for
  every window of every field (CUDA only).
"""

from __future__ import annotations

import copy
import gc
from dataclasses import dataclass

import torch
from torch import nn

from training.channel_pad import padded_width
from training.models import RRDBGenerator

NEEDS_CUDA = "skipped (needs CUDA)"
NO_CPU_COMPILE = "skipped (--quick on a CPU: compiling takes minutes there)"


@dataclass(frozen=True)
class StainVariant:
    """One way to run the stain pass; ``skip`` says why it cannot run here (else None)."""

    mode: str  # "eager", "compiled" or "graph"
    pad: bool
    skip: str | None = None
    #: The activations' layout when it differs from the run's (None: the run's).
    channels_last: bool | None = None

    def label(self, generator: RRDBGenerator) -> str:
        how = {"eager": "eager", "compiled": "compiled", "graph": "CUDA graph"}[self.mode]
        if self.channels_last is not None:
            how += ", channels-last" if self.channels_last else ", NCHW"
        if not self.pad:
            return how
        f = generator.features
        return f"channels padded {f}→{padded_width(f)}, {how}"


def stain_variants(
    device: torch.device,
    *,
    compile: bool,
    pad: bool,
    graphs: bool,
    quick: bool,
    channels_last: bool = False,
) -> list[StainVariant]:
    """The variants a run measures, in report order (eager first: the baseline).

    The padded variants also run in the other layout (``channels_last`` is the run's): with
    every channel count a multiple of 8, channels-last no longer makes cuDNN pad each input.
    """
    modes = ["eager"] + ["compiled"] * compile + ["graph"] * graphs
    out = []
    layouts: dict[bool, tuple] = {False: (None,), True: (None, not channels_last)}
    for padded in (False, True) if pad else (False,):
        for layout in layouts[padded]:
            for mode in modes:
                skip = None
                if mode == "graph" and device.type != "cuda":
                    skip = NEEDS_CUDA
                elif mode == "compiled" and device.type == "cpu" and quick:
                    skip = NO_CPU_COMPILE
                out.append(StainVariant(mode, padded, skip, layout))
    return out


def build(
    variant: StainVariant,
    generator: RRDBGenerator,
    *,
    channels_last: bool,
    compile_mode: str | None = None,
) -> nn.Module:
    """The module that runs ``variant`` (``generator`` itself is left as it is)."""
    relayout = variant.channels_last is not None and variant.channels_last != channels_last
    model: nn.Module = copy.deepcopy(generator) if variant.pad or relayout else generator
    if variant.pad:
        model.compute_in(8)
    if relayout:
        fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
    if variant.mode == "compiled":
        torch._dynamo.reset()  # no guards or dynamic-shape marks left from an earlier variant
        return torch.compile(model, dynamic=False, mode=compile_mode)
    if variant.mode == "graph":
        return GraphedForward(model)
    return model


def release(device: torch.device) -> None:
    """Free what the last variant held (cached blocks, graph pools, compiled code)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


class GraphedForward(nn.Module):
    """A generator whose forward is captured once per input shape as a CUDA graph and replayed.

    ``stain_field`` passes every window of a field through one input buffer of one shape, so
    a single capture serves the whole tile loop, and every later field of that size, with
    one launch instead of a few hundred kernels each. The returned tensor is the graph's own
    output buffer: the next call overwrites it. Inputs are copied into the captured buffer.
    Autocast, when on, is captured with its weight cache off (a cached cast made during
    capture would be freed while the graph still reads it).

    ``_orig_mod`` names the generator, as ``torch.compile``'s wrapper does, so the staining
    code finds its architecture (receptive radius, channels) the same way.
    """

    def __init__(self, generator: nn.Module, *, warmup: int = 3) -> None:
        super().__init__()
        self._orig_mod = generator
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA tensor, got one on {x.device}")
        autocast = torch.is_autocast_enabled("cuda")
        cast = torch.get_autocast_dtype("cuda") if autocast else None
        key = (tuple(x.shape), x.stride(), x.dtype, x.device, cast)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x, cast)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(
        self, x: torch.Tensor, cast: torch.dtype | None
    ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = x.clone()  # keeps the memory format

        def run() -> torch.Tensor:
            with torch.autocast("cuda", dtype=cast or torch.bfloat16, enabled=cast is not None,
                                cache_enabled=False):  # fmt: skip
                return self._orig_mod(static_in)

        # warm up on a side stream (cuDNN picks its algorithms here, not during capture)
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                run()
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = run()
        return graph, static_in, static_out
