"""Reliability matrix: faults and bad inputs against every command (docs/guarantees.md).

Every case asserts the same contract: no data lost (other files byte-identical), no wrong
exit 0, no crash or hang, and a refusal is one line naming the problem and the fix. Small
sensors (96x64 and 320x240 px), le8 stacks and tiny networks keep the whole file fast.
Ctrl-C cases send a real SIGINT to a `scope` subprocess at a fixed point of its work.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pymmcore_plus  # noqa: F401  (its log handler binds stderr at import: not inside capsys)
import pytest

from acquisition import files
from acquisition.files import OutputError, WriteLock, check_slide_name, clean_stale, file_kind
from acquisition.scanfile import ScanFile, fields_dir
from scope.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--profile", "pls43", "--stack", "le8", "--sim-sensor", "96x64", "--yes"]
TINY = [
    "--preset",
    "maeNET",
    "--stack",
    "le8",
    "--blocks",
    "1",
    "--features",
    "8",
    "--growth",
    "8",
    "--batch-size",
    "8",
    "--lr",
    "1e-3",
    "--samples",
    "2",
    "--device",
    "cpu",
    "--workers",
    "0",
    "--quiet",
]


# -- helpers ------------------------------------------------------------------------------------
def one_line_error(capsys, *must: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "unexpected" not in err and "Traceback" not in err, err
    for m in must:
        assert m in err, (m, err)
    return err


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_scan(scan: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(scan, dest / scan.name)
    shutil.copytree(fields_dir(scan), fields_dir(dest / scan.name))
    return dest / scan.name


def leftovers(folder: Path) -> list[str]:
    """Temp files, partial fields, spill folders, lock files: none may stay behind."""
    bad = []
    for p in folder.rglob("*"):
        n = p.name
        if ".tmp" in n or n.endswith((".partial", ".lock")) or n.startswith(".match-"):
            bad.append(str(p.relative_to(folder)))
    return bad


def scan_cli(out: Path, slide: str = "s", *extra: str, grid: str = "2x1") -> int:
    base = ["scan", "--slide", slide, "--pass", "unstained", "--out", str(out), "--grid", grid]
    return main([*base, *SMALL, *extra])


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def set_attr(path: Path, **attrs) -> None:
    with h5py.File(path, "a") as f:
        for k, v in attrs.items():
            if v is None:
                del f.attrs[k]
            else:
                f.attrs[k] = v


def interrupt_at(hook: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``scope ARGV`` in a fresh interpreter; ``hook`` patches the library so that the
    process sends itself a real SIGINT at a fixed point of its work (``interrupt()``)."""
    code = (
        "import os, signal, sys\n"
        "def interrupt():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        + textwrap.dedent(hook)
        + "\nfrom scope.cli import main\n"
        + f"sys.exit(main({argv!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A complete 2x1 le8 unstained scan of 96x64 frames (slide 'st')."""
    out = tmp_path_factory.mktemp("small")
    assert scan_cli(out, "st") == 0
    return out / "st.unstained.scan.h5"


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """Unstained + stained 2x2 scans (320x240, le8) and their dataset."""
    out = tmp_path_factory.mktemp("pair")
    sim = out / "sim.yaml"
    sim.write_text("wbc_per_field: 60\nmax_translation_um: 10\n")
    common = ["--profile", "pls43", "--sim-sensor", "320x240", "--sim-config", str(sim), "--yes"]
    base = ["scan", "--slide", "s1", "--out", str(out)]
    assert main([*base, "--pass", "unstained", "--grid", "2x2", "--stack", "le8", *common]) == 0
    assert main([*base, "--pass", "stained", *common]) == 0
    u, s = out / "s1.unstained.scan.h5", out / "s1.stained.scan.h5"
    assert main(["match", str(u), str(s), "--out", str(out / "s1.dataset.h5")]) == 0
    return {
        "out": out,
        "unstained": u,
        "stained": s,
        "dataset": out / "s1.dataset.h5",
        "sim": sim,
        "common": common,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory, sim_dataset) -> Path:
    """A tiny le8 run trained one epoch on a simulated dataset."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", str(sim_dataset), "--out", str(out / "r"), "--epochs", "1", *TINY]) == 0
    return out / "r"


# == 1. usage errors: one line in scope's style, never "unexpected" ============================
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["scan", "--slide", "a", "--pass", "unstained", "--profile", "pls43"],
            "--out is required",
        ),
        (["scan", "--grids", "3x3"], "no such option --grids (did you mean --grid?)"),
        (
            ["scan", "--slide", "a", "--pass", "unstaind", "--profile", "p", "--out", "o"],
            "--pass must be one of unstained, stained, highres; got 'unstaind'",
        ),
        (["trian"], "no such command 'trian' (did you mean train?)"),
        (["train", "d.dataset.h5", "--out", "r", "--epochs", "0"], "--epochs must be ≥ 1, got 0"),
        (
            ["train", "d.dataset.h5", "--out", "r", "--batch-size", "-3"],
            "--batch-size must be ≥ 1, got -3",
        ),
        (["train", "d.dataset.h5", "--out", "r", "--lr", "nan"], "--lr must be a finite number"),
        (["match", "a", "b", "--min-ssim", "nan"], "--min-ssim must be a finite number"),
        (["match", "a", "b", "--margin-um", "inf"], "--margin-um must be a finite number"),
        (
            [
                "scan",
                "--slide",
                "a",
                "--pass",
                "unstained",
                "--profile",
                "p",
                "--out",
                "o",
                "--overlap",
                "2",
            ],
            "--overlap must be ≤ 0.89, got 2",
        ),
        (
            [
                "scan",
                "--slide",
                "a",
                "--pass",
                "unstained",
                "--profile",
                "p",
                "--out",
                "o",
                "--seed",
                "abc",
            ],
            "--seed must be an integer, got 'abc'",
        ),
        (["segment", "x.png"], "--pixel-size-um is required"),
        (["train", "d.dataset.h5", "--out", "r", "--lr", "-1"], "--lr must be > 0.0, got -1.0"),
    ],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    assert main(argv) == 2
    one_line_error(capsys, expected)


# == 2. inputs =================================================================================
@pytest.mark.parametrize("name", ["../escape", "/abs/path", "", ".hidden", "a/b", "x" * 65, "a..b"])
def test_unsafe_slide_names_are_refused_before_anything_is_written(name, tmp_path, capsys):
    out = tmp_path / "out"
    assert scan_cli(out, name) == 1
    one_line_error(capsys, "not a usable slide name")
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "escape.unstained.scan.h5").exists()


def test_check_slide_name_accepts_ordinary_names():
    for name in ("s1", "sim-a", "P123_2024.05", "A"):
        assert check_slide_name(name) == name


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("x_um,y_um\nnan,0\n", "not a finite number"),
        ("x_um,y_um\n1e12,0\n", "beyond the stage"),
        ("x_um,y_um,z_um\n0,0,inf\n", "not a finite number"),
    ],
)
def test_bad_positions_are_refused(rows, message, tmp_path, capsys):
    csv = tmp_path / "pos.csv"
    csv.write_text(rows)
    code = main(
        [
            "scan",
            "--slide",
            "p",
            "--pass",
            "unstained",
            "--out",
            str(tmp_path),
            "--positions",
            str(csv),
            *SMALL,
        ]
    )
    assert code == 1
    one_line_error(capsys, message)
    assert not (tmp_path / "p.unstained.scan.h5").exists()


@pytest.mark.parametrize("exposure", [1e12, 120_000.0])
def test_implausible_exposures_in_a_profile_are_refused(exposure, tmp_path, capsys):
    import hardware_profiles as hp
    from hardware_profiles.loader import dump

    prof = hp.load("pls43")
    ch = prof.stack[0].model_copy(update={"exposure_ms": exposure})
    path = dump(prof.with_stack([ch, *prof.stack[1:]]), tmp_path / "slow.yaml")
    code = main(
        [
            "scan",
            "--slide",
            "e",
            "--pass",
            "unstained",
            "--out",
            str(tmp_path / "o"),
            "--grid",
            "1x1",
            "--profile",
            str(path),
            "--sim-sensor",
            "96x64",
            "--yes",
        ]
    )
    assert code == 1
    one_line_error(capsys, "exposure", "fix the profile")
    assert not (tmp_path / "o" / "e.unstained.scan.h5").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--grid", "100000x100000", "10,000,000,000 fields"),
        ("--grid", "1000x1000", "1,000,000 fields"),
        ("--region", "0,0,1e12,1e12", "fields; one scan holds at most"),
        ("--region", "0,0,nan,5", "finite"),
        ("--z-um", "1e12", "--z-um must be a finite stage position"),
    ],
)
def test_huge_or_bad_plans_are_refused_at_once(option, value, message, tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(
        [
            "scan",
            "--slide",
            "h",
            "--pass",
            "unstained",
            "--out",
            str(tmp_path),
            *(["--grid", "1x1"] if option == "--z-um" else []),
            option,
            value,
            *SMALL,
        ]
    )
    assert code == 1
    assert time.perf_counter() - t0 < 10  # refused before any allocation
    one_line_error(capsys, message)
    assert not list(tmp_path.iterdir())


def test_disk_refusal_states_its_margin_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(files, "free_bytes", lambda _p: 300 * 1024**2)
    assert scan_cli(tmp_path, "d", grid="40x40") == 1
    err = one_line_error(capsys, "not enough disk space", "including a 0.27 GB safety margin")
    assert "are free" in err
    assert not (tmp_path / "d.unstained.scan.h5").exists()
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    assert scan_cli(tmp_path, "d", grid="1x1") == 0  # a plain re-run is not blocked


# == 3. file kinds, versions, damage ===========================================================
def test_format_version_from_the_future_is_refused(small, tmp_path, capsys):
    scan = copy_scan(small, tmp_path)
    set_attr(scan, format_version=999, software_version="9.0")
    assert main(["info", str(scan)]) == 1
    one_line_error(capsys, "written by scope 9.0", "upgrade scope")


def test_dataset_format_version_from_the_future_is_refused(pair, tmp_path, capsys):
    ds = tmp_path / "f.dataset.h5"
    shutil.copy2(pair["dataset"], ds)
    set_attr(ds, format_version=999)
    assert main(["dataset", "info", str(ds)]) == 1
    one_line_error(capsys, "format version 999", "upgrade scope")


@pytest.mark.parametrize("table", ["positions", "channels", "frames"])
def test_scan_missing_a_table_is_damaged_not_a_keyerror(small, tmp_path, capsys, table):
    scan = copy_scan(small, tmp_path)
    with h5py.File(scan, "a") as f:
        del f[table]
    assert main(["info", str(scan)]) == 1
    one_line_error(capsys, f"is damaged: no {table!r} table")


def test_scan_without_profile_attribute_is_refused_by_match(pair, tmp_path, capsys):
    u = copy_scan(pair["unstained"], tmp_path)
    set_attr(u, profile=None)
    assert (
        main(["match", str(u), str(pair["stained"]), "--out", str(tmp_path / "x.dataset.h5")]) == 1
    )
    one_line_error(capsys, "is damaged: no 'profile' attribute")
    assert not (tmp_path / "x.dataset.h5").exists()


@pytest.mark.parametrize("table", ["inputs", "cells", "targets_highres"])
def test_dataset_missing_a_table_is_damaged(pair, tmp_path, capsys, table):
    ds = tmp_path / "d.dataset.h5"
    shutil.copy2(pair["dataset"], ds)
    with h5py.File(ds, "a") as f:
        del f[table]
    assert main(["dataset", "info", str(ds)]) == 1
    one_line_error(capsys, f"is damaged: no {table!r} table")


def test_a_scan_is_not_a_dataset(pair, capsys):
    assert main(["dataset", "info", str(pair["unstained"])]) == 1
    one_line_error(capsys, "is not a scope dataset (a scan file")


def test_random_bytes_checkpoint_never_advises_unsafe_loading(run, small, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    assert main(["stain", str(bad), str(small), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = one_line_error(capsys, "not a readable checkpoint")
    assert "weights_only" not in err
    assert not (tmp_path / "o").exists()


def test_pickle_with_code_is_refused_without_running_it(tmp_path, capsys, small):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    bad = tmp_path / "evil.pt"
    import torch

    torch.save({"x": Evil()}, bad, pickle_module=pickle)
    assert main(["stain", str(bad), str(small), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = one_line_error(capsys, "scope loads only safe files")
    assert "weights_only" not in err
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_malformed_config_yaml_names_the_file(run, tmp_path, capsys):
    r = tmp_path / "r"
    shutil.copytree(run, r)
    (r / "config.yaml").write_text("config: [unclosed\n  - : :\n")
    assert main(["info", str(r)]) == 1
    one_line_error(capsys, "config.yaml is not valid YAML", "line")
    assert main(["evaluate", str(r), "--quiet"]) == 1
    one_line_error(capsys, "config.yaml")


@pytest.mark.parametrize("what", ["missing", "damaged"])
def test_unreadable_field_is_reported_refused_and_fixed_by_resume(small, tmp_path, capsys, what):
    scan = copy_scan(small, tmp_path)
    field = fields_dir(scan) / "field_00001.h5"
    if what == "missing":
        field.unlink()
    else:
        field.write_bytes(field.read_bytes()[:2000])
    with ScanFile(scan) as sf:
        assert not sf.complete and sf.field_state() == {1: what}
    capsys.readouterr()
    assert main(["info", str(scan)]) == 0
    out = capsys.readouterr().out
    assert f"{what} fields" in out and "--resume" in out and "complete" not in out.split()[-6:]
    assert scan_cli(tmp_path, "st", "--resume") == 0
    with ScanFile(scan) as sf:
        assert sf.complete


def test_stain_refuses_a_missing_field_instead_of_a_black_image(run, small, tmp_path, capsys):
    scan = copy_scan(small, tmp_path / "scan")
    (fields_dir(scan) / "field_00000.h5").unlink()
    out = tmp_path / "o"
    assert main(["stain", str(run), str(scan), "--out", str(out), "--quiet"]) == 1
    one_line_error(capsys, "field", "missing", "--resume", "--skip-missing")
    assert not out.exists() or not list(out.iterdir())
    assert main(["stain", str(run), str(scan), "--out", str(out), "--quiet", "--skip-missing"]) == 0
    assert sorted(p.name for p in out.glob("field_*")) == ["field_00001.png"]


def test_match_refuses_a_missing_field(pair, tmp_path, capsys):
    u = copy_scan(pair["unstained"], tmp_path)
    (fields_dir(u) / "field_00002.h5").unlink()
    assert (
        main(["match", str(u), str(pair["stained"]), "--out", str(tmp_path / "m.dataset.h5")]) == 1
    )
    one_line_error(capsys, "field 2", "missing", "--resume")


# == 4. outputs: nothing of another kind is ever replaced =======================================
def test_merge_onto_a_scan_is_refused_and_the_scan_kept(pair, tmp_path, capsys):
    scan = copy_scan(pair["unstained"], tmp_path)
    before = digest(scan)
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(scan), "--force"]) == 1
    one_line_error(capsys, "is a scan file, not a dataset file")
    assert digest(scan) == before


def test_split_onto_a_scan_is_refused(pair, tmp_path, capsys):
    scan = copy_scan(pair["unstained"], tmp_path)
    before = digest(scan)
    assert main(["dataset", "split", str(pair["dataset"]), "--out", str(scan)]) == 1
    one_line_error(capsys, "is a scan file")
    assert digest(scan) == before


def test_merge_replaces_only_its_own_output(pair, tmp_path, capsys):
    out = tmp_path / "m.dataset.h5"
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(out)]) == 0
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(out)]) == 0  # own: ok
    other = tmp_path / "other.dataset.h5"
    shutil.copy2(pair["dataset"], other)  # written by scope match
    before = digest(other)
    capsys.readouterr()
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(other)]) == 1
    one_line_error(capsys, "written by `scope match`", "--force")
    assert digest(other) == before
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(other), "--force"]) == 0


def test_split_in_place_keeps_the_file_a_dataset(pair, tmp_path):
    ds = tmp_path / "d.dataset.h5"
    shutil.copy2(pair["dataset"], ds)
    assert main(["dataset", "split", str(ds), "--seed", "3"]) == 0
    assert file_kind(ds) == "scope-dataset" and leftovers(tmp_path) == []


def test_match_out_never_drops_100x_targets(pair, tmp_path, capsys):
    ds = tmp_path / "s1.dataset.h5"
    shutil.copy2(pair["dataset"], ds)
    set_attr(ds, written_by="scope match --highres")  # as after `scope match --highres`
    before = digest(ds)
    u, s = str(pair["unstained"]), str(pair["stained"])
    assert main(["match", u, s, "--out", str(ds)]) == 1
    one_line_error(capsys, "written by `scope match --highres`", "--force")
    assert digest(ds) == before
    assert main(["match", u, s, "--out", str(ds), "--force"]) == 0


def test_match_rerun_replaces_its_own_output(pair, tmp_path):
    out = tmp_path / "again.dataset.h5"
    u, s = str(pair["unstained"]), str(pair["stained"])
    assert main(["match", u, s, "--out", str(out)]) == 0
    assert main(["match", u, s, "--out", str(out)]) == 0
    assert leftovers(tmp_path) == []


def test_match_out_onto_an_input_scan_is_refused(pair, capsys):
    before = digest(pair["stained"])
    assert (
        main(["match", str(pair["unstained"]), str(pair["stained"]), "--out", str(pair["stained"])])
        == 1
    )
    one_line_error(capsys)
    assert digest(pair["stained"]) == before


@pytest.mark.parametrize("option", ["--csv", "--overlay"])
def test_segment_outputs_never_replace_other_files(small, tmp_path, capsys, option):
    img = tmp_path / "in.png"
    import cv2

    with ScanFile(small) as sf:
        cv2.imwrite(str(img), sf.image(0, 0))
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    assert main(["segment", str(img), "--pixel-size-um", "0.293", option, str(victim)]) == 1
    one_line_error(capsys, "notes.txt exists", "not a")
    assert victim.read_text() == "precious"
    scan = copy_scan(small, tmp_path / "s")
    before = digest(scan)
    assert main(["segment", str(img), "--pixel-size-um", "0.293", option, str(scan)]) == 1
    one_line_error(capsys, "is a scan file")
    assert digest(scan) == before


def test_segment_rewrites_its_own_csv(small, tmp_path):
    import cv2

    img = tmp_path / "in.png"
    with ScanFile(small) as sf:
        cv2.imwrite(str(img), sf.image(0, 0))
    csv = tmp_path / "c.csv"
    for _ in range(2):
        assert main(["segment", str(img), "--pixel-size-um", "0.293", "--csv", str(csv)]) == 0
    assert csv.read_text().startswith("image,x_px,y_px") and leftovers(tmp_path) == []


def test_calibrate_never_replaces_a_scan_even_with_force(small, tmp_path, capsys):
    scan = copy_scan(small, tmp_path)
    before = digest(scan)
    assert main(["calibrate", "--profile", "pls43", "--out", str(scan), "--yes", "--force"]) == 1
    one_line_error(capsys, "is a scan file, not a hardware profile")
    assert digest(scan) == before


def test_calibrate_yes_does_not_replace_an_existing_profile(tmp_path, capsys):
    import hardware_profiles as hp
    from hardware_profiles.loader import dump

    prof = dump(hp.load("pls43"), tmp_path / "p.yaml")
    before = digest(prof)
    assert main(["calibrate", "--profile", "pls43", "--out", str(prof), "--yes"]) == 1
    one_line_error(capsys, "--force")
    assert digest(prof) == before


def test_dataset_grid_png_never_replaces_a_dataset(pair, tmp_path, capsys):
    ds = tmp_path / "d.dataset.h5"
    shutil.copy2(pair["dataset"], ds)
    before = digest(ds)
    assert main(["dataset", "info", str(pair["dataset"]), "--grid", str(ds)]) == 1
    assert "is a dataset file, not a image" in capsys.readouterr().err
    assert digest(ds) == before


def test_stain_never_replaces_a_foreign_file_in_its_folder(run, small, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "field_00000.png").write_text("not an image")
    assert main(["stain", str(run), str(small), "--out", str(out), "--quiet"]) == 1
    one_line_error(capsys, "field_00000.png exists")
    assert (out / "field_00000.png").read_text() == "not an image"


def test_stain_twice_into_one_folder_replaces_its_own_output(run, small, tmp_path):
    out = tmp_path / "o"
    for _ in range(2):
        assert main(["stain", str(run), str(small), "--out", str(out), "--quiet"]) == 0
    assert leftovers(out) == []
    assert file_kind(out / "st.stained-virtual.h5") == "scope-stained"


# == 5. stale leftovers and locks ==============================================================
def test_stale_temp_and_spill_of_dead_processes_are_removed(tmp_path):
    dead = dead_pid()
    stale = [tmp_path / f"a.dataset.h5.tmp{dead}", tmp_path / f".b.tmp{dead}.png"]
    for p in stale:
        p.write_text("x")
    spill = tmp_path / f".match-{dead}-abc"
    spill.mkdir()
    live = tmp_path / f"c.dataset.h5.tmp{os.getppid()}"  # a running process: kept
    live.write_text("x")
    killed_lock = tmp_path / "d.dataset.h5.lock"  # left by kill -9: nobody holds it
    killed_lock.write_text(f"{dead}\n")
    with WriteLock(tmp_path / "e.dataset.h5") as held:
        removed = clean_stale(tmp_path)
        assert held.path.exists()
    assert sorted(removed) == sorted([*stale, spill, killed_lock])
    assert live.exists()


def test_match_cleans_leftovers_of_a_killed_match(pair, tmp_path):
    dead = dead_pid()
    (tmp_path / f".match-{dead}-xyz").mkdir()
    (tmp_path / f"m.dataset.h5.tmp{dead}").write_text("half")
    u, s = str(pair["unstained"]), str(pair["stained"])
    assert main(["match", u, s, "--out", str(tmp_path / "m.dataset.h5")]) == 0
    assert leftovers(tmp_path) == []


def test_a_second_writer_of_a_scan_is_refused_with_the_pid(small, tmp_path, capsys):
    scan = copy_scan(small, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from acquisition.files import WriteLock;"
            f"l = WriteLock({str(scan)!r}).acquire(); print('ok', flush=True); time.sleep(60)",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        before = tree_digest(tmp_path)
        assert scan_cli(tmp_path, "st", "--resume") == 1
        one_line_error(capsys, f"pid {holder.pid}", "being written by another scope process")
        assert tree_digest(tmp_path) == before
        assert main(["info", str(scan)]) == 0
        assert f"being written by pid {holder.pid}" in capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert scan_cli(tmp_path, "st", "--resume") == 0  # the holder is gone: the lock is free


def test_lock_is_exclusive_and_released(tmp_path):
    target = tmp_path / "x.dataset.h5"
    with WriteLock(target):
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            WriteLock(target).acquire()
        assert files.lock_holder(target) == os.getpid()
    assert files.lock_holder(target) is None
    assert not files.lock_path(target).exists()


def test_evaluate_out_onto_a_file_is_refused(run, tmp_path, capsys):
    victim = tmp_path / "notes.txt"
    victim.write_text("precious")
    assert main(["evaluate", str(run), "--out", str(victim), "--quiet"]) == 1
    one_line_error(capsys, "is a file")
    assert victim.read_text() == "precious"


def test_a_second_training_in_one_run_folder_is_refused(run, capsys):
    with WriteLock(run):
        assert main(["train", "x.dataset.h5", "--out", str(run), "--resume", *TINY]) == 1
    one_line_error(capsys, "being written by another scope process")


# == 6. disk full =============================================================================
@pytest.mark.slow  # fills a real disk during a scan
def test_disk_filling_during_a_scan_stops_cleanly_and_resumes(tmp_path, capsys, monkeypatch):
    real = files.free_bytes
    calls = {"n": 0}

    def filling(path):  # call 1: the up-front check; then one guard per field: full at field 2
        calls["n"] += 1
        return 10 * 1024**2 if calls["n"] > 3 else real(path)

    monkeypatch.setattr(files, "free_bytes", filling)
    assert scan_cli(tmp_path, "f", grid="2x2") == 1
    one_line_error(capsys, "is full", "2 of 4 fields are saved", "--resume")
    assert leftovers(tmp_path) == []
    with ScanFile(tmp_path / "f.unstained.scan.h5") as sf:  # the message tells the truth
        assert len(sf.done) == 2 and not sf.field_state()
    monkeypatch.undo()
    assert scan_cli(tmp_path, "f", "--resume", grid="2x2") == 0


def test_enospc_from_a_write_is_caught_in_a_scan(tmp_path, capsys, monkeypatch):
    from acquisition import scanfile

    real_add = scanfile.FieldWriter.add

    def add(self, channel, image, meta):
        if self.index == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, channel, image, meta)

    monkeypatch.setattr(scanfile.FieldWriter, "add", add)
    assert scan_cli(tmp_path, "n", grid="2x1") == 1
    one_line_error(capsys, "is full", "1 of 2 fields are saved", "--resume")
    assert leftovers(tmp_path) == []


def test_enospc_during_match_leaves_no_dataset(pair, tmp_path, capsys, monkeypatch):
    from registration import dataset

    def add(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset.DatasetWriter, "add", add)
    out = tmp_path / "m.dataset.h5"
    assert main(["match", str(pair["unstained"]), str(pair["stained"]), "--out", str(out)]) == 1
    one_line_error(capsys, "is full")
    assert not out.exists() and not (tmp_path / "m.cells.csv").exists()
    assert leftovers(tmp_path) == []


def test_full_disk_during_stain_keeps_no_partial_images(run, small, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    calls = {"n": 0}
    real = files.free_bytes

    def filling(path):
        calls["n"] += 1
        return 1024 if calls["n"] > 1 else real(path)

    monkeypatch.setattr(files, "free_bytes", filling)
    assert main(["stain", str(run), str(small), "--out", str(out), "--quiet"]) == 1
    one_line_error(capsys, "is full", "no partial images")
    assert not list(out.glob("field_*")) and not list(out.glob("*.h5")) and leftovers(out) == []


def test_merge_into_a_full_disk_keeps_the_old_output(pair, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.dataset.h5"
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(out)]) == 0
    before = digest(out)
    monkeypatch.setattr(files, "free_bytes", lambda _p: 1024)
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(out)]) == 1
    one_line_error(capsys, "is full", "untouched")
    assert digest(out) == before and leftovers(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (needs root; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]
    if os.geteuid() != 0 or subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def _without_guards(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``scope ARGV`` with the up-front check and the write guard off: HDF5 meets ENOSPC."""
    code = (
        "import sys\n"
        "from acquisition import files, scan\n"
        "files.GUARD_BYTES = 0\n"
        "scan.check_space = lambda *a, **k: None\n"
        "from scope.cli import run\n"
        f"sys.argv = ['scope', *{argv!r}]\n"
        "run()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.slow  # scans into a real tiny disk in a subprocess
def test_real_enospc_inside_hdf5_during_a_scan_never_crashes(tiny_disk, tmp_path):
    (tiny_disk / "filler").write_bytes(b"\0" * 800 * 1024)  # room for about two fields
    out = tiny_disk / "o"
    argv = ["scan", "--slide", "t", "--pass", "unstained", "--out", str(out), "--grid", "2x2"]
    argv += [*SMALL, "--compression", "none"]
    proc = _without_guards(argv, tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])  # not 139 (segfault)
    assert "is full" in _last_line(proc) and "--resume" in _last_line(proc)
    assert leftovers(out) == []
    with ScanFile(out / "t.unstained.scan.h5") as sf:
        assert 0 < len(sf.done) < 4 and not sf.field_state()
    (tiny_disk / "filler").unlink()
    assert _without_guards([*argv, "--resume"], tmp_path).returncode == 0


@pytest.mark.slow  # matches onto a real full disk
@pytest.mark.parametrize("fill_kb", [300, 900])
def test_real_enospc_during_match_leaves_nothing(pair, tiny_disk, tmp_path, fill_kb):
    (tiny_disk / "filler").write_bytes(b"\0" * fill_kb * 1024)
    argv = ["match", str(pair["unstained"]), str(pair["stained"])]
    proc = _without_guards([*argv, "--out", str(tiny_disk / "m.dataset.h5")], tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "is full" in _last_line(proc)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


@pytest.mark.slow  # stains onto a real full disk
def test_real_enospc_during_stain_keeps_nothing(run, small, tiny_disk, tmp_path):
    (tiny_disk / "filler").write_bytes(b"\0" * 1000 * 1024)
    out = tiny_disk / "o"
    proc = _without_guards(["stain", str(run), str(small), "--out", str(out), "--quiet"], tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "is full" in _last_line(proc)
    assert not out.exists() or not list(out.iterdir())


def test_a_real_small_tmpfs_refuses_up_front(tmp_path, capsys):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    ok = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    if not ok:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        assert scan_cli(mnt, "t", grid="1x1") == 1
        one_line_error(capsys, "not enough disk space", "safety margin")
        assert not list(mnt.iterdir())
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# == 7. same slide ============================================================================
@pytest.mark.slow  # scans a second slide
def test_a_stained_scan_of_another_slide_is_refused(pair, tmp_path, capsys):
    other = tmp_path / "other"
    assert (
        main(
            [
                "scan",
                "--slide",
                "s1",
                "--pass",
                "stained",
                "--out",
                str(other),
                "--positions-from",
                str(pair["unstained"]),
                "--seed",
                "5",
                *pair["common"],
            ]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "x.dataset.h5"
    assert (
        main(
            ["match", str(pair["unstained"]), str(other / "s1.stained.scan.h5"), "--out", str(out)]
        )
        == 1
    )
    # refused by the coarse search (no correlation) or by the same-slide check after it
    err = one_line_error(capsys)
    assert "same slide" in err or "same physical slide" in err, err
    assert not out.exists()


def _cells(ssims):
    from registration.match import CellMatch

    return [CellMatch(0, (0.0, 0.0), (0.0, 0.0), s, (0, 0), (0, 0), []) for s in ssims]


def _pair():
    from registration.match import ScanPair

    return ScanPair.__new__(ScanPair)


def test_same_slide_check_refuses_an_implausible_fit():
    from registration.match import MatchError, MatchOptions
    from registration.slide_qc import same_slide_check as _same_slide_check

    status = np.array(["outlier"] * 6 + ["inlier"] * 2)
    pair = type("P", (), {"unstained": "a.unstained.scan.h5", "stained": "a.stained.scan.h5"})
    with pytest.raises(MatchError, match="may not be the same physical slide.*--force"):
        _same_slide_check(status, _cells([0.05] * 25), MatchOptions(), pair, False)
    notes = _same_slide_check(status, _cells([0.05] * 25), MatchOptions(), pair, True)
    assert "--force" in notes[0]
    # cells of another slide still reach SSIM ~0.28 (the fine search maximises it): refused
    none_fit = np.array(["weak"] * 14 + ["outlier"] * 2)
    with pytest.raises(MatchError, match="0.28"):
        _same_slide_check(none_fit, _cells([0.28] * 114), MatchOptions(), pair, False)


def test_same_slide_check_only_warns_on_thin_evidence_and_passes_good_fits():
    from registration.match import MatchOptions
    from registration.slide_qc import same_slide_check as _same_slide_check

    pair = type("P", (), {"unstained": "a", "stained": "b"})
    bad = np.array(["outlier"] * 4)
    assert "too few" in _same_slide_check(bad, _cells([0.1] * 3), MatchOptions(), pair, False)[0]
    good = np.array(["inlier"] * 4)
    assert _same_slide_check(good, _cells([0.1] * 30), MatchOptions(), pair, False) == []
    half = np.array(["outlier"] * 3 + ["inlier"])
    assert _same_slide_check(half, _cells([0.7] * 30), MatchOptions(), pair, False) == []


# == 8. training folders ======================================================================
def test_scope_info_describes_a_run_as_a_table(run, capsys):
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "training run" in out and "finished" in out and "{" not in out


def test_scope_info_describes_stain_output_and_profiles(run, small, tmp_path, capsys):
    assert main(["stain", str(run), str(small), "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    stained = tmp_path / "st.stained-virtual.h5"
    assert main(["info", str(stained)]) == 0
    assert "virtual-stain output" in capsys.readouterr().out
    set_attr(stained, format_version=7)
    assert main(["info", str(stained)]) == 1
    one_line_error(capsys, "upgrade scope")
    assert main(["info", str(ROOT / "hardware_profiles" / "profiles" / "pls43.yaml")]) == 0
    assert "hardware profile" in capsys.readouterr().out


def test_a_run_killed_before_its_first_checkpoint_restarts(run, sim_dataset, tmp_path, capsys):
    r = tmp_path / "r"
    r.mkdir()
    shutil.copy2(run / "config.yaml", r / "config.yaml")
    (r / "status.json").write_text('{"state": "running", "epoch": 0}')
    (r / "samples").mkdir()
    assert main(["info", str(r)]) == 0
    assert "stopped (no checkpoint)" in capsys.readouterr().out
    ds = sim_dataset  # the run's dataset
    assert main(["train", str(ds), "--out", str(r), "--epochs", "1", *TINY]) == 0
    assert (r / "checkpoints" / "last.pt").is_file()
    capsys.readouterr()
    assert main(["train", str(ds), "--out", str(r), "--epochs", "1", *TINY]) == 1  # now a run
    one_line_error(capsys, "already holds a run", "--resume")


# == 9. Ctrl-C: exit 130, one line, nothing half-written ======================================
def _interrupted(proc: subprocess.CompletedProcess, *must: str) -> str:
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-2000:])
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: interrupted"), proc.stderr[-2000:]
    for m in must:
        assert m in err[0], err[0]
    return err[0]


@pytest.mark.slow  # interrupts a real scope scan subprocess
def test_ctrl_c_during_scan(tmp_path):
    hook = """
from acquisition import storage
real = storage.StorageThread.commit
def commit(self, index, **kw):
    real(self, index, **kw)
    if index == 1:
        interrupt()
storage.StorageThread.commit = commit
"""
    argv = ["scan", "--slide", "c", "--pass", "unstained", "--out", str(tmp_path), "--grid", "2x2"]
    _interrupted(interrupt_at(hook, [*argv, *SMALL], tmp_path), "fields are saved", "--resume")
    assert leftovers(tmp_path) == []
    with ScanFile(tmp_path / "c.unstained.scan.h5") as sf:
        assert 1 <= len(sf.done) < 4 and not sf.field_state() and not sf.complete


@pytest.mark.slow  # interrupts a real scope match subprocess
def test_ctrl_c_during_match(pair, tmp_path):
    hook = """
from registration import match
real = match.extract_field
def extract(cache, job):
    interrupt()
    return real(cache, job)
match.extract_field = extract
"""
    argv = ["match", str(pair["unstained"]), str(pair["stained"])]
    proc = interrupt_at(hook, [*argv, "--out", str(tmp_path / "m.dataset.h5")], tmp_path)
    _interrupted(proc, "nothing was written")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # interrupts a real scope stain subprocess
def test_ctrl_c_during_stain(run, small, tmp_path):
    hook = """
from training import infer
real = infer.stain_field
calls = []
def stain_field(*a, **k):
    calls.append(1)
    if len(calls) == 2:
        interrupt()
    return real(*a, **k)
infer.stain_field = stain_field
"""
    argv = ["stain", str(run), str(small), "--out", str(tmp_path / "o"), "--quiet"]
    _interrupted(interrupt_at(hook, argv, tmp_path), "partial stain output", "removed")
    assert not list((tmp_path / "o").glob("*"))


@pytest.mark.slow  # trains in a subprocess until the interrupt (~30 s each)
@pytest.mark.parametrize("when", ["before-checkpoint", "after-checkpoint"])
def test_ctrl_c_during_train(run, sim_dataset, tmp_path, capsys, when):
    ds = sim_dataset  # the run's dataset
    # before: at the start of the first epoch; after: once epoch 1's checkpoint is saved
    method = "train_epoch" if when == "before-checkpoint" else "save_epoch"
    order = "interrupt()\n    out = real" if when == "before-checkpoint" else "out = real"
    hook = """
from training import trainer
real = trainer.METHOD
def hooked(self, *a, **k):
    ORDER(self, *a, **k)
    interrupt()
    return out
trainer.METHOD = hooked
""".replace("METHOD", method).replace("ORDER", order)
    r = tmp_path / "r"
    argv = ["train", str(ds), "--out", str(r), "--epochs", "2", *TINY]
    proc = interrupt_at(hook, argv, tmp_path)
    if when == "before-checkpoint":
        _interrupted(proc, "before the first checkpoint", "again")
        assert main(["info", str(r)]) == 0
        assert "stopped (no checkpoint)" in capsys.readouterr().out
        assert main(["train", str(ds), "--out", str(r), "--epochs", "1", *TINY]) == 0
    else:
        _interrupted(proc, "checkpoint of epoch 1", "--resume")
        assert main(["train", str(ds), "--out", str(r), "--epochs", "2", "--resume", *TINY]) == 0
    assert leftovers(r) == []


def test_ctrl_c_during_dataset_merge_keeps_the_old_output(pair, tmp_path):
    out = tmp_path / "m.dataset.h5"
    assert main(["dataset", "merge", str(pair["dataset"]), "--out", str(out)]) == 0
    before = digest(out)
    hook = """
from registration import dataset
real = dataset.DatasetWriter.add
def add(self, *a, **k):
    real(self, *a, **k)
    interrupt()
dataset.DatasetWriter.add = add
"""
    proc = interrupt_at(
        hook, ["dataset", "merge", str(pair["dataset"]), "--out", str(out)], tmp_path
    )
    _interrupted(proc, "nothing was left half-written")
    assert digest(out) == before and leftovers(tmp_path) == []
