"""The GPU benchmark runs where only torch and numpy exist, and works (on a CPU, --quick)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.infer import stain_field

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("pydantic", "h5py", "hdf5plugin", "yaml", "typer", "rich", "scipy", "skimage")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_gpu_bench_imports_only_torch_numpy_and_the_network():
    code = (
        "import sys\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import gpu_bench, gpu_common, gpu_profile, gpu_report, gpu_stain, gpu_train\n"
        "import gpu_variants, training.channel_pad\n"
        "import training.steps, training.infer, training.tensors\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
        "print('BAD', bad)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BAD []" in proc.stdout, proc.stdout


def _gpu_page() -> str | None:
    page = ROOT / "docs" / "bench" / "gpu.md"
    return page.read_text() if page.exists() else None


@pytest.mark.slow
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
    for row in (
        "| stain 96x64 field, eager | ",
        "| stain 96x64 field, channels padded 12→16, eager | ",
        "| stain 96x64 field, channels padded 12→16, eager, channels-last | ",
        "| train maeNET, batch 2 of 32x32, eager, channels padded, channels-last | ",
        "| train maeNET",
        "| train maePFNET",
        "| loader alone",
    ):
        assert row in text, text
    assert "samples/s" in text and "FAILED" not in text and "Incomplete" not in text
    # the CUDA-only variants are reported as skipped, not faked
    for variant in ("CUDA graph", "channels padded 12→16, CUDA graph"):
        assert f"| stain 96x64 field, {variant} | skipped (needs CUDA) |" in text, text
    # every variant that ran is checked against the CPU, and passes
    checks = [line for line in text.splitlines() if line.startswith("| correctness: stain")]
    # plain, padded, and padded in the other layout (channels-last here)
    assert len(checks) == 3 and all(" ok |" in line for line in checks), checks
    # the channel-padded network is the same network: its output equals the plain one's
    exact = re.search(r"\| channels padded vs plain, eager, .*?\| ([0-9.e+-]+) \|", text)
    assert exact is not None, text
    assert float(exact.group(1)) <= 1e-5
    # a run on CPU never touches the page of GPU figures
    assert _gpu_page() == before


def test_the_field_check_is_exact_in_its_interior_and_catches_a_wrong_output():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_common import QUICK, seeded_generator
    from gpu_stain import check, field_reference

    args = argparse.Namespace(quick=True, **QUICK)
    stack = np.random.default_rng(0).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    region, ref = field_reference(args, stack)
    gen = seeded_generator(4, 1, torch.device("cpu"), False).eval()
    field = stain_field(gen, stack, dtype=np.float32)  # the whole field in one pass
    assert ref.shape == field[region].shape == (24, 24, 3)
    assert np.abs(field[region] - ref).max() <= 1e-6  # the crop's interior is the field's
    assert check(field, region, ref)["ok"]
    wrong = field.copy()
    wrong[region][3:5, 3:5] += 0.1  # a few wrong pixels: within the mean, beyond the max
    bad = check(wrong, region, ref)
    assert not bad["ok"] and bad["max"] > 0.08
    shifted = np.roll(field, 1, axis=1)  # a misplaced tile
    assert not check(shifted, region, ref)["ok"]


def test_variants_skip_cuda_graphs_off_cuda_and_keep_report_order():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_variants import NEEDS_CUDA, GraphedForward, stain_variants

    on_gpu = stain_variants(torch.device("cuda"), compile=True, pad=True, graphs=True, quick=False)
    assert [(v.mode, v.pad, v.channels_last) for v in on_gpu] == [
        ("eager", False, None), ("compiled", False, None), ("graph", False, None),
        ("eager", True, None), ("compiled", True, None), ("graph", True, None),
        ("eager", True, True), ("compiled", True, True), ("graph", True, True),
    ]  # padded: also in the other layout (the run's is NCHW here)  # fmt: skip
    assert all(v.skip is None for v in on_gpu)
    on_cpu = stain_variants(torch.device("cpu"), compile=False, pad=False, graphs=True, quick=True)
    assert [(v.mode, v.skip) for v in on_cpu] == [("eager", None), ("graph", NEEDS_CUDA)]
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA tensor"):
        GraphedForward(torch.nn.Identity())(torch.zeros(1))


def test_gpu_profile_needs_cuda(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_profile

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the profile would run")
    assert gpu_profile.main(["--pad-channels"]) == 1
    assert "no CUDA device here" in capsys.readouterr().err


def test_earlier_runs_stay_on_the_page_below_the_new_one():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_report import EARLIER, PLAN, with_earlier

    measured = "### GPU path: NVIDIA H200\n\nSome runs.\n\n| stain | 0.419 s |\n| x | y |\n"
    plan = f"{PLAN} `bash benchmarks/gpu.sh` measures\nwhat is open.\n"
    old = measured + "\n" + plan
    first = "### GPU path: NVIDIA X\n\n| a | 1 |\n"
    page = with_earlier(first, old)
    assert page.startswith(first.rstrip())
    # every line of the earlier runs but their heading is kept, in order; the plan is not
    kept = measured.strip().splitlines()[1:]
    assert page.strip().splitlines()[-len(kept) :] == kept
    assert PLAN not in page and "what is open" not in page
    # the page as it is now: its measured rows all survive the next run
    now = (ROOT / "docs" / "bench" / "gpu.md").read_text()
    merged = with_earlier(first, now)
    rows = [line for line in now.splitlines() if line.startswith("| ")]
    assert rows and all(row in merged for row in rows)
    again = with_earlier("### GPU path: NVIDIA Y\n\n| b | 2 |\n", page)
    assert again.count(EARLIER) == 1 and again.count("### GPU path") == 1
    assert "| a | 1 |" in again and "| b | 2 |" in again
    assert with_earlier(first, None) == first


def test_a_failing_stain_variant_is_reported_and_the_others_still_run(monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_report
    import gpu_stain
    from gpu_common import QUICK

    real = gpu_stain.build

    def build(v, gen, **kw):
        if v.pad:
            raise RuntimeError("capture failed\nsecond line")
        return real(v, gen, **kw)

    monkeypatch.setattr(gpu_stain, "build", build)
    args = argparse.Namespace(
        quick=True, compile=False, pad=True, graphs=False, cl=False, repeats=1, **QUICK
    )
    rows, calls = [], []
    exact = gpu_stain.stain(args, torch.device("cpu"), False, rows, lambda: calls.append(1))
    assert exact is None and len(calls) == 3  # plain, padded, padded channels-last
    assert rows[0]["check"]["ok"] and rows[1]["error"] == "RuntimeError: capture failed"
    args.batch_size = [2]
    text = gpu_report.report(args, torch.device("cpu"), False, rows, exact, [], [], 1.0, done=False)
    assert "| FAILED: RuntimeError: capture failed |" in text and "Incomplete run" in text
