"""`scope match` end to end on the simulator: accuracy against the truth, QC, 100x, bad inputs.

One simulated slide (3x2 fields of 640x400 px, a 29-image stack, planted PLS shifts and
one-pass dirt and artifacts) is scanned unstained, stained and — from the cells CSV the match
writes — at 100x. Small frames cap the coarse search at 47 µm, so the slide is re-placed by
at most ±30 µm here; test_registration_coarse.py checks the default ±50 µm on 1280x800.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from acquisition.rig import SimOptions, open_sim
from acquisition.scan import plan_scan, run_scan
from acquisition.scanfile import ScanFile, ScanWriter
from acquisition.simulator.config import Faults, SimConfig
from acquisition.vocabulary import CELL_TYPES
from registration.dataset import Dataset, DatasetWriter
from registration.dataset_info import describe_dataset, preview_grid
from registration.highres_dataset import add_highres
from registration.highres_truth import highres_placement_errors
from registration.manage import DatasetOperationError, merge_datasets, resplit_dataset
from registration.match import MatchError, MatchOptions, match_scans
from registration.truth import evaluate_match

SENSOR = (640, 400)
CONFIG = SimConfig(
    wbc_per_field=60.0,
    max_translation_um=30.0,
    max_rotation_deg=0.3,
    faults=Faults(
        pls_shift_probability=0.03, stained_artifacts_per_field=30.0, unstained_dirt_per_field=20.0
    ),
)


def _scan(rig, prof, out: Path, slide: str, pass_: str, **kw) -> Path:
    """One pass, focused where the operator focused it (as ``scope scan`` does)."""
    rig.set_pass(pass_)
    z = rig.mm.read_stage().z_um
    plan = plan_scan(slide=slide, pass_=pass_, profile=prof, out=out, frame_wh=SENSOR, z_um=z, **kw)
    return run_scan(plan, rig).path


@pytest.fixture(scope="module")
def slide(tmp_path_factory, pls43):
    """Unstained + stained scans, the matched dataset, the highres scan and its dataset."""
    out = tmp_path_factory.mktemp("slide")
    with open_sim(pls43, SimOptions(slide="s1", seed=11, sensor_wh=SENSOR, config=CONFIG)) as rig:
        unstained = _scan(
            rig, pls43, out, "s1", "unstained", grid="3x2", stack="le36-nohe", overlap=0.15
        )
        stained = _scan(rig, pls43, out, "s1", "stained")
        summary = match_scans(
            unstained, stained, out / "s1.dataset.h5", options=MatchOptions(workers=2)
        )
        highres = _scan(rig, pls43, out, "s1", "highres", cells_csv=summary.cells_csv)
    hr_summary = add_highres(summary.dataset, highres, out=out / "s1.hr.dataset.h5")
    return {
        "out": out,
        "unstained": unstained,
        "stained": stained,
        "summary": summary,
        "highres": highres,
        "hr": hr_summary,
    }


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_dataset_layout_and_cells_csv(slide):
    s = slide["summary"]
    with Dataset(s.dataset) as ds:
        n = len(ds)
        assert n == s.n_cells > 10
        assert ds.inputs.shape == (n, 29, 64, 64, 3) and ds.targets.shape == (n, 64, 64, 3)
        assert list(ds.channels["kind"][:2]) == ["brightfield", "pls"]
        cells = ds.cells
        assert set(cells["split"]) == {"train", "val", "test"}
        prov = ds.provenance
        assert prov["unstained"]["path"].endswith("s1.unstained.scan.h5")
        # simulated scans: the simulator's WBC type of each cell is copied in (for evaluate)
        types = set(cells["type"])
        assert types - {""} and types <= {"", *CELL_TYPES}, types
        assert (cells["type"] != "").mean() >= 0.9
    lines = s.cells_csv.read_text().splitlines()
    assert lines[0] == "cell_id,slide,x_um,y_um" and len(lines) == n + 1
    first = lines[1].split(",")
    assert first[0] == "0" and first[1] == "s1"
    assert float(first[2]) == pytest.approx(cells["stained_x_um"][0], abs=1e-3)
    # no temporary files left behind
    assert not [p for p in slide["out"].iterdir() if ".tmp" in p.name or p.name.startswith(".")]


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_accuracy_against_the_truth(slide):
    e = evaluate_match(slide["summary"].dataset, slide["unstained"], slide["stained"])
    assert e.n_truth_wbc >= 15
    assert e.recall >= 0.98, f"{e.n_found} of {e.n_truth_wbc} WBCs found"
    assert e.n_unflagged >= 8
    assert e.precision_unflagged >= 0.98
    assert e.fine_median_px <= 0.5
    assert np.percentile(e.fine_error_px, 99) <= 1.0
    assert e.transform_error_px <= 1.0 and e.transform_error_deg <= 0.05


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_planted_faults_are_flagged(slide):
    e = evaluate_match(slide["summary"].dataset, slide["unstained"], slide["stained"])
    assert e.pls_fault_cells > 0, "the slide should have a field with a shifted PLS image"
    assert e.pls_fault_cells_flagged == e.pls_fault_cells
    assert e.pls_false_flags <= 0.02 * (slide["summary"].n_cells - e.pls_fault_cells)
    # one-pass objects whose centre lies in a crop: dirt (input only) and stain artifacts
    # (target only); subtle ones (water marks, a fibre over a stained cell) can pass
    n = sum(v[0] for v in e.one_pass.values())
    flagged = sum(v[1] for v in e.one_pass.values())
    assert n >= 5 and flagged >= 0.4 * n, e.one_pass
    assert e.one_pass_false_flags <= 0.05 * slide["summary"].n_cells


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_highres_targets_match_the_truth(slide):
    hr = slide["hr"]
    assert hr.n_imaged == slide["summary"].n_cells
    assert hr.n_matched >= 0.8 * hr.n_imaged
    errors, true_ratio = highres_placement_errors(hr, slide["highres"], slide["stained"])
    assert abs(hr.ratio / true_ratio - 1) <= 0.003
    assert len(errors) == hr.n_matched
    with Dataset(hr.dataset) as ds:
        cells = ds.cells
        # within 1 px where the cell's crop lies inside the scan; a near_edge cell's template
        # is clipped by the frame's edge (its crop zero-padded, never trained on): 1.5 px
        # (one near-edge neutrophil reads 1.02 px on this slide)
        rows = [r for r in hr.placements if cells["has_highres"][r]]
        edge = np.array(["near_edge" in str(cells["qc_flags"][r]) for r in rows], bool)
        assert errors[~edge].max() <= 1.0 and errors.max() <= 1.5
        k = int(np.flatnonzero(cells["has_highres"])[0])
        assert ds.targets_highres[k].std() > 5  # an image, not zeros
        # a scale only where a 100x target is used: unmatched and unimaged cells have none
        assert np.isnan(cells["highres_scale"][~cells["has_highres"]]).all()
        assert 4.9 < np.median(cells["highres_scale"][cells["has_highres"]]) < 5.1


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_dataset_info_merge_split_and_grid(slide, tmp_path):
    info = describe_dataset(slide["hr"].dataset)
    assert info["n_cells"] == slide["summary"].n_cells
    assert sum(info["flags"].values()) >= info["n_flagged"] > 0
    grid = preview_grid(slide["hr"].dataset, tmp_path / "grid.png", n=8)
    assert grid.stat().st_size > 1000
    # re-split in place with another seed: same cells, splits by blocks, none empty
    s = resplit_dataset(slide["hr"].dataset, out=tmp_path / "re.dataset.h5", seed=5)
    assert s.by == "blocks" and min(s.counts.values()) > 0
    with Dataset(tmp_path / "re.dataset.h5") as a, Dataset(slide["hr"].dataset) as b:
        assert np.array_equal(a.inputs[:3], b.inputs[:3])
        assert np.array_equal(a.targets_highres[:], b.targets_highres[:])
    # a dataset with other channels cannot be merged
    with Dataset(slide["summary"].dataset) as ds:
        channels = ds.channels[:4]
        rows = [{n: ds.cells[n][0] for n in ds.cells.dtype.names}]
    other = tmp_path / "other.dataset.h5"
    with DatasetWriter(other, channels=channels, crop_size=64) as w:
        w.add(
            np.zeros((1, 4, 64, 64, 3), np.uint8),
            np.zeros((1, 64, 64, 3), np.uint8),
            [{**rows[0], "slide": "s9"}],
        )
    with pytest.raises(DatasetOperationError, match="does not have the channels"):
        merge_datasets([slide["summary"].dataset, other], tmp_path / "merged.dataset.h5")
    assert not (tmp_path / "merged.dataset.h5").exists()
    with pytest.raises(DatasetOperationError, match="is in both"):
        merge_datasets([slide["summary"].dataset, slide["hr"].dataset], tmp_path / "m.h5")


def _copy_scan(
    src: Path,
    dst_dir: Path,
    *,
    slide: str | None = None,
    edit=None,
    fields: list[int] | None = None,
) -> Path:
    """A copy of a scan through ScanWriter, optionally renamed, edited or left incomplete."""
    with ScanFile(src) as sf:
        prof = sf.profile
        pos = np.stack([sf.positions["x_um"], sf.positions["y_um"], sf.positions["z_um"]], 1)
        images = sf.images[()]
        name = slide or sf.slide
        pass_ = sf.pass_
        truth = sf.truth()
    dst_dir.mkdir(parents=True, exist_ok=True)
    w = ScanWriter(
        dst_dir / f"{name}.{pass_}.scan.h5",
        slide=name,
        pass_=pass_,
        profile=prof,
        positions=pos,
        objective_name=prof.optics.scan_objective,
    )
    for i in fields if fields is not None else range(len(pos)):
        fw = w.new_field(i, images.shape[2:4])
        for c in range(images.shape[1]):
            img = images[i, c] if edit is None else edit(i, c, images[i, c])
            fw.add(
                c,
                np.ascontiguousarray(img),
                {
                    "exposure_ms": 1.0,
                    "gain": 1.0,
                    "stage_x_um": pos[i, 0],
                    "stage_y_um": pos[i, 1],
                    "stage_z_um": pos[i, 2],
                    "time": 0.0,
                },
            )
        w.field_done(fw.commit(z_um=pos[i, 2]))
    if truth is not None and fields is None:
        w.set_truth(truth)
    return w.path


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    leftovers = [
        p.name
        for p in out.parent.iterdir()
        if p.name.startswith(out.name) or ".tmp" in p.name or p.name.startswith(".match")
    ]
    assert not leftovers, leftovers


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
@pytest.mark.parametrize("case", ["other_slide", "incomplete", "blank_field", "no_wbc", "swapped"])
def test_bad_inputs_give_one_clear_error_and_no_output(slide, tmp_path, case):
    unstained, stained = slide["unstained"], slide["stained"]
    if case == "other_slide":
        stained = _copy_scan(stained, tmp_path / "x", slide="s2")
        expected = "different slides"
    elif case == "incomplete":
        stained = _copy_scan(stained, tmp_path / "x", fields=[0, 1])
        expected = "incomplete"
    elif case == "blank_field":
        stained = _copy_scan(
            stained,
            tmp_path / "x",
            edit=lambda i, c, img: np.full_like(img, 200) if i == 2 else img,
        )
        expected = "field 2 .* is blank"
    elif case == "no_wbc":

        def grey(i, c, img):
            g = img.mean(axis=2, keepdims=True).astype(np.uint8)
            return np.repeat(g, 3, axis=2)

        stained = _copy_scan(stained, tmp_path / "x", edit=grey)
        expected = "no white blood cells"
    else:
        unstained, stained = stained, unstained
        expected = "give the unstained scan first"
    out = tmp_path / "bad.dataset.h5"
    with pytest.raises(MatchError, match=expected) as info:
        match_scans(unstained, stained, out)
    assert "\n" not in str(info.value)
    _assert_nothing_written(out)


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_blank_field_can_be_skipped(slide, tmp_path):
    stained = _copy_scan(
        slide["stained"],
        tmp_path / "x",
        edit=lambda i, c, img: np.full_like(img, 200) if i == 2 else img,
    )
    s = match_scans(
        slide["unstained"],
        stained,
        tmp_path / "skip.dataset.h5",
        options=MatchOptions(skip_blank=True),
    )
    assert s.n_blank == 1 and s.n_cells > 0
    with Dataset(s.dataset) as ds:
        assert 2 not in set(ds.cells["position"])


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_workers_give_the_same_dataset(slide, tmp_path):
    opt = MatchOptions(workers=1)
    s = match_scans(slide["unstained"], slide["stained"], tmp_path / "w1.dataset.h5", options=opt)
    with Dataset(s.dataset) as a, Dataset(slide["summary"].dataset) as b:
        assert np.array_equal(a.cells["qc_flags"], b.cells["qc_flags"])
        assert np.allclose(a.cells["x_px"], b.cells["x_px"])
        assert np.array_equal(a.inputs[:], b.inputs[:])


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_cli_match_info_and_errors(slide, tmp_path, capsys):
    from scope import cli
    from scope.commands import dataset, match, segment

    names = {c.name for c in cli.app.registered_commands} | {
        g.name for g in cli.app.registered_groups
    }
    for module, name in ((match, "match"), (dataset, "dataset"), (segment, "segment")):
        if name not in names:
            module.register(cli.app)
    out = tmp_path / "cli.dataset.h5"
    assert (
        cli.main(
            [
                "match",
                str(slide["unstained"]),
                str(slide["stained"]),
                "--out",
                str(out),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "scope match" in text and "median SSIM" in text
    assert out.exists() and (tmp_path / "cli.cells.csv").exists()
    assert cli.main(["dataset", "info", str(out), "--grid", str(tmp_path / "g.png")]) == 0
    assert "QC flags" in capsys.readouterr().out and (tmp_path / "g.png").exists()
    assert cli.main(["dataset", "split", str(out), "--seed", "2", "--fractions", "6:2:2"]) == 0
    assert "split by blocks" in capsys.readouterr().out
    # a wrong pair: one red line, non-zero exit, nothing written
    bad = tmp_path / "bad.dataset.h5"
    assert (
        cli.main(["match", str(slide["stained"]), str(slide["unstained"]), "--out", str(bad)]) == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search("unstained scan first", err[0])
    _assert_nothing_written(bad)


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_cli_match_highres_takes_its_options(slide, tmp_path, capsys):
    """`scope match --highres` hands --highres-min-score and --highres-param to the matcher."""
    from scope import cli
    from scope.commands import match

    if "match" not in {c.name for c in cli.app.registered_commands}:
        match.register(cli.app)
    with Dataset(slide["hr"].dataset) as ds:
        default = ds.cells["highres_score"][ds.cells["has_highres"]]
    strict = float(np.median(default))  # about half the default run's targets pass
    out = tmp_path / "cli-hr.dataset.h5"
    argv = ["match", "--highres", str(slide["highres"]), str(slide["summary"].dataset)]
    argv += ["--out", str(out), "--highres-min-score", f"{strict:.4f}"]
    assert cli.main([*argv, "--highres-param", "refine_px=6"]) == 0
    assert "scope match --highres" in capsys.readouterr().out
    with Dataset(out) as ds:
        options = ds.provenance["highres"]["options"]
        kept = ds.cells["highres_score"][ds.cells["has_highres"]]
    assert options["min_score"] == pytest.approx(strict, abs=1e-4) and options["refine_px"] == 6
    assert options["search_um"] == 10.0  # not given: the model's default
    assert 0 < len(kept) < len(default) and kept.min() >= round(strict, 4)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_cells_csv_round_trips_a_slide_name_with_a_comma_and_quotes(tmp_path):
    from acquisition.files import file_kind
    from acquisition.positions import read_cells_csv
    from registration.match import write_cells_csv

    slide = 'S1,patient 7 "B"'
    path = write_cells_csv(
        tmp_path / "d.cells.csv", slide, np.array([1.0, -2.5]), np.array([3.0, 4.25]), ["0", "1"]
    )
    ids, xy = read_cells_csv(path, slide=slide)
    assert ids == ["0", "1"] and np.allclose(xy, [[1.0, 3.0], [-2.5, 4.25]])
    assert file_kind(path) == "cells-csv"
    assert [p.name for p in tmp_path.iterdir()] == ["d.cells.csv"]


@pytest.mark.slow  # the scan → match → 100x pipeline end to end
def test_a_cell_without_a_100x_target_has_no_scale(slide, tmp_path, monkeypatch):
    """A cell whose ratio was measured but whose target match fails keeps a NaN scale."""
    import registration.highres_dataset as hd

    real = hd.match_highres
    measured, refused = set(), []

    def weak_final_match(*args, ratio=None, **kw):
        m = real(*args, ratio=ratio, **kw)
        if ratio is None and np.isfinite(m.measured_ratio):  # the scale pass
            measured.add(args[2])
        elif ratio is not None and m.ok and args[2] in measured and not refused:
            refused.append(args[2])  # the target pass: refuse one cell with a measured ratio
            return dataclasses.replace(m, ok=False, reason="weak correlation")
        return m

    monkeypatch.setattr(hd, "match_highres", weak_final_match)
    hr = add_highres(slide["summary"].dataset, slide["highres"], out=tmp_path / "w.dataset.h5")
    assert refused and hr.reasons.get("weak correlation", 0) >= 1
    with Dataset(hr.dataset) as ds:
        cells = ds.cells
    assert hr.n_matched == int(cells["has_highres"].sum()) == slide["hr"].n_matched - 1
    assert np.isnan(cells["highres_scale"][~cells["has_highres"]]).all()
    assert np.isfinite(cells["highres_scale"][cells["has_highres"]]).any()
