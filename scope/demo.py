"""``scope demo``: the whole method on the simulated microscope, in one command.

For each simulated slide: unstained PLS scan, stained rescan, ``scope match``, 100x rescan of
the matched cells, ``scope match --highres``; then ``scope dataset merge`` (split by blocks
within each slide: 3 slides are too few to split by slide), ``scope train`` of a small PLS
network and of a brightfield-only baseline with the same budget, ``scope evaluate`` of both,
a paired comparison over the test cells (bootstrap interval, per cell type from the
simulator's truth), and ``scope stain`` of one field. Every step runs the real command
in-process with its progress display, and is numbered and timed; the end prints a summary
table and writes ``report.html``.

The steps are reported through the libraries' progress protocol
(:class:`acquisition.progress.Progress`) as notes — a numbered header, the command line, a
tick with the time — so each command's own progress bars show between them. Sizes
(``--quick``, ``--full``) are in :mod:`scope.demo_sizes`, the closing tables and verdict in
:mod:`scope.demo_summary`, the HTML page in :mod:`scope.demo_report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from acquisition.progress import NO_PROGRESS, Progress
from hardware_profiles.errors import ScopeError
from scope.demo_sizes import FIVE_MINUTES, FULL, PLS_STACK, PROFILE, QUICK, DemoSize
from scope.demo_summary import comparison_table, model_rows, summary_tables, verdict


class DemoError(ScopeError):
    """A demo step failed."""


@dataclass
class StepTime:
    name: str
    seconds: float


@dataclass
class DemoResult:
    out: Path
    steps: list[StepTime] = field(default_factory=list)
    slides: list[str] = field(default_factory=list)
    registration: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparison: Any = None  # scope.demo_stats.DemoComparison
    report: Path | None = None

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


class Demo:
    """Runs the pipeline step by step (see the module docstring)."""

    def __init__(
        self,
        out: Path,
        *,
        slides: int = 3,
        quick: bool = False,
        full: bool = False,
        device: str = "auto",
        console: Console | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> None:
        """``progress`` gets the steps (as notes); ``console`` the comparison table."""
        if slides < 1:
            raise DemoError(f"--slides must be at least 1, got {slides}")
        if quick and full:
            raise DemoError("choose --quick or --full, not both")
        self.out = Path(out)
        self.size = QUICK if quick else FULL if full else FIVE_MINUTES
        self.quick = quick
        self.n_slides = slides
        self.device = device
        self.console = console or Console()
        self.progress = progress
        self.result = DemoResult(out=self.out)
        self.scans = self.out / "scans"
        self.data = self.out / "data"
        self.runs = self.out / "runs"
        self._n_steps = 5 * slides + 10
        self._t_start = time.perf_counter()

    # -- plumbing ---------------------------------------------------------------------------
    def _cli(self, name: str, args: list[str]) -> None:
        from scope.cli import main

        def run() -> None:
            self.progress.note(f"$ scope {' '.join(args)}")
            code = main(args)
            if code != 0:
                raise DemoError(f"step '{name}' failed (exit {code}); its message is above")

        self._timed(name, run)

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run step ``name``: a numbered header, ``fn()``, a tick with its time."""
        k = len(self.result.steps) + 1
        elapsed = int(time.perf_counter() - self._t_start)
        self.progress.note(
            f"── step {k}/{self._n_steps}: {name} ({elapsed // 60}:{elapsed % 60:02d} so far)"
        )
        t0 = time.perf_counter()
        value = fn()
        dt = time.perf_counter() - t0
        self.result.steps.append(StepTime(name, dt))
        self.progress.note(f"✓ {name} ({dt:.1f} s)")
        return value

    # -- the pipeline -----------------------------------------------------------------------
    def run(self) -> DemoResult:
        marker = self.out / ".scope-demo"
        if self.out.exists() and any(self.out.iterdir()):
            if not marker.exists():
                raise DemoError(
                    f"{self.out} is not empty and was not written by scope demo; choose "
                    "another --out (the demo only replaces its own earlier output)"
                )
            import shutil

            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        marker.write_text("written by scope demo; the next demo run replaces this folder\n")
        for d in (self.scans, self.data, self.runs):
            d.mkdir(parents=True, exist_ok=True)
        sim_cfg = self.out / "simulator.yaml"
        sim_cfg.write_text(
            "# A smear denser in white blood cells than real blood, so a few small fields\n"
            "# yield a dataset (simulator knobs: docs/simulator.md). The demo's small camera\n"
            "# sees ~150 x 100 µm, so the slide is re-seated within +-20 µm between passes\n"
            "# (the default +-50 µm needs frames of at least 1280 x 800).\n"
            f"wbc_per_field: {self.size.wbc_per_field}\n"
            "max_translation_um: 20\n"
            + (
                "# --quick: a smoke test; fewer wavelengths per white LED (default 8).\n"
                f"spectral_samples: {self.size.spectral_samples}\n"
                if self.size.spectral_samples
                else ""
            ),
            encoding="utf-8",
        )
        for k in range(1, self.n_slides + 1):
            self._slide(f"demo-{k}", seed=k, sim_cfg=sim_cfg)
        s = self.size
        merged = self.data / "demo.dataset.h5"
        datasets = [str(self.data / f"{s}.dataset.h5") for s in self.result.slides]
        self._cli(
            "merge datasets",
            ["dataset", "merge", *datasets, "--out", str(merged), "--fractions", s.fractions],
        )
        self._cli(
            "dataset summary",
            ["dataset", "info", str(merged), "--grid", str(self.out / "matched-cells.png")],
        )
        for name, stack in (("pls", PLS_STACK), ("brightfield", "brightfield")):
            self._train(name, stack, merged)
        for name in ("pls", "brightfield"):
            self._cli(f"evaluate {name} model", ["evaluate", str(self.runs / name)])
            summary = self.runs / name / "eval" / "test" / "summary.json"
            self.result.metrics[name] = json.loads(summary.read_text(encoding="utf-8"))
        self.result.comparison = self._timed("compare the models", self._compare)
        first = self.result.slides[0]
        self._cli(
            "stain a field",
            [
                "stain",
                str(self.runs / "pls"),
                str(self.scans / f"{first}.unstained.scan.h5"),
                "--out",
                str(self.out / "stained"),
                "--positions",
                "0",
            ],
        )
        self.result.registration = self._timed(
            "registration vs simulator truth", self._registration_truth
        )
        from scope.demo_report import write_report

        self.result.report = self._timed("report", lambda: write_report(self))
        return self.result

    def _slide(self, slide: str, *, seed: int, sim_cfg: Path) -> None:
        s = self.size
        common = [
            "--profile",
            PROFILE,
            "--out",
            str(self.scans),
            "--seed",
            str(seed),
            "--sim-config",
            str(sim_cfg),
            "--yes",
        ]
        self._cli(
            f"{slide}: unstained PLS scan",
            [
                "scan",
                "--slide",
                slide,
                "--pass",
                "unstained",
                "--stack",
                PLS_STACK,
                "--grid",
                s.grid,
                "--sim-sensor",
                s.sensor,
                *common,
            ],
        )
        self._cli(
            f"{slide}: stained rescan",
            ["scan", "--slide", slide, "--pass", "stained", "--sim-sensor", s.sensor, *common],
        )
        dataset = self.data / f"{slide}.dataset.h5"
        self._cli(
            f"{slide}: match",
            [
                "match",
                str(self.scans / f"{slide}.unstained.scan.h5"),
                str(self.scans / f"{slide}.stained.scan.h5"),
                "--out",
                str(dataset),
            ],
        )
        self._cli(
            f"{slide}: 100x rescan",
            [
                "scan",
                "--slide",
                slide,
                "--pass",
                "highres",
                "--cells",
                str(self.data / f"{slide}.cells.csv"),
                "--sim-sensor",
                s.highres_sensor,
                *common,
            ],
        )
        self._cli(
            f"{slide}: match --highres",
            ["match", "--highres", str(self.scans / f"{slide}.highres.scan.h5"), str(dataset)],
        )
        self.result.slides.append(slide)

    def _train(self, name: str, stack: str, dataset: Path) -> None:
        s = self.size
        self._cli(
            f"train {name} model ({stack})",
            [
                "train",
                str(dataset),
                "--preset",
                "maeNET",
                "--stack",
                stack,
                "--out",
                str(self.runs / name),
                "--epochs",
                str(s.epochs),
                "--growth",
                str(s.growth),
                "--lr",
                f"{s.lr:g}",
                "--patience",
                str(s.epochs),
                "--blocks",
                str(s.blocks),
                "--features",
                str(s.features),
                "--batch-size",
                str(s.batch_size),
                "--device",
                self.device,
                "--seed",
                "0",
            ],
        )

    def _compare(self) -> Any:
        from scope.demo_stats import compare_runs

        comp = compare_runs(
            self.runs / "pls" / "eval" / "test" / "cells.csv",
            self.runs / "brightfield" / "eval" / "test" / "cells.csv",
            {s: self.scans / f"{s}.stained.scan.h5" for s in self.result.slides},
        )
        self.console.print(comparison_table(comp))
        return comp

    def _registration_truth(self) -> list[dict[str, Any]]:
        from registration.truth import evaluate_match

        rows = []
        for slide in self.result.slides:
            ev = evaluate_match(
                self.data / f"{slide}.dataset.h5",
                self.scans / f"{slide}.unstained.scan.h5",
                self.scans / f"{slide}.stained.scan.h5",
            )
            rows.append(
                {
                    "slide": slide,
                    "truth_wbc": ev.n_truth_wbc,
                    "found": ev.n_found,
                    "recall": ev.recall,
                    "precision": ev.precision_unflagged,
                    "fine_median_px": ev.fine_median_px,
                    "fine_p99_px": ev.fine_p99_px,
                    "transform_error_px": ev.transform_error_px,
                }
            )
        return rows


__all__ = [
    "FIVE_MINUTES",
    "FULL",
    "PLS_STACK",
    "PROFILE",
    "QUICK",
    "Demo",
    "DemoError",
    "DemoResult",
    "DemoSize",
    "StepTime",
    "comparison_table",
    "model_rows",
    "summary_tables",
    "verdict",
]
