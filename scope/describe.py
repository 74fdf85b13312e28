"""Rich summaries of scan files for `scope info`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.table import Table

from acquisition.files import lock_holder
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
        problem = sf.integrity_problem()
        if problem:
            bad = sf.field_state()
            for what in ("missing", "damaged"):
                idx = sorted(i for i, s in bad.items() if s == what)
                if idx:
                    table.add_row(f"{what} fields", ", ".join(map(str, idx[:20])))
            status = (
                f"[red]{len(bad)} done field{'s' if len(bad) > 1 else ''} unreadable: run the "
                "same scope scan command with --resume to image them again[/]"
            )
        elif sf.complete:
            status = "[green]complete[/]"
        else:
            status = "[yellow]incomplete: scope scan ... --resume continues it[/]"
        holder = lock_holder(path)
        if holder is not None:
            status = f"[yellow]being written by pid {holder}[/]"
        table.add_row("status", status)
    return table


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for k, v in rows:
        table.add_row(k, v)
    return table


def describe_stained(path: Path) -> Table:
    """A virtual-stain output of ``scope stain`` (``<slide>.stained-virtual.h5``)."""
    import json

    import h5py

    from hardware_profiles.errors import ScopeError

    try:
        with h5py.File(path, "r") as f:
            a = dict(f.attrs)
            shape = f["images"].shape if "images" in f else None
            n_pos = len(f["positions"]) if "positions" in f else 0
    except (OSError, KeyError) as err:
        raise ScopeError(f"{path} is damaged ({err})") from None
    if shape is None:
        raise ScopeError(f"{path} is damaged: no 'images' table; run scope stain again")
    from acquisition.scanfile import check_version
    from training.infer import STAINED_FORMAT_VERSION

    check_version(a, path, STAINED_FORMAT_VERSION)
    try:
        model = json.loads(a.get("model", "{}"))
    except ValueError:
        model = {}
    rows = [
        ("kind", "virtual-stain output (scope stain)"),
        ("slide", str(a.get("slide", "?"))),
        ("fields", f"{shape[0]} stained fields, {shape[2]} x {shape[1]} RGB ({n_pos} positions)"),
        ("pixel size", f"{float(a.get('pixel_size_um', float('nan'))):g} µm/px"),
        (
            "model",
            f"{model.get('generator', '?')} on stack {model.get('stack', '?')}, "
            f"{len(model.get('channel_names', []))} images, target {model.get('target', '?')}",
        ),
        ("run", f"{a.get('run', '?')} (epoch {a.get('epoch', '?')})"),
        ("scan", str(a.get("scan", "?"))),
        ("on disk", human_bytes(path.stat().st_size)),
        ("created", str(a.get("created", ""))),
    ]
    return _kv_table(f"virtual-stain output {path.name}", rows)


def describe_profile(path: Path) -> Table:
    """A hardware profile YAML (what scope calibrate writes)."""
    import hardware_profiles as hp

    prof = hp.load(str(path))
    kinds = Counter(c.kind for c in prof.stack)
    obj = prof.scan_objective
    rows = [
        ("kind", "hardware profile"),
        ("name", prof.name),
        ("objective", f"{obj.magnification:g}x / NA {obj.na:g}, {obj.pixel_size_um:g} µm/px"),
        ("camera", f"{prof.camera.sensor_width_px} x {prof.camera.sensor_height_px} px"),
        ("LEDs", str(len(prof.led_array.leds))),
        ("stack", f"{len(prof.stack)} images: " + ", ".join(f"{n} {k}" for k, n in kinds.items())),
        (
            "exposures",
            f"{min(c.exposure_ms for c in prof.stack):g} … "
            f"{max(c.exposure_ms for c in prof.stack):g} ms",
        ),
    ]
    return _kv_table(f"profile {path.name}", rows)


def describe_run_table(path: Path) -> Table:
    """A training run folder as a table (state, progress, best epoch, checkpoints)."""
    from training import describe_run

    d = describe_run(path)

    def fmt(v, spec=".4f"):
        return "—" if v is None else format(v, spec)

    params = d.get("parameters")
    rows = [
        ("kind", "training run folder"),
        ("state", str(d["state"])),
        (
            "model",
            f"{d.get('generator') or '?'}, preset {d.get('preset') or '?'}, "
            f"stack {d.get('stack') or '?'} ({d.get('n_images')} images), target "
            f"{d.get('target') or '?'}",
        ),
        ("parameters", f"{params:,}" if isinstance(params, int) else "—"),
        ("epochs", f"{d['epochs_done']} of {d.get('epochs') or '?'}"),
        (
            "best epoch",
            f"{d['best_epoch'] if d['best_epoch'] is not None else '—'} (validation "
            f"loss {fmt(d['best_val_loss'])}, SSIM {fmt(d['best_ssim'], '.3f')})",
        ),
        ("checkpoints", ", ".join(d["checkpoints"]) or "none"),
        ("evaluations", ", ".join(d["evaluations"]) or "none"),
    ]
    return _kv_table(f"training run {path}", rows)
