"""The training run folder (docs/formats.md) and its small text files.

```
runs/NAME/
  config.yaml          resolved TrainConfig, command line, environment, data summary
  status.json          state (running / finished / stopped-early), epochs, best epoch
  metrics.csv          one row per epoch: epoch, train_loss, val_loss, validation metrics, …
  checkpoints/{last,best}.pt
  samples/epoch_NNNN.png   prediction grids (brightfield | prediction | target)
  report.html          curves, metric table, grids (self-contained)
  eval/<split>/        `scope evaluate` output
  stain/               default `scope stain` output
```
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from training.errors import CheckpointError


class RunFolder:
    """Paths inside one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    config = property(lambda self: self.path / "config.yaml")
    status = property(lambda self: self.path / "status.json")
    metrics = property(lambda self: self.path / "metrics.csv")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last = property(lambda self: self.path / "checkpoints" / "last.pt")
    best = property(lambda self: self.path / "checkpoints" / "best.pt")
    samples = property(lambda self: self.path / "samples")
    report = property(lambda self: self.path / "report.html")

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def sample_grid(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:04d}.png"

    def exists(self) -> bool:
        return self.config.is_file() or self.last.is_file()

    def writer_pid(self) -> int | None:
        """The pid of the process training in this folder now, or None."""
        from acquisition.files import lock_holder

        pid = lock_holder(self.path) if self.path.is_dir() else None
        return None if pid == os.getpid() else pid

    def stopped_before_checkpoint(self) -> bool:
        """A run that was started but died before its first checkpoint (nothing to resume)."""
        return self.exists() and not self.last.is_file() and self.writer_pid() is None

    def clear_unfinished(self) -> None:
        """Remove what a run that died before its first checkpoint left (config, samples…)."""
        import shutil

        for p in (self.config, self.status, self.metrics, self.report):
            p.unlink(missing_ok=True)
        for d in (self.samples, self.checkpoints):
            shutil.rmtree(d, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    from acquisition.files import write_text

    write_text(path, text)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_config(run: RunFolder, document: dict[str, Any]) -> None:
    """``config.yaml``: ``config`` (the resolved TrainConfig), ``command``, ``environment``…"""
    _atomic_write_text(run.config, yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def read_config(run: RunFolder) -> dict[str, Any]:
    if not run.config.is_file():
        raise CheckpointError(f"{run.path} is not a training run (no config.yaml)")
    try:
        doc = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CheckpointError(
            f"{run.config} is not valid YAML{where}; restore it (scope writes it at the start "
            "of every run) or start a new run in another --out"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {run.config}: {err}") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{run.config} is damaged: expected a mapping of run settings")
    return doc


def write_status(run: RunFolder, **fields: Any) -> None:
    _atomic_write_text(run.status, json.dumps({**fields, "updated": now_iso()}, indent=1))


def read_status(run: RunFolder) -> dict[str, Any]:
    if not run.status.is_file():
        return {}
    try:
        doc = json.loads(run.status.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return {"state": "unknown (status.json is damaged)"}
    return doc if isinstance(doc, dict) else {}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_metrics(path: Path, history: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rewrite ``metrics.csv`` from the full history (one row per epoch)."""
    from acquisition.files import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in history:
            writer.writerow([_fmt(row.get(c)) for c in columns])


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as floats (empty cells become NaN)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            {k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def describe_run(run_dir: str | Path) -> dict[str, Any]:
    """A short summary of a run folder for ``scope info``: what it trains and how far it got.

    Returns
    -------
    dict
        ``kind="training-run"``, ``path``, ``preset``, ``stack``, ``target``, ``generator``,
        ``n_images``, ``parameters``, ``state``, ``epochs_done``, ``epochs``, ``best_epoch``,
        ``best_val_loss``, ``best_ssim``, ``checkpoints``, ``evaluations``.
    """
    run = RunFolder(run_dir)
    doc = read_config(run)
    state = read_status(run).get("state", "unknown")
    pid = run.writer_pid()
    if pid is not None:
        state = f"running (pid {pid})"
    elif not run.last.is_file() and state in ("running", "interrupted", "unknown"):
        state = "stopped (no checkpoint)"
    elif state in ("running", "unknown"):  # killed: nobody holds the run's lock
        state = "stopped (scope train ... --resume continues it)"
    cfg = doc.get("config", {})
    model = doc.get("model", {})
    rows = read_metrics(run.metrics)
    best = None
    if rows:
        finite = [r for r in rows if not math.isnan(r.get("val_loss", math.nan))]
        best = min(finite, key=lambda r: r["val_loss"]) if finite else None
    return {
        "kind": "training-run",
        "path": str(run.path),
        "preset": cfg.get("preset"),
        "stack": cfg.get("stack"),
        "target": cfg.get("target"),
        "generator": cfg.get("generator"),
        "n_images": len(model.get("channel_names", [])),
        "parameters": doc.get("parameters"),
        "state": state,
        "epochs_done": len(rows),
        "epochs": cfg.get("epochs"),
        "best_epoch": None if best is None else int(best["epoch"]),
        "best_val_loss": None if best is None else best["val_loss"],
        "best_ssim": None if best is None else best.get("ssim"),
        "checkpoints": sorted(p.stem for p in run.checkpoints.glob("*.pt")),
        "evaluations": sorted(p.name for p in (run.path / "eval").glob("*") if p.is_dir()),
    }
