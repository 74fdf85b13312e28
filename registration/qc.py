"""Quality checks of matched cells: every problem is recorded in ``qc_flags``, never dropped.

The thesis's error analysis (Table 4.3) found, among the worst test predictions, PLS images
misaligned with the brightfield image (a hardware glitch), stain artifacts present only in the
target, dirt present only in the input, and true mismatches. The checks here catch them:

``pls_misaligned``
    A single-LED image of the field is shifted against the rest of its stack. Each image is
    compared with its neighbours (:func:`channel_pairs`: the next LED up its arm, the
    nearest LEDs on its ring, the other exposure of its LED), whose images agree almost pixel
    for pixel; a pair's usual offset is its median over fields, and an image is misaligned
    when most of its trusted pairs depart from theirs (:func:`misaligned_pairs`). Images
    without a trusted neighbour are compared with the brightfield image instead (Laplacians
    for brightfield-like channels, intensity against edges for darkfield ones) under a model
    of per-channel systematic offsets and per-ring radial/tangential shifts
    (:func:`misaligned_channels`). All cells of such a field are flagged.
``low_ssim``
    The fine match is unreliable: SSIM below ``min_ssim`` or the peak on the border of the
    search window.
``fine_residual``
    The fine match lies more than ``max_fine_residual_px`` from the slide's rigid motion
    refitted from all fine matches.
``target_only_color``
    Dye in the target where the input shows no object at all (stain precipitate, dirt
    picked up during staining), dark dye specks off the cells or — compared with the whole
    slide — much bluer than the cell's nucleus (:func:`blue_speck_cells`), or a detection
    whose nucleus outline the input does not show (:func:`ghost_cells`).
``input_only_object``
    A dark object in the input that the target lacks in some colour (dirt blown away
    before staining).
``saturated_target``
    More than ``max_saturated_fraction`` of the target crop's pixels are clipped at 255.
``coarse_outlier``
    The cell's field disagreed with the slide's rigid motion (stage slip, wrong match).
``near_edge``
    The crop or its search window left a frame; the crop is padded with zeros.

The checks live in :mod:`registration.channel_alignment` (against brightfield),
:mod:`registration.neighbour_pairs` (against neighbouring LEDs) and
:mod:`registration.crop_checks` (one cell's crops); this module holds their thresholds
(:class:`QcOptions`) and the order flags are written in, and names the checks for callers.
"""

from __future__ import annotations

from acquisition.vocabulary import QC_FLAGS
from registration.channel_alignment import (
    HALVES_AGREE_PX,
    SECOND_PEAK_FRACTION,
    ChannelAligner,
    central_region,
    misaligned_channels,
)
from registration.crop_checks import (
    OnePass,
    blue_speck_cells,
    dye_mask,
    ghost_cells,
    image_noise,
    local_contrast,
    one_pass_objects,
    optical_density,
    saturated_fraction,
)
from registration.neighbour_pairs import (
    PairMeasurer,
    channel_pairs,
    misaligned_pairs,
    pair_offset,
    same_direction_pairs,
)
from registration.qc_options import QcOptions

__all__ = [
    "FLAG_ORDER",
    "HALVES_AGREE_PX",
    "SECOND_PEAK_FRACTION",
    "ChannelAligner",
    "OnePass",
    "PairMeasurer",
    "QcOptions",
    "blue_speck_cells",
    "central_region",
    "channel_pairs",
    "dye_mask",
    "ghost_cells",
    "image_noise",
    "join_flags",
    "local_contrast",
    "misaligned_channels",
    "misaligned_pairs",
    "one_pass_objects",
    "optical_density",
    "pair_offset",
    "same_direction_pairs",
    "saturated_fraction",
]

FLAG_ORDER = QC_FLAGS  # the order flags are written in


def join_flags(flags: set[str] | list[str]) -> str:
    """Comma-separated flags in a fixed order (unknown ones last, sorted)."""
    flags = set(flags)
    known = [f for f in FLAG_ORDER if f in flags]
    return ",".join(known + sorted(flags - set(FLAG_ORDER)))
