"""Helpers shared by the benchmark scripts: machine description and markdown output."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

#: Metadata of a synthetic frame written without a camera (storage and index benchmarks).
FRAME_META = {
    "exposure_ms": 1.0,
    "gain": 1.0,
    "stage_x_um": 0.0,
    "stage_y_um": 0.0,
    "stage_z_um": 0.0,
    "time": 0.0,
}


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        if m:
            cpu = m.group(1).strip()
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def rss_mb() -> float:
    """Current resident set size of this process, MB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def emit(markdown: str, out: str | None) -> None:
    print(markdown)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(markdown + "\n", encoding="utf-8")
