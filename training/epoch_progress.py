"""What a training run reports while it runs: epochs overall, steps of the current epoch.

Feeds a :class:`acquisition.progress.Progress` (the CLI's rich display, or nothing) and prints
one line per epoch with its metrics and the ETA, since the live bars are not drawn without a
terminal (a log file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from acquisition.progress import Progress


class EpochProgress:
    """Turns the trainer's epochs and steps into :class:`Progress` calls."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._started = False
        self._epoch_seconds: list[float] = []
        self._total = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if not self._started:
            self.progress.start("epochs", epochs, done=epoch - 1)
            self._started = True
        self._total = epochs
        self.progress.start("steps", steps, label=f"epoch {epoch}")

    def step(self, n: int, loss: float, cells_per_s: float) -> None:
        """``n`` more steps done; the latest loss and throughput."""
        self.progress.advance("steps", n, info=f"loss {loss:.4f}  {cells_per_s:,.0f} cells/s")

    def epoch_done(self, row: dict[str, Any], best_epoch: int) -> None:
        self.progress.advance(
            "epochs",
            info=f"val {row['val_loss']:.4f}  SSIM {row['ssim']:.4f}  best epoch {best_epoch}",
        )
        self._epoch_seconds.append(float(row.get("seconds", 0.0)))
        left = max(0, self._total - int(row["epoch"]))
        eta = left * float(np.median(self._epoch_seconds[-5:]))
        self.progress.note(
            f"epoch {int(row['epoch'])}/{self._total}: train {row['train_loss']:.4f}  "
            f"val {row['val_loss']:.4f}  SSIM {row['ssim']:.4f}  PSNR {row['psnr']:.2f}  "
            f"MAE {row['mae']:.4f}  {row['cells_per_s']:,.0f} cells/s  "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
