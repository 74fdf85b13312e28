"""Per-channel input standardisation (``--input-norm standardise``): the model, its
statistics, a run that saves and reuses them, and why it exists (low-contrast channels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from registration.dataset import Dataset
from training import evaluate, stain_field, train
from training.build import input_statistics
from training.checkpoint import generator_from_checkpoint, load_checkpoint
from training.data import open_training_data
from training.input_norm import InputStandardiser, maybe_standardiser
from training.models import RRDBGenerator, UNetGenerator

TINY = {"blocks": 1, "features": 8, "growth": 8, "batch_size": 8, "lr": 1e-3, "samples": 4}


def test_the_standardiser_gives_each_channel_its_mean_0_and_deviation_1():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g) * torch.tensor([0.02, 0.5, 0.1]).view(1, 3, 1, 1)
    x = x + torch.tensor([0.97, 0.1, 0.4]).view(1, 3, 1, 1)
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3), unbiased=False).tolist()
    y = InputStandardiser(3, mean, std)(x)
    np.testing.assert_allclose(y.mean(dim=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(dim=(0, 2, 3), unbiased=False), 1.0, atol=1e-4)
    assert maybe_standardiser(3, None, None) is None
    with pytest.raises(ValueError, match="one value per input channel"):
        InputStandardiser(3, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        InputStandardiser(2, [0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="go together"):
        maybe_standardiser(2, [0.0, 0.0], None)


@pytest.mark.parametrize("arch", ["rrdb", "unet"])
def test_a_standardising_generator_is_the_plain_one_on_standardised_input(arch):
    mean, std = [0.9, 0.1, 0.5, 0.2, 0.3, 0.7], [0.02, 0.05, 0.1, 0.2, 0.01, 0.3]
    if arch == "rrdb":
        kw = {"features": 8, "blocks": 1, "growth": 4}
        plain, norm = RRDBGenerator(6, **kw), RRDBGenerator(6, **kw, input_mean=mean, input_std=std)
    else:
        kw = {"crop_size": 16, "features": 4, "reduced": 4}
        plain, norm = UNetGenerator(6, **kw), UNetGenerator(6, **kw, input_mean=mean, input_std=std)
    # the statistics are arguments, not weights: the state dicts have the same keys
    assert plain.state_dict().keys() == norm.state_dict().keys()
    norm.load_state_dict(plain.state_dict())
    plain.eval(), norm.eval()
    x = torch.rand(2, 6, 16, 16, generator=torch.Generator().manual_seed(1))
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(norm(x), plain((x - m) / s), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(norm(x), plain(x), atol=1e-3)  # the test can fail
        if arch == "rrdb":  # the padded compute path standardises too
            torch.testing.assert_close(norm.compute_in(8)(x), plain((x - m) / s), atol=1e-5, rtol=0)


def _low_contrast_loss(*, standardise: bool, steps: int = 60) -> float:
    """Final training loss on a task whose input is a 2 % modulation on a bright background."""
    g = torch.Generator().manual_seed(0)
    pattern = (torch.rand(16, 1, 16, 16, generator=g) > 0.5).float()
    pattern = torch.nn.functional.avg_pool2d(pattern, 3, 1, 1)
    x = 0.97 + 0.02 * pattern  # like an unstained cell in brightfield: values near 1
    y = pattern.repeat(1, 3, 1, 1)  # the stain follows the pattern
    kw = {}
    if standardise:
        kw = {"input_mean": [x.mean().item()], "input_std": [x.std(unbiased=False).item()]}
    torch.manual_seed(0)
    net = RRDBGenerator(1, features=8, blocks=1, growth=8, **kw)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = (net(x) - y).abs().mean()
        loss.backward()
        opt.step()
    return float(loss.detach())


def test_standardising_lets_a_low_contrast_channel_be_learned_in_few_steps():
    plain = _low_contrast_loss(standardise=False)
    norm = _low_contrast_loss(standardise=True)
    assert norm < 0.6 * plain, (norm, plain)


def test_input_statistics_are_those_of_the_values_the_network_receives(sim_dataset):
    data = open_training_data(sim_dataset, stack="le8", target="20x")
    spec = data.spec
    rows = data.indices("train")
    mean, std = input_statistics(spec, rows)
    assert len(mean) == len(std) == spec.in_channels
    with Dataset(sim_dataset) as ds:
        cells = np.stack([ds.inputs[int(r)][list(spec.channel_indices)] for r in sorted(rows)])
    x = np.moveaxis(cells, -1, 2).reshape(len(rows), spec.in_channels, -1) / 255.0
    x = np.moveaxis(x, 1, 0).reshape(spec.in_channels, -1)
    np.testing.assert_allclose(mean, x.mean(axis=1), atol=2e-6)
    np.testing.assert_allclose(std, x.std(axis=1), atol=2e-6)
    bf = spec.brightfield_position * 3
    assert mean[bf] > 0.5 and all(mean[c] < mean[bf] for c in range(3, spec.in_channels))


@pytest.mark.slow  # three training runs, evaluation and an ONNX export (about 15 s)
def test_a_standardised_run_keeps_its_statistics_through_checkpoint_evaluation_and_stain(
    sim_dataset, tmp_path
):
    cfg = {"dataset": sim_dataset, "preset": "maeNET", "stack": "le8", **TINY}
    run = train({**cfg, "out": tmp_path / "std", "epochs": 2, "input_norm": "standardise"})
    ckpt = load_checkpoint(run.last_checkpoint)
    kw = ckpt["model"]["generator_kwargs"]
    data = open_training_data(sim_dataset, stack="le8", target="20x")
    assert (kw["input_mean"], kw["input_std"]) == input_statistics(data.spec, data.indices("train"))
    model = generator_from_checkpoint(ckpt)
    assert model.standardise is not None
    # resuming rebuilds the same statistics; evaluation and staining read them from the model
    longer = train({"dataset": sim_dataset, "out": tmp_path / "std", "resume": True, "epochs": 3})
    assert longer.epochs_done == 3
    res = evaluate(tmp_path / "std", split="test", progress=None)
    assert res["cells"] > 0 and 0 < res["ssim"] <= 1
    with Dataset(sim_dataset) as ds:
        stack = ds.inputs[0][list(data.spec.channel_indices)]
    out = stain_field(model, stack, tile=4096, dtype=np.float32)
    assert out.shape == (*stack.shape[1:3], 3) and np.isfinite(out).all()
    # the exported model standardises too (onnxruntime against PyTorch)
    ort = pytest.importorskip("onnxruntime")
    from training.export_onnx import cached_onnx

    session = ort.InferenceSession(str(cached_onnx(tmp_path / "std", "last")))
    x = torch.rand(1, data.spec.in_channels, 32, 32, generator=torch.Generator().manual_seed(2))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    latest = generator_from_checkpoint(load_checkpoint(longer.last_checkpoint))
    with torch.no_grad():
        want = latest(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_run_saved_before_the_option_resumes_unstandardised(sim_dataset, tmp_path):
    cfg = {"dataset": sim_dataset, "preset": "maeNET", "stack": "le8", **TINY}
    train({**cfg, "out": tmp_path / "old", "epochs": 1})
    path = tmp_path / "old" / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)  # as written before the option existed
    assert ckpt["config"].pop("input_norm") == "scale"
    torch.save(ckpt, path)
    run = train({"dataset": sim_dataset, "out": tmp_path / "old", "resume": True, "epochs": 2})
    assert run.epochs_done == 2
    assert "input_mean" not in load_checkpoint(run.last_checkpoint)["model"]["generator_kwargs"]


@pytest.mark.slow  # a training run through the CLI
def test_cli_takes_input_norm_and_refuses_an_unknown_one(sim_dataset, tmp_path, capsys):
    from scope import cli

    base = ["train", str(sim_dataset), "--preset", "maeNET", "--stack", "le8", "--epochs", "1"]
    base += ["--blocks", "1", "--features", "4", "--growth", "4", "--quiet"]
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--input-norm", "standardise"]) == 0
    assert "input_norm: standardise" in (tmp_path / "a" / "config.yaml").read_text()
    capsys.readouterr()
    code = cli.main([*base, "--out", str(tmp_path / "b"), "--input-norm", "zscore"])
    err = capsys.readouterr().err
    assert code != 0 and "input-norm" in err and not (tmp_path / "b").exists()
