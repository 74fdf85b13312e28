"""`scope profiles list|show`."""

from __future__ import annotations

import math
from typing import Annotated

import typer

profiles_app = typer.Typer(no_args_is_help=True, help="Hardware profiles: list and inspect.")


@profiles_app.command("list")
def list_() -> None:
    """List the shipped hardware profiles."""
    from rich.console import Console
    from rich.table import Table

    import hardware_profiles as hp

    table = Table(title="shipped profiles")
    for col in ("name", "LEDs", "stack", "scan objective", "camera", "description"):
        table.add_column(col)
    for name in hp.list_profiles():
        p = hp.load(name)
        obj = p.scan_objective
        table.add_row(
            name,
            str(len(p.led_array.leds)),
            str(len(p.stack)),
            f"{obj.magnification:g}x/{obj.na:g} ({obj.pixel_size_um:g} µm/px)",
            f"{p.camera.sensor_width_px}x{p.camera.sensor_height_px}",
            p.description,
        )
    Console().print(table)


@profiles_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Profile name or path to a profile YAML file.")],
    stack: Annotated[
        str, typer.Option("--stack", help="Stack preset to show (full, full-nohe, le36, ...).")
    ] = "full",
) -> None:
    """Show a profile's stack: channel, LEDs, kind, θ, φ, exposure, gain."""
    from rich.console import Console
    from rich.table import Table

    import hardware_profiles as hp

    p = hp.load(name)
    rows = p.channel_table()
    keep = hp.select_channels(rows, stack)
    obj = p.scan_objective
    table = Table(
        title=f"{p.name} — stack {stack!r}: {len(keep)} images "
        f"({obj.magnification:g}x/{obj.na:g}, darkfield above "
        f"{math.degrees(math.asin(min(obj.na, 1.0))):.1f}°)"
    )
    for col in ("#", "channel", "LEDs", "kind", "exposure", "θ (°)", "φ (°)", "ms", "gain", "brt"):
        table.add_column(col, justify="right" if col not in ("channel", "kind", "LEDs") else "left")
    for i in keep:
        r = rows[i]
        leds = r["leds"] if len(r["leds"]) <= 24 else r["leds"][:21] + "..."
        th = "—" if math.isnan(r["theta_deg"]) else f"{r['theta_deg']:.1f}"
        ph = "—" if math.isnan(r["phi_deg"]) else f"{r['phi_deg']:.0f}"
        table.add_row(
            str(i),
            r["name"],
            leds,
            r["kind"],
            r["exposure_level"],
            th,
            ph,
            f"{r['exposure_ms']:g}",
            f"{r['gain']:g}",
            str(r["brightness"]),
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")
