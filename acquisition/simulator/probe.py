"""How much of the stain can the unstained images tell? A linear probe for the null test.

The method's claim is that the multi-angle (PLS) stack carries information about the stain
that brightfield alone does not. On a simulator that claim is only as good as the physics: if
the stain were planted in the phase, any model would find it. This module measures it with
the smallest model that can: a ridge regression from per-pixel features of a set of channels
(each channel's value and a local mean) to the stained RGB, fitted on some white cells and
scored (R² inside the white cells) on others. The *gain* is R²(all channels) − R²(brightfield).

With ``nucleus_to_cytoplasm = 1`` and ``stain_phase_coupling = 0`` nothing in the phase says
where the stain goes, so the gain must vanish within the run-to-run noise (the null test);
with the defaults it must not (the positive control). ``benchmarks/ablation.py --knobs``
reports the gain over both knobs; ``tests/test_simulator_null.py`` runs a small version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from acquisition.simulator.crops import (
    brightfield_channel,
    brightfield_exposure_ms,
    cell_stage_xy,
    render_crop,
    white_cells,
)

#: Local means (Gaussian σ, px) added to each pixel's features: the probe sees a cell's shape
#: (where the rim is, how far the centre) from any channel, brightfield included.
SCALES_PX = (1.5, 4.0, 8.0)


@dataclass
class CellCrops:
    """Registered crops of ``N`` white cells: ``stack (N, C, H, W, 3)``, ``target (N, H, W, 3)``
    (stained 20x brightfield), ``absorption`` (the same without phase) and ``wbc (N, H, W)``
    (the cell's pixels), uint8 / bool."""

    stack: np.ndarray
    target: np.ndarray
    wbc: np.ndarray
    channels: tuple[str, ...]
    absorption: np.ndarray | None = None

    def stain_absorbance(self) -> np.ndarray:
        """``(N, H, W, 3)`` float32: ``-ln(I / I_glass)`` of the stained slide without phase.

        ``absorption`` is the stained pass rendered with no optical path (``kappa`` 0, no
        plasma film): what the dyes and haemoglobin absorb, free of the phase relief that the
        unstained images may legitimately predict. ``I_glass`` is each crop's 95th percentile
        outside the white cell.
        """
        if self.absorption is None:
            raise ValueError("these crops were rendered without the absorption-only pass")
        img = self.absorption.astype(np.float32) + 0.5
        out = np.empty_like(img)
        for k in range(len(img)):
            glass = np.percentile(img[k][~self.wbc[k]], 95, axis=0)
            out[k] = -np.log(img[k] / glass)
        return out


def render_cells(
    profile, config, *, slide: str, seed: int, n_cells: int, crop: int = 48
) -> CellCrops:
    """Render ``n_cells`` white cells: the unstained stack and the stained target, registered.

    Each cell is rendered centred on its own position in each pass (the staining moves it), so
    input and target are registered exactly.
    """
    from acquisition.simulator.microscope import SimulatedMicroscope

    sim = SimulatedMicroscope(profile, slide=slide, seed=seed, config=config)
    no_phase = config.model_copy(update={"kappa_um3_per_pg": 0.0, "plasma_film_opd_nm": 0.0})
    absorb_sim = SimulatedMicroscope(profile, slide=slide, seed=seed, config=no_phase)
    found = white_cells(sim, n_cells, pass_="stained")
    cells = sorted(found, key=lambda r: int(r["id"]))[:n_cells]
    bf = brightfield_channel(profile)
    stacks, targets, absorbs, masks = [], [], [], []
    exposures: dict[str, float] = {}
    exp_s = None
    for row in cells:
        if not exposures:
            xu, yu = cell_stage_xy(sim, row, "unstained")
            # each channel exposed as `scope calibrate` would for this model: the brightest
            # 0.1 % at 235 (high darkfield exposures 2.5x longer), whatever the profile says
            for ch in profile.stack:
                ms = sim.ideal_exposure_ms(
                    pass_="unstained",
                    x_um=xu,
                    y_um=yu,
                    leds=dict.fromkeys(ch.leds, 255),
                    gain=1.0,
                    level=235.0,
                    percentile=99.9,
                    width=crop,
                    height=crop,
                )
                exposures[ch.name] = ms * (2.5 if ch.exposure_level == "high" else 1.0)
        stacks.append(
            render_crop(
                sim,
                row,
                pass_="unstained",
                size=crop,
                exposures_ms=exposures,
                brightness=255,
                gain=1.0,
            )
        )
        xs, ys = cell_stage_xy(sim, row, "stained")
        if exp_s is None:
            exp_s = brightfield_exposure_ms(sim, "stained", xs, ys, size=128)
        for scope, out in ((sim, targets), (absorb_sim, absorbs)):
            crop_bf = render_crop(
                scope, row, pass_="stained", size=crop, channels=[bf], exposures_ms={bf.name: exp_s}
            )
            out.append(crop_bf[0])
        masks.append(sim.masks(pass_="stained", x_um=xs, y_um=ys, width=crop, height=crop)["wbc"])
    return CellCrops(
        stack=np.stack(stacks),
        target=np.stack(targets),
        wbc=np.stack(masks),
        channels=tuple(ch.name for ch in profile.stack),
        absorption=np.stack(absorbs),
    )


def _multiscale(x: np.ndarray) -> np.ndarray:
    """``(N, H, W, K)`` -> ``(N, H, W, K·(1 + len(SCALES_PX)))``: values and local means."""
    parts = [x]
    for sigma in SCALES_PX:
        parts.append(ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), truncate=2.5))
    return np.concatenate(parts, axis=-1)


def _pixels(stack: np.ndarray, channels: list[int]) -> np.ndarray:
    """``(N, C, H, W, 3)`` uint8 -> ``(N, H, W, 3C)`` float32 in 0..1."""
    x = stack[:, channels].astype(np.float32) / 255.0
    n, c, h, w, _ = x.shape
    return x.transpose(0, 2, 3, 1, 4).reshape(n, h, w, c * 3)


def _shape(wbc: np.ndarray) -> np.ndarray:
    """``(N, H, W, 5)``: distance to the cell's rim (px, truth mask), its square and root, and
    the cell's size (square root of its area) and largest inner distance, at every pixel."""
    d = np.stack([ndimage.distance_transform_edt(m) for m in wbc]).astype(np.float32) / 10.0
    size = np.sqrt(wbc.reshape(len(wbc), -1).sum(1)).astype(np.float32) / 10.0
    depth = d.reshape(len(d), -1).max(1)
    ones = np.ones_like(d)
    return np.stack(
        [d, d * d, np.sqrt(d), ones * size[:, None, None], ones * depth[:, None, None]], axis=-1
    )


def _features(stack: np.ndarray, bf: int, train: np.ndarray, components: int, shape: np.ndarray):
    """Brightfield features, and brightfield plus the stack's top principal components.

    The principal components of every channel's RGB are fitted on the training cells only,
    so both probes have few, comparable features and neither overfits. Both are given the
    cell's shape (distance to its rim and the cell's size, from the truth), so neither wins
    by seeing the outline better: what is left is information about the stain inside it.
    """
    x_bf = _pixels(stack, [bf])
    f_bf = np.concatenate([_multiscale(x_bf), shape], axis=-1)
    if components <= 0:
        return f_bf, f_bf
    x = _pixels(stack, list(range(stack.shape[1])))
    flat = x[train].reshape(-1, x.shape[-1])
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    _, _, vt = np.linalg.svd((flat[::7] - mu) / sd, full_matrices=False)
    pcs = ((x - mu) / sd) @ vt[:components].T
    return f_bf, np.concatenate([f_bf, _multiscale(pcs.astype(np.float32))], axis=-1)


def _ridge_r2(feats, target, mask, train, test, lam: float) -> float:
    xtr = feats[train][mask[train]].astype(np.float64)
    ytr = target[train][mask[train]].astype(np.float64)
    xte = feats[test][mask[test]].astype(np.float64)
    yte = target[test][mask[test]].astype(np.float64)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ym = ytr.mean(0)
    a = xtr.T @ xtr + lam * len(xtr) * np.eye(xtr.shape[1])
    coef = np.linalg.solve(a, xtr.T @ (ytr - ym))
    pred = xte @ coef + ym
    sse = np.sum((yte - pred) ** 2)
    sst = np.sum((yte - yte.mean(0)) ** 2)
    return float(1.0 - sse / sst)


def stain_gain(
    crops: CellCrops,
    *,
    splits: int = 4,
    test_fraction: float = 0.34,
    lam: float = 1e-2,
    components: int = 8,
    seed: int = 0,
    target: str = "stain",
) -> dict[str, np.ndarray]:
    """R² of brightfield-only and all-channel probes over ``splits`` random train/test splits.

    ``target`` is ``"stain"`` (the dyes' absorbance, :meth:`CellCrops.stain_absorbance`) or
    ``"image"`` (the stained image itself, which also shows the stained pass's phase relief).
    Cells are split, never pixels of one cell. Returns ``{"bf": (splits,), "all":
    (splits,), "gain": (splits,)}``.
    """
    names = list(crops.channels)
    bf = names.index(next(n for n in names if n.startswith("brightfield")))
    if target == "stain":
        y = crops.stain_absorbance()
    elif target == "image":
        y = crops.target.astype(np.float32) / 255.0
    else:
        raise ValueError(f"target must be 'stain' or 'image'; got {target!r}")
    rng = np.random.default_rng(seed)
    n = len(crops.target)
    n_test = max(1, round(test_fraction * n))
    out = {"bf": [], "all": []}
    shape = _shape(crops.wbc)
    for _ in range(splits):
        order = rng.permutation(n)
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        f_bf, f_all = _features(crops.stack, bf, train, components, shape)
        out["bf"].append(_ridge_r2(f_bf, y, crops.wbc, train, test, lam))
        out["all"].append(_ridge_r2(f_all, y, crops.wbc, train, test, lam))
    res = {k: np.array(v) for k, v in out.items()}
    res["gain"] = res["all"] - res["bf"]
    return res
