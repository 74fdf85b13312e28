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
    str | None,
    typer.Option(
        "--port",
        "-p",
        help="Serial port of the array (/dev/ttyACM0, COM3), a pyserial URL, or 'sim' for the "
        "built-in emulator of the Illuminate firmware (try scope without hardware).",
        show_default=False,
    ),
]
LedDeviceOption = Annotated[
    str | None,
    typer.Option(
        "--led-device",
        help="The array as a Micro-Manager device (its label), with --backend mmcore "
        "--mm-config FILE or --backend micromanager; instead of --port.",
        show_default=False,
    ),
]
BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="mmcore or micromanager, to reach --led-device [default: the profile's].",
        show_default=False,
    ),
]
MmConfigOption = Annotated[
    str | None, typer.Option("--mm-config", help="Micro-Manager configuration (mmcore).")
]
MmPortOption = Annotated[
    int | None, typer.Option("--mm-port", help="Micro-Manager ZMQ port (micromanager).")
]
SimBitDepthOption = Annotated[
    int, typer.Option("--sim-bit-depth", help="--port sim: the emulated board's bit depth (8, 16).")
]
SimPrintingOption = Annotated[
    str,
    typer.Option(
        "--sim-printing",
        help="--port sim: 'firmware' (byte for byte as the firmware prints) or 'compact'.",
    ),
]


def _check_sim_options(bit_depth: int, printing: str) -> None:
    from hardware_profiles.errors import ScopeError

    if bit_depth not in (8, 16):
        raise ScopeError(f"--sim-bit-depth must be 8 or 16, got {bit_depth}")
    if printing not in ("firmware", "compact"):
        raise ScopeError(f"--sim-printing must be firmware or compact, got {printing!r}")


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
    port: PortOption = None,
    profile: Annotated[
        str,
        typer.Option(
            "--profile", help="Profile (for --port sim, --led-device and the profile's connection)."
        ),
    ] = "pls43",
    led_device: LedDeviceOption = None,
    backend: BackendOption = None,
    mm_config: MmConfigOption = None,
    mm_port: MmPortOption = None,
    baudrate: Annotated[
        int | None, typer.Option("--baudrate", min=1, help="Serial speed [default: the profile's].")
    ] = None,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", min=0.01, help="Reply timeout, seconds.")
    ] = None,
    sim_bit_depth: SimBitDepthOption = 8,
    sim_printing: SimPrintingOption = "firmware",
) -> None:
    """Show an array's firmware version, LED count, bit depth and LED layout."""
    from rich.console import Console
    from rich.table import Table

    import hardware_profiles as hp
    from acquisition.rig import open_led_array

    _check_sim_options(sim_bit_depth, sim_printing)
    prof = hp.load(profile)
    with open_led_array(
        prof,
        port=port,
        backend=backend,
        mm_config=mm_config,
        mm_port=mm_port,
        led_device=led_device,
        verify=False,
        baudrate=baudrate,
        timeout_s=timeout_s,
        sim_bit_depth=sim_bit_depth,
        sim_printing=sim_printing,
    ) as (array, where):
        props = array.properties
        table = Table(title=f"LED array on {where}", show_header=False, title_justify="left")
        table.add_column("", style="bold")
        table.add_column("")
        if array.firmware_version:
            table.add_row("firmware", f"Illuminate {array.firmware_version}")
        if array.device_name:
            table.add_row("device", array.device_name)
        table.add_row("LEDs", str(array.led_count))
        readback = "v·257" if array.bit_depth == 16 else "v"
        table.add_row("bit depth", f"{array.bit_depth} (a level v reads back as {readback})")
        channels = props.get("color_channels")
        if isinstance(channels, list) and channels:
            table.add_row("colour channels", ", ".join(str(c) for c in channels))
        geometry = array.geometry()
        if geometry:
            table.add_row("array distance", f"{next(iter(geometry.values()))[2]:g} mm")
        for label, text in _layout(geometry):
            table.add_row(label, text)
    Console().print(table)


@led_app.command("test")
def test(
    profile: Annotated[
        str,
        typer.Option("--profile", help="Hardware profile name or YAML path.", show_default=False),
    ],
    port: PortOption = None,
    led_device: LedDeviceOption = None,
    backend: BackendOption = None,
    mm_config: MmConfigOption = None,
    mm_port: MmPortOption = None,
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
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="Read each pattern back and correct it while lighting [default: the "
            "profile's led_array.verify, on]. The table's check reads back either way.",
            show_default=False,
        ),
    ] = None,
    sim_bit_depth: SimBitDepthOption = 8,
    sim_printing: SimPrintingOption = "firmware",
) -> None:
    """Check an array's geometry against a profile, then light each stack channel in order.

    Every channel is read back from the firmware (pvals); the table shows what it answered.
    All LEDs are cleared at the end. --port sim tries it on the built-in emulator.
    """
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    import hardware_profiles as hp
    from acquisition.led_array import LedArrayError
    from acquisition.rig import open_led_array

    _check_sim_options(sim_bit_depth, sim_printing)
    prof = hp.load(profile)
    channels = prof.channel_table()
    keep = hp.select_channels(channels, stack)
    console = Console()
    verified = 0
    with open_led_array(
        prof,
        port=port,
        backend=backend,
        mm_config=mm_config,
        mm_port=mm_port,
        led_device=led_device,
        verify=verify,
        baudrate=baudrate,
        sim_bit_depth=sim_bit_depth,
        sim_printing=sim_printing,
    ) as (array, where):
        table = Table(title=f"{prof.name} — stack {stack!r} on {where}", title_justify="left")
        for col in ("#", "channel", "kind", "θ (°)", "brt", "requested", "firmware lit", "ok"):
            table.add_column(col, justify="right" if col in ("#", "θ (°)", "brt") else "left")
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
        f"{verified}/{len(keep)} channels read back exactly as requested "
        f"({array.bit_depth}-bit board); all LEDs cleared."
    )
    if verified != len(keep):
        raise LedArrayError(
            f"LED array on {where}: {len(keep) - verified} of {len(keep)} channels did not read "
            "back ('pvals') as requested"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(led_app, name="led")
