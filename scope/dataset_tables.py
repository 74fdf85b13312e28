"""The rich rendering of a dataset's description (``scope dataset info``, ``scope info``)."""

from __future__ import annotations

from typing import Any

from acquisition.vocabulary import SPLITS


def render_description(info: dict[str, Any]) -> Any:
    """A rich renderable (tables) of :func:`describe_dataset`'s dict."""
    from rich.console import Group
    from rich.table import Table

    head = Table(title=f"dataset {info['path']}", show_header=False)
    head.add_column("", style="bold")
    head.add_column("")
    head.add_row(
        "cells",
        f"{info['n_cells']} ({info['n_clean']} clean, "
        f"{info['n_flagged']} flagged, {info['n_highres']} with 100x)",
    )
    head.add_row(
        "inputs",
        " x ".join(str(x) for x in info["input_shape"]) + " " + info.get("input_dtype", "uint8"),
    )
    if "targets" in info:
        head.add_row("targets", ", ".join(info["targets"]) + " " + info["target_dtype"])
    head.add_row(
        "channels",
        f"{info['n_channels']}: "
        + ", ".join(info["channels"][:6])
        + (" ..." if info["n_channels"] > 6 else ""),
    )
    head.add_row("slides", ", ".join(f"{s} ({n})" for s, n in info["slides"].items()))
    head.add_row(
        "splits",
        ", ".join(f"{s} {info['splits'][s]} ({info['splits_clean'][s]} clean)" for s in SPLITS),
    )
    head.add_row("median SSIM", f"{info['median_ssim']:.3f}")
    if info["n_highres"]:
        head.add_row("100x scale", f"{info['median_highres_scale']:.4f}")
    t = info.get("slide_transform")
    if t:
        head.add_row(
            "slide moved",
            f"{t['theta_deg']:+.4f}°, ({t['tx_um']:+.2f}, "
            f"{t['ty_um']:+.2f}) µm (fit rms {t['rms_px']:.2f} px)",
        )
    flags = Table(title="QC flags (cells; a cell may carry several)")
    flags.add_column("flag")
    flags.add_column("cells", justify="right")
    for f, n in info["flags"].items():
        flags.add_row(f, str(n))
    return Group(head, flags)
