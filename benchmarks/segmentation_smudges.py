"""The simulator's smudge cells against intact lymphocyte nuclei: how much stain, how dense.

A measurement of the simulator itself (``bench_segmentation.py --smudge-fields N``): fields
of lymphocytes and smudge cells alone, each isolated object's absorbance read against the
glass with the truth's masks and positions.
"""

from __future__ import annotations

import numpy as np


def smudge_stain_ratios(n_fields: int, w: int = 1920, h: int = 1200, **config) -> dict:
    """Stain of the simulator's smudge cells against intact lymphocyte nuclei (truth).

    Fields of lymphocytes and smudge cells alone (no red cells, platelets, dirt or
    precipitate; no vignetting, dust or fixed-pattern noise), so each isolated object's
    absorbance can be read against the glass: optical density (log10, summed over R, G, B)
    integrated over the object (an intact nucleus: its truth mask grown by 1 µm, for the
    blur; a smudge: the disc of its truth radius plus 1 µm) and its mean per area (an intact
    nucleus: over its mask; a smudge: over its footprint, the pixels at least 0.1 of the
    intact nuclei's median mean density). ``config`` overrides the :class:`SimConfig`.

    Returns ``intact`` and ``smudge``, each ``(N, 3)``: integrated OD and mean OD over the
    median intact nucleus's, and the area (µm²) they were read over.
    """
    import cv2

    import hardware_profiles as hp
    from acquisition.geometry import FieldGeometry
    from acquisition.simulator.config import SimConfig
    from acquisition.simulator.microscope import SimulatedMicroscope

    prof = hp.load("pls43")
    p = prof.scan_objective.pixel_size_um
    settings = dict(
        wbc_per_field=16.0,
        smudge_per_field=24.0,
        wbc_type_fractions=(("lymphocyte", 1.0),),
        rbc_coverage=0.0,
        platelets_per_field=0.0,
        dirt_per_field=0.0,
        precipitate_per_field=0.0,
        vignetting=0.0,
        dust_spots=0,
        fixed_pattern_noise=0.0,
    )
    cfg = SimConfig(**{**settings, **config})
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(1 / p) + 1,) * 2)
    intact: list[tuple[float, float, float]] = []  # (integrated OD µm², mean OD, area µm²)
    smudges: list[tuple[float, np.ndarray]] = []  # (integrated OD µm², OD of its disc)
    yy, xx = np.mgrid[:h, :w]
    for k in range(n_fields):
        sim = SimulatedMicroscope(prof, slide=f"smudge{k}", seed=k, config=cfg)
        (img,) = sim.render_stack(
            pass_="stained", x_um=0.0, y_um=0.0, width=w, height=h, channels=prof.stack[:1]
        )
        v = img.reshape(-1, 3).astype(np.float64)
        glass = np.median(v[v.min(1) >= np.percentile(v.min(1), 60)], axis=0)
        od = np.log10(glass / np.maximum(img.astype(np.float64), 0.5)).sum(2)
        nucleus = sim.masks(pass_="stained", x_um=0.0, y_um=0.0, width=w, height=h)["nucleus"]
        _, comp = cv2.connectedComponents(nucleus.astype(np.uint8))
        cells = sim.truth("stained", [(0.0, 0.0)], w, h)["cells"]
        a = np.asarray(sim.placement("stained"))
        sx, sy = a[:, :2] @ np.stack([cells["x_um"], cells["y_um"]]) + a[:, 2:]
        x, y = FieldGeometry(w, h, p).stage_to_pixel(sx, sy, 0.0, 0.0)
        r = cells["radius_um"] / p + 1.0 / p
        for i, kind in enumerate(cells["type"]):
            gap = np.hypot(x - x[i], y - y[i]) - r - r[i]
            gap[i] = np.inf
            inside = r[i] <= x[i] <= w - 1 - r[i] and r[i] <= y[i] <= h - 1 - r[i]
            if kind not in ("lymphocyte", "smudge") or not inside or gap.min() < 0.5 / p:
                continue
            disc = np.hypot(xx - x[i], yy - y[i]) <= r[i]
            if kind == "smudge":
                smudges.append((od[disc].sum() * p * p, od[disc]))
                continue
            labs = np.unique(comp[disc & nucleus])
            nuc = np.isin(comp, labs[labs > 0]) & disc
            if nuc.any():
                region = cv2.dilate(nuc.view(np.uint8), grow) > 0
                intact.append((od[region].sum() * p * p, od[nuc].mean(), nuc.sum() * p * p))
    if not intact or not smudges:
        return {"intact": np.zeros((0, 3)), "smudge": np.zeros((0, 3))}
    ref_int, ref_mean, _ = np.median(intact, axis=0)
    foot = [d[d >= 0.1 * ref_mean] for _, d in smudges]
    smudge = np.array(
        [
            (s / ref_int, f.mean() / ref_mean if f.size else 0.0, f.size * p * p)
            for (s, _), f in zip(smudges, foot, strict=True)
        ]
    )
    return {"intact": np.array(intact) / [ref_int, ref_mean, 1.0], "smudge": smudge}


def smudge_stain(n_fields: int, w: int = 1920, h: int = 1200) -> list[str]:
    """The table of :func:`smudge_stain_ratios`."""
    got = smudge_stain_ratios(n_fields, w, h)
    if not len(got["intact"]) or not len(got["smudge"]):
        return ["(smudge stain: too few isolated objects; raise the field count)", ""]

    def row(name: str, v: np.ndarray) -> str:
        cells = " | ".join(f"{np.median(c):.2f} ({c.min():.2f}–{c.max():.2f})" for c in v.T)
        return f"| {name} | {len(v)} | {cells} |"

    return [
        f"Smudge cells against intact lymphocyte nuclei ({n_fields} simulated {w}x{h} fields of "
        "lymphocytes and smudges alone; optical density log10, summed over R, G, B; integrated "
        "and mean over the median intact nucleus's; median (range)):",
        "",
        "| | objects | integrated OD | mean OD per area | area, µm² |",
        "|---|---|---|---|---|",
        row("intact lymphocyte nuclei", got["intact"]),
        row("smudge cells (footprint)", got["smudge"]),
        "",
    ]
