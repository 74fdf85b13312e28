"""Phase 1 of ``scope match``: each field's blank check, coarse match and WBC detection.

:func:`survey_field` runs in a worker on one :class:`SurveyJob` (both brightfield images of
one field) and returns a :class:`FieldSurvey`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acquisition.vocabulary import Pass
from registration.coarse import CoarseMatch, coarse_match, to_grey
from registration.scan_pair import ScanPair
from registration.scans import ScanCache
from registration.segment import WbcParams, background_colour, segment_wbcs

#: A frame is blank when its grey levels spread less than this (DN, standard deviation).
BLANK_STD_DN = 1.0


@dataclass
class FieldSurvey:
    index: int
    blank: str  # "", "unstained" or "stained"
    coarse: CoarseMatch | None
    centroids: np.ndarray  # (n, 2) stained px
    background_unstained: np.ndarray
    background_stained: np.ndarray


@dataclass(frozen=True)
class SurveyJob:
    """One field to survey, with the options the survey uses."""

    pair: ScanPair
    field: int
    margin_um: float
    wbc: WbcParams


def survey_field(cache: ScanCache, job: SurveyJob) -> FieldSurvey:
    """Blank check, coarse match (:mod:`registration.coarse`) and WBC detection of one field."""
    pair, i = job.pair, job.field
    u = cache.scan(pair.unstained).image(i, pair.bf_unstained)
    s = cache.scan(pair.stained).image(i, pair.bf_stained)
    blank = "".join(
        str(name)
        for name, img in ((Pass.UNSTAINED, u), (Pass.STAINED, s))
        if float(to_grey(img)[::4, ::4].std()) < BLANK_STD_DN
    )
    bg_u, bg_s = background_colour(u), background_colour(s)
    if blank:
        return FieldSurvey(i, blank, None, np.zeros((0, 2)), bg_u, bg_s)
    cm = coarse_match(u, s, pixel_size_um=pair.pixel_size_um, margin_um=job.margin_um)
    seg = segment_wbcs(s, pixel_size_um=pair.pixel_size_um, params=job.wbc)
    return FieldSurvey(i, "", cm, seg.centroids, bg_u, bg_s)
