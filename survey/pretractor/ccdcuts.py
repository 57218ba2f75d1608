"""The ``ccd_cuts`` bits of the CCD tables, computed as legacypipe's ``update_ccd_cuts.py`` does.

``legacy_zeropoints.py`` writes every row with ``ccd_cuts = 0x1`` (err_legacyzpts) as a
placeholder; ``update_ccd_cuts.py`` zeroes it and sets the quality bits of ``psfzpt_cuts.py``
(thresholds per camera below, from legacypipe), then ``too_many_bad_ccds`` for exposures with
fewer than 70% good CCDs.  runbrick keeps only rows with ``ccd_cuts == 0``.

Differences from legacypipe, on purpose:

* the ``plver`` cut (PLVER not V4.8/V4.9/V5) is applied to DECam only by default.  legacypipe's
  HEAD applies it to every camera, which would cut every DR9 north CCD (90Prime ``V2.3``,
  Mosaic ``V4.3``: see the real tables in legacypipe's test data, all with ``ccd_cuts == 0``);
* ``flagged_in_des`` needs DES's ``image2coadd`` file, which lsdr does not take: as legacypipe
  does without it, DECam gets ``early_decam`` (MJD < 56516) instead;
* the depth cut of ``update_ccd_cuts`` (``depth_cut``, 0x4000; it needs tile files) is not
  applied: lsdr's depth cut is the separate per-brick phase in
  :mod:`lsdr.survey.pretractor.depthcut`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.cameras import get_camera
from lsdr.survey.core.errors import CameraError, InputFileError, SurveyError
from lsdr.survey.pretractor.ccdschema import CCD_CUTS

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Segment = tuple[float, float, float, float, float]
"""A piece of a zeropoint trend: (day from, day to, zpt at from, zpt at to, intercept at day 0)."""


@dataclass(frozen=True)
class CameraCuts:
    """Per-camera thresholds of ``psfzpt_cuts.add_psfzpt_cuts``."""

    zpt_lo: Mapping[str, float]
    """Detrended ccdzpt below this (per band) sets zpt_small; bands not listed use 0."""
    zpt_hi: Mapping[str, float]
    """Detrended ccdzpt above this sets zpt_large; bands not listed use 100."""
    radec_rms: float
    """Astrometric scatter hypot(ccdrarms, ccddecrms) above this (arcsec) sets radecrms."""
    skybright: Mapping[str, float]
    """ccdskycounts above this (per band) sets sky_is_bright; unlisted bands use 1e6."""
    zpt_diff_avg: float
    """|ccdzpt − zpt| above this sets zpt_diff_avg."""
    airmass_k: Mapping[str, float]
    """Extinction per airmass used to detrend ccdzpt before zpt_small/zpt_large."""
    trend: Mapping[str, tuple[float, tuple[Segment, ...]]]
    """Per band: nominal zeropoint and piecewise-linear trend with MJD (days from MJD 56658.5)."""
    nccds: int
    """CCDs of a full exposure, for too_many_bad_ccds."""


def _bounds(zpt0: Mapping[str, float], lo: float, hi: float) -> tuple[dict[str, float], ...]:
    return {b: z + lo for b, z in zpt0.items()}, {b: z + hi for b, z in zpt0.items()}


_DECAM_ZPT0 = {"u": 23.20, "g": 25.08, "r": 25.29, "i": 25.26, "z": 24.92, "Y": 23.87}
_DECAM_TREND: dict[str, tuple[float, tuple[Segment, ...]]] = {
    "g": (
        25.08,
        (
            (-150.0, 0.0, 25.22, 25.2, 25.2),
            (0.0, 227.0, 25.13, 25.15, 25.13),
            (227.0, 400.0, 25.15, 25.13, 25.176),
            (400.0, 500.0, 25.05, 25.12, 24.77),
            (500.0, 795.0, 25.09, 25.07, 25.124),
            (795.0, 930.0, 25.12, 25.13, 25.061),
            (930.0, 970.0, 25.13, 25.13, 25.13),
            (970.0, 1110.0, 25.12, 25.07, 25.466),
            (1110.0, 1240.0, 24.99, 25.08, 24.222),
            (1240.0, 1462.0, 25.08, 25.03, 25.359),
            (1462.0, 1525.0, 25.03, 24.89, 28.279),
            (1525.0, 1650.0, 24.92, 25.03, 23.578),
            (1650.0, 1897.0, 25.25, 25.18, 25.718),
            (1897.0, 2040.0, 25.21, 25.26, 24.547),
            (2040.0, 2400.0, 25.25, 25.15, 25.817),
            (2400.0, 2700.0, 25.25, 25.12, 26.29),
        ),
    ),
    "r": (
        25.29,
        (
            (-150.0, 0.0, 25.38, 25.33, 25.33),
            (0.0, 227.0, 25.31, 25.33, 25.31),
            (227.0, 400.0, 25.33, 25.31, 25.356),
            (400.0, 500.0, 25.23, 25.31, 24.91),
            (500.0, 795.0, 25.27, 25.25, 25.304),
            (795.0, 930.0, 25.32, 25.32, 25.32),
            (930.0, 970.0, 25.32, 25.32, 25.32),
            (970.0, 1110.0, 25.32, 25.27, 25.666),
            (1110.0, 1240.0, 25.2, 25.28, 24.517),
            (1240.0, 1462.0, 25.29, 25.27, 25.402),
            (1462.0, 1525.0, 25.24, 25.17, 26.864),
            (1525.0, 1650.0, 25.17, 25.24, 24.316),
            (1650.0, 1897.0, 25.42, 25.31, 26.155),
            (1897.0, 2040.0, 25.35, 25.4, 24.687),
            (2040.0, 2400.0, 25.4, 25.3, 25.967),
            (2400.0, 2700.0, 25.37, 25.29, 26.01),
        ),
    ),
    "i": (
        25.26,
        ((2040.0, 2400.0, 25.35, 25.21, 26.143), (2400.0, 2700.0, 25.32, 25.24, 25.96)),
    ),
    "z": (
        24.92,
        (
            (-150.0, 0.0, 25.12, 25.02, 25.02),
            (0.0, 227.0, 24.95, 25.04, 24.95),
            (227.0, 400.0, 25.04, 24.97, 25.132),
            (400.0, 500.0, 24.94, 25.03, 24.58),
            (500.0, 795.0, 25.0, 24.98, 25.034),
            (795.0, 930.0, 24.97, 25.02, 24.676),
            (930.0, 970.0, 25.02, 25.06, 24.09),
            (970.0, 1110.0, 25.06, 24.98, 25.614),
            (1110.0, 1240.0, 24.93, 25.0, 24.332),
            (1240.0, 1462.0, 25.06, 24.97, 25.563),
            (1462.0, 1525.0, 24.97, 24.85, 27.755),
            (1525.0, 1650.0, 24.91, 24.96, 24.3),
            (1650.0, 1897.0, 25.13, 24.96, 26.266),
            (1897.0, 2040.0, 24.98, 25.12, 23.123),
            (2040.0, 2400.0, 25.12, 24.95, 26.083),
            (2400.0, 2700.0, 25.05, 24.95, 25.85),
        ),
    ),
    "Y": (23.87, ()),
}
_NORTH_TREND: dict[str, tuple[float, tuple[Segment, ...]]] = {
    "g": (
        25.74,
        (
            (0.0, 720.0, 25.9, 25.9, 25.9),
            (720.0, 810.0, 25.9, 25.75, 27.1),
            (810.0, 900.0, 25.88, 25.78, 26.78),
            (900.0, 950.0, 25.78, 25.92, 23.26),
            (950.0, 1100.0, 25.95, 25.95, 25.95),
            (1100.0, 1255.0, 25.95, 25.75, 27.369),
            (1255.0, 1280.0, 25.85, 25.4, 48.44),
            (1280.0, 1500.0, 25.88, 25.8, 26.345),
            (1500.0, 1520.0, 25.8, 25.88, 19.8),
            (1520.0, 1550.0, 25.75, 25.9, 18.15),
            (1550.0, 1580.0, 25.7, 25.85, 17.95),
            (1580.0, 1600.0, 25.85, 25.8, 29.8),
            (1600.0, 1615.0, 25.8, 25.8, 25.8),
            (1615.0, 1621.0, 25.8, 25.7, 52.716),
            (1621.0, 1626.0, 25.7, 25.85, -22.93),
            (1626.0, 1645.0, 25.83, 25.79, 29.253),
            (1645.0, 1658.0, 25.8, 25.6, 51.108),
            (1658.0, 1668.0, 25.6, 25.85, -15.85),
        ),
    ),
    "r": (
        25.52,
        (
            (0.0, 720.0, 25.6, 25.6, 25.6),
            (720.0, 815.0, 25.6, 25.5, 26.358),
            (815.0, 882.0, 25.6, 25.6, 25.6),
            (882.0, 930.0, 25.45, 25.6, 22.694),
            (930.0, 1100.0, 25.68, 25.68, 25.68),
            (1100.0, 1220.0, 25.6, 25.54, 26.15),
            (1220.0, 1280.0, 25.55, 25.38, 29.007),
            (1280.0, 1420.0, 25.5, 25.5, 25.5),
            (1420.0, 1450.0, 25.65, 25.7, 23.283),
            (1450.0, 1550.0, 25.55, 25.55, 25.55),
            (1550.0, 1610.0, 25.5, 25.6, 22.917),
            (1610.0, 1635.0, 25.45, 25.6, 15.79),
            (1635.0, 1670.0, 25.55, 25.4, 32.557),
        ),
    ),
    "z": (
        26.2,
        (
            (0.0, 720.0, 26.2, 26.2, 26.2),
            (720.0, 920.0, 26.55, 26.05, 28.35),
            (920.0, 1030.0, 26.15, 26.15, 26.15),
            (1030.0, 1070.0, 26.5, 26.5, 26.5),
            (1070.0, 1115.0, 26.5, 26.35, 30.067),
            (1115.0, 1300.0, 26.47, 26.33, 27.314),
            (1300.0, 1355.0, 26.25, 26.2, 27.432),
            (1355.0, 1500.0, 26.35, 26.35, 26.35),
        ),
    ),
}
_NORTH_AIRMASS = {"g": 0.291, "r": 0.176, "z": 0.165}

_lo, _hi = _bounds(_DECAM_ZPT0, -0.5, 0.25)
_mlo, _mhi = _bounds({"z": 26.20}, -1.0, 0.8)
_blo, _bhi = _bounds({"g": 25.74, "r": 25.52}, -0.5, 0.18)

CAMERA_CUTS: dict[str, CameraCuts] = {
    "decam": CameraCuts(
        zpt_lo=_lo,
        zpt_hi=_hi,
        radec_rms=0.4,
        skybright={"g": 90.0, "r": 150.0, "i": 165.0, "z": 180.0},
        zpt_diff_avg=0.25,
        airmass_k={"g": 0.1660, "r": 0.0862, "i": 0.0495, "z": 0.0715, "Y": 0.058},
        trend=_DECAM_TREND,
        nccds=62,
    ),
    "mosaic": CameraCuts(
        zpt_lo=_mlo,
        zpt_hi=_mhi,
        radec_rms=0.1,
        skybright={"z": 200.0},
        zpt_diff_avg=0.1,
        airmass_k=_NORTH_AIRMASS,
        trend=_NORTH_TREND,
        nccds=4,
    ),
    "90prime": CameraCuts(
        zpt_lo=_blo,
        zpt_hi=_bhi,
        radec_rms=0.2,
        skybright={},
        zpt_diff_avg=0.1,
        airmass_k=_NORTH_AIRMASS,
        trend=_NORTH_TREND,
        nccds=4,
    ),
}
"""legacypipe's thresholds (``psfzpt_cuts.add_psfzpt_cuts``, ``detrend_*_zeropoints``,
``update_ccd_cuts.good_ccd_fraction``) for the three Legacy Surveys cameras."""

MJD_EARLY_DECAM = 56516.0
"""DECam data before this MJD (filter baffles installed, 2013-08-12) get early_decam."""
MJD_MOSAIC_THIRD_PIXEL = 57674.0
"""Mosaic data before this MJD without ``yshift`` get not_third_pix."""
TREND_MJD0 = 56658.5
"""Day 0 of the zeropoint trends (2014-01-01)."""
GOOD_PLVER_PREFIXES = ("V4.8", "V4.9", "V5")
"""PLVERs that pass the plver cut."""


@dataclass(frozen=True)
class CutOptions:
    """The knobs of ``update_ccd_cuts.py`` (defaults are legacypipe's)."""

    bad_expid: Mapping[tuple[int, str | None], str] = field(default_factory=dict)
    """Known bad exposures (expnum, ccdname or None for all CCDs) → reason: badexp_file."""
    max_seeing: float = 3.0
    """Seeing (arcsec) at or above which seeing_bad is set (``--max-seeing``)."""
    phrms_cut: float = 0.1
    """phrms (mag) above which phrms is set (``--phrms-cut``)."""
    exptime_cut: float = 30.0
    """Exposure time (s) below which exptime is set (``--exptime-cut``)."""
    good_ccd_fraction: float = 0.7
    """Fraction of an exposure's CCDs that must be good (``--good-ccd-fraction``)."""
    ccds_per_exposure: int | None = None
    """CCDs of a full exposure; None = the camera's (DECam 62, Mosaic 4, 90Prime 4)."""
    present_ccds_only: bool = False
    """Count an exposure's good fraction over the CCDs its file holds (its rows), not over
    the camera's full count: for surveys whose files hold only part of the focal plane (the
    synthetic survey writes only CCDs that land on its sky)."""
    plver_cut: bool | None = None
    """Apply the plver cut: None = DECam only (see the module docstring)."""
    pixscale: float | None = None
    """arcsec/pixel to turn fwhm into seeing; None = the camera's nominal scale (legacypipe)."""
    binned_pixels: bool = False
    """Take each row's pixel scale from its WCS (CD matrix) for the seeing, and scale the
    per-pixel sky thresholds by the pixel's area over the camera's native pixel: for binned
    images (the synthetic survey's demo binning), whose pixels hold several native ones."""
    omit: frozenset[str] = frozenset()
    """Bit names never set (``--not-griz``, ``--early-decam``, ``--nmatch``, ``--no-zpt-diff``…)."""

    def __post_init__(self) -> None:
        """Reject unknown bit names."""
        unknown = set(self.omit) - set(CCD_CUTS)
        if unknown:
            raise CameraError(f"unknown ccd_cuts bits to omit: {sorted(unknown)}")


def read_bad_expid(path: Path) -> dict[tuple[int, str | None], str]:
    """Read a legacypipe ``<camera>-bad_expid.txt`` (``EXPNUM[-CCD] reason`` lines)."""
    out: dict[tuple[int, str | None], str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputFileError(f"{path}: cannot read bad-exposure list ({err.strerror})") from err
    for line in lines:
        words = line.split()
        if not words or line.startswith("#"):
            continue
        ident, _, ccd = words[0].partition("-")
        if not ident.isdigit():
            log.info("%s: skipping line %r", path, line)
            continue
        out[(int(ident), ccd.strip() or None)] = " ".join(words[1:]) or "unknown"
    return out


def _column(rows: np.ndarray, name: str) -> FloatArray:
    return np.asarray(rows[name], np.float64)


def _strings(rows: np.ndarray, name: str) -> npt.NDArray[np.str_]:
    values = rows[name]
    if values.dtype.kind == "S":
        values = np.char.decode(values, "ascii", "replace")
    return np.char.strip(values.astype(str))


def detrended_zeropoints(rows: np.ndarray, cuts: CameraCuts) -> FloatArray:
    """ccdzpt corrected for airmass and the camera's zeropoint trend with MJD (0 stays 0)."""
    ccdzpt = np.nan_to_num(_column(rows, "ccdzpt"), nan=0.0, posinf=0.0, neginf=0.0)
    out = ccdzpt.copy()
    band = _strings(rows, "filter")
    airmass = _column(rows, "airmass")
    mjd = _column(rows, "mjd_obs")
    for b, k in cuts.airmass_k.items():
        sel = (band == b) & (airmass >= 1.0)
        out[sel] += k * (airmass[sel] - 1.0)
    day = mjd - TREND_MJD0
    for b, (zpt0, segments) in cuts.trend.items():
        in_band = (band == b) & (mjd > 0)
        for d0, d1, z0, z1, c0 in segments:
            sel = in_band & (day >= d0) & (day < d1)
            slope = (z1 - z0) / (d1 - d0)
            out[sel] += zpt0 - (c0 + slope * day[sel])
    out[ccdzpt == 0] = 0.0
    return out


def compute_ccd_cuts(
    rows: np.ndarray, camera: str, options: CutOptions | None = None
) -> npt.NDArray[np.int64]:
    """The ``ccd_cuts`` bits of CCD rows of one camera, as update_ccd_cuts computes them.

    ``rows`` is a structured array with the survey-ccds columns (``ANNOTATED_DTYPE`` or
    ``SURVEY_CCDS_DTYPE``).  Existing ``ccd_cuts`` values are ignored (legacy_zeropoints'
    0x1 placeholder included).  The result is int64.
    """
    opts = options or CutOptions()
    name = camera.strip().lower()
    if name not in CAMERA_CUTS:
        raise CameraError(
            f"no ccd_cuts thresholds for camera {camera!r} (known: decam, mosaic, 90prime)"
        )
    cuts = CAMERA_CUTS[name]
    n = len(rows)
    native = get_camera(name).pixscale
    pixscale: float | npt.NDArray[np.float64] = (
        opts.pixscale if opts.pixscale is not None else native
    )
    area = np.ones(n)
    if opts.binned_pixels:
        det = _column(rows, "cd1_1") * _column(rows, "cd2_2") - _column(rows, "cd1_2") * _column(
            rows, "cd2_1"
        )
        pixscale = 3600.0 * np.sqrt(np.abs(det))
        area = (pixscale / native) ** 2
    band = _strings(rows, "filter")
    ccdname = _strings(rows, "ccdname")
    plver = _strings(rows, "plver")
    expnum = np.asarray(rows["expnum"], np.int64)
    fwhm = _column(rows, "fwhm")
    zpt = np.nan_to_num(_column(rows, "zpt"), nan=0.0, posinf=0.0, neginf=0.0)
    ccdzpt = np.nan_to_num(_column(rows, "ccdzpt"), nan=0.0, posinf=0.0, neginf=0.0)
    ccdphrms = np.where(np.isfinite(_column(rows, "ccdphrms")), _column(rows, "ccdphrms"), 1.0)
    rarms = np.where(np.isfinite(_column(rows, "ccdrarms")), _column(rows, "ccdrarms"), 1.0)
    decrms = np.where(np.isfinite(_column(rows, "ccddecrms")), _column(rows, "ccddecrms"), 1.0)
    phrms = _column(rows, "phrms")
    exptime = _column(rows, "exptime")
    sky = _column(rows, "ccdskycounts")
    mjd = _column(rows, "mjd_obs")
    seeing = np.where(np.isfinite(fwhm), fwhm, 0.0) * pixscale
    detrended = detrended_zeropoints(rows, cuts)
    lo = np.array([cuts.zpt_lo.get(b, 0.0) for b in band], np.float64).reshape(n)
    hi = np.array([cuts.zpt_hi.get(b, 100.0) for b in band], np.float64).reshape(n)
    bright = np.array([cuts.skybright.get(b, 1e6) for b in band], np.float64).reshape(n) * area
    with np.errstate(invalid="ignore"):
        sky_bright = ~np.isfinite(sky) | (sky > bright) | (sky * exptime > 35000.0 * area)
    bad_all = {e for (e, c) in opts.bad_expid if c is None}
    bad_ccd = {(e, c) for (e, c) in opts.bad_expid if c is not None}
    badexp = np.isin(expnum, np.fromiter(bad_all, np.int64, len(bad_all)))
    if bad_ccd:
        badexp |= np.array([(int(e), c) in bad_ccd for e, c in zip(expnum, ccdname, strict=True)])
    plver_cut = opts.plver_cut if opts.plver_cut is not None else name == "decam"
    with np.errstate(invalid="ignore"):
        flags: dict[str, BoolArray] = {
            "not_grz": ~np.isin(band, ["g", "r", "i", "z"]),
            "ccdnmatch": np.asarray(rows["ccdnphotom"]) < 20,
            "zpt_small": detrended < lo,
            "zpt_large": detrended > hi,
            "phrms": phrms > opts.phrms_cut,
            "exptime": exptime < opts.exptime_cut,
            "seeing_bad": ~((seeing > 0) & (seeing < opts.max_seeing)),
            "badexp_file": badexp,
            "radecrms": np.hypot(rarms, decrms) > cuts.radec_rms,
            "sky_is_bright": sky_bright,
            "zpt_diff_avg": np.abs(ccdzpt - zpt) > cuts.zpt_diff_avg,
            "phrms_s7": (ccdphrms > 0.1) & (ccdname == "S7"),
        }
    if plver_cut:
        flags["plver"] = ~np.array([v.startswith(GOOD_PLVER_PREFIXES) for v in plver], bool)
    if name == "mosaic":
        flags["not_third_pix"] = ~np.asarray(rows["yshift"], bool) & (mjd < MJD_MOSAIC_THIRD_PIXEL)
    if name == "decam":
        flags["early_decam"] = mjd < MJD_EARLY_DECAM
    bits = np.zeros(n, np.int64)
    for key, hit in flags.items():
        if key not in opts.omit:
            bits |= np.where(hit, CCD_CUTS[key], 0).astype(np.int64)
    if "too_many_bad_ccds" not in opts.omit:
        nccds = 0 if opts.present_ccds_only else opts.ccds_per_exposure or cuts.nccds
        bits |= _too_many_bad(expnum, bits, nccds, opts, camera)
    return bits


def _too_many_bad(
    expnum: npt.NDArray[np.int64],
    bits: npt.NDArray[np.int64],
    nccds: int,
    opts: CutOptions,
    camera: str,
) -> npt.NDArray[np.int64]:
    """too_many_bad_ccds for rows whose exposure has too few good CCDs.

    ``nccds`` 0 means: the exposure's own rows (``CutOptions.present_ccds_only``).
    """
    if len(expnum) == 0:
        return np.zeros(0, np.int64)
    uniq, inverse = np.unique(expnum, return_inverse=True)
    ngood = np.bincount(inverse, weights=(bits == 0).astype(np.float64), minlength=len(uniq))
    if nccds == 0:
        present = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        bad = (ngood / present) < opts.good_ccd_fraction
        return np.where(bad[inverse], CCD_CUTS["too_many_bad_ccds"], 0).astype(np.int64)
    if np.any(ngood > nccds):
        worst = uniq[ngood > nccds][:5].tolist()
        raise SurveyError(
            f"{camera}: exposures {worst} have more good CCDs than the camera's {nccds}: "
            "duplicated rows in the CCD tables?"
        )
    bad = (ngood / float(nccds)) < opts.good_ccd_fraction
    return np.where(bad[inverse], CCD_CUTS["too_many_bad_ccds"], 0).astype(np.int64)
