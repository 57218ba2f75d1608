"""Columns of the CCD tables: survey-ccds, ccds-annotated, and the ``ccd_cuts`` bits.

One place for the schema that the zeropoint phase writes (``<base>-annotated.fits``, one row
per CCD), the merge phase stacks (``survey-ccds-<camera>-<band>.fits.gz``,
``ccds-annotated-<camera>-<band>.fits.gz``) and runbrick reads.  Names, order and types follow
legacypipe's canonical list (``legacyzpts/merge_annotated.py``, DR10 ``files.rst``; see
``../shared/research/legacypipe-facts.md`` §2): string widths are those of the real tables in
legacypipe's test data, ``ccd_cuts`` is int64 as in the DR10 files.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SURVEY_CCDS_COLUMNS: list[tuple[str, str] | tuple[str, str, tuple[int, ...]]] = [
    ("image_filename", "S120"),
    ("image_hdu", ">i2"),
    ("camera", "S9"),
    ("expnum", ">i8"),
    ("plver", "S8"),
    ("procdate", "S19"),
    ("plprocid", "S7"),
    ("ccdname", "S5"),
    ("object", "S35"),
    ("propid", "S10"),
    ("filter", "S1"),
    ("exptime", ">f4"),
    ("mjd_obs", ">f8"),
    ("airmass", ">f4"),
    ("fwhm", ">f4"),
    ("width", ">i2"),
    ("height", ">i2"),
    ("ra_bore", ">f8"),
    ("dec_bore", ">f8"),
    ("crpix1", ">f4"),
    ("crpix2", ">f4"),
    ("crval1", ">f8"),
    ("crval2", ">f8"),
    ("cd1_1", ">f4"),
    ("cd1_2", ">f4"),
    ("cd2_1", ">f4"),
    ("cd2_2", ">f4"),
    ("yshift", "?"),
    ("ra", ">f8"),
    ("dec", ">f8"),
    ("skyrms", ">f4"),
    ("sig1", ">f4"),
    ("ccdzpt", ">f4"),
    ("zpt", ">f4"),
    ("ccdraoff", ">f4"),
    ("ccddecoff", ">f4"),
    ("ccdskycounts", ">f4"),
    ("ccdskysb", ">f4"),
    ("ccdrarms", ">f4"),
    ("ccddecrms", ">f4"),
    ("ccdphrms", ">f4"),
    ("phrms", ">f4"),
    ("ccdnastrom", ">i2"),
    ("ccdnphotom", ">i2"),
    ("ccd_cuts", ">i8"),
    ("psfnorm", ">f4"),
    ("galnorm", ">f4"),
]
"""survey-ccds columns.  Units: exptime s; fwhm pixels; sig1 nanomaggies per pixel; skyrms and
ccdskycounts electrons/s per pixel; ccdskysb mag/arcsec²; ccdzpt, zpt AB mag of 1 e-/s;
ccdraoff/ccddecoff/ccdrarms/ccddecrms arcsec; psfnorm/galnorm the PSF/galaxy profile norms
(√Σp²) used for depths."""

ANNOTATED_EXTRA_COLUMNS: list[tuple[str, str] | tuple[str, str, tuple[int, ...]]] = [
    ("annotated", "?"),
    ("good_region", ">i2", (4,)),
    ("ra0", ">f8"),
    ("dec0", ">f8"),
    ("ra1", ">f8"),
    ("dec1", ">f8"),
    ("ra2", ">f8"),
    ("dec2", ">f8"),
    ("ra3", ">f8"),
    ("dec3", ">f8"),
    ("dra", ">f4"),
    ("ddec", ">f4"),
    ("ra_center", ">f8"),
    ("dec_center", ">f8"),
    ("meansky", ">f4"),
    ("stdsky", ">f4"),
    ("maxsky", ">f4"),
    ("minsky", ">f4"),
    ("pixscale_mean", ">f4"),
    ("pixscale_std", ">f4"),
    ("pixscale_max", ">f4"),
    ("pixscale_min", ">f4"),
    ("psfnorm_mean", ">f4"),
    ("psfnorm_std", ">f4"),
    ("galnorm_mean", ">f4"),
    ("galnorm_std", ">f4"),
    ("psf_mx2", ">f4"),
    ("psf_my2", ">f4"),
    ("psf_mxy", ">f4"),
    ("psf_a", ">f4"),
    ("psf_b", ">f4"),
    ("psf_theta", ">f4"),
    ("psf_ell", ">f4"),
    ("humidity", ">f4"),
    ("outtemp", ">f4"),
    ("tileid", ">i4"),
    ("tilepass", "u1"),
    ("tileebv", ">f4"),
    ("ebv", ">f4"),
    ("decam_extinction", ">f4", (6,)),
    ("wise_extinction", ">f4", (4,)),
    ("psfdepth", ">f4"),
    ("galdepth", ">f4"),
    ("gausspsfdepth", ">f4"),
    ("gaussgaldepth", ">f4"),
]
"""What ccds-annotated adds to survey-ccds (corners ra0..dec3 at pixels (1,1), (1,H), (W,H),
(W,1); depths are 5σ AB magnitudes: psfdepth = −2.5(log10(5·sig1/psfnorm_mean) − 9))."""

SURVEY_CCDS_DTYPE = np.dtype(SURVEY_CCDS_COLUMNS)
ANNOTATED_DTYPE = np.dtype(SURVEY_CCDS_COLUMNS + ANNOTATED_EXTRA_COLUMNS)

CCD_CUTS: dict[str, int] = {
    "err_legacyzpts": 0x1,
    "not_grz": 0x2,
    "not_third_pix": 0x4,
    "exptime": 0x8,
    "ccdnmatch": 0x10,
    "zpt_diff_avg": 0x20,
    "zpt_small": 0x40,
    "zpt_large": 0x80,
    "sky_is_bright": 0x100,
    "badexp_file": 0x200,
    "phrms": 0x400,
    "radecrms": 0x800,
    "seeing_bad": 0x1000,
    "early_decam": 0x2000,
    "depth_cut": 0x4000,
    "too_many_bad_ccds": 0x8000,
    "flagged_in_des": 0x10000,
    "phrms_s7": 0x20000,
    "depth_cut_2": 0x40000,
    "plver": 0x80000,
}
"""legacypipe's ``CCD_CUTS`` bits (``bits.py``); runbrick keeps only rows with ccd_cuts == 0."""


def empty_rows(n: int, dtype: np.dtype[np.void] = ANNOTATED_DTYPE) -> npt.NDArray[np.void]:
    """``n`` rows with every float NaN-free zero and strings empty (legacypipe's defaults)."""
    return np.zeros(n, dtype)


def cut_names(value: int) -> list[str]:
    """The names of the bits set in a ``ccd_cuts`` value."""
    return [name for name, bit in CCD_CUTS.items() if value & bit]
