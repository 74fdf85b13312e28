"""`scope led info|test`: identify an Illuminate LED array and test it channel by channel."""

from __future__ import annotations

import math
from typing import Annotated

import typer

led_app = typer.Typer(
    no_args_is_help=True,
    help="The LED array: identify it, check its geometry, light the stack channel by channel.",
)

PortOption = Annotated[
    str,
    typer.Option(
        "--port",
        "-p",
        help="Serial port of the array (/dev/ttyACM0, COM3) or a pyserial URL.",
        show_default=False,
    ),
]


def _layout(geometry: dict[int, tuple[float, float, float]]) -> list[tuple[str, str]]:
    """Label/text rows describing an LED layout: angles, then rings and arms, or a grid."""
    xyz = list(geometry.values())
    n = len(xyz)
    theta = [math.degrees(math.atan2(math.hypot(x, y), z)) for x, y, z in xyz]
    phi = [math.degrees(math.atan2(y, x)) % 360.0 for x, y, _ in xyz]
    rows = [
        ("θ range", f"{min(theta):.1f}° – {max(theta):.1f}°"),
        ("z range", f"{min(p[2] for p in xyz):.2f} – {max(p[2] for p in xyz):.2f} mm"),
    ]
    xs = sorted({round(p[0], 2) for p in xyz})
    ys = sorted({round(p[1], 2) for p in xyz})
    if n >= 4 and len(xs) > 1 and len(ys) > 1 and len(xs) * len(ys) == n:
        pitch = (xs[-1] - xs[0]) / (len(xs) - 1)
        rows.append(("layout", f"grid {len(xs)} x {len(ys)}, pitch {pitch:.2f} mm"))
        return rows
    rings: dict[float, int] = {}
    for t in theta:
        rings[round(t * 2) / 2] = rings.get(round(t * 2) / 2, 0) + 1
    if len(rings) <= n / 3:
        rows.append(
            ("rings", f"{len(rings)}, at θ = " + ", ".join(f"{t:g}°" for t in sorted(rings)))
        )
    arms: dict[int, int] = {}
    for p in phi:
        arms[round(p) % 360] = arms.get(round(p) % 360, 0) + 1
    big = sorted(k for k, v in arms.items() if v >= 3)
    if len(big) >= 3 and sum(arms[k] for k in big) >= 0.75 * n:
        rows.append(("arms", f"{len(big)}, at φ = " + ", ".join(f"{k}°" for k in big)))
    return rows


def _led_list(leds: list[int] | dict[int, int], limit: int = 24) -> str:
    text = ",".join(str(i) for i in sorted(leds))
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(leds)})"


@led_app.command("info")
def info(
    port: PortOption,
    baudrate: Annotated[int, typer.Option("--baudrate", min=1, help="Serial speed.")] = 115200,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=0.01, help="Reply timeout, seconds.")
    ] = 2.0,
) -> None:
    """Show an array's firmware version, LED count and LED layout."""
    from rich.console import Console
    from rich.table import Table

    from acquisition.led_array import LedArray

    with LedArray.open(port, baudrate=baudrate, timeout_s=timeout_s, verify=False) as array:
        props = array.properties
        table = Table(title=f"LED array on {port}", show_header=False, title_justify="left")
        table.add_column("", style="bold")
        table.add_column("")
        table.add_row("firmware", f"Illuminate {array.firmware_version}")
        if array.device_name:
            table.add_row("device", array.device_name)
        table.add_row("LEDs", str(array.led_count))
        channels = props.get("color_channels")
        if isinstance(channels, list) and channels:
            table.add_row("colour channels", ", ".join(str(c) for c in channels))
        distance = props.get("led_array_distance_z")
        if isinstance(distance, int | float):
            table.add_row("array distance", f"{distance:g} mm")
        for label, text in _layout(array.geometry()):
            table.add_row(label, text)
    Console().print(table)


@led_app.command("test")
def test(
    port: PortOption,
    profile: Annotated[
        str,
        typer.Option("--profile", help="Hardware profile name or YAML path.", show_default=False),
    ],
    stack: Annotated[
        str, typer.Option("--stack", help="Stack preset (full, full-nohe, le36, ...).")
    ] = "full",
    dwell_ms: Annotated[
        float, typer.Option("--dwell-ms", min=0, help="Time each channel stays lit, ms.")
    ] = 250.0,
    baudrate: Annotated[
        int | None,
        typer.Option("--baudrate", min=1, help="Serial speed [default: the profile's]."),
    ] = None,
) -> None:
    """Check an array's geometry against a profile, then light each stack channel in order.

    Every channel is read back from the firmware (pvals); the table shows what it answered.
    All LEDs are cleared at the end.
    """
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    import hardware_profiles as hp
    from acquisition.led_array import LedArray, LedArrayError

    prof = hp.load(profile)
    channels = prof.channel_table()
    keep = hp.select_channels(channels, stack)
    serial_settings = prof.led_array.serial
    console = Console()
    table = Table(title=f"{prof.name} — stack {stack!r} on {port}", title_justify="left")
    for col in ("#", "channel", "kind", "θ (°)", "brt", "requested", "firmware lit", "ok"):
        table.add_column(col, justify="right" if col in ("#", "θ (°)", "brt") else "left")
    verified = 0
    with LedArray.open(
        port,
        baudrate=baudrate or serial_settings.baudrate,
        timeout_s=serial_settings.timeout_s,
    ) as array:
        array.check_geometry(prof)
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=True,
            ) as progress:
                task = progress.add_task("lighting channels", total=len(keep))
                for index in keep:
                    channel, row = prof.stack[index], channels[index]
                    progress.update(task, description=f"lighting {channel.name}")
                    array.light(channel.leds, channel.brightness)
                    time.sleep(dwell_ms / 1000.0)
                    lit = array.lit()
                    wanted = (
                        dict.fromkeys(channel.leds, channel.brightness)
                        if channel.brightness
                        else {}
                    )
                    ok = lit == wanted
                    verified += ok
                    levels = sorted(set(lit.values()))
                    theta = "—" if math.isnan(row["theta_deg"]) else f"{row['theta_deg']:.1f}"
                    table.add_row(
                        str(index),
                        channel.name,
                        channel.kind,
                        theta,
                        str(channel.brightness),
                        _led_list(channel.leds),
                        (_led_list(lit) + " @" + "/".join(map(str, levels))) if lit else "none",
                        "[green]✓[/]" if ok else "[red]✗[/]",
                    )
                    progress.advance(task)
            array.clear()
        except LedArrayError:
            console.print(table)
            try:
                array.clear()
            except LedArrayError:
                pass
            raise
    console.print(table)
    console.print(
        f"{verified}/{len(keep)} channels read back exactly as requested; all LEDs cleared."
    )
    if verified != len(keep):
        raise LedArrayError(
            f"LED array on {port}: {len(keep) - verified} of {len(keep)} channels did not read "
            "back ('pvals') as requested"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(led_app, name="led")
