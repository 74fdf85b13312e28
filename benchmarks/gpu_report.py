"""The GPU benchmark's markdown: one run's section, and the page with the earlier runs below.

:func:`report` writes the rows of :mod:`gpu_stain` and :mod:`gpu_train`; :func:`with_earlier`
puts a run above the runs already on the page. Like ``gpu_bench.py`` this imports only the
standard library, torch and the network.
"""

from __future__ import annotations

import platform
import sys

import torch
from gpu_stain import TOLERANCE

from training.models import RRDBGenerator, count_parameters

EARLIER = "#### Earlier runs on this page"
#: A paragraph that plans the next run: the run itself replaces it.
PLAN = "**Next GPU run.**"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _command() -> str:
    shown, skip = [], False
    for a in sys.argv[1:]:  # the command as run, without where it wrote
        if not (skip or a.startswith("--out") or a == "--keep-earlier"):
            shown.append(a)
        skip = a == "--out"
    return " ".join(["python benchmarks/gpu_bench.py", *shown])


def _stain_rows(st: list[dict], quick: bool) -> list[str]:
    lines = []
    for r in st:
        if "skip" in r or "error" in r:
            why = r.get("skip") or f"FAILED: {r['error']}".replace("|", "/")
            lines.append(f"| stain {r['what']} | {why} | | |")
            continue
        peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
        target = "< 0.2 s (H100)" if not quick else ""
        lines.append(
            f"| stain {r['what']} | {r['median_s']:.3f} s median (best {r['best_s']:.3f}{peak}) "
            f"| {r['first_s']:.1f} | {target} |"
        )
    return lines


def _check_rows(st: list[dict], exact: float | None, name: str) -> list[str]:
    lines = []
    for r in st:
        if "check" not in r:
            continue
        c = r["check"]
        lines.append(
            f"| correctness: stain {r['what']} on {name} vs CPU fp32, {c['size']}x{c['size']} "
            f"of the field, mean (max) abs difference | {c['mean']:.4f} ({c['max']:.4f}) "
            f"{'ok' if c['ok'] else 'FAILED'} | | ≤ {TOLERANCE['mean']} (≤ {TOLERANCE['max']}) |"
        )
    if exact is not None:
        lines.append(
            f"| channels padded vs plain, eager, on {name}: max abs difference (the same "
            f"network; summation order only) | {exact:.2g} | | |"
        )
    return lines


def report(args, device, bf16, st, exact, tr, ld, wall_s, *, done: bool) -> str:
    """The run's markdown section (``done=False``: the stages so far, marked incomplete)."""
    name = device_name(device)
    net = (
        f"RRDB {args.blocks} blocks, {args.images} images "
        f"({count_parameters(RRDBGenerator(3 * args.images, blocks=args.blocks)):,} parameters)"
    )
    lines = [
        f"### GPU path: {name}",
        "",
        f"Device: **{name}**, torch {torch.__version__}, {'bf16' if bf16 else 'fp32'}"
        f", {'channels_last' if args.cl else 'contiguous (NCHW)'}; {net}; "
        "synthetic tensors of the real shapes. "
        f"Command: `{_command()}` ({wall_s:.0f} s in all).",
        "",
    ]
    if not done:
        lines += ["**Incomplete run**: it stopped (time limit or error) after these rows.", ""]
    lines += ["| measure | value | first call (s) | target |", "|---|---|---|---|"]
    lines += _stain_rows(st, args.quick)
    for r in tr:
        target = "≥ 1,000 (H100)" if not args.quick else ""
        lines.append(
            f"| train {r['what']} | {r['samples_s']:,.0f} samples/s | {r['first_s']:.1f} | "
            f"{target} |"
        )
    for r in ld:
        lines.append(f"| loader alone, {r['what']} | {r['samples_s']:,.0f} samples/s | | |")
    lines += _check_rows(st, exact, name)
    return "\n".join(lines) + "\n"


def with_earlier(text: str, page: str | None) -> str:
    """``text`` above the runs already on ``page``.

    Their own headings fold into one "earlier runs" heading; the paragraph that planned
    this run (starting with :data:`PLAN`) is dropped; every other line is kept as it was.
    """
    if not page or not page.strip():
        return text
    body, in_plan = [], False
    for i, line in enumerate(page.strip().splitlines()):
        in_plan = line.startswith(PLAN) or (in_plan and line.strip() != "")
        if in_plan or line == EARLIER or (i == 0 and line.startswith("### GPU path")):
            continue
        body.append(line)
    return "\n".join([text.rstrip(), "", EARLIER, "", "\n".join(body).strip(), ""])
