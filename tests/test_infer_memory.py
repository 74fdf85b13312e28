"""CPU staining stays under its memory bound by choosing the tile size from a measured model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from training import stain_memory, tile_geometry, tiling
from training.defaults import DEFAULT_BLEND
from training.errors import TrainingError
from training.models import RRDBGenerator
from training.stain_memory import default_tile

GiB = 2**30
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def host(monkeypatch):
    """A host with ``free`` GiB available whose process holds ``rss`` GiB (settable)."""
    state = {"free": 500.0, "rss": 0.5}
    monkeypatch.setattr(stain_memory, "free_memory_bytes", lambda device: int(state["free"] * GiB))
    monkeypatch.setattr(stain_memory, "resident_bytes", lambda: int(state["rss"] * GiB))
    return state


def _predicted(gen, tile, halo, *, bf16, rss):
    return stain_memory.predicted_peak(
        torch.device("cpu"), gen, tile=tile, halo=halo, height=1200, width=1920, bf16=bf16,
        resident=int(rss * GiB),
    )  # fmt: skip


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("rss_gib", [0.3, 1.5])
def test_cpu_tile_keeps_the_process_under_the_limit(host, bf16, rss_gib):
    host["rss"] = rss_gib
    gen = RRDBGenerator(132, blocks=4)
    cpu = torch.device("cpu")
    tile, halo = stain_memory.default_tile(cpu, gen, height=1200, width=1920, bf16=bf16)
    assert halo == gen.receptive_radius and tile != (1200, 1920)  # the field would not fit
    for side, field in zip(tile, (1200, 1920), strict=True):
        assert side == field or (side % 16 == 0 and stain_memory.MIN_TILE <= side < field)
    assert _predicted(gen, tile, halo, bf16=bf16, rss=rss_gib) <= stain_memory.CPU_MEMORY_LIMIT
    # the model is not vacuous: the whole field would be far over the limit
    assert _predicted(gen, 1920, halo, bf16=bf16, rss=rss_gib) > 2 * stain_memory.CPU_MEMORY_LIMIT


def test_the_chooser_takes_the_cheapest_tile_that_fits(host):
    gen = RRDBGenerator(132, blocks=4)
    cpu = torch.device("cpu")
    tile, halo = stain_memory.default_tile(cpu, gen, height=1200, width=1920, bf16=True)
    blend = DEFAULT_BLEND
    cost = tile_geometry.window_pixels(1200, 1920, tile, halo, blend)
    # the halos cost compute: a 4 GiB bound still stains a field in under 1.5 passes' pixels
    assert cost < 1.5 * 1200 * 1920
    for t in range(stain_memory.MIN_TILE, 1200, 16):
        for u in (t, 1920):
            if _predicted(gen, (t, u), halo, bf16=True, rss=0.5) <= stain_memory.CPU_MEMORY_LIMIT:
                assert tile_geometry.window_pixels(1200, 1920, (t, u), halo, blend) >= cost


def test_max_memory_sets_the_bound(host):
    gen = RRDBGenerator(132, blocks=4)
    cpu = torch.device("cpu")
    small, halo = default_tile(cpu, gen, height=1200, width=1920, bf16=True, max_memory=2)
    default, _ = default_tile(cpu, gen, height=1200, width=1920, bf16=True)
    big, _ = default_tile(cpu, gen, height=1200, width=1920, bf16=True, max_memory=64)

    def size(tile):
        return tile_geometry.window_size(1200, 1920, tile, halo)

    assert size(small) < size(default) < size(big) and big == (1200, 1920)
    assert _predicted(gen, small, halo, bf16=True, rss=0.5) <= 2 * GiB
    with pytest.raises(TrainingError, match="--max-memory 0.6 GiB is too small"):
        stain_memory.default_tile(cpu, gen, height=1200, width=1920, bf16=True, max_memory=0.6)


def test_a_host_short_of_memory_gets_smaller_tiles(host):
    gen = RRDBGenerator(132, blocks=4)
    cpu = torch.device("cpu")
    roomy, _ = stain_memory.default_tile(cpu, gen, height=1200, width=1920, bf16=True)
    host["free"] = 3.0  # the pass may take half of it
    tight, halo = stain_memory.default_tile(cpu, gen, height=1200, width=1920, bf16=True)
    assert stain_memory.MIN_TILE <= min(tight)
    assert tile_geometry.window_size(1200, 1920, tight, halo) < tile_geometry.window_size(
        1200, 1920, roomy, halo
    )
    assert _predicted(gen, tight, halo, bf16=True, rss=0.5) <= 0.5 * GiB + 1.5 * GiB


def test_small_fields_and_gpus_take_one_tile(host):
    gen = RRDBGenerator(132, blocks=4)
    tile, _ = stain_memory.default_tile(torch.device("cpu"), gen, height=200, width=300, bf16=True)
    assert tile == (200, 300)
    # the 4 GiB bound is for CPUs: a device with 80 GB free stains 1920x1200 in one pass
    host["free"] = 80 * 10**9 / GiB
    tile, _ = default_tile(torch.device("meta"), gen, height=1200, width=1920, bf16=True)
    assert tile == (1200, 1920)


def test_every_window_of_a_field_has_one_size():
    for length, tile, halo in [(1200, 352, 63), (1920, 336, 63), (300, 128, 63), (100, 128, 63)]:
        sizes = set()
        for a, b, _ in tile_geometry.core_spans(length, tile, DEFAULT_BLEND):
            lo, hi = tile_geometry.window_span(a, b, length, halo)
            assert 0 <= lo <= max(0, a - halo) and min(length, b + halo) <= hi <= length
            sizes.add(hi - lo)
        assert sizes == {min(length, tile + 2 * halo)}


def test_a_bf16_copy_computes_what_autocast_does():
    torch.manual_seed(0)
    gen = RRDBGenerator(12, blocks=2).eval().to(memory_format=torch.channels_last)
    stack = np.random.default_rng(0).integers(0, 256, (4, 90, 120, 3), dtype=np.uint8)
    x = torch.as_tensor(stack).permute(0, 3, 1, 2).reshape(1, 12, 90, 120)
    x = x.to(torch.bfloat16).div_(255).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = gen(x).float()
        copy = tiling.cpu_bf16_generator(gen)
        assert copy is not gen and next(gen.parameters()).dtype == torch.float32
        got = copy(x).float()
    assert torch.equal(ref, got)
    single = tiling.stain_field(gen, stack, bf16=True, tile=4096, dtype=np.float32)
    tiled = tiling.stain_field(gen, stack, bf16=True, tile=32, dtype=np.float32)
    np.testing.assert_allclose(tiled, single, atol=1e-5)
    np.testing.assert_allclose(single, ref[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6)


_MEASURE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from training import stain_memory, tiling
    from training.models import RRDBGenerator

    torch.manual_seed(0)
    bf16 = sys.argv[1] == "bf16"
    gen = RRDBGenerator(24, blocks=2).eval()
    if bf16:
        gen = gen.to(memory_format=torch.channels_last)
    h, w = 640, 960
    stack = np.random.default_rng(0).integers(0, 256, (8, h, w, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    tile, halo = stain_memory.default_tile(cpu, gen, height=h, width=w, bf16=bf16, max_memory=0.9)
    predicted = stain_memory.predicted_peak(
        cpu, gen, tile=tile, halo=halo, height=h, width=w, bf16=bf16
    )
    tiling.stain_field(gen, stack, bf16=bf16, max_memory=0.9)
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"tile": tile, "predicted": predicted, "hwm": hwm}))
    """
)


@pytest.mark.slow  # a 640x960 stain in a subprocess per precision: ~30 s of the fast subset
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_measured_stain_stays_under_its_predicted_peak(precision):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, precision],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["tile"] != [640, 960]  # the bound made it tile
    assert got["predicted"] <= 0.9 * GiB
    # the promise: the whole process stays under the bound it was given
    assert got["hwm"] <= 0.9 * GiB, got
    # and the model behind it is not optimistic: measured within 3 % over its prediction
    # (glibc's per-thread malloc arenas move the high-water mark by ~0.5 % from run to run
    # when the machine is loaded; an exact `hwm <= predicted` failed once that way)
    assert got["hwm"] <= 1.03 * got["predicted"], got
