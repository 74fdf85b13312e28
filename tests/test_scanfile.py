"""Scan-file format: atomic index, per-field files, resume rules."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from acquisition.index_schedule import IndexSchedule
from acquisition.scanfile import (
    ScanFile,
    ScanFileError,
    ScanWriter,
    fields_dir,
    pixel_to_stage,
    stage_to_pixel,
)


@pytest.fixture
def small_profile(pls43):
    return pls43.with_stack(pls43.stack[:3])


#: A frame's metadata (no camera in these tests).
META = {"exposure_ms": 1.0, "gain": 1.0, "stage_x_um": 0.0, "stage_y_um": 0.0, "stage_z_um": 0.0,
        "time": 0.0}  # fmt: skip


def _writer(path, profile, positions, **kw):
    return ScanWriter(
        path,
        slide="s1",
        pass_="unstained",
        profile=profile,
        positions=positions,
        objective_name="20x",
        **kw,
    )


def _write_field(writer, index, value, hw=(8, 10)):
    fw = writer.new_field(index, hw)
    for c in range(len(writer.channels)):
        fw.add(c, np.full((*hw, 3), value + c, np.uint8), META)
    writer.field_done(fw.commit(z_um=1.5))


def test_fields_become_visible_only_when_committed(tmp_path, small_profile):
    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((3, 3)))
    _write_field(w, 1, 10)
    fw = w.new_field(2, (8, 10))  # started, never committed (a crash)
    fw.add(0, np.ones((8, 10, 3), np.uint8), META)
    with h5py.File(path, "r") as f:  # plain h5py opens it while the writer works
        assert list(f["positions"]["status"].astype(str)) == ["pending", "done", "pending"]
    with ScanFile(path) as sf:
        assert list(sf.done) == [1]
        assert sf.images.shape == (3, 3, 8, 10, 3)
        assert sf.image(1, 2)[0, 0, 0] == 12
        assert sf.stack(1).shape == (3, 8, 10, 3)
        assert (sf.images[0] == 0).all()  # pending reads as zeros
        assert len(sf.frames) == 3 and set(sf.frames["position"]) == {1}
        assert not sf.complete
        with pytest.raises(ScanFileError, match="field 2 was not acquired"):
            sf.image(2, 0)
    fw._file.close()  # simulate the process dying here: the partial file is left behind


def test_resume_adopts_finished_fields_and_drops_partials(tmp_path, small_profile):
    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((3, 3)))
    _write_field(w, 0, 5)
    (fields_dir(path) / "field_00001.h5.partial").write_bytes(b"half a field")
    w2 = _writer(path, small_profile, np.zeros((3, 3)), resume=True)
    assert w2.done == [0] and w2.pending == [1, 2]
    assert not list(fields_dir(path).glob("*.partial"))
    with pytest.raises(ScanFileError, match="already done; it is never re-imaged"):
        w2.new_field(0, (8, 10))


def test_a_pass_member_is_stored_as_its_text(tmp_path, small_profile):
    from acquisition.vocabulary import Pass

    path = tmp_path / "s1.stained.scan.h5"
    w = ScanWriter(
        path, slide="s1", pass_=Pass.STAINED, profile=small_profile,
        positions=np.zeros((1, 3)), objective_name="20x",
    )  # fmt: skip
    _write_field(w, 0, 5)
    w.close()
    with ScanFile(path) as sf:
        assert sf.attrs["pass"] == "stained" and type(sf.attrs["pass"]) is str


def test_existing_scan_is_never_overwritten(tmp_path, small_profile):
    path = tmp_path / "s1.unstained.scan.h5"
    _writer(path, small_profile, np.zeros((2, 3)))
    with pytest.raises(ScanFileError, match="already exists; pass --resume"):
        _writer(path, small_profile, np.zeros((2, 3)))


def test_resume_refuses_other_positions_or_stack(tmp_path, small_profile, pls43):
    path = tmp_path / "s1.unstained.scan.h5"
    _writer(path, small_profile, np.zeros((2, 3)))
    with pytest.raises(ScanFileError, match="positions differ"):
        _writer(path, small_profile, np.ones((2, 3)), resume=True)
    with pytest.raises(ScanFileError, match="stack"):
        _writer(path, pls43.with_stack(pls43.stack[:2]), np.zeros((2, 3)), resume=True)


def test_missing_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(ScanFileError, match="does not exist"):
        ScanFile(tmp_path / "nope.scan.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ScanFileError, match="not a scope scan file"):
        ScanFile(other)


def test_truth_round_trip(tmp_path, small_profile):
    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((1, 3)))
    cells = np.array(
        [(1, "neutrophil", 3.0, 4.0, 6.0, "")],
        dtype=[
            ("id", "i8"),
            ("type", "U16"),
            ("x_um", "f8"),
            ("y_um", "f8"),
            ("radius_um", "f8"),
            ("pass", "U10"),
        ],
    )
    w.set_truth(
        {
            "slide_to_stage": np.eye(2, 3),
            "magnification_ratio": 5.02,
            "cells": cells,
            "faults": None,
        }
    )
    with ScanFile(path) as sf:
        t = sf.truth()
    assert t["magnification_ratio"] == pytest.approx(5.02)
    assert t["cells"]["type"][0] == "neutrophil"
    assert len(t["faults"]) == 0


def test_pixel_stage_convention_round_trip():
    kw = dict(field_x_um=100.0, field_y_um=-50.0, width=1920, height=1200, pixel_size_um=0.293)
    x, y = pixel_to_stage(959.5, 599.5, **kw)
    assert (float(x), float(y)) == (100.0, -50.0)  # the frame centre is the stage position
    px, py = stage_to_pixel(*pixel_to_stage(10.0, 20.0, **kw), **kw)
    assert np.allclose([px, py], [10.0, 20.0])


# -- the journal: bookkeeping flat in the field count ------------------------------------------
def _status(path):
    with h5py.File(path, "r") as f:
        return list(f["positions"]["status"].astype(str))


def test_resume_adopts_journalled_fields_without_opening_them(tmp_path, small_profile, monkeypatch):
    from acquisition import scanfile

    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((3, 3)))
    _write_field(w, 0, 5)
    _write_field(w, 2, 7)
    w.close()
    lines = (fields_dir(path) / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 2
    real = h5py.File

    def no_field_files(name, *a, **k):
        assert "field_" not in str(name), f"opened {name}"
        return real(name, *a, **k)

    monkeypatch.setattr(scanfile.h5py, "File", no_field_files)
    w2 = _writer(path, small_profile, np.zeros((3, 3)), resume=True)
    assert w2.done == [0, 2] and w2.frame_hw == (8, 10)
    assert set(w2.frames_by_field[2]["channel"]) == {0, 1, 2}
    w2.close()
    monkeypatch.undo()
    with ScanFile(path) as sf:
        assert list(sf.done) == [0, 2] and sf.image(2, 1)[0, 0, 0] == 8
        assert not sf.field_state()


def test_a_field_the_journal_missed_or_tore_is_adopted_from_its_file(tmp_path, small_profile):
    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((3, 3)))
    _write_field(w, 0, 5)
    _write_field(w, 1, 6)
    w.close()
    journal = fields_dir(path) / "journal.jsonl"
    first, second = journal.read_text().splitlines()
    journal.write_text(first + "\n" + second[: len(second) // 2])  # crash mid-append of field 1
    w2 = _writer(path, small_profile, np.zeros((3, 3)), resume=True)
    assert w2.done == [0, 1]
    w2.close()
    assert '"field":1' in journal.read_text().splitlines()[-1]  # journalled again, whole
    assert _status(path) == ["done", "done", "pending"]


def test_a_journalled_field_whose_file_changed_is_set_aside_and_reimaged(tmp_path, small_profile):
    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((2, 3)))
    _write_field(w, 0, 5)
    _write_field(w, 1, 6)
    w.close()
    field = fields_dir(path) / "field_00001.h5"
    field.write_bytes(field.read_bytes()[:2000])  # truncated
    with ScanFile(path) as sf:
        assert sf.field_state() == {1: "damaged"}  # recorded size differs: no HDF5 open needed
    w2 = _writer(path, small_profile, np.zeros((2, 3)), resume=True)
    assert w2.done == [0] and w2.pending == [1]
    assert (fields_dir(path) / "field_00001.h5.damaged").exists()
    w2.close()


def test_index_is_rebuilt_when_due_and_on_close(tmp_path, small_profile, monkeypatch):
    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((4, 3)))
    # pretend rebuilds are costly: fields finished since the last one pay 5 ms each
    monkeypatch.setattr(IndexSchedule, "SMALL_SCAN_FIELDS", 0)
    monkeypatch.setattr(IndexSchedule, "CHEAP_REBUILD_S", 0.0)
    monkeypatch.setattr(IndexSchedule, "MAX_LAG_S", 3600.0)
    monkeypatch.setattr(IndexSchedule, "MIN_INTERVAL_S", 0.0)
    w.schedule.last_rebuild_s = 0.012
    _write_field(w, 0, 1)
    _write_field(w, 1, 1)
    assert _status(path) == ["pending"] * 4  # journalled, not yet indexed
    monkeypatch.setattr(IndexSchedule, "MIN_INTERVAL_S", 3600.0)
    _write_field(w, 2, 1)  # 3 x 5 ms >= 12 ms, but the last rebuild was just now: not yet
    assert _status(path) == ["pending"] * 4
    monkeypatch.setattr(IndexSchedule, "MIN_INTERVAL_S", 0.0)
    assert w.index_due()  # paid for, and no minimum interval: due
    w.write_index()
    assert _status(path) == ["done", "done", "done", "pending"]
    w.schedule.last_rebuild_s = 10.0
    _write_field(w, 3, 1)
    assert _status(path)[3] == "pending" and w.index_due() is False
    monkeypatch.setattr(IndexSchedule, "MAX_LAG_S", 0.0)  # the oldest unindexed field waited ...
    assert not w.index_due()  # ... but the last (10 s) rebuild ended just now: not yet
    w.schedule.last_rebuild_end -= 20.0
    assert w.index_due()
    w.close()
    assert _status(path) == ["done"] * 4
    with ScanFile(path) as sf:
        assert sf.complete and len(sf.frames) == 12


def test_storage_thread_brings_the_index_up_to_date_within_a_second(
    tmp_path, small_profile, monkeypatch
):
    import time

    from acquisition.storage import StorageThread

    path = tmp_path / "s1.unstained.scan.h5"
    w = _writer(path, small_profile, np.zeros((2, 3)))
    monkeypatch.setattr(IndexSchedule, "SMALL_SCAN_FIELDS", 0)
    monkeypatch.setattr(IndexSchedule, "CHEAP_REBUILD_S", 0.0)
    w.schedule.last_rebuild_s = 10.0  # never paid for by fields: only the lag rule applies
    w.schedule.last_rebuild_end -= 20.0
    store = StorageThread(w)
    for c in range(3):
        store.frame(0, c, np.zeros((8, 10, 3), np.uint8), META)
    store.commit(0, z_um=0.0)
    t0 = time.monotonic()
    while _status(path)[0] != "done":
        assert time.monotonic() - t0 < 1.5, "the index lagged more than about a second"
        time.sleep(0.05)
    store.close()
    assert _status(path) == ["done", "pending"]
