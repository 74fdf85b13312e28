"""``scope train --log tensorboard``: scalars and sample grids for TensorBoard.

Written by rank 0 after every epoch to ``RUN/tensorboard/`` (beside ``metrics.csv``, which
stays the record): one scalar per ``metrics.csv`` column (``loss/train``, ``loss/val``,
``val/<metric>``) and the epoch's sample grid (input brightfield | prediction | target).
View with ``tensorboard --logdir RUN/tensorboard`` (extra ``scope-pls[tensorboard]``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def _tag(column: str) -> str:
    if column.endswith("_loss"):
        return f"loss/{column.removesuffix('_loss')}"
    return f"val/{column}"


class TensorBoardLog:
    """An ``on_epoch`` callback for :func:`training.train` writing TensorBoard events."""

    def __init__(self, run_dir: str | Path) -> None:
        from acquisition.extras import require

        require("tensorboard", "tensorboard", what="scope train --log tensorboard")
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "tensorboard"
        self._writer: Any = None

    def _open(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.folder))
        return self._writer

    def __call__(self, row: dict[str, Any]) -> None:
        if int(os.environ.get("RANK", "0")) != 0:
            return  # one writer per run: rank 0 writes the run folder
        from training.run import RunFolder

        writer = self._open()
        epoch = int(row["epoch"])
        for column, value in row.items():
            if column == "epoch" or not isinstance(value, (int, float, np.floating)):
                continue
            if math.isfinite(float(value)):
                writer.add_scalar(_tag(column), float(value), epoch)
        grid = RunFolder(self.run_dir).sample_grid(epoch)
        if grid.is_file():
            import cv2

            bgr = cv2.imread(str(grid), cv2.IMREAD_COLOR)
            if bgr is not None:
                writer.add_image("samples", bgr[..., ::-1].copy(), epoch, dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
