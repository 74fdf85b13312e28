"""Rich summaries of scan files for `scope info`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.table import Table

from scope.progress import human_bytes


def describe_scan(path: Path) -> Table:
    from acquisition.scan import disk_usage
    from acquisition.scanfile import ScanFile

    with ScanFile(path) as sf:
        a = sf.attrs
        table = Table(title=f"scan file {path.name}", show_header=False)
        table.add_column("", style="bold")
        table.add_column("")
        table.add_row("slide / pass", f"{a['slide']} / {a['pass']}")
        table.add_row(
            "objective",
            f"{a['objective_magnification']:g}x / NA "
            f"{a['objective_na']:g}, {a['pixel_size_um']:g} µm/px",
        )
        prof = sf.profile
        table.add_row("profile", f"{prof.name} ({a.get('backend', '?')} backend)")
        if sf.simulated:
            table.add_row("data", "[yellow]SIMULATED (built-in simulator), not a real slide[/]")
        kinds = Counter(sf.channels["kind"])
        table.add_row(
            "stack",
            f"{len(sf.channels)} images: " + ", ".join(f"{n} {k}" for k, n in kinds.items()),
        )
        status = Counter(sf.positions["status"])
        table.add_row(
            "fields",
            f"{len(sf.done)} of {sf.n_positions} done"
            + "".join(f", {n} {s}" for s, n in status.items() if s != "done"),
        )
        if "images" in sf._f:
            h, w = sf.frame_shape
            table.add_row("frames", f"{w} x {h} RGB, {len(sf.frames)} images stored")
        table.add_row("compression", str(a.get("compression", "?")))
        table.add_row("on disk", human_bytes(disk_usage(path)))
        table.add_row("created", str(a.get("created", "")))
        truth = sf.truth()
        if truth is not None:
            types = Counter(truth["cells"]["type"])
            wbc = sum(
                types[t] for t in ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")
            )
            extra = ""
            if truth.get("magnification_ratio"):
                extra = f", 100x/20x ratio {truth['magnification_ratio']:.4f}"
            table.add_row(
                "simulator truth",
                f"{wbc} WBCs, {types['rbc']} RBCs, {len(truth['faults'])} planted faults{extra}",
            )
        table.add_row(
            "status",
            "[green]complete[/]"
            if sf.complete
            else "[yellow]incomplete: scope scan ... --resume continues it[/]",
        )
    return table
