"""Geometry-aware augmentation: flips and right-angle rotations that respect the LED array.

Rotating or mirroring a cell is the same, by the physics of the microscope, as keeping the
cell and moving every LED by the inverse motion: the image of a transformed cell ``s∘g⁻¹``
under LED direction ``g·L`` is the transformed image ``T_g(I_L[s])`` (thin sample, rotation
about the optical axis, mirror through it). So a symmetry ``g`` of the *LED set* turns one
real training pair into another: output channel ``c'`` (LEDs ``g·LEDs(c)``) is channel
``c``'s image transformed by ``T_g``, and the stained target is transformed by ``T_g``.

Only the eight symmetries of the pixel grid are candidates (identity, rotations by 90°,
180°, 270°, and the four mirrors), since other angles would resample pixels. A candidate is
kept when every channel of the stack maps onto a channel of the same kind, exposure level
and exposure settings whose LEDs match within ``tolerance_deg`` (1° by default). The square
grid of ``grid9x9`` keeps all eight; ``pls43`` keeps only the identity and the mirror
``x → −x`` (its three central LEDs at φ = 90°, 210°, 330° and its five arms at 18° + 72°k
share just that axis).

Coordinates: LED ``(x_mm, y_mm)`` and image pixels ``(x = column, y = row)`` are both stage
axes (docs/formats.md, "Coordinates"), so a matrix acting on ``(x, y)`` acts on LEDs and
pixels alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hardware_profiles import HardwareProfile
from training.errors import TrainingError

#: The 8 symmetries of the square pixel grid as integer matrices acting on (x, y).
GRID_SYMMETRIES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "identity": ((1, 0), (0, 1)),
    "rot90": ((0, -1), (1, 0)),
    "rot180": ((-1, 0), (0, -1)),
    "rot270": ((0, 1), (-1, 0)),
    "mirror_x": ((-1, 0), (0, 1)),
    "mirror_y": ((1, 0), (0, -1)),
    "transpose": ((0, 1), (1, 0)),
    "antitranspose": ((0, -1), (-1, 0)),
}
_SETTING_RTOL = 0.01


@dataclass(frozen=True)
class Symmetry:
    """One usable symmetry of a stack.

    Attributes
    ----------
    name
        Key of :data:`GRID_SYMMETRIES`.
    matrix
        2x2 integer matrix ``g`` acting on ``(x, y)``.
    source
        ``source[c']`` is the stack position whose image, transformed, becomes channel ``c'``.
    """

    name: str
    matrix: tuple[tuple[int, int], tuple[int, int]]
    source: tuple[int, ...]


def _direction(theta_deg: float, phi_deg: float) -> np.ndarray:
    t, p = math.radians(theta_deg), math.radians(phi_deg)
    return np.array([math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)])


def _row(table: Any, i: int) -> Mapping[str, Any]:
    if isinstance(table, np.ndarray):
        return {n: table[n][i] for n in table.dtype.names}
    return table[i]


def _led_directions(table: Any, profile: HardwareProfile | None) -> dict[int, np.ndarray]:
    """Unit vector towards each LED: from the profile, else from single-LED channel rows."""
    dirs: dict[int, np.ndarray] = {}
    if profile is not None:
        for led in profile.led_array.leds:
            dirs[led.id] = _direction(led.theta_deg, led.phi_deg)
        return dirs
    for i in range(len(table)):
        row = _row(table, i)
        ids = [int(v) for v in str(row["leds"]).split(",") if v.strip()]
        theta, phi = float(row["theta_deg"]), float(row["phi_deg"])
        if len(ids) == 1 and not (math.isnan(theta) or math.isnan(phi)):
            dirs[ids[0]] = _direction(theta, phi)
    return dirs


def _same_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if str(a["kind"]) != str(b["kind"]) or str(a["exposure_level"]) != str(b["exposure_level"]):
        return False
    for key in ("exposure_ms", "gain", "brightness"):
        va, vb = float(a[key]), float(b[key])
        if abs(va - vb) > _SETTING_RTOL * max(abs(va), abs(vb), 1e-12):
            return False
    return True


def _sets_match(a: np.ndarray, b: np.ndarray, cos_tol: float) -> bool:
    """Every direction in ``a`` has a partner in ``b`` and vice versa (same count)."""
    if len(a) != len(b):
        return False
    dots = a @ b.T
    return bool((dots.max(axis=1) >= cos_tol).all() and (dots.max(axis=0) >= cos_tol).all())


def stack_symmetries(
    table: Any,
    selected: Sequence[int],
    *,
    profile: HardwareProfile | None = None,
    tolerance_deg: float = 1.0,
) -> list[Symmetry]:
    """The grid symmetries that map the selected stack's LEDs onto themselves.

    Parameters
    ----------
    table
        The full channel table (rows or structured array: ``name``, ``leds``, ``kind``,
        ``exposure_level``, ``theta_deg``, ``phi_deg``, ``exposure_ms``, ``gain``,
        ``brightness``).
    selected
        Rows forming the stack (from the stack preset), in stack order.
    profile
        The hardware profile, for the positions of LEDs lit only in multi-LED channels; when
        None, LED directions come from the table's single-LED rows.
    tolerance_deg
        Largest angle between a transformed LED and its partner.

    Returns
    -------
    list of Symmetry
        Always starts with the identity.
    """
    dirs = _led_directions(table, profile)
    rows = [_row(table, i) for i in selected]
    led_sets: list[np.ndarray] = []
    for row in rows:
        ids = [int(v) for v in str(row["leds"]).split(",") if v.strip()]
        if not ids:
            raise TrainingError(
                f"channel {str(row['name'])!r} records no LEDs (imported data), so augmentation "
                "cannot check the LED symmetry; train without --augment"
            )
        unknown = [i for i in ids if i not in dirs]
        if unknown:
            raise TrainingError(
                f"channel {row['name']!r} lights LEDs {unknown} whose positions the dataset "
                "does not record, so augmentation cannot check the LED symmetry"
            )
        led_sets.append(np.stack([dirs[i] for i in ids]))
    cos_tol = math.cos(math.radians(tolerance_deg))
    found = []
    for name, m in GRID_SYMMETRIES.items():
        g = np.array([[m[0][0], m[0][1], 0], [m[1][0], m[1][1], 0], [0, 0, 1]], float)
        source = [-1] * len(rows)
        ok = True
        for c, row in enumerate(rows):
            moved = led_sets[c] @ g.T
            partners = [
                d
                for d, other in enumerate(rows)
                if _same_settings(row, other) and _sets_match(moved, led_sets[d], cos_tol)
            ]
            if len(partners) != 1 or source[partners[0]] != -1:
                ok = False
                break
            source[partners[0]] = c
        if ok:
            found.append(Symmetry(name, m, tuple(source)))
    return found


def spatial_permutation(matrix: tuple[tuple[int, int], tuple[int, int]], size: int) -> np.ndarray:
    """Flat source index of every output pixel of ``T_g`` on a ``size x size`` image.

    ``T_g(I)(g·p) = I(p)`` about the image centre, i.e. ``out[p'] = I[g⁻¹·p']``; coordinates
    are doubled so the centre of an even-sized image stays on the integer grid.
    """
    g = np.array(matrix, int)
    g_inv = np.round(np.linalg.inv(g)).astype(int)
    ys, xs = np.mgrid[0:size, 0:size]
    p2 = np.stack([2 * xs - (size - 1), 2 * ys - (size - 1)])  # (2, size, size)
    src2 = np.einsum("ij,jhw->ihw", g_inv, p2)
    sx = (src2[0] + size - 1) // 2
    sy = (src2[1] + size - 1) // 2
    return (sy * size + sx).reshape(-1)


def apply_symmetry(
    stack: torch.Tensor, target: torch.Tensor | None, symmetry: Symmetry
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Transform cells: ``stack (B, n, h, w, 3)`` and ``target (B, h, w, 3)``, any dtype."""
    b, n, h, w, c = stack.shape
    if h != w:
        raise ValueError(f"augmentation needs square crops, got {h}x{w}")
    if symmetry.name == "identity":
        return stack, target
    perm = torch.from_numpy(spatial_permutation(symmetry.matrix, h)).to(stack.device)
    src = torch.tensor(symmetry.source, device=stack.device)
    out = stack.index_select(1, src).reshape(b, n, h * w, c).index_select(2, perm)
    out = out.reshape(b, n, h, w, c)
    if target is None:
        return out, None
    t = target.reshape(b, h * w, c).index_select(1, perm).reshape(b, h, w, c)
    return out, t


class Augmenter:
    """Applies a random symmetry per cell, chosen from ``(seed, epoch, row)`` alone.

    The choice does not depend on batch composition or process count, so augmented runs stay
    exactly resumable and identical under DistributedDataParallel.
    """

    def __init__(self, symmetries: Sequence[Symmetry], *, seed: int) -> None:
        if not symmetries:
            raise ValueError("at least the identity symmetry is needed")
        self.symmetries = list(symmetries)
        self.seed = seed

    def choices(self, rows: np.ndarray, epoch: int) -> np.ndarray:
        k = len(self.symmetries)
        # Philox-style counter hash: independent of how rows are batched.
        keys = np.asarray(rows, np.uint64)
        mixed = keys * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(
            (self.seed * 1_000_003 + epoch) & 0xFFFFFFFFFFFFFFFF
        )
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0xBF58476D1CE4E5B9)
        mixed ^= mixed >> np.uint64(29)
        return (mixed % np.uint64(k)).astype(np.int64)

    def __call__(
        self, stack: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.symmetries) == 1:
            return stack, target
        pick = torch.from_numpy(self.choices(rows.cpu().numpy(), epoch)).to(stack.device)
        out_s, out_t = stack.clone(), target.clone()
        for k, sym in enumerate(self.symmetries):
            sel = torch.nonzero(pick == k).flatten()
            if sel.numel() == 0 or sym.name == "identity":
                continue
            s, t = apply_symmetry(stack.index_select(0, sel), target.index_select(0, sel), sym)
            out_s[sel] = s
            out_t[sel] = t
        return out_s, out_t
