"""What WBC detection found over a slide's fields, and one-line warnings when it looks wrong.

A lab's first slide may be stained or photographed unlike anything detection was checked
on. Rather than return an almost empty dataset in silence, ``scope match`` and ``scope
segment`` report the cells found per field and warn when the slide shows almost no
blue-purple (nuclear) stain, or when many fields hold far fewer cells than the slide's own
median — each warning names ``scope segment --overlay`` to look and the parameters to change.
"""

from __future__ import annotations

import numpy as np

#: the blue-purple stain's top saturation (OpenCV 0–255) below which nuclei cannot be told
#: from red cells by colour
MIN_TOP_SATURATION = 40.0
#: a field is "far below" the slide when it holds fewer than this fraction of the median
LOW_FRACTION = 0.25
#: ... and the check needs a median of at least this many cells per field
MIN_MEDIAN = 4.0

CHECK = "check a frame with `scope segment FRAME.png --pixel-size-um P --overlay OUT.png`"


def per_field_line(counts: list[int] | np.ndarray) -> str:
    """``"WBCs per field: median 12 (3–25) over 40 fields"``."""
    c = np.asarray(counts, dtype=np.int64)
    if c.size == 0:
        return "WBCs per field: no field searched"
    return (
        f"WBCs per field: median {np.median(c):g} ({c.min()}–{c.max()}) over {c.size} field"
        f"{'' if c.size == 1 else 's'}"
    )


def detection_warnings(counts: list[int] | np.ndarray, stain=None) -> list[str]:
    """One-line warnings about a slide's detection (empty when it looks as expected).

    ``counts`` are the cells found per (non-blank) field; ``stain`` the slide's
    :class:`registration.stain_colour.StainStats` when measured.
    """
    out = []
    if stain is not None and np.isfinite(stain.stained_fraction) and stain.stained_fraction > 0:
        top = stain.top_saturation
        if np.isfinite(top) and top < MIN_TOP_SATURATION:
            out.append(
                "warning: the stained images show almost no blue-purple (nuclear) stain "
                f"(top saturation {top:.0f} < {MIN_TOP_SATURATION:g}); white cells may be missed: "
                f"{CHECK}, then lower saturation_min / body_saturation_min or set "
                "saturation_scale (--wbc-param NAME=VALUE)"
            )
    c = np.asarray(counts, dtype=np.float64)
    if c.size >= 4:
        med = float(np.median(c))
        low = int((c < LOW_FRACTION * med).sum()) if med >= MIN_MEDIAN else 0
        if low > max(1, 0.1 * c.size):
            out.append(
                f"warning: {low} of {c.size} fields hold fewer than {LOW_FRACTION:.0%} of the "
                f"slide's median of {med:g} WBCs per field (uneven staining, focus or "
                f"thickness?): {CHECK} on one of them; the colour limits are saturation_min, "
                "value_max, reference_saturation (--wbc-param NAME=VALUE)"
            )
    return out
