"""Training data: stack selection, targets, splits, QC, batches; LED-aware augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hardware_profiles as hp
from hardware_profiles.schema import HardwareProfile
from registration.dataset import CELL_COLUMNS, DatasetWriter
from training.augment import Augmenter, Symmetry, apply_symmetry, stack_symmetries
from training.batches import BatchSource, CellStream, plan_epoch
from training.data import network_input, network_target, open_training_data
from training.errors import TrainingError

CROP = 16


def _cells(n: int, *, splits, flags=None, highres=None, flag="low_ssim") -> list[dict]:
    rows = []
    for i in range(n):
        row = dict.fromkeys(CELL_COLUMNS, 0.0)
        row.update(
            slide="s",
            position=i,
            x_um=10.0 * i,
            y_um=0.0,
            qc_flags="",
            has_highres=True,
            split=splits[i],
        )
        if flags and i in flags:
            row["qc_flags"] = flag
        if highres is not None:
            row["has_highres"] = bool(highres[i])
        rows.append(row)
    return rows


def _write(
    path, profile, *, channels=None, n=8, splits=None, flags=None, highres=None, flag="low_ssim"
):
    table = profile.channel_table()
    keep = list(range(len(table))) if channels is None else channels
    rng = np.random.default_rng(0)
    splits = splits or ["train"] * (n - 4) + ["val"] * 2 + ["test"] * 2
    inputs = rng.integers(0, 256, (n, len(keep), CROP, CROP, 3), dtype=np.uint8)
    targets = rng.integers(0, 256, (n, CROP, CROP, 3), dtype=np.uint8)
    with DatasetWriter(
        path, channels=[table[i] for i in keep], crop_size=CROP, profile=profile
    ) as w:
        w.add(
            inputs,
            targets,
            _cells(n, splits=splits, flags=flags, highres=highres, flag=flag),
            targets_highres=255 - targets,
        )
    return inputs, targets


def test_stack_presets_select_the_dataset_channels_by_the_shared_function(tmp_path, pls43):
    inputs, targets = _write(tmp_path / "d.h5", pls43)
    data = open_training_data(tmp_path / "d.h5", stack="full-nohe")
    table = pls43.channel_table()
    assert list(data.spec.channel_indices) == hp.select_channels(table, "full-nohe")
    assert len(data.spec.channel_names) == 44 and data.spec.in_channels == 132
    assert data.spec.brightfield_position == 0
    stream = CellStream(data.spec, data.indices("train"))
    x, y, rows = stream.__getitems__([1, 3])
    np.testing.assert_array_equal(x.numpy(), inputs[[1, 3]][:, list(data.spec.channel_indices)])
    np.testing.assert_array_equal(y.numpy(), targets[[1, 3]])
    assert rows.tolist() == [1, 3]
    cached = CellStream(data.spec, data.indices("train"), cache=True)
    np.testing.assert_array_equal(cached.__getitems__([1, 3])[0].numpy(), x.numpy())
    assert len(open_training_data(tmp_path / "d.h5", stack="le8").spec.channel_names) == 4


def test_a_preset_whose_channels_the_file_lacks_is_an_error(tmp_path, pls43):
    le18 = hp.select_channels(pls43.channel_table(), "le18")
    _write(tmp_path / "d.h5", pls43, channels=le18)
    assert len(open_training_data(tmp_path / "d.h5", stack="le18").spec.channel_names) == 14
    with pytest.raises(TrainingError, match=r"full-nohe.*needs 44 images.*lacks 30"):
        open_training_data(tmp_path / "d.h5", stack="full-nohe")


def test_highres_target_uses_only_cells_with_100x_images(tmp_path, pls43):
    has = [True, False, True, False, False, False, True, True]
    _inputs, targets = _write(tmp_path / "d.h5", pls43, highres=has)
    data = open_training_data(tmp_path / "d.h5", stack="le8", target="highres")
    assert data.indices("train").tolist() == [0, 2]
    assert data.indices("test").tolist() == [6, 7]
    assert data.excluded_no_highres == 4
    stream = CellStream(data.spec, data.indices("train"))
    np.testing.assert_array_equal(stream[1][1].numpy(), 255 - targets[2])
    with pytest.raises(TrainingError, match="'val' split .* no usable cells.*100x"):
        data.indices("val")


def test_flagged_cells_are_excluded_unless_asked_for(tmp_path, pls43):
    _write(tmp_path / "d.h5", pls43, flags={0, 1, 5})
    data = open_training_data(tmp_path / "d.h5", stack="brightfield")
    assert data.indices("train").tolist() == [2, 3]
    assert data.indices("val").tolist() == [4]
    assert data.excluded_flagged == 3
    every = open_training_data(tmp_path / "d.h5", stack="brightfield", include_flagged=True)
    assert every.indices("train").tolist() == [0, 1, 2, 3]


def test_zero_padded_edge_cells_never_reach_training(tmp_path, pls43):
    _write(tmp_path / "d.h5", pls43, flags={0, 5}, flag="near_edge,low_ssim")
    every = open_training_data(tmp_path / "d.h5", stack="brightfield", include_flagged=True)
    assert every.indices("train").tolist() == [1, 2, 3]
    assert every.indices("val").tolist() == [4]
    assert every.excluded_flagged == 2  # counted, so an empty split names them


def test_an_empty_split_is_one_clear_error(tmp_path, pls43):
    _write(tmp_path / "d.h5", pls43, n=4, splits=["train", "train", "val", "val"])
    data = open_training_data(tmp_path / "d.h5", stack="le8")
    with pytest.raises(TrainingError, match=r"'test' split of .*d\.h5 has no usable cells"):
        data.indices("test")


def test_network_layout_is_image_major_in_unit_range():
    stack = torch.arange(2 * 3 * 4 * 4 * 3, dtype=torch.int64).remainder(256).to(torch.uint8)
    stack = stack.reshape(2, 3, 4, 4, 3)
    x = network_input(stack)
    assert x.shape == (2, 9, 4, 4)
    for k in range(3):
        for c in range(3):
            torch.testing.assert_close(x[:, 3 * k + c], stack[:, k, :, :, c].float() / 255)
    y = network_target(stack[:, 0])
    assert y.shape == (2, 3, 4, 4) and float(y.max()) <= 1.0


@pytest.mark.parametrize("world", [2, 3])
def test_epoch_plans_give_the_same_global_batches_for_any_process_count(world):
    single = plan_epoch(23, batch_size=5 * world, seed=7, epoch=3)
    shares = [
        plan_epoch(23, batch_size=5, seed=7, epoch=3, rank=r, world_size=world)
        for r in range(world)
    ]
    losses = np.random.default_rng(0).random(23)  # a loss per cell
    for k, batch in enumerate(single.batches):
        union = np.sort(np.concatenate([s.batches[k] for s in shares]))
        np.testing.assert_array_equal(union, np.sort(batch))
        # DDP averages the processes' gradients: with the scales, the average of the scaled
        # per-process mean losses is the mean over the global batch
        ddp = sum(s.scales[k] * losses[s.batches[k]].mean() for s in shares) / world
        assert ddp == pytest.approx(losses[batch].mean())
    assert plan_epoch(23, batch_size=5, seed=7, epoch=3).batches[0].tolist() == (
        plan_epoch(23, batch_size=5, seed=7, epoch=3).batches[0].tolist()
    )
    # another epoch groups the cells into other batches (same seed, every cell once)
    e3 = [b.tolist() for b in plan_epoch(23, batch_size=5, seed=7, epoch=3).batches]
    e4 = [b.tolist() for b in plan_epoch(23, batch_size=5, seed=7, epoch=4).batches]
    assert sorted(np.concatenate(e3)) == sorted(np.concatenate(e4)) == list(range(23))
    assert e3 != e4


def test_batch_source_delivers_planned_cells(tmp_path, pls43):
    _inputs, _ = _write(tmp_path / "d.h5", pls43)
    data = open_training_data(tmp_path / "d.h5", stack="le8")
    src = BatchSource(CellStream(data.spec, data.indices("train")), device=torch.device("cpu"))
    plan = plan_epoch(4, batch_size=3, seed=0, epoch=1)
    got = [rows.tolist() for _, _, rows in src.iterate(plan.batches)]
    assert got == [b.tolist() for b in plan.batches]


# -- augmentation ----------------------------------------------------------------------------
def test_pls43_keeps_one_mirror_and_the_square_grid_all_eight(pls43, grid9x9):
    for stack in ("full", "full-nohe", "le8", "brightfield"):
        sel = hp.select_channels(pls43.channel_table(), stack)
        names = [s.name for s in stack_symmetries(pls43.channel_table(), sel, profile=pls43)]
        assert names == ["identity", "mirror_x"]
    sel = hp.select_channels(grid9x9.channel_table(), "full-nohe")
    syms = stack_symmetries(grid9x9.channel_table(), sel, profile=grid9x9)
    assert len(syms) == 8
    # without the profile the directions come from the single-LED rows of the table
    assert len(stack_symmetries(grid9x9.channel_table(), sel)) == 8


def test_unequal_exposures_break_a_symmetry(pls43):
    rows = pls43.channel_table()
    i = next(k for k, r in enumerate(rows) if r["name"] == "pls_11")
    rows[i] = {**rows[i], "exposure_ms": rows[i]["exposure_ms"] * 2}
    assert [s.name for s in stack_symmetries(rows, range(len(rows)), profile=pls43)] == ["identity"]


def test_symmetries_compose_like_the_group():
    rng = np.random.default_rng(0)
    stack = torch.from_numpy(rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8))
    target = torch.from_numpy(rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    rot = Symmetry("rot90", ((0, -1), (1, 0)), (1, 2, 0))  # a 3-cycle of channels
    s, t = stack, target
    for _ in range(4):
        s, t = apply_symmetry(s, t, rot)
    # four quarter turns restore the pixels; the channel 3-cycle applied 4 times is itself
    assert torch.equal(s, stack[:, [1, 2, 0]]) and torch.equal(t, target)
    s2, _ = apply_symmetry(stack, None, rot)
    assert torch.equal(s2, stack[:, [1, 2, 0]].rot90(-1, dims=(2, 3)))
    mirror = Symmetry("mirror_x", ((-1, 0), (0, 1)), (0, 1, 2))
    s, t = apply_symmetry(stack, target, mirror)
    assert torch.equal(s, stack.flip(3)) and torch.equal(t, target.flip(2))


def test_augmenter_choice_depends_on_cell_and_epoch_only():
    aug = Augmenter(
        [
            Symmetry("identity", ((1, 0), (0, 1)), (0,)),
            Symmetry("mirror_x", ((-1, 0), (0, 1)), (0,)),
        ],
        seed=5,
    )
    rows = np.arange(200)
    a = aug.choices(rows, 1)
    np.testing.assert_array_equal(aug.choices(rows[::-1], 1), a[::-1])
    assert 60 < a.sum() < 140  # both symmetries are used
    assert not np.array_equal(aug.choices(rows, 2), a)


def _moved_profile(profile: HardwareProfile, matrix) -> HardwareProfile:
    """The same instrument with every LED moved by g⁻¹ (equivalent to moving the cell by g)."""
    g_inv = np.linalg.inv(np.array(matrix, float))
    doc = profile.model_dump()
    for led in doc["led_array"]["leds"]:
        led["x_mm"], led["y_mm"] = (float(v) for v in g_inv @ [led["x_mm"], led["y_mm"]])
    return HardwareProfile.model_validate(doc)


@pytest.mark.parametrize(
    ("profile_name", "symmetry"),
    [
        ("pls43", "mirror_x"),
        pytest.param("grid9x9", "rot90", marks=pytest.mark.slow),  # a second 81-image stack
    ],
)
def test_augmented_stack_matches_the_stack_rendered_from_the_transformed_cell(
    profile_name, symmetry
):
    """Render a WBC; render it again with the LEDs moved by g⁻¹ and transform that by T_g:
    by the physics this is the stack of the transformed cell. The augmentation, made from the
    first render only, must correlate ≥ 0.95 with it (on a perfect instrument: a real one's
    LED brightness and position errors and its flat field break the symmetry a little)."""
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.crops import render_crop, white_cells
    from acquisition.simulator.microscope import SimulatedMicroscope

    profile = hp.load(profile_name)
    size = 48
    # the symmetry is exact for a perfect instrument only: no LED errors, no flat field
    ideal = SimConfig(
        led_brightness_error=0.0,
        led_position_error_mm=0.0,
        vignetting=0.0,
        dust_spots=0,
        fixed_pattern_noise=0.0,
    )
    sim = SimulatedMicroscope(profile, slide="aug", seed=3, config=ideal)
    cell = white_cells(sim, 1, pass_="unstained")[0]

    def render(sim) -> np.ndarray:  # the whole stack of the sim's profile, centred on the cell
        crop = render_crop(sim, cell, pass_="unstained", size=size, row_pass="unstained")
        return crop.astype(np.float64)

    stack = render(sim)
    all_channels = range(len(profile.stack))
    sym = next(
        s
        for s in stack_symmetries(profile.channel_table(), all_channels, profile=profile)
        if s.name == symmetry
    )
    moved = _moved_profile(profile, sym.matrix)
    other = render(SimulatedMicroscope(moved, slide="aug", seed=3, config=ideal))
    spatial_only = Symmetry(sym.name, sym.matrix, tuple(all_channels))
    truth = apply_symmetry(torch.from_numpy(other)[None], None, spatial_only)[0][0].numpy()
    augmented = apply_symmetry(torch.from_numpy(stack)[None], None, sym)[0][0].numpy()
    corr = np.corrcoef(augmented.ravel(), truth.ravel())[0, 1]
    assert corr >= 0.95
    per_channel = [np.corrcoef(augmented[c].ravel(), truth[c].ravel())[0, 1] for c in all_channels]
    assert np.median(per_channel) >= 0.95
    # the channel permutation is essential: transforming the images alone is far off
    naive = apply_symmetry(torch.from_numpy(stack)[None], None, spatial_only)[0][0].numpy()
    assert np.corrcoef(naive.ravel(), truth.ravel())[0, 1] < 0.9
