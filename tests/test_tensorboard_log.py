"""`scope train --log tensorboard`: scalars and sample grids beside metrics.csv."""

from __future__ import annotations

import csv
import warnings

import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")


def test_train_logs_scalars_and_samples_for_tensorboard(tmp_path, capsys, sim_dataset):
    from scope.cli import main

    out = tmp_path / "run"
    args = ["train", str(sim_dataset), "--out", str(out), "--preset", "maeNET", "--stack", "le8",
            "--epochs", "2", "--blocks", "1", "--features", "4", "--growth", "4",
            "--batch-size", "8",
            "--samples", "2", "--quiet", "--log", "tensorboard"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
        acc.Reload()
    tags = acc.Tags()
    assert {"loss/train", "loss/val"} <= set(tags["scalars"])
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    val = acc.Scalars("loss/val")
    assert [e.step for e in val] == [1, 2]
    assert [e.value for e in val] == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-5)
    metric = next(c for c in rows[0] if c not in ("epoch", "train_loss", "val_loss"))
    assert f"val/{metric}" in tags["scalars"]
    assert tags["images"] == ["samples"] and len(acc.Images("samples")) == 2


def test_a_missing_tensorboard_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import sys

    from acquisition.extras import MissingExtra
    from training.tensorboard_log import TensorBoardLog

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingExtra, match=r"pip install 'scope-pls\[tensorboard\]'"):
        TensorBoardLog(tmp_path)
