"""The GPU benchmark runs where only torch and numpy exist, and works (on a CPU, --quick)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("pydantic", "h5py", "hdf5plugin", "yaml", "typer", "rich", "scipy", "skimage")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_gpu_bench_imports_only_torch_numpy_and_the_network():
    code = (
        "import sys\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import gpu_bench, training.steps, training.infer, training.tensors\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
        "print('BAD', bad)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BAD []" in proc.stdout, proc.stdout


@pytest.mark.slow
def _gpu_page() -> str | None:
    page = ROOT / "docs" / "bench" / "gpu.md"
    return page.read_text() if page.exists() else None


def test_gpu_sh_runs_on_cpu_quick_and_writes_rows(tmp_path):
    out = tmp_path / "gpu.md"
    before = _gpu_page()
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--device", "cpu", "--quick"],
        cwd=ROOT,
        env={**_env(), "PYTHON": sys.executable, "GPU_BENCH_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "### GPU path: CPU" in text
    for row in ("| stain ", "| train maeNET", "| train maePFNET", "| loader alone", "ok |"):
        assert row in text, text
    assert "samples/s" in text and "FAILED" not in text
    # a run on CPU never touches the page of GPU figures
    assert _gpu_page() == before
