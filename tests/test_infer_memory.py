"""CPU staining stays under its memory limit by choosing the tile size."""

from __future__ import annotations

import pytest
import torch

from training import tiling
from training.models import RRDBGenerator


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("rss_gib", [0.3, 1.5])
def test_cpu_tile_keeps_the_process_under_the_limit(monkeypatch, bf16, rss_gib):
    monkeypatch.setattr(tiling, "_free_memory_bytes", lambda device: 500 * 2**30)  # a big host
    monkeypatch.setattr(tiling, "resident_bytes", lambda: int(rss_gib * 2**30))
    gen = RRDBGenerator(132, blocks=4)
    cpu = torch.device("cpu")
    tile, halo = tiling.default_tile(cpu, gen, height=1200, width=1920, bf16=bf16, n_images=44)
    assert halo == gen.receptive_radius and tile < 1200  # the whole field would not fit
    per_px = tiling.tile_bytes_per_px(gen, bf16=bf16, device=cpu)
    peak = rss_gib * 2**30 + 1200 * 1920 * (132 + 32) + (tile + 2 * halo) ** 2 * per_px
    assert peak <= tiling.CPU_MEMORY_LIMIT
    assert tile % 16 == 0 and tile >= 128


def test_small_fields_and_gpus_take_one_tile(monkeypatch):
    monkeypatch.setattr(tiling, "_free_memory_bytes", lambda device: 500 * 2**30)
    monkeypatch.setattr(tiling, "resident_bytes", lambda: 2**29)
    gen = RRDBGenerator(132, blocks=4)
    tile, _ = tiling.default_tile(torch.device("cpu"), gen, height=200, width=300, bf16=True)
    assert tile == 300
    # the limit is for CPUs: a device with 80 GB free stains 1920x1200 in one pass
    monkeypatch.setattr(tiling, "_free_memory_bytes", lambda device: 80 * 10**9)
    tile, _ = tiling.default_tile(torch.device("meta"), gen, height=1200, width=1920, bf16=True)
    assert tile == 1920


def test_a_host_short_of_memory_gets_smaller_tiles(monkeypatch):
    monkeypatch.setattr(tiling, "resident_bytes", lambda: 2**29)
    gen = RRDBGenerator(132, blocks=4)
    cpu = torch.device("cpu")
    monkeypatch.setattr(tiling, "_free_memory_bytes", lambda device: 500 * 2**30)
    roomy, _ = tiling.default_tile(cpu, gen, height=1200, width=1920, bf16=True)
    monkeypatch.setattr(tiling, "_free_memory_bytes", lambda device: 2 * 2**30)
    tight, _ = tiling.default_tile(cpu, gen, height=1200, width=1920, bf16=True)
    assert 128 <= tight < roomy
