"""ScanCache opens each scan once, closes all on exit; run_tasks gives the same results
serially and in worker processes (each with its own cache)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acquisition.scanfile import ScanWriter
from registration.parallel import run_tasks
from registration.scans import ScanCache, field_centres, sha256_file

HW = (24, 32)


def _scan(path, prof):
    positions = np.array([[50.0, 80.0, 0.0], [500.0, 80.0, 0.0]])
    w = ScanWriter(path, slide="c", pass_="unstained", profile=prof, positions=positions,
                   objective_name="20x")  # fmt: skip
    for f in range(2):
        fw = w.new_field(f, HW)
        for c in range(2):
            meta = {"exposure_ms": 1.0, "gain": 1.0, "stage_x_um": 51.0 + 450 * f,
                    "stage_y_um": 80.0, "stage_z_um": 0.0, "time": 0.0}  # fmt: skip
            fw.add(c, np.full((*HW, 3), 10 * f + c, np.uint8), meta)
        w.field_done(fw.commit(z_um=0.0))
    return path


@dataclass(frozen=True)
class _Job:
    path: str
    field: int


def _mean(cache: ScanCache, job: _Job) -> float:
    return float(cache.scan(job.path).image(job.field, cache.brightfield(job.path)).mean())


def test_scan_cache_opens_once_and_closes_on_exit(pls43, tmp_path):
    path = str(_scan(tmp_path / "c.unstained.scan.h5", pls43.with_stack(pls43.stack[:2])))
    closed = []
    with ScanCache() as cache:
        first = cache.scan(path)
        real_close = first.close
        first.close = lambda: (closed.append(path), real_close())
        assert cache.scan(path) is first
        bf = cache.brightfield(path)
        assert bf == first.brightfield_index()
        centres = field_centres(first, bf)
        assert not closed
    assert closed == [path]  # leaving the block closed the file
    assert centres[:, 0].tolist() == [51.0, 501.0]  # the frames' read-back positions
    assert len(sha256_file(path)) == 64


def test_run_tasks_in_workers_matches_serial(pls43, tmp_path):
    path = str(_scan(tmp_path / "c.unstained.scan.h5", pls43.with_stack(pls43.stack[:2])))
    jobs = [_Job(path, f) for f in (0, 1, 0)]
    with ScanCache() as cache:
        serial = list(run_tasks(_mean, jobs, cache=cache))
        pooled = list(run_tasks(_mean, jobs, cache=cache, workers=2))
    assert serial == pooled and serial[0] != serial[1]
