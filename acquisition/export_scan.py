"""``scope export scan``: a scan file as OME-Zarr or OME-TIFF, one image per acquired field."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from acquisition.export_ome import write
from acquisition.ome_image import ExportError, OmeImage
from acquisition.progress import Progress
from acquisition.scanfile import ScanFile

#: Columns of a scan's channel table carried into the OME metadata of each channel.
CHANNEL_COLUMNS = (
    "leds",
    "kind",
    "exposure_level",
    "theta_deg",
    "phi_deg",
    "exposure_ms",
    "gain",
    "brightness",
)


def scan_images(scan: ScanFile, fields: Sequence[int] | None = None) -> list[OmeImage]:
    """One :class:`OmeImage` per field (default: every acquired field), read lazily."""
    done = [int(i) for i in scan.done]
    todo = done if fields is None else [int(f) for f in fields]
    missing = [f for f in todo if f not in done]
    if missing:
        raise ExportError(f"{scan.path}: fields {missing[:5]} were not acquired")
    problem = scan.integrity_problem()
    if problem:
        raise ExportError(problem)
    geometry = scan.geometry
    h, w, p = geometry.height, geometry.width, geometry.pixel_size_um
    table = scan.channels
    cols = [c for c in CHANNEL_COLUMNS if c in (table.dtype.names or ())]
    channels = [{"name": str(row["name"]), **{c: row[c] for c in cols}} for row in table]
    images = []
    for pos in todo:
        row = scan.positions[pos]
        x0, y0 = geometry.pixel_to_stage(0, 0, float(row["x_um"]), float(row["y_um"]))
        images.append(
            OmeImage(
                name=f"{scan.slide} {scan.pass_} field {pos}",
                height=h,
                width=w,
                pixel_size_um=p,
                x_um=float(x0),
                y_um=float(y0),
                z_um=float(row["z_um"]),
                channels=channels,
                frames=_field_frames(scan, pos, len(channels)),
                acquired_at=_text(row["acquired_at"]) if "acquired_at" in row.dtype.names else "",
                annotations={
                    "field": pos,
                    "field_x_um": float(row["x_um"]),
                    "field_y_um": float(row["y_um"]),
                    "slide": scan.slide,
                    "pass": scan.pass_,
                },
            )
        )
    return images


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field_frames(scan: ScanFile, pos: int, n: int):
    def frames() -> Iterator[np.ndarray]:
        images = scan.images
        for c in range(n):
            yield images[pos, c]

    return frames


def export_scan(
    scan_path: str | Path,
    out: str | Path,
    *,
    to: str,
    fields: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> tuple[Path, int, int]:
    """Export a scan; returns ``(out, n_images, raw bytes)``."""
    with ScanFile(scan_path) as scan:
        images = scan_images(scan, fields)
        attrs = {
            "source": str(Path(scan_path).resolve()),
            "format": "scope-scan",
            "slide": scan.slide,
            "pass": scan.pass_,
            "pixel_size_um": scan.pixel_size_um,
            "simulated": scan.simulated,
        }
        path = write(images, out, to=to, progress=progress, attrs=attrs)
    return path, len(images), sum(img.nbytes for img in images)
