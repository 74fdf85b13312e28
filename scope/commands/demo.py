"""`scope demo`: the whole pipeline on the simulated microscope."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo-output"),
    slides: Annotated[
        int,
        typer.Option(
            "--slides",
            min=1,
            max=12,
            help="Simulated slides (split by blocks within slides; by slide from 5 on).",
        ),
    ] = 3,
    full: Annotated[
        bool,
        typer.Option("--full", help="The long version: bigger fields and network, 30 epochs."),
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke test of every step (CI); results meaningless.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu or cuda for training.")
    ] = "auto",
) -> None:
    """Run scan → stain-rescan → match → 100x → train → evaluate → stain on the simulator."""
    from rich.console import Console

    from scope.demo import Demo
    from scope.demo_summary import summary_tables, verdict
    from scope.progress import RichProgress

    console = Console()
    # notes only: each step's command draws its own bars, and one live display at a time
    with RichProgress(console, bars=False) as progress:
        demo_run = Demo(
            out,
            slides=slides,
            quick=quick,
            full=full,
            device=device,
            console=console,
            progress=progress,
        )
        result = demo_run.run()
    for table in summary_tables(result):
        console.print(table)
    console.print(f"[bold]{verdict(result)}[/]")
    console.print(f"report: [link=file://{result.report.resolve()}]{result.report}[/link]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
