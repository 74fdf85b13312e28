"""What the smear is made of: dry-mass densities, stains per structure, absorption spectra.

The numbers behind :mod:`.sample`'s maps: material constants (densities, texture, red-cell
rims, debris), each structure's dye uptake per stain field (``STAIN_*``, fitted to two real
Romanowsky sets, docs/stain-calibration.md), and the absorption spectra of haemoglobin
(Prahl's HbO2 molar extinction) and of the dyes' bands.
"""

from __future__ import annotations

import math

import numpy as np

#: Dried material's density, pg/µm³ (1.35 g/mL): a sub-µm body's chord of dense material
#: times this is its dry mass per area.
RHO_DRY_PG_UM3 = 1.35
#: Excess dry-mass density of a granule or chromatin clump over its surroundings, pg/µm³.
DENSE_EXCESS_PG_UM3 = 0.5
#: RMS relative dry-mass fluctuation at 0.15-0.3 µm (membrane folds, organelles, crenation).
FINE_TEXTURE_RMS = 0.05
#: Width (Gaussian σ, µm) of a dried red cell's rounded rim: the torus of a dried cell is
#: about 2 µm wide. At 0.45 µm the rims scattered so much light outside NA 0.4 that the
#: stained 20x red cells came out grey: a 15th percentile of the stained pixels' colour
#: spread (channel OD range over OD sum) of 0.07, against 0.20 on both real Romanowsky
#: sets; at 0.9 µm it is 0.12 and the median 0.22 (real: 0.24-0.39).
RBC_EDGE_UM = 0.9
#: Relative depth of a crenated red cell's spicules (its outline's radius varies by ±this).
CRENATION_AMPLITUDE = 0.12
#: Width (Gaussian σ, µm) of a crenated red cell's edge: spicules are about 0.5 µm wide.
CRENATED_EDGE_UM = 0.2
#: Platelet dry mass, pg (7-10 fL at ≈ 0.3 pg/fL).
PLATELET_DRY_MASS_PG = 2.5
#: Debris kinds: (Δn, grey absorbance per µm, (eosin, azure, complex) per µm). Smudge cells
#: are not debris material: they carry a lymphocyte nucleus's dry mass and chromatin
#: (:func:`acquisition.simulator.debris.make_smudge`), stained like an intact nucleus.
DEBRIS_MATERIAL = {
    "particle": (0.12, 1.2, (0.0, 0.0, 0.0)),
    "fibre": (0.08, 0.6, (0.0, 0.0, 0.0)),
    "precipitate": (0.08, 0.1, (0.0, 2.0, 1.5)),
    "watermark": (0.25, 0.0, (0.1, 0.05, 0.0)),
}
#: Where a nucleus's DNA lies: its column weighted by this base plus :data:`DNA_PER_CLUMP`
#: times the local chromatin clump level (0..1): condensed chromatin holds more DNA per µm.
DNA_BASE = 0.4
DNA_PER_CLUMP = 0.8
#: DNA of one white-cell nucleus, pg: every white cell of the blood is diploid and resting
#: (2C). The diploid human nuclear genome weighs 6.41 pg (male) and 6.51 pg (female):
#: Piovesan et al., "On the length, weight and GC content of the human genome", BMC Res.
#: Notes 12:106 (2019). The same DNA in every type, so a nucleus's DNA per area, and with it
#: its stain per area, follows from its area (docs/simulator.md, "Nuclei").
DNA_PG = 6.4
#: A smudge cell's chromatin is smeared over a patch this many times its nucleus's diameter
#: across (the diameter of a disc of the patch's area; docs/simulator.md "Smudge cells").
SMUDGE_SPREAD = (1.5, 3.0)

# --- dye uptake: peak absorbance (natural log) per unit of each stain field, per dye
# (eosin, azure B, azure-eosin complex). Calibrated so the stained 20x images, taken with
# the spectral camera (white LED, broadband colour-corrected channels), match the
# per-structure absorbance of two real Romanowsky sets (benchmarks/bench_stain_calibration.py;
# refitted by a damped Gauss-Newton fit of one factor per dye and structure when the
# monochromatic three-line camera was replaced: a broadband green channel needs more eosin
# and less of the broad complex, which also darkens the red channel).
#: Red cells: per pg/µm² of haemoglobin (eosin binds the haemoglobin).
STAIN_RBC = (0.363, 0, 0)
#: Platelets: per µm of the body and of its granulomere.
STAIN_PLATELET = (0.05, 0.15, 0.35)
#: DNA field: per pg/µm² of DNA, the same in every type (chromatin takes azure B and, once
#: stained blue, eosin into the purple azure B–eosin complex: Horobin & Walter,
#: "Understanding Romanowsky staining I: the Romanowsky-Giemsa effect in blood smears",
#: Histochemistry 86:331-336, 1987). It is the lymphocyte's former rate per µm of chromatin
#: column (1.01, 0.139, 0.206) times its mean chromatin integral over the DNA (107.5 µm³ /
#: 6.4 pg), so a lymphocyte's nucleus takes up as much dye as before.
STAIN_DNA = (16.97, 2.335, 3.461)
#: RNA field (basophilia of the cytoplasm) per µm of cytoplasm column, by type: azure only.
STAIN_RNA = {
    "neutrophil": 0.00502,
    "lymphocyte": 0.152,
    "monocyte": 0.0173,
    "eosinophil": 0.0102,
    "basophil": 0.00797,
}
#: Protein field per pg/µm² of cytoplasm dry mass, by type: (eosin, azure, complex).
STAIN_PROTEIN = {
    "neutrophil": (0.736, 0.00628, 0.306),
    "lymphocyte": (0.138, 0, 0.165),
    "monocyte": (0.0335, 0.00221, 0.298),
    "eosinophil": (0.0208, 0.00762, 0.0372),
    "basophil": (0.17, 0.00245, 0.33),
}
#: Granule field per µm of granule chord, by type: (eosin, azure, complex). Eosinophil
#: granules take eosin, basophil granules the complex and azure (dark purple), monocyte and
#: lymphocyte azurophil granules the complex (reddish purple), neutrophil granules faintly.
STAIN_GRANULE = {
    "neutrophil": (0.442, 0.00377, 0.383),
    "lymphocyte": (0, 0.076, 1.89),
    "monocyte": (0, 0.00946, 3.41),
    "eosinophil": (1.04, 0, 0),
    "basophil": (0.06, 0.0736, 1.8),
}
#: Granules that show in phase (dense specific granules); azurophil granules of monocytes and
#: lymphocytes are small and light: stain only.
PHASE_GRANULES = {
    "neutrophil": 1.0,
    "lymphocyte": 0.0,
    "monocyte": 0.0,
    "eosinophil": 1.0,
    "basophil": 1.0,
}

# HbO2 molar extinction coefficient, cm⁻¹/M (decadic), S. Prahl, "Optical absorption of
# hemoglobin", Oregon Medical Laser Center (omlc.org/spectra/hemoglobin), compiled from
# W. B. Gratzer and N. Kollias; per tetramer (64 500 g/mol). Soret band at 414 nm.
_HB_TABLE = np.array(
    [
        (400, 266232),
        (410, 466840),
        (414, 524280),
        (420, 480360),
        (430, 246072),
        (440, 102580),
        (450, 62816),
        (460, 44480),
        (470, 33209.2),
        (480, 26629.2),
        (490, 23684.4),
        (500, 20932.8),
        (510, 20035.2),
        (520, 24202.4),
        (530, 39956.8),
        (540, 53236),
        (550, 43016),
        (560, 32613.2),
        (570, 44496),
        (576, 55540),
        (580, 50104),
        (590, 14400.8),
        (600, 3200),
        (610, 1506),
        (620, 942),
        (630, 610),
        (640, 442),
        (650, 368),
        (660, 319.6),
        (670, 294),
        (680, 277.6),
        (690, 276),
        (700, 290),
    ],
    dtype=np.float64,
)
HB_MOLAR_MASS_G = 64_500.0


def haemoglobin_absorption(wavelength_nm: float) -> float:
    """Natural-log absorbance per pg/µm² of haemoglobin at ``wavelength_nm``.

    ``ln 10 · ε · σ / M``: σ pg/µm² = 1e-4 g/cm², so the absorbance is
    ``ln10 · ε [L/(mol·cm)] · σ·1e-4/M [mol/cm²] · 1000 [cm³/L]``.
    """
    eps = float(np.interp(wavelength_nm, _HB_TABLE[:, 0], _HB_TABLE[:, 1]))
    return math.log(10.0) * eps * 1e-4 / HB_MOLAR_MASS_G * 1e3


def _band(wavelength_nm: float, bands: tuple[tuple[float, float, float], ...]) -> float:
    return sum(a * math.exp(-0.5 * ((wavelength_nm - c) / w) ** 2) for a, c, w in bands)


def dye_absorption(wavelength_nm: float) -> tuple[float, float, float]:
    """Relative absorption (peak ≈ 1) of eosin, azure B and the azure–eosin complex at λ.

    Eosin Y absorbs at 517–525 nm with a shoulder near 490 nm (pink/red); azure B and
    methylene blue absorb at 600–660 nm (monomer and dimer bands: blue); the chromatin
    azure–eosin complex absorbs broadly at 550–600 nm, passing red and blue (purple).
    """
    eosin = _band(wavelength_nm, ((1.0, 522.0, 22.0), (0.45, 490.0, 25.0)))
    azure = _band(wavelength_nm, ((1.0, 650.0, 35.0), (0.6, 595.0, 40.0)))
    complex_ = _band(wavelength_nm, ((1.0, 555.0, 40.0),))
    return eosin, azure, complex_


def yellow_absorption(wavelength_nm: float) -> float:
    """Absorption (1/µm) of unstained eosinophil granules: faintly yellow."""
    return 0.03 * _band(wavelength_nm, ((1.0, 440.0, 40.0),))
