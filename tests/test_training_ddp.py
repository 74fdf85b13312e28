"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) train the same model as one
process with twice the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from registration.dataset import CELL_COLUMNS, DatasetWriter
from training import train
from training.checkpoint import load_checkpoint

SCRIPT = """
import json, sys
from training import train
train(json.loads(sys.argv[1]), progress=None)
"""

#: two torchrun processes —
#: `make test-fast` leaves it out, `make test` (CI) runs it
pytestmark = pytest.mark.slow


def _dataset(path, profile, n=20, crop=16):
    rng = np.random.default_rng(0)
    table = profile.channel_table()
    inputs = rng.integers(0, 256, (n, len(table), crop, crop, 3), dtype=np.uint8)
    # a learnable target: the brightfield image, tinted
    targets = (inputs[:, 0] * np.array([0.9, 0.6, 0.8])).astype(np.uint8)
    rows = []
    for i in range(n):
        row = dict.fromkeys(CELL_COLUMNS, 0.0)
        row.update(
            slide="s",
            position=i,
            qc_flags="",
            has_highres=False,
            split="train" if i < 14 else ("val" if i < 17 else "test"),
        )
        rows.append(row)
    with DatasetWriter(path, channels=table, crop_size=crop, profile=profile) as w:
        w.add(inputs, targets, rows)
    return path


def test_two_gloo_processes_equal_one_process_with_the_global_batch(tmp_path, pls43):
    data = _dataset(tmp_path / "d.dataset.h5", pls43)
    cfg = {
        "dataset": str(data),
        "preset": "maeNET",
        "stack": "le8",
        "blocks": 1,
        "features": 4,
        "epochs": 2,
        "lr": 1e-3,
        "device": "cpu",
        "samples": 2,
    }
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            json.dumps({**cfg, "out": str(tmp_path / "ddp"), "batch_size": 3}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = train({**cfg, "out": tmp_path / "one", "batch_size": 6}, progress=None)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    b = load_checkpoint(single.last_checkpoint)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["generator"].items():
        torch.testing.assert_close(value, b["generator"][key], atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(
        [r["val_loss"] for r in a["history"]], [r["val_loss"] for r in b["history"]], rtol=1e-4
    )
    # rank 0 alone wrote the run folder; the config records both processes
    assert "world_size: 2" in (tmp_path / "ddp" / "config.yaml").read_text()
