"""Settings of the simulated microscope: the virtual slide, its passes, the camera and faults.

Every knob has a documented default that gives a healthy slide on the ``pls43`` instrument;
every fault is off unless asked for. Both classes are frozen pydantic models: the ranges
live on the fields (``Field(ge=, le=)``), a bad value is one :class:`SimulatorError` line
naming the key, and a configuration is hashable, so it can key caches and be shared between
threads. ``--sim-config`` YAML files are read with the same models
(:mod:`acquisition.simulator.options`).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from acquisition.simulator.settings import Settings, SimulatorError, one_line_error
from acquisition.vocabulary import CELL_TYPES

#: The five white-blood-cell types the virtual smear contains (the shared vocabulary's).
WBC_TYPES: tuple[str, ...] = CELL_TYPES

#: Every ``type`` the ground truth can name.
OBJECT_TYPES: tuple[str, ...] = (
    *WBC_TYPES,
    "rbc",
    "platelet",
    "dirt",
    "artifact",
    "smudge",
)

#: Healthy-blood differential: neutrophils 40-60 %, lymphocytes 20-40 %,
#: monocytes 3-11 %, eosinophils < 5 %, basophils < 1 %.
HEALTHY_DIFFERENTIAL: tuple[tuple[str, float], ...] = (
    ("neutrophil", 0.55),
    ("lymphocyte", 0.33),
    ("monocyte", 0.07),
    ("eosinophil", 0.04),
    ("basophil", 0.01),
)

#: Smudge cells' share of a normal smear's nucleated cells, at most ("normally < 2 %";
#: more in chronic lymphocytic leukaemia, infectious mononucleosis, or blood that stood
#: ≥ 12 h before the smear was made).
NORMAL_SMUDGE_SHARE = 0.02


def smudges_per_field(wbc_per_field: float, share: float = NORMAL_SMUDGE_SHARE) -> float:
    """Smudge cells per field that make ``share`` of the nucleated cells (white + smudge)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    return wbc_per_field * share / (1.0 - share)


class Faults(Settings):
    """Faults planted in the simulated instrument and slide; every one is off by default.

    Attributes
    ----------
    pls_shift_probability
        Chance that a single-LED image of a field (unstained pass) is shifted against the
        brightfield image of that field: the thesis's hardware glitch. Decided per
        (field, LED) from a hash, so both exposures of a darkfield LED share the shift.
    pls_shift_px
        Range of the shift magnitude in camera pixels; the direction is uniform.
    stained_artifacts_per_field
        Mean number of stain artifacts (precipitate, water marks) per scan field that exist in
        the stained pass only. Half of them sit on or beside a white blood cell.
    unstained_dirt_per_field
        Mean number of dirt particles per scan field that exist in the unstained pass only
        (blown away before staining). Half of them sit on or beside a white blood cell.
    """

    pls_shift_probability: float = Field(0.0, ge=0.0, le=1.0)
    pls_shift_px: tuple[float, float] = (3.0, 8.0)
    stained_artifacts_per_field: float = Field(0.0, ge=0.0)
    unstained_dirt_per_field: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> Faults:
        low, high = self.pls_shift_px
        if not 0.0 <= low <= high:
            raise ValueError(
                "Faults.pls_shift_px must be (low, high) with 0 <= low <= high; "
                f"got {self.pls_shift_px}."
            )
        return self


class SimConfig(Settings):
    """Everything about the simulated slide and instrument that is not in the hardware profile.

    Densities are given per scan field: a ``sensor_width_px x sensor_height_px`` frame of the
    profile's scan objective (1920 x 1200 at 0.293 µm/px = 0.198 mm² for ``pls43``).

    Attributes
    ----------
    model
        ``"dry-mass"``, the only model: optical path from dry mass, stains decoupled from the
        phase and calibrated to real Romanowsky smears (docs/simulator.md). The earlier
        ``"legacy"`` model is gone; a configuration naming it gets one clear error.
    wbc_per_field
        Mean number of white blood cells per scan field (a density knob).
    wbc_type_fractions
        ``(type, fraction)`` pairs: the differential count the WBC types are drawn from.
    wbc_min_gap_um
        Smallest edge-to-edge gap between two white blood cells, µm (about one cell diameter).
    rbc_coverage
        Fraction of the glass covered by red cells in the monolayer (touching and slightly
        overlapping where they deform); it varies by +-15 % over millimetres.
    rbc_hb_pg
        Mean haemoglobin per red cell, pg (MCH, normal 27-33 pg); each cell varies by +-10 %.
        Its optical path is ``kappa_um3_per_pg`` times the dry mass per area and its
        absorption the haemoglobin spectrum's.
    crenated_fraction
        Fraction of red cells crenated by slow drying (echinocytes, in every pass): 10-20
        spicules, the outline's radius varying by ±12 %. Off by default: at 0.05 their sharp
        edges turn into false white cells in the harshest stain variation
        (docs/simulator.md).
    kappa_um3_per_pg
        Optical path per dry mass per area, µm³/pg, of the dried smear in air:
        ``(n_dry - 1) / rho_dry`` with n_dry ≈ 1.55 and rho_dry ≈ 1.35 g/mL ≈ 0.41 (cells in
        water: the specific refractive increment, ≈ 0.19).
    nucleus_to_cytoplasm
        Ratio of the nucleus's dry-mass density (hence optical path per µm of column) to the
        cytoplasm's. 1 makes the nucleus invisible in phase.
    stain_phase_coupling
        0..1: how much of a cell's sub-µm phase texture sits where its stained structures are
        (chromatin clumps, specific granules). The rest is compartment-blind texture with the
        same statistics in every cell type. It also scales how far each type's dry-mass
        density (and the eosinophil granules' faint unstained yellow) departs from the common
        one. 0 (with ``nucleus_to_cytoplasm`` 1) leaves nothing in the unstained images that
        tells where the stain goes or which colour it takes: the null test.
    texture_scale
        Scale of the sub-µm texture (granules, chromatin, organelles, membrane folds) that
        scatters light into high angles (0 turns it off).
    stain_uptake_variation
        Per-cell lognormal spread (sigma) of the DNA, RNA, protein and granule dye uptakes.
    smudge_per_field
        Mean number of smudge cells (broken white cells, truth type ``smudge``) per field.
        Default 0.1: beside the default 5 white cells per field, 2 % of the nucleated
        cells, the upper bound of a normal smear (:data:`NORMAL_SMUDGE_SHARE`); with another
        ``wbc_per_field`` use :func:`smudges_per_field` to keep the share. Raise it to
        model a slide rich in smudge cells (e.g. chronic lymphocytic leukaemia).
    precipitate_per_field
        Mean number of stain precipitate specks per field (stained passes only, truth type
        ``artifact``); part of every real stain, so on by default.
    background_stain
        Absorbance (natural log, eosin peak) the stained plasma film adds to the glass.
    cell_displacement_um
        Scale of the non-rigid moves between the unstained and the stained passes (fixing and
        staining deform the film), µm: a smooth field of 0.6 x this RMS (40-150 µm
        wavelengths), plus 0.1 x this RMS of each cell's own jitter; most cells move
        0.2-1 x this.
    cell_loss_fraction
        Fraction of cells washed off by staining (absent from the stained and highres passes).
    platelets_per_field
        Mean number of platelets per scan field.
    dirt_per_field
        Mean number of dirt particles per scan field present in every pass.
    plasma_film_opd_nm
        RMS optical-path texture (nm) of the dried plasma film on the glass between cells:
        the faint haze that darkfield images show and long exposures burn.
    film_pass_correlation
        Correlation of the plasma film's texture between the unstained pass and the stained
        ones (fixing and staining redissolve and redeposit part of it): 1 keeps the film, 0
        lays a new one. 1 by default: at 0.5 the new film alone gave two false white cells in
        three white-cell-free test fields (docs/simulator.md).
    max_translation_um, max_rotation_deg
        The stained pass re-places the slide by uniform translations within +-this (each axis)
        and rotations within +-this about the slide origin, relative to the unstained pass. The
        unstained placement itself is drawn from the same ranges.
    highres_translation_um, highres_rotation_deg
        The highres pass's placement relative to the stained pass.
    magnification_error
        The true highres/scan magnification ratio is the nominal one (``pls43``: 5) times
        ``1 + U(-e, e)``.
    surface_tilt_um_per_mm
        Tilt of the slide surface (focus height), µm per mm, in a random direction.
    surface_curvature_um
        Sag of the slide surface at 1 mm from the slide origin, µm (a paraboloid).
    focus_offset_um
        Each pass's stage Z of best focus at the slide origin is uniform within +-this, µm.
    stain_variation
        Per-slide relative variation of each dye's concentration (uniform +-this).
    stain_strength
        Scale of every dye (1: the calibrated stain; 0: a mock-stained slide that went through
        staining without dyes, whose images show the stained pass's phase alone).
    stain_shrinkage
        Range of the linear scale of each cell after fixing and staining (shrinks about its
        own centre, so the centre's slide coordinate is unchanged).
    spectral_samples
        Wavelengths a white (phosphor) LED is imaged at; each narrow-band die (red, green,
        blue, and the three of an RGB LED) gets a third of them, at least one
        (:mod:`.spectra`). 0 selects the former monochromatic model: one line per channel at
        ``wavelengths_nm``, each read by its own channel only.
    wavelengths_nm
        The three lines (R, G, B) of the monochromatic model (``spectral_samples: 0``), nm.
    led_size_mm
        Width of each LED's emitting die, mm: each wavelength sample leaves from its own point
        of the die, so the illumination has a small spread of angles (partial coherence).
    scan_spherical_aberration_waves
        RMS primary spherical aberration of the dry scan objective imaging an uncovered smear
        (waves, Zernike Z11). It gives the 20x images their dark red-cell rims at best focus;
        the oil objective has none.
    highres_phase_factor
        Optical path under immersion oil relative to air. For dried protein (n ≈ 1.55) it is
        (1.55 - 1.515) / 0.55 ≈ 0.075, the default (it was 0.3 while the 100x scale was
        measured on grey images; registration.highres now measures it on colour).
    full_well_e
        Electrons that fill the 8-bit range at gain 1 (255 DN).
    read_noise_e
        RMS read noise, electrons (amplified by the gain like the signal).
    black_level_dn
        Dark offset of the camera, DN.
    led_flux_e_per_ms_um2
        Photo-electrons per ms per µm² of sample from one LED at full brightness on the axis
        50 mm below the sample through clear glass. The default puts the ``pls43``
        brightfield background (13 LEDs, 4 ms, gain 1) near 215 of 255.
    led_brightness_error
        Each LED's true brightness is nominal × (1 + U(-e, e)), fixed per instrument.
    led_position_error_mm
        RMS error of each LED's true position (x, y, z), mm: the angle it lights from.
    vignetting
        Relative loss of light at the sensor's corners (a cos⁴-like radial falloff).
    field_angle_tiles, field_angle_step
        A point LED at a finite distance lights each point of the field from a slightly
        different angle (about 0.011 in sine across a 20x pls43 frame). Frames are rendered
        in up to ``field_angle_tiles`` tiles per axis, each with its own angles and
        cross-faded, so that the sine varies by at most ``field_angle_step`` within a tile
        (fewer tiles when it already does). 1: one angle per LED for the whole frame.
    colour_correction
        The camera applies its colour-correction matrix (:func:`.spectra.colour_correction`:
        the 630/530/470 nm lines read as pure R, G, B, white stays white), as colour cameras
        do; the spectral overlap it cannot undo for broadband light remains. Applied to the
        photo-electrons before noise (a simplification: a camera applies it to the digitised
        signal, amplifying the noise a little).
    oblique_correction
        First-order oblique-path correction of the thin sample for each LED's angle (dry scan
        passes): the layer's phase and absorbance scale with the path of a tilted ray through
        it (:func:`.optics.oblique_path`; +38 % phase at 57°). Off by default; it renders the
        sample once per LED ring (about 10x the sample work per field).
    bayer
        The sensor is a Bayer (RGGB) mosaic: each pixel records one colour, with its own
        noise, and ``render`` returns the demosaiced ``(H, W, 3)`` frame (OpenCV's
        edge-aware demosaicing). Off by default: every pixel records R, G and B.
    camera_crosstalk
        Extra fraction of each colour channel's signal that its neighbours record (R↔G↔B),
        on top of the overlap of the channels' spectral sensitivities (0 by default: the
        overlap is the crosstalk).
    fixed_pattern_noise
        RMS per-pixel gain variation of the sensor (photo-response non-uniformity).
    dust_spots
        Out-of-focus dust shadows on the sensor window (a few % deep, 10-30 px wide).
    instrument_seed
        Draws the instrument's fixed errors (LEDs, flat field); independent of the slide.
    render_margin_um
        Margin rendered around every frame and cropped away, µm, so the periodic FFT does not
        wrap one edge into the other. Defocus moves an oblique LED's image by dz·tan θ, so
        9 µm covers about ±6 µm of defocus at 57° and ±15 µm in brightfield.
    render_cache_mb
        Memory budget of the cache of single-LED intensity images (brightfield reuses the pls
        renders; darkfield high and low exposures share one render).
    spectrum_cache_fields
        How many fields' sample spectra are kept (about 130 MB each for a 1920 x 1200 field).
    faults
        Planted faults (all off by default).
    """

    model: str = "dry-mass"
    wbc_per_field: float = Field(5.0, ge=0.0, le=60.0)
    wbc_type_fractions: tuple[tuple[str, float], ...] = HEALTHY_DIFFERENTIAL
    wbc_min_gap_um: float = Field(12.0, ge=0.0, le=100.0)
    rbc_coverage: float = Field(0.6, ge=0.0, le=0.7)
    rbc_hb_pg: float = Field(30.0, ge=1.0, le=60.0)
    crenated_fraction: float = Field(0.0, ge=0.0, le=1.0)
    kappa_um3_per_pg: float = Field(0.41, ge=0.0, le=1.0)
    nucleus_to_cytoplasm: float = Field(1.2, ge=0.3, le=3.0)
    stain_phase_coupling: float = Field(0.5, ge=0.0, le=1.0)
    texture_scale: float = Field(1.0, ge=0.0, le=5.0)
    stain_uptake_variation: float = Field(0.25, ge=0.0, le=1.0)
    smudge_per_field: float = Field(0.1, ge=0.0, le=50.0)
    precipitate_per_field: float = Field(0.3, ge=0.0, le=200.0)
    background_stain: float = Field(0.03, ge=0.0, le=2.0)
    cell_displacement_um: float = Field(0.3, ge=0.0, le=5.0)
    cell_loss_fraction: float = Field(0.02, ge=0.0, le=0.5)
    platelets_per_field: float = Field(100.0, ge=0.0, le=2000.0)
    dirt_per_field: float = Field(0.3, ge=0.0, le=200.0)
    plasma_film_opd_nm: float = Field(4.0, ge=0.0, le=100.0)
    film_pass_correlation: float = Field(1.0, ge=0.0, le=1.0)
    max_translation_um: float = Field(50.0, ge=0.0)
    max_rotation_deg: float = Field(0.3, ge=0.0)
    highres_translation_um: float = Field(3.0, ge=0.0)
    highres_rotation_deg: float = Field(0.02, ge=0.0)
    magnification_error: float = Field(0.01, ge=0.0, le=0.2)
    surface_tilt_um_per_mm: float = Field(1.0, ge=0.0)
    surface_curvature_um: float = Field(0.5, ge=0.0)
    focus_offset_um: float = Field(3.0, ge=0.0)
    stain_variation: float = Field(0.1, ge=0.0, le=0.9)
    stain_strength: float = Field(1.0, ge=0.0, le=5.0)
    stain_shrinkage: tuple[float, float] = (0.95, 0.99)
    spectral_samples: int = Field(8, ge=0, le=64)
    wavelengths_nm: tuple[float, float, float] = (630.0, 530.0, 470.0)
    led_size_mm: float = Field(0.3, ge=0.0, le=5.0)
    field_angle_tiles: int = Field(2, ge=1, le=8)
    colour_correction: bool = True
    bayer: bool = False
    oblique_correction: bool = False
    field_angle_step: float = Field(0.006, ge=1e-4, le=1.0)
    scan_spherical_aberration_waves: float = Field(0.05, ge=0.0)
    highres_phase_factor: float = Field(0.075, ge=0.0, le=1.0)
    full_well_e: float = Field(10_000.0, ge=1.0)
    read_noise_e: float = Field(6.0, ge=0.0)
    black_level_dn: float = Field(2.0, ge=0.0)
    led_flux_e_per_ms_um2: float = Field(1_950.0, ge=0.0)
    led_brightness_error: float = Field(0.15, ge=0.0, le=0.9)
    led_position_error_mm: float = Field(0.3, ge=0.0, le=5.0)
    vignetting: float = Field(0.1, ge=0.0, le=0.9)
    camera_crosstalk: float = Field(0.0, ge=0.0, le=0.3)
    fixed_pattern_noise: float = Field(0.01, ge=0.0, le=0.2)
    dust_spots: int = Field(4, ge=0, le=100)
    instrument_seed: int = 0
    render_margin_um: float = Field(9.0, ge=0.0)
    render_cache_mb: float = Field(400.0, ge=0.0)
    spectrum_cache_fields: int = Field(2, ge=1)
    faults: Faults = Field(default_factory=Faults)

    @classmethod
    def dry_mass(cls, **overrides) -> SimConfig:
        """The default configuration, overridden (kept for callers written before it was)."""
        return cls(**overrides)

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.model == "legacy":
            raise ValueError(
                "SimConfig.model 'legacy' was removed; delete the model key or set it to "
                "'dry-mass' (docs/simulator.md)."
            )
        if self.model != "dry-mass":
            raise ValueError(f"SimConfig.model must be 'dry-mass'; got {self.model!r}.")
        names = [name for name, _ in self.wbc_type_fractions]
        unknown = sorted(set(names) - set(WBC_TYPES))
        if unknown:
            raise ValueError(
                f"SimConfig.wbc_type_fractions names unknown cell types {unknown}; "
                f"use {', '.join(WBC_TYPES)}."
            )
        fractions = [f for _, f in self.wbc_type_fractions]
        if any(f < 0 for f in fractions) or sum(fractions) <= 0:
            raise ValueError(
                "SimConfig.wbc_type_fractions must be non-negative and not all zero; "
                f"got {self.wbc_type_fractions}."
            )
        low, high = self.stain_shrinkage
        if not 0.5 <= low <= high <= 1.0:
            raise ValueError(
                "SimConfig.stain_shrinkage must be (low, high) with 0.5 <= low <= high <= 1; "
                f"got {self.stain_shrinkage}."
            )
        if not all(300.0 <= w <= 1100.0 for w in self.wavelengths_nm):
            raise ValueError(
                "SimConfig.wavelengths_nm must be three wavelengths (R, G, B) between 300 and "
                f"1100 nm; got {self.wavelengths_nm}."
            )
        return self

    @property
    def wbc_type_probabilities(self) -> dict[str, float]:
        """Normalised probability of each WBC type (types not listed have zero)."""
        total = sum(f for _, f in self.wbc_type_fractions)
        probs = dict.fromkeys(WBC_TYPES, 0.0)
        for name, f in self.wbc_type_fractions:
            probs[name] += f / total
        return probs


#: Names other modules import from here (the settings base lives in :mod:`.settings`).
__all__ = [
    "HEALTHY_DIFFERENTIAL",
    "OBJECT_TYPES",
    "WBC_TYPES",
    "Faults",
    "Settings",
    "SimConfig",
    "SimulatorError",
    "one_line_error",
]
