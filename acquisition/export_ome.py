"""Images in open formats: OME-Zarr 0.4 (``bioformats2raw`` layout) and OME-TIFF.

Both writers take a list of :class:`OmeImage` — one per field (or per cell crop), each a
stack of RGB images that is written with RGB folded into the channel axis (``c = 3 x
n_images``, named ``<image> R``/``G``/``B``) — and stream it: one ``(H, W, 3)`` frame is
read, written and dropped at a time, so a 100-field 74-image scan never sits in memory.

- OME-Zarr: ``OUT/0``, ``OUT/1``, … are multiscales images (axes ``c, y, x``; scale = pixel
  size in µm, translation = stage position of pixel (0, 0)); ``OUT/OME/METADATA.ome.xml``
  holds the OME-XML (channel names, LED ids, angles, exposure and gain as map annotations,
  plane positions); written with ``zarr`` (format 2; Blosc LZ4 with bit shuffle; chunks of
  whole RGB images).
- OME-TIFF: one file, one series per image, the same OME-XML in the first page, resolution
  tags in pixels per cm; written with ``tifffile`` (uncompressed, so every TIFF reader opens
  it; BigTIFF above 2 GB).

Writes go to a temporary path renamed into place, so an interrupted export leaves nothing
that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acquisition.ome_image import (
    RGB_HEX,
    ExportError,
    OmeImage,
    channel_labels,
    ome_xml,
    plain,
)
from acquisition.progress import Progress, Throughput, or_null
from acquisition.vocabulary import ChannelKind

#: Marker in the root attributes of every OME-Zarr scope writes (replaced only when present).
ZARR_MARKER = "scope-export"
#: Target size of one Zarr chunk; a chunk holds whole planes, at least one RGB image.
CHUNK_BYTES = 4 * 1024**2
BIGTIFF_BYTES = 2 * 1024**3
FORMATS = ("ome-zarr", "ome-tiff")


def _check_out(out: Path, kind: str) -> None:
    """Refuse to replace anything but an export of the same kind that scope wrote."""
    if not out.exists() and not out.is_symlink():
        return
    if kind == "ome-zarr" and out.is_dir():
        attrs = out / ".zattrs"
        try:
            ours = ZARR_MARKER in json.loads(attrs.read_text())
        except (OSError, ValueError):
            ours = False
        if ours:
            return
    if kind == "ome-tiff" and out.is_file():
        try:
            with open(out, "rb") as fh:
                head = fh.read(1 << 16)
        except OSError:
            head = b""
        if b'Creator="scope' in head:
            return
    raise ExportError(
        f"{out} exists and is not a {kind} export of scope; choose another --out "
        "(scope never replaces a file of another kind)"
    )


def _omero(img: OmeImage, active: int) -> dict[str, Any]:
    return {
        "name": img.name,
        "channels": [
            {
                "label": label,
                "color": RGB_HEX[c % 3],
                "window": {"start": 0, "end": 255, "min": 0, "max": 255},
                "active": c // 3 == active,
                "coefficient": 1,
                "family": "linear",
                "inverted": False,
            }
            for c, label in enumerate(channel_labels([ch["name"] for ch in img.channels]))
        ],
        "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0},
    }


def _multiscales(img: OmeImage) -> list[dict[str, Any]]:
    p = float(img.pixel_size_um)
    return [
        {
            "version": "0.4",
            "name": img.name,
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0, p, p]},
                        {"type": "translation", "translation": [0.0, img.y_um, img.x_um]},
                    ],
                }
            ],
        }
    ]


#: The export's progress bar: RGB frames written (detail: MB written and MB/s).
EXPORT_BAR = "export"


class _ExportBar:
    """Reports an export on :data:`EXPORT_BAR` of the shared progress protocol."""

    def __init__(self, progress: Progress | None, images: Sequence[OmeImage]) -> None:
        self.progress = or_null(progress)
        self.total_mb = sum(img.nbytes for img in images) / 1e6
        self.rate = Throughput()
        frames = sum(img.n_planes // 3 for img in images)
        self.progress.start(EXPORT_BAR, frames, label="exporting")

    def frame(self, nbytes: int) -> None:
        rate = self.rate.add(nbytes)
        info = f"{self.rate.nbytes / 1e6:,.0f} of {self.total_mb:,.0f} MB, {rate}"
        self.progress.advance(EXPORT_BAR, info=info)


def _active_channel(img: OmeImage) -> int:
    kinds = [ch.get("kind") for ch in img.channels]
    return kinds.index(ChannelKind.BRIGHTFIELD) if ChannelKind.BRIGHTFIELD in kinds else 0


def write_ome_zarr(
    images: Sequence[OmeImage],
    out: str | Path,
    *,
    progress: Progress | None = None,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write ``images`` as one OME-Zarr 0.4 ``bioformats2raw`` collection at ``out``."""
    from acquisition.extras import require

    zarr = require("zarr", "formats", what="OME-Zarr export")
    codecs = require("numcodecs", "formats", what="OME-Zarr export")
    out = Path(out)
    _check_out(out, "ome-zarr")
    if not images:
        raise ExportError("nothing to export: no acquired images")
    total = sum(img.nbytes for img in images)
    _check_space(out, total, "the OME-Zarr")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        root.attrs.update({"bioformats2raw.layout": 3, ZARR_MARKER: dict(attrs or {})})
        meta = root.create_group("OME")
        meta.attrs["series"] = [str(i) for i in range(len(images))]
        (tmp / "OME" / "METADATA.ome.xml").write_text(ome_xml(images, tiff=False), "utf-8")
        compressor = codecs.Blosc(cname="lz4", clevel=1, shuffle=codecs.Blosc.BITSHUFFLE)
        writer = _ChunkWriter(compressor)
        try:
            _write_images(images, root, tmp, writer, _ExportBar(progress, images))
        finally:
            writer.close()
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_images(
    images: Sequence[OmeImage],
    root: Any,
    tmp: Path,
    writer: _ChunkWriter,
    bar: _ExportBar,
) -> None:
    """Each image as group ``tmp/i`` (multiscales, omero) with its one-level array ``i/0``."""
    for i, img in enumerate(images):
        group = root.create_group(str(i))
        group.attrs.update(
            {
                "multiscales": _multiscales(img),
                "omero": _omero(img, _active_channel(img)),
                "scope": {"channels": [{k: plain(v) for k, v in ch.items()}
                                       for ch in img.channels],
                          **{k: plain(v) for k, v in img.annotations.items()}},
            }
        )  # fmt: skip
        h, w = img.height, img.width
        per_chunk = 3 * max(1, min(len(img.channels), CHUNK_BYTES // (3 * h * w)))
        group.create_array(
            "0",
            shape=(img.n_planes, h, w),
            chunks=(per_chunk, h, w),
            dtype="uint8",
            compressors=writer.compressor,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        chunk_dir = tmp / str(i) / "0"
        buf = np.empty((per_chunk, h, w), np.uint8)
        start = fill = 0
        for frame in prefetch(img.frames()):
            _check_frame(frame, img)
            buf[fill : fill + 3] = np.moveaxis(frame, -1, 0)
            fill += 3
            if fill == per_chunk:
                writer.put(chunk_dir, start // per_chunk, buf)
                buf = np.empty((per_chunk, h, w), np.uint8)
                start, fill = start + fill, 0
            bar.frame(frame.nbytes)
        if fill:
            buf[fill:] = 0  # a chunk is always whole; the array's shape trims it
            writer.put(chunk_dir, start // per_chunk, buf)
        if start + fill != img.n_planes:
            raise ExportError(f"{img.name}: got {(start + fill) // 3} of "
                              f"{len(img.channels)} images")  # fmt: skip


class _ChunkWriter:
    """Stores chunk ``(index, 0, 0)`` of Zarr v2 arrays with ``/`` keys, as zarr does.

    zarr-python writes the metadata; chunks are encoded here with the array's own codec and
    written as plain files by two threads (at most two chunks in flight): 3x faster than
    ``array[...] = …`` on 2 cores. The tests read every export back through zarr.
    """

    def __init__(self, compressor: Any, workers: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.compressor = compressor
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="export-write")
        self.pending: list[Any] = []
        self.workers = workers

    def _store(self, array_dir: Path, index: int, buf: np.ndarray) -> None:
        folder = array_dir / str(index) / "0"
        folder.mkdir(parents=True, exist_ok=True)
        data = self.compressor.encode(buf)
        with open(folder / "0", "wb") as fh:
            fh.write(data)

    def put(self, array_dir: Path, index: int, buf: np.ndarray) -> None:
        while len(self.pending) >= self.workers:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._store, array_dir, index, buf))

    def close(self) -> None:
        try:
            for fut in self.pending:
                fut.result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def prefetch(frames: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """``frames``, read ``depth`` ahead on a thread: reading the source (HDF5 decompression)
    overlaps compressing and writing the export. Errors surface in the caller."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def run() -> None:
        try:
            for frame in frames:
                if stop.is_set():
                    return
                q.put(("ok", frame))
            q.put(("ok", end))
        except BaseException as err:
            q.put(("err", err))

    worker = threading.Thread(target=run, name="export-read", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "err":
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.01)


def _check_frame(frame: np.ndarray, img: OmeImage) -> None:
    if frame.shape != (img.height, img.width, 3) or frame.dtype != np.uint8:
        raise ExportError(
            f"{img.name}: a frame is {frame.shape} {frame.dtype}, expected "
            f"({img.height}, {img.width}, 3) uint8"
        )


def _replace_dir(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_space(out: Path, need: int, what: str) -> None:
    from acquisition.files import check_space

    folder = out.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    check_space(folder, need, what=what)


def write_ome_tiff(
    images: Sequence[OmeImage],
    out: str | Path,
    *,
    progress: Progress | None = None,
    compression: str | None = None,
) -> Path:
    """Write ``images`` as one OME-TIFF file: one series per image, planes ``c, y, x``."""
    from acquisition.extras import require
    from acquisition.files import atomic_output

    tifffile = require("tifffile", "formats", what="OME-TIFF export")
    out = Path(out)
    _check_out(out, "ome-tiff")
    if not images:
        raise ExportError("nothing to export: no acquired images")
    total = sum(img.nbytes for img in images)
    _check_space(out, total, "the OME-TIFF")
    xml = ome_xml(images, tiff=True)
    bar = _ExportBar(progress, images)

    def planes(img: OmeImage) -> Iterator[np.ndarray]:
        for frame in prefetch(img.frames()):
            _check_frame(frame, img)
            for j in range(3):
                yield np.ascontiguousarray(frame[..., j])
            bar.frame(frame.nbytes)

    with atomic_output(out, keep_suffix=True) as part:
        with tifffile.TiffWriter(part, bigtiff=total > BIGTIFF_BYTES, ome=False) as tif:
            for i, img in enumerate(images):
                per_cm = 1e4 / float(img.pixel_size_um)
                tif.write(
                    planes(img),
                    shape=(img.n_planes, img.height, img.width),
                    dtype=np.uint8,
                    photometric="minisblack",
                    compression=compression,
                    description=xml if i == 0 else None,
                    metadata=None,
                    resolution=(per_cm, per_cm),
                    resolutionunit="CENTIMETER",
                    software="scope",
                )
    return out


def write(
    images: Sequence[OmeImage],
    out: str | Path,
    *,
    to: str,
    progress: Progress | None = None,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write ``images`` as ``to`` (``ome-zarr`` or ``ome-tiff``)."""
    if to == "ome-zarr":
        return write_ome_zarr(images, out, progress=progress, attrs=attrs)
    if to == "ome-tiff":
        return write_ome_tiff(images, out, progress=progress)
    raise ExportError(f"unknown export format {to!r}; choose {' or '.join(FORMATS)}")
