"""The lite engine's ``legacy_zeropoints``: calibrate one CP image, CCD by CCD.

For each CCD (HDU) of an ``ooi`` image, with its ``ood`` mask and ``oow`` inverse variance:
sky statistics and a spline sky (``splinesky``), a Moffat PSF fitted to bright isolated Gaia
stars found by ``sep`` and stored as a pixelised PsfEx model (``psfex``), then PSF photometry of
the Gaia stars on the CCD against reference magnitudes in the CCD's band.  The photometric
zeropoint ``ccdzpt`` is the 2.5σ-clipped median of (reference mag − instrumental mag), the
instrumental magnitude being −2.5 log10 of the PSF flux in electrons/s (the CP's image unit), so
it is the AB magnitude of a source giving 1 e-/s, legacypipe's convention.  The outputs are
legacypipe's: ``zpt/<imgdir>/<base>-annotated.fits`` (one row per CCD, ``ANNOTATED_DTYPE``),
``zpt/<imgdir>/<base>-photom.fits`` (one row per fitted star) and per-CCD calibs.

Reference magnitudes: for a synthetic survey (primary header ``LSDRSIM``) the simulator's own
Gaia→grz transform; otherwise legacypipe's Gaia colour polynomials (G plus a polynomial in
BP−RP; DECam's from ``gaiacat.py``, the BASS/MzLS ones recorded there for 90Prime and Mosaic).
Every input is read and every CCD measured before anything is written, so a truncated or
corrupt file raises ``InputFileError`` (naming file and HDU) and leaves no output behind.
See ``docs/zeropoints.md``.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.cameras import CAMERAS, camera_of_image
from lsdr.survey.core.errors import CameraError, InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout, image_relpath
from lsdr.survey.core.refcat import read_gaia
from lsdr.survey.pretractor.ccdschema import ANNOTATED_DTYPE
from lsdr.survey.pretractor.psfex import (
    CalibMeta,
    PsfModel,
    fit_moffat_star,
    galaxy_norm,
    gaussian_psf,
    moffat_alpha,
    moffat_fwhm,
    psf_from_moffat,
    psf_moments,
    psf_norm,
    read_psfex,
    stamp_half_size,
    write_psfex,
)
from lsdr.survey.pretractor.psfex import as_stored as stored_psf
from lsdr.survey.pretractor.splinesky import (
    PERCENTILES,
    SplineSkyModel,
    choose_boxsize,
    fit_spline_sky,
    read_splinesky,
    write_splinesky,
)
from lsdr.survey.pretractor.splinesky import as_stored as stored_sky

FloatArray = npt.NDArray[np.float64]

ENGINE_VERSION = "lsdr-lite-1"
"""Written as ``legpipev`` in calib files."""

NOMINAL_ZP0: dict[tuple[str, str], float] = {
    ("decam", "g"): 25.001,
    ("decam", "r"): 25.209,
    ("decam", "i"): 25.149,
    ("decam", "z"): 24.875,
    ("decam", "Y"): 23.712,
    ("decam", "u"): 23.3205,
    ("mosaic", "z"): 26.552,
    ("90prime", "g"): 26.93,
    ("90prime", "r"): 27.01,
    ("90prime", "z"): 26.552,
}
"""legacypipe's nominal zeropoints, used only for ``ccdskysb`` (as legacypipe does)."""

PHOTCAL_MAG_LIMITS: dict[str, tuple[float, float]] = {
    "u": (16.0, 20.0),
    "g": (16.0, 20.0),
    "r": (16.0, 19.5),
    "i": (16.0, 19.5),
    "z": (16.5, 19.0),
    "Y": (16.5, 19.0),
}
"""legacypipe's reference-magnitude window of the zeropoint stars (``get_photocal_mag_limits``)."""

SYNTHETIC_MAG_LIMITS = (16.0, 20.0)
"""Window for synthetic surveys, whose colour transform is exact: fainter stars still help."""

GAIA_ERROR_FLOOR = {"g": 0.0, "bp": 0.0, "rp": 0.0}
"""Calibration floors (mag) added to Gaia's photon-noise magnitude errors (1.0857/S/N) when the
reference error of a synthetic survey's calibrator is estimated (weights of its zeropoint)."""

MEASUREMENT_ERROR_FLOOR = 0.005
"""Added in quadrature to a star's PSF-fit magnitude error (PSF-model mismatch) for weighting."""

ZPT_CLIP_SIGMA = 3.0
"""Normalised-residual clip of the synthetic survey's weighted zeropoint."""

GAIA_COLOUR_RANGE = (0.5, 3.0)
"""BP−RP range of Gaia photometric calibrators (``get_gaia_calibrator_color_range``)."""

GAIA_POLY: dict[tuple[str, str], tuple[float, ...]] = {
    ("decam", "g"): (
        -0.1178631039, 0.3650113495, 0.5608615360, -0.2850687702, -1.0243473939,
        1.4378375491, 0.0679401731, -1.1713172509, 0.9107811975, -0.3374324004,
        0.0683946390, -0.0073089582, 0.0003230170,
    ),
    ("decam", "r"): (
        0.1139078673, -0.2868955307, 0.0013196434, 0.1029151074, 0.1196710702,
        -0.3729031390, 0.1859874242, 0.1370162451, -0.1808580848, 0.0803219195,
        -0.0180218196, 0.0020584707, -0.0000953486,
    ),
    ("decam", "i"): (
        0.3396481660, -0.6491867119, -0.3330769819, 0.4381097294, 0.5752125977,
        -1.4746570523, 1.2979140762, -0.6371018151, 0.1948940062, -0.0382055596,
        0.0046907449, -0.0003296841, 0.0000101480,
    ),
    ("decam", "z"): (
        0.4811198057, -0.9990015041, 0.1403990019, 0.2150988888, -0.2917655866,
        0.1326831887, -0.0259205004, 0.0018548776,
    ),
    ("90prime", "g"): (
        -0.1299895823, 0.3120393968, 0.5989482686, 0.3125882487, -1.9401592247,
        1.1011670449, 2.0741304659, -3.3930306403, 2.1857291197, -0.7674676232,
        0.1542300648, -0.0167007725, 0.0007573720,
    ),
    ("90prime", "r"): (
        0.0901464643, -0.2463711147, 0.0094963025, -0.1187138789, 0.4131107392,
        -0.1832183301, -0.6015486252, 0.9802538471, -0.6613809948, 0.2426395251,
        -0.0505867727, 0.0056462458, -0.0002625789,
    ),
    ("mosaic", "z"): (
        0.4862049092, -1.0278704657, 0.1220984456, 0.3000129189, -0.3770662617,
        0.1696090596, -0.0331679127, 0.0023867628,
    ),
}  # fmt: skip
"""Gaia → camera band: mag = G + Σ c_k·(BP−RP)^k, colour clipped to [−0.6, 4.1], missing
colours set to 1.4 (legacypipe ``gaiacat.py``; 90Prime/Mosaic from its BASS/MzLS block)."""

MIN_PSF_STARS = 3
"""Fewer well-fitted stars than this: the PSF falls back to the header seeing."""
MAX_PSF_STARS = 60
MAX_FRACMASKED = 0.3
"""Stars with more of their PSF-weighted pixels masked are not used for the zeropoint."""
MAX_REFS = 1000
"""Brightest Gaia stars fitted per CCD (legacypipe's ``maxgaia``)."""
CCDNMATCH_MIN = 20
"""Fewer S/N > 5 stars than this is legacypipe's ``ccdnmatch`` cut: counted in ``n_no_stars``."""
DQ_IGNORED = (7, 8)
FITS_BLOCK = 2880
"""Every FITS file is a whole number of 2880-byte blocks."""
"""CP data-quality codes legacypipe ignores for Mosaic and 90Prime (diff-detect, streak)."""


# ----------------------------------------------------------------------------------------------
# Public results


@dataclass(frozen=True)
class ZeropointOutputs:
    """What ``measure_image`` wrote for one image."""

    image: str
    annotated: Path
    photom: Path
    calibs: tuple[Path, ...]
    n_ccds: int
    n_no_stars: int
    made_calibs: bool


# ----------------------------------------------------------------------------------------------
# Exposure metadata


@dataclass(frozen=True)
class ExposureInfo:
    """Primary-header facts of one CP exposure, read as legacypipe reads them."""

    camera: str
    expnum: int
    band: str
    exptime: float
    mjd_obs: float
    airmass: float
    ra_bore: float
    dec_bore: float
    plver: str
    plprocid: str
    procdate: str
    propid: str
    object: str
    synthetic: bool
    header: dict[str, Any] = field(default_factory=dict)


def _sexagesimal(text: object, hours: bool) -> float:
    """Degrees from 'HH:MM:SS.s' (hours) or '±DD:MM:SS'; NaN when unparseable."""
    if isinstance(text, int | float):
        return float(text) * (15.0 if hours else 1.0)
    try:
        parts = str(text).strip().split(":")
        sign = -1.0 if parts[0].strip().startswith("-") else 1.0
        d = abs(float(parts[0])) + float(parts[1]) / 60 + float(parts[2]) / 3600
    except (IndexError, ValueError):
        return math.nan
    return sign * d * (15.0 if hours else 1.0)


def _float(value: object, default: float = math.nan) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _camera(path: Path, header: dict[str, Any]) -> str:
    try:
        return camera_of_image(path.name).name
    except CameraError:
        name = str(header.get("INSTRUME", "")).strip().lower()
        name = {"mosaic3": "mosaic"}.get(name, name)
        if name in CAMERAS:
            return name
        raise


def _expnum(camera: str, header: dict[str, Any], path: Path) -> int:
    value = header.get("EXPNUM")
    if camera != "90prime" and value not in (None, ""):
        return int(value)
    if camera == "90prime" and header.get("DTACQNAM"):
        base = Path(str(header["DTACQNAM"]).strip()).name.replace(".fits", "").replace(".fz", "")
        digits = re.sub(r"([a-z]+|\.+)", "", base)
        if digits.isdigit():
            return int(digits)
    obsid = str(header.get("OBSID", "")).strip()
    if "." in obsid:
        stamp = obsid.split(".")[1].replace("T", "")
        if stamp[2:].isdigit():
            return int(stamp[2:])
    raise InputFileError(f"{path}: no exposure number (EXPNUM, DTACQNAM or OBSID) in HDU 0")


def _band(camera: str, header: dict[str, Any], path: Path) -> str:
    words = str(header.get("FILTER", "")).split()
    if not words:
        raise InputFileError(f"{path}: no FILTER in HDU 0")
    return {"zd": "z", "bokr": "r"}.get(words[0], words[0])


def read_exposure_info(path: Path) -> ExposureInfo:
    """Camera, exposure number, band, exposure time, … from an image's primary header."""
    import fitsio

    try:
        hdr = fitsio.read_header(str(path), ext=0)
    except OSError as err:
        raise InputFileError(f"{path} HDU 0: cannot read primary header ({err})") from err
    header = {
        r["name"]: r["value"] for r in hdr.records() if r["name"] not in ("COMMENT", "HISTORY", "")
    }
    camera = _camera(path, header)
    exptime = _float(header.get("EXPTIME"), 0.0)
    if exptime <= 0:
        raise InputFileError(f"{path} HDU 0: EXPTIME {header.get('EXPTIME')!r} is not positive")
    return ExposureInfo(
        camera=camera,
        expnum=_expnum(camera, header, path),
        band=_band(camera, header, path),
        exptime=exptime,
        mjd_obs=_float(header.get("MJD-OBS"), 0.0),
        airmass=_float(header.get("AIRMASS"), 0.0),
        ra_bore=_sexagesimal(header.get("RA"), hours=True),
        dec_bore=_sexagesimal(header.get("DEC"), hours=False),
        plver=str(header.get("PLVER", "V0.0")).strip(),
        plprocid=str(header.get("PLPROCID", "xxx")).strip(),
        procdate=str(header.get("DATE", "xxx")).strip(),
        propid=str(header.get("PROPID", "")).strip(),
        object=str(header.get("OBJECT", "")).strip(),
        synthetic=bool(header.get("LSDRSIM", False)),
        header=header,
    )


# ----------------------------------------------------------------------------------------------
# Reading the three planes of a CCD


@dataclass(frozen=True)
class CcdHdu:
    """One CCD of an image: its HDU number and name."""

    hdu: int
    ccdname: str


def list_ccds(path: Path) -> list[CcdHdu]:
    """The image HDUs of a CP file (extensions with data; the primary if it is the image).

    A file whose size is not a whole number of FITS blocks is truncated.
    """
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            nhdu = len(fits)
            nextend = fits[0].read_header().get("NEXTEND")
            ccds = []
            for i in range(1, nhdu):
                if fits[i].get_exttype() != "IMAGE_HDU" and not fits[i].is_compressed():
                    continue
                name = fits[i].get_extname().strip().upper() or f"HDU{i}"
                ccds.append(CcdHdu(i, name))
            if not ccds and fits[0].has_data():
                ccds.append(CcdHdu(0, "HDU0"))
    except OSError as err:
        raise InputFileError(f"{path}: cannot open ({err}); re-transfer the file") from err
    size = path.stat().st_size
    if size % FITS_BLOCK:
        last = ccds[-1] if ccds else CcdHdu(nhdu - 1, f"HDU{nhdu - 1}")
        raise InputFileError(
            f"{path} HDU {last.hdu} ({last.ccdname}): truncated data (file size {size} is not a "
            f"whole number of {FITS_BLOCK}-byte FITS blocks; primary NEXTEND = {nextend}, "
            f"{nhdu - 1} extensions found); re-transfer the file"
        )
    if not ccds:
        raise InputFileError(f"{path}: no image HDU")
    return ccds


@dataclass
class CcdPlanes:
    """Image (e-/s), data-quality mask and inverse variance of one CCD, with the image header."""

    image: npt.NDArray[np.float32]
    dq: npt.NDArray[np.int32]
    ivar: npt.NDArray[np.float32]
    header: dict[str, Any]


def _read_hdu(path: Path, ccd: CcdHdu, header: bool = False) -> tuple[np.ndarray, Any]:
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            if ccd.hdu >= len(fits):
                raise OSError("extension missing")
            hdu = fits[ccd.hdu]
            data = hdu.read()
            hdr = hdu.read_header() if header else None
    except OSError as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(
            f"{path} HDU {ccd.hdu} ({ccd.ccdname}): truncated or corrupt data ({reason}); "
            "re-transfer the file"
        ) from err
    if data is None or np.ndim(data) != 2:
        raise InputFileError(f"{path} HDU {ccd.hdu} ({ccd.ccdname}): no 2-d image data")
    return data, hdr


def read_planes(layout: ReleaseLayout, image: str, ccd: CcdHdu) -> CcdPlanes:
    """Read ooi, ood and oow of one CCD; shapes must agree."""
    ooi = layout.image(image)
    ood = layout.image_companion(image, "ood")
    oow = layout.image_companion(image, "oow")
    img, hdr = _read_hdu(ooi, ccd, header=True)
    dq, _ = _read_hdu(ood, ccd)
    iv, _ = _read_hdu(oow, ccd)
    for path, arr in ((ood, dq), (oow, iv)):
        if arr.shape != img.shape:
            raise InputFileError(
                f"{path} HDU {ccd.hdu} ({ccd.ccdname}): shape {arr.shape} differs from the "
                f"image's {img.shape}"
            )
    skip = {"XTENSION", "BITPIX", "PCOUNT", "GCOUNT", "TFIELDS", "COMMENT", "HISTORY", ""}
    header = {
        k: hdr[k]
        for k in [r["name"] for r in hdr.records()]
        if k
        and k not in skip
        and not k.startswith(("ZTILE", "ZNAME", "ZVAL", "TTYPE", "TFORM"))
        and k not in ("ZIMAGE", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE", "ZQUANTIZ")
        and not k.startswith("NAXIS")
    }
    return CcdPlanes(
        image=np.asarray(img, np.float32),
        dq=np.asarray(dq, np.int32),
        ivar=np.asarray(iv, np.float32),
        header=header,
    )


def ccd_wcs(header: dict[str, Any], shape: tuple[int, int]) -> Any:
    """The CCD's WCS (TAN or TPV) as an astropy WCS."""
    import warnings

    from astropy.io import fits as afits
    from astropy.wcs import WCS, FITSFixedWarning

    hdr = afits.Header()
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = shape[1]
    hdr["NAXIS2"] = shape[0]
    for key, value in header.items():
        if key.startswith(("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_", "PV", "CUNIT", "RADESYS",
                           "EQUINOX", "LONPOLE", "LATPOLE")):  # fmt: skip
            hdr[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(hdr)


# ----------------------------------------------------------------------------------------------
# Reference magnitudes


def reference_mags(
    info: ExposureInfo, gaia: npt.NDArray[np.void]
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Reference magnitude of each Gaia star in the exposure's band, and calibrator flags."""
    g = np.nan_to_num(gaia["phot_g_mean_mag"].astype(np.float64))
    bp = np.nan_to_num(gaia["phot_bp_mean_mag"].astype(np.float64))
    rp = np.nan_to_num(gaia["phot_rp_mean_mag"].astype(np.float64))
    has = (g != 0) & (bp != 0) & (rp != 0)
    if info.synthetic:
        from lsdr.survey.simulate import grz_from_gaia

        index = {"g": 0, "r": 1, "z": 2}.get(info.band)
        if index is None:
            return np.zeros(len(gaia)), np.zeros(len(gaia), bool)
        return grz_from_gaia(bp, g, rp)[index], has
    coeffs = GAIA_POLY.get((info.camera, info.band))
    if coeffs is None:
        return np.zeros(len(gaia)), np.zeros(len(gaia), bool)
    colour = bp - rp
    colour = np.where(has, colour, 1.4)
    cc = np.clip(colour, -0.6, 4.1)
    mag = g + np.polynomial.polynomial.polyval(cc, np.array(coeffs))
    ok = has & (colour > GAIA_COLOUR_RANGE[0]) & (colour < GAIA_COLOUR_RANGE[1])
    return np.where(g != 0, mag, 30.0), ok


def reference_mag_errors(info: ExposureInfo, gaia: npt.NDArray[np.void]) -> FloatArray:
    """1σ error (mag) of each star's reference magnitude, from Gaia's flux S/N plus floors.

    Propagated through the band's transform: the synthetic inverse matrix (whose large
    coefficients amplify BP/RP errors ×2–3) or legacypipe's G + poly(BP−RP).
    """
    errs = []
    for b in ("bp", "g", "rp"):
        snr = np.nan_to_num(gaia[f"phot_{b}_mean_flux_over_error"].astype(np.float64))
        errs.append(2.5 / np.log(10.0) / np.fmax(snr, 1.0) + GAIA_ERROR_FLOOR[b])
    e_bp, e_g, e_rp = errs
    if info.synthetic:
        from lsdr.survey.simulate import SYNTHETIC_GAIA_MATRIX

        index = {"g": 0, "r": 1, "z": 2}.get(info.band, 0)
        row = np.linalg.inv(SYNTHETIC_GAIA_MATRIX)[index]
        var = (row[0] * e_bp) ** 2 + (row[1] * e_g) ** 2 + (row[2] * e_rp) ** 2
        return np.asarray(np.sqrt(var))
    coeffs = np.array(GAIA_POLY.get((info.camera, info.band), (0.0,)))
    colour = np.nan_to_num(gaia["phot_bp_mean_mag"].astype(np.float64)) - np.nan_to_num(
        gaia["phot_rp_mean_mag"].astype(np.float64)
    )
    slope = np.polynomial.polynomial.polyval(
        np.clip(colour, -0.6, 4.1), np.polynomial.polynomial.polyder(coeffs)
    )
    return np.asarray(np.sqrt(e_g**2 + slope**2 * (e_bp**2 + e_rp**2)))


# ----------------------------------------------------------------------------------------------
# Per-CCD measurement


@dataclass
class CcdResult:
    """Everything measured on one CCD, ready to write."""

    ccd: CcdHdu
    row: npt.NDArray[np.void]
    photom: npt.NDArray[np.void] | None
    meta: CalibMeta
    psf: PsfModel | None
    sky: SplineSkyModel | None
    psf_source: Path | None
    sky_source: Path | None
    no_stars: bool


def _sigma_clip(values: FloatArray, low: float, high: float, iters: int = 20) -> FloatArray:
    """Iterative sigma clipping around the mean (as ``scipy.stats.sigmaclip``)."""
    out = np.asarray(values, np.float64)
    for _ in range(iters):
        if len(out) == 0:
            break
        mean, std = out.mean(), out.std()
        keep = (out >= mean - low * std) & (out <= mean + high * std)
        if keep.all():
            break
        out = out[keep]
    return out


def _clip_bounds(values: FloatArray, low: float, high: float) -> tuple[FloatArray, float, float]:
    """Clipped values and the final bounds (``scipy.stats.sigmaclip``'s return)."""
    clipped = _sigma_clip(values, low, high)
    if len(clipped) == 0:
        return clipped, -np.inf, np.inf
    mean, std = clipped.mean(), clipped.std()
    return clipped, float(mean - low * std), float(mean + high * std)


def weighted_zeropoint(
    dmag: FloatArray, sigma: FloatArray, nsigma: float = ZPT_CLIP_SIGMA
) -> tuple[float, npt.NDArray[np.bool_]]:
    """Inverse-variance weighted mean of ``dmag`` with iterative clipping of outliers.

    Residuals are normalised by each star's ``sigma`` and clipped at ``nsigma`` times their
    robust scale (at least 1, so underestimated errors do not clip good stars), starting from
    the median; returns the zeropoint and which stars were kept.
    """
    keep = np.ones(len(dmag), bool)
    centre = float(np.median(dmag))
    for _ in range(20):
        chi = (dmag - centre) / sigma
        scale = max(1.0, 1.4826 * float(np.median(np.abs(chi[keep]))))
        new = np.abs(chi) <= nsigma * scale
        if not new.any():
            break
        w = 1.0 / sigma[new] ** 2
        centre = float(np.sum(w * dmag[new]) / np.sum(w))
        if np.array_equal(new, keep):
            break
        keep = new
    return centre, keep


def _sample(values: npt.NDArray[np.floating], limit: int = 200_000) -> FloatArray:
    step = max(1, len(values) // limit)
    return np.asarray(values[::step], np.float64)


def measure_sky(
    img: npt.NDArray[np.float32], good: npt.NDArray[np.bool_], ivar: npt.NDArray[np.float32]
) -> tuple[SplineSkyModel, npt.NDArray[np.float32], dict[str, float]]:
    """Sky statistics and the spline sky (legacypipe's two-pass masking); image units."""
    from scipy.ndimage import binary_dilation, uniform_filter

    pix = _sample(img[good])
    sig1 = float(1.0 / np.sqrt(np.median(ivar[good])))
    sky_med = float(np.median(pix))
    cmed = float(np.median(_sigma_clip(pix, 2.0, 2.0)))
    boxsize = choose_boxsize(img.shape)
    boxcar = 5
    first = fit_spline_sky(img, good, cmed, boxsize)
    resid = img - first.image(img.shape)
    masked = np.abs(uniform_filter(resid, size=boxcar, mode="constant")) > 3.0 * sig1 / boxcar
    masked = binary_dilation(masked, iterations=3)
    good2 = good & ~masked
    if good2.sum() > 100:
        sky_john = float(np.median(_sigma_clip(_sample(img[good2]), 2.0, 2.0)))
    else:
        good2 = good
        sky_john = cmed
    model = fit_spline_sky(img, good2, sky_john, boxsize)
    sky_img = model.image(img.shape)
    diff = _sample((img - sky_img)[good2])
    pcts = np.percentile(diff, PERCENTILES) if len(diff) else np.zeros(len(PERCENTILES))
    clipped = _sigma_clip(pix, 2.0, 2.0)
    stats = {
        "sig1": sig1,
        "sky_mode": float(3.0 * np.median(clipped) - 2.0 * np.mean(clipped)),
        "sky_med": sky_med,
        "sky_cmed": cmed,
        "sky_john": sky_john,
        "sky_fmasked": float(1.0 - good2.sum() / good2.size),
    }
    stats.update({f"sky_p{p}": float(v) for p, v in zip(PERCENTILES, pcts, strict=True)})
    model = SplineSkyModel(model.xgrid, model.ygrid, model.gridvals, stats=stats)
    return model, sky_img, stats


def _header_fwhm(header: dict[str, Any], primary: dict[str, Any], pixscale: float) -> float:
    for key in ("FWHM", "SEEINGP1"):
        value = _float(header.get(key), 0.0)
        if value > 0:
            return value
    seeing = _float(primary.get("SEEING"), 0.0)
    return seeing / pixscale if seeing > 0 and pixscale > 0 else 1.3 / max(pixscale, 0.1)


def _stamp(arr: np.ndarray, xi: int, yi: int, half: int) -> np.ndarray:
    return arr[yi - half : yi + half + 1, xi - half : xi + half + 1]


def fit_psf(
    sub: npt.NDArray[np.float32],
    ivar: npt.NDArray[np.float32],
    bad: npt.NDArray[np.bool_],
    sig1: float,
    ref_xy: tuple[FloatArray, FloatArray],
    fwhm_guess: float,
) -> PsfModel:
    """A Moffat PSF from bright isolated unmasked stars found by sep near Gaia positions."""
    import sep

    h, w = sub.shape
    data = np.ascontiguousarray(sub, dtype=np.float32)
    mask = np.ascontiguousarray(bad)
    try:
        objs = sep.extract(data, 10.0, err=sig1, mask=mask, minarea=5, deblend_cont=1.0)
    except Exception:  # sep raises bare Exceptions on pathological images
        objs = np.zeros(0, dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8"), ("flag", "i4")])
    half_fit = int(max(4, math.ceil(2.5 * fwhm_guess)))
    half_psf = stamp_half_size(fwhm_guess)
    fits: list[tuple[float, float, float]] = []
    n_loaded = 0
    if len(objs):
        ox, oy = np.asarray(objs["x"], np.float64), np.asarray(objs["y"], np.float64)
        rx, ry = ref_xy
        near_ref = np.zeros(len(objs), bool)
        if len(rx):
            from scipy.spatial import cKDTree

            dist, _ = cKDTree(np.c_[rx, ry]).query(np.c_[ox, oy])
            near_ref = dist < 1.5
        from scipy.spatial import cKDTree

        tree = cKDTree(np.c_[ox, oy])
        counts = np.array([len(n) for n in tree.query_ball_point(np.c_[ox, oy], 2.0 * half_fit)])
        isolated = counts == 1
        inside = (
            (ox > half_psf + 1)
            & (ox < w - half_psf - 2)
            & (oy > half_psf + 1)
            & (oy < h - half_psf - 2)
        )
        ok = (objs["flag"] == 0) & isolated & inside & near_ref
        order = np.argsort(-objs["flux"])
        for i in order:
            if not ok[i] or len(fits) >= MAX_PSF_STARS:
                continue
            xi, yi = round(ox[i]), round(oy[i])
            if _stamp(bad, xi, yi, half_fit).any():
                continue
            n_loaded += 1
            star = fit_moffat_star(
                _stamp(data, xi, yi, half_fit).astype(np.float64),
                _stamp(ivar, xi, yi, half_fit).astype(np.float64),
                ox[i] - xi,
                oy[i] - yi,
                fwhm_guess,
            )
            if star.ok and star.flux > 50.0 * sig1:
                fits.append((moffat_fwhm(star.alpha, star.beta), star.beta, star.flux))
    if len(fits) >= MIN_PSF_STARS:
        arr = np.array(fits)
        fwhm = float(np.median(arr[:, 0]))
        beta = float(np.median(arr[:, 1]))
        keep = np.abs(arr[:, 0] / fwhm - 1.0) < 0.2
        if keep.sum() >= MIN_PSF_STARS:
            fwhm = float(np.median(arr[keep, 0]))
            beta = float(np.median(arr[keep, 1]))
        half = stamp_half_size(fwhm)
        model = psf_from_moffat(moffat_alpha(fwhm, beta), beta, half, n_loaded, int(keep.sum()))
        return model
    beta = 3.5
    return psf_from_moffat(moffat_alpha(fwhm_guess, beta), beta, half_psf, n_loaded, 0)


def _moffat_pixels(alpha: float, beta: float, half: int, dx: float, dy: float) -> FloatArray:
    from lsdr.survey.pretractor.psfex import _subpixel_offsets

    grid = _subpixel_offsets(half)
    gx = (grid - dx)[None, :]
    gy = (grid - dy)[:, None]
    values = (1.0 + (gx * gx + gy * gy) / (alpha * alpha)) ** (-beta)
    n = 2 * half + 1
    k = len(grid) // n
    return np.asarray(values.reshape(n, k, n, k).mean(axis=(1, 3)), np.float64)


@dataclass
class StarPhot:
    """PSF photometry of one reference star (0-based pixel coordinates)."""

    x_fit: float
    y_fit: float
    flux: float
    dflux: float
    dx: float
    dy: float
    chi2: float
    fracmasked: float


def fit_star_flux(
    sub: npt.NDArray[np.float32],
    ivar: npt.NDArray[np.float32],
    x: float,
    y: float,
    psf: PsfModel,
    radius: int,
) -> StarPhot | None:
    """Fit flux and position of a point source near (x, y) with the (Moffat) PSF model."""
    from scipy.optimize import least_squares

    h, w = sub.shape
    xi, yi = round(x), round(y)
    if xi - radius < 0 or yi - radius < 0 or xi + radius >= w or yi + radius >= h:
        return None
    data = _stamp(sub, xi, yi, radius).astype(np.float64)
    wt = _stamp(ivar, xi, yi, radius).astype(np.float64)
    if not np.any(wt > 0):
        return None
    sw = np.sqrt(wt).ravel()
    alpha, beta = psf.moffat_alpha, psf.moffat_beta
    half = psf.shape[0] // 2
    norm = float(_moffat_pixels(alpha, beta, half, 0.0, 0.0).sum())

    def model(p: FloatArray) -> FloatArray:
        return np.asarray(p[0] * _moffat_pixels(alpha, beta, radius, p[1], p[2]) / norm)

    def resid(p: FloatArray) -> FloatArray:
        return np.asarray((data.ravel() - model(p).ravel()) * sw, np.float64)

    p0 = _moffat_pixels(alpha, beta, radius, x - xi, y - yi) / norm
    flux0 = float(np.sum(wt * p0 * data) / max(np.sum(wt * p0 * p0), 1e-30))
    start = np.array([max(flux0, 1e-3), x - xi, y - yi])
    lower = np.array([-np.inf, x - xi - 1.5, y - yi - 1.5])
    upper = np.array([np.inf, x - xi + 1.5, y - yi + 1.5])
    try:
        res = least_squares(resid, start, bounds=(lower, upper), x_scale="jac", max_nfev=50)
    except (ValueError, np.linalg.LinAlgError):
        return None
    jac = res.jac
    try:
        cov = np.linalg.inv(jac.T @ jac)
        err = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        err = np.full(3, np.nan)
    mod = model(res.x)
    prof = mod / mod.sum() if mod.sum() != 0 else mod
    chi = (data - mod) * np.sqrt(wt)
    return StarPhot(
        x_fit=float(xi + res.x[1]),
        y_fit=float(yi + res.x[2]),
        flux=float(res.x[0]),
        dflux=float(err[0]),
        dx=float(err[1]),
        dy=float(err[2]),
        chi2=float(np.sum(chi**2 * prof)),
        fracmasked=float(np.sum(prof * (wt == 0))),
    )


PHOTOM_DTYPE = np.dtype(
    [
        ("ra", ">f8"),
        ("dec", ">f8"),
        ("flux", ">f4"),
        ("dflux", ">f4"),
        ("chi2", ">f4"),
        ("fracmasked", ">f4"),
        ("instpsfmag", ">f4"),
        ("dpsfmag", ">f4"),
        ("used_for_photzpt", "?"),
        ("bitmask", ">i2"),
        ("x_fit", ">f4"),
        ("y_fit", ">f4"),
        ("gaia_sourceid", ">i8"),
        ("ra_gaia", ">f8"),
        ("dec_gaia", ">f8"),
        ("phot_g_mean_mag", ">f4"),
        ("phot_bp_mean_mag", ">f4"),
        ("phot_rp_mean_mag", ">f4"),
        ("phot_g_mean_mag_error", ">f4"),
        ("phot_bp_mean_mag_error", ">f4"),
        ("phot_rp_mean_mag_error", ">f4"),
        ("legacy_survey_mag", ">f4"),
        ("psfmag", ">f4"),
        ("expnum", ">i8"),
        ("ccdname", "S5"),
        ("exptime", ">f4"),
        ("gain", ">f4"),
        ("airmass", ">f4"),
        ("filter", "S1"),
        ("apflux_6", ">f4"),
        ("apflux_7", ">f4"),
        ("apflux_8", ">f4"),
        ("apflux_6_err", ">f4"),
        ("apflux_7_err", ">f4"),
        ("apflux_8_err", ">f4"),
        ("ra_now", ">f8"),
        ("dec_now", ">f8"),
        ("ra_fit", ">f8"),
        ("dec_fit", ">f8"),
        ("x_ref", ">f4"),
        ("y_ref", ">f4"),
        ("dx", ">f4"),
        ("dy", ">f4"),
    ]
)
"""legacy_zeropoints' per-star columns (Gaia-photometry path).  ``flux``/``dflux``/``apflux_*``
are electrons (image × exptime), ``instpsfmag`` = −2.5 log10(flux/exptime), x/y 0-based."""


@dataclass(frozen=True)
class CalibSources:
    """Where a CCD's existing calibs are (None: to be made)."""

    psf: Path | None
    sky: Path | None


def _existing_calib(
    kind: str, paths: list[Path], info: ExposureInfo, ccdname: str
) -> tuple[Path, PsfModel | SplineSkyModel] | None:
    for path in paths:
        if not path.exists():
            continue
        try:
            model: PsfModel | SplineSkyModel
            if kind == "psf":
                model = read_psfex(path, info.expnum, ccdname)
            else:
                model = read_splinesky(path, info.expnum, ccdname)
        except InputFileError:
            continue
        if not _provenance_ok(path, info):
            continue
        return path, model
    return None


def _provenance_ok(path: Path, info: ExposureInfo) -> bool:
    """legacypipe's calib validation: PLVER and PLPROCID of the rows match the image's."""
    from lsdr.survey.pretractor.psfex import read_calib_provenance

    rows = read_calib_provenance(path)
    return all(
        plver.startswith(info.plver[: len(plver)]) and plprocid == info.plprocid
        for expnum, _, plver, plprocid in rows
        if expnum == info.expnum
    )


def measure_ccd(
    layout: ReleaseLayout,
    image: str,
    info: ExposureInfo,
    ccd: CcdHdu,
    gaia: npt.NDArray[np.void],
    run_calibs: bool,
) -> CcdResult:
    """Measure one CCD: sky, PSF, photometry, astrometric offsets; nothing is written here."""
    planes = read_planes(layout, image, ccd)
    ccdname = ccd.ccdname
    img, dq, ivar = planes.image, planes.dq, planes.ivar
    h, w = img.shape
    meta = CalibMeta(
        expnum=info.expnum,
        ccdname=ccdname,
        plver=info.plver,
        plprocid=info.plprocid,
        procdate=info.procdate,
        imgdsum=str(planes.header.get("DATASUM", "0")).strip() or "0",
        legpipev=ENGINE_VERSION,
    )
    wcs = ccd_wcs(planes.header, img.shape)
    bad = ((dq != 0) & ~np.isin(dq, DQ_IGNORED)) | (ivar <= 0) | ~np.isfinite(img)
    good = ~bad
    ivar = np.where(good, ivar, np.float32(0.0)).astype(np.float32)
    img = np.where(np.isfinite(img), img, np.float32(0.0)).astype(np.float32)

    row = np.zeros(1, ANNOTATED_DTYPE)[0]
    _fill_metadata(row, image, info, ccd, planes.header, wcs, (h, w))

    psf_paths = [layout.psfex_single(image, ccdname), layout.psfex_merged(image)]
    sky_paths = [layout.sky_single(image, ccdname), layout.sky_merged(image)]
    found_psf = _existing_calib("psf", psf_paths, info, ccdname)
    found_sky = _existing_calib("sky", sky_paths, info, ccdname)
    if not run_calibs:
        for found, kind, paths in ((found_psf, "PsfEx", psf_paths), (found_sky, "sky", sky_paths)):
            if found is None:
                raise InputFileError(
                    f"{paths[0]}: no {kind} calib for {image} {ccdname} (nor in {paths[1]}) "
                    "and calibs are not to be made"
                )

    if good.sum() == 0:
        return CcdResult(ccd, row[None], None, meta, None, None, None, None, True)

    pixscale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600.0)
    sig1_img = float(1.0 / np.sqrt(np.median(ivar[good])))
    pix = _sample(img[good])
    clipped = _sigma_clip(pix, 3.0, 3.0)
    skymed, skyrms = float(np.median(clipped)), float(np.std(clipped))

    if found_sky is not None:
        sky_source: Path | None = found_sky[0]
        sky = found_sky[1]
        assert isinstance(sky, SplineSkyModel)
        sky_img = sky.image(img.shape)
    else:
        sky_source = None
        sky = stored_sky(measure_sky(img, good, ivar)[0], meta)
        sky_img = sky.image(img.shape)
    sub = (img - sky_img).astype(np.float32)

    # Reference stars on this CCD, moved to the epoch of the exposure.
    ra_now, dec_now, in_ccd = _refs_on_ccd(gaia, wcs, info.mjd_obs, (h, w))
    refs = gaia[in_ccd]
    ra_now, dec_now = ra_now[in_ccd], dec_now[in_ccd]
    if len(refs) > MAX_REFS:
        g = refs["phot_g_mean_mag"]
        order = np.argsort(np.where(g > 0, g, 99.0))[:MAX_REFS]
        refs, ra_now, dec_now = refs[order], ra_now[order], dec_now[order]
    xr, yr = wcs.all_world2pix(ra_now, dec_now, 0) if len(refs) else (np.zeros(0), np.zeros(0))
    xr, yr = np.asarray(xr, np.float64), np.asarray(yr, np.float64)

    fwhm_guess = _header_fwhm(planes.header, info.header, pixscale)
    if found_psf is not None:
        psf_source: Path | None = found_psf[0]
        psf = found_psf[1]
        assert isinstance(psf, PsfModel)
        if psf.moffat_alpha <= 0 or psf.moffat_beta <= 0:
            beta = 3.5
            psf = PsfModel(
                bases=psf.bases,
                degree=psf.degree,
                polzero=psf.polzero,
                polscal=psf.polscal,
                fwhm=psf.fwhm,
                moffat_alpha=moffat_alpha(psf.fwhm or fwhm_guess, beta),
                moffat_beta=beta,
            )
    else:
        psf_source = None
        psf = stored_psf(fit_psf(sub, ivar, bad, sig1_img, (xr, yr), fwhm_guess), meta)

    phot, zpt_stats = _photometry(
        sub, ivar, dq, psf, info, refs, ra_now, dec_now, xr, yr, wcs, pixscale, ccdname
    )
    _fill_measurements(row, info, psf, sky, sig1_img, skymed, skyrms, pixscale, zpt_stats, (h, w))
    if row["annotated"]:
        _fill_geometry(row, wcs, (h, w))
    no_stars = int(zpt_stats["nphotom"]) < CCDNMATCH_MIN or zpt_stats["zpt"] == 0.0
    return CcdResult(ccd, row[None], phot, meta, psf, sky, psf_source, sky_source, no_stars)


def _refs_on_ccd(
    gaia: npt.NDArray[np.void], wcs: Any, mjd: float, shape: tuple[int, int]
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Gaia positions at the exposure's epoch (proper motion only) and which fall on the CCD."""
    if len(gaia) == 0:
        z = np.zeros(0)
        return z, z, np.zeros(0, bool)
    years = (mjd - 51_544.5) / 365.25 + 2000.0 - gaia["ref_epoch"].astype(np.float64)
    pmra = np.nan_to_num(gaia["pmra"].astype(np.float64))
    pmdec = np.nan_to_num(gaia["pmdec"].astype(np.float64))
    dec = gaia["dec"] + pmdec * years / 3.6e6
    ra = gaia["ra"] + pmra * years / 3.6e6 / np.cos(np.radians(gaia["dec"]))
    x, y = wcs.all_world2pix(ra, dec, 0)
    h, w = shape
    inside = (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
    return np.asarray(ra, np.float64), np.asarray(dec, np.float64), np.asarray(inside, bool)


def _photometry(
    sub: npt.NDArray[np.float32],
    ivar: npt.NDArray[np.float32],
    dq: npt.NDArray[np.int32],
    psf: PsfModel,
    info: ExposureInfo,
    refs: npt.NDArray[np.void],
    ra_now: FloatArray,
    dec_now: FloatArray,
    xr: FloatArray,
    yr: FloatArray,
    wcs: Any,
    pixscale: float,
    ccdname: str,
) -> tuple[npt.NDArray[np.void] | None, dict[str, float]]:
    """PSF photometry of the reference stars; zeropoint and astrometric offsets of the CCD."""
    stats = {
        "zpt": 0.0,
        "phrms": 0.0,
        "raoff": 0.0,
        "decoff": 0.0,
        "rarms": 0.0,
        "decrms": 0.0,
        "nphotom": 0.0,
        "nastrom": 0.0,
        "nused": 0.0,
    }
    if len(refs) == 0:
        return None, stats
    radius = int(max(5, math.ceil(3.0 * psf.fwhm)))
    fits: list[tuple[int, StarPhot]] = []
    for i in range(len(refs)):
        res = fit_star_flux(sub, ivar, float(xr[i]), float(yr[i]), psf, radius)
        if res is not None:
            fits.append((i, res))
    if not fits:
        return None, stats
    idx = np.array([i for i, _ in fits])
    sp = [s for _, s in fits]
    refs, ra_now, dec_now = refs[idx], ra_now[idx], dec_now[idx]
    n = len(sp)
    phot = np.zeros(n, PHOTOM_DTYPE)
    t = info.exptime
    flux = np.array([s.flux for s in sp])
    dflux = np.array([s.dflux for s in sp])
    xf = np.array([s.x_fit for s in sp])
    yf = np.array([s.y_fit for s in sp])
    ra_fit, dec_fit = wcs.all_pix2world(xf, yf, 0)
    phot["ra_fit"], phot["dec_fit"] = ra_fit, dec_fit
    phot["x_fit"], phot["y_fit"] = xf, yf
    phot["x_ref"], phot["y_ref"] = xr[idx], yr[idx]
    phot["dx"] = [s.dx for s in sp]
    phot["dy"] = [s.dy for s in sp]
    phot["chi2"] = [s.chi2 for s in sp]
    phot["fracmasked"] = [s.fracmasked for s in sp]
    phot["flux"] = flux * t
    phot["dflux"] = dflux * t
    ok = flux > 0
    inst = np.zeros(n)
    inst[ok] = -2.5 * np.log10(flux[ok])
    phot["instpsfmag"] = inst
    dmagerr = np.zeros(n)
    dmagerr[ok] = np.abs(2.5 / np.log(10.0) * dflux[ok] / flux[ok])
    phot["dpsfmag"] = dmagerr
    hh, ww = dq.shape
    phot["bitmask"] = dq[
        np.clip(np.round(yf), 0, hh - 1).astype(int), np.clip(np.round(xf), 0, ww - 1).astype(int)
    ]
    for col in ("source_id", "ra", "dec"):
        target = {"source_id": "gaia_sourceid", "ra": "ra_gaia", "dec": "dec_gaia"}[col]
        phot[target] = refs[col]
    phot["ra"], phot["dec"] = refs["ra"], refs["dec"]
    for b in ("g", "bp", "rp"):
        phot[f"phot_{b}_mean_mag"] = np.nan_to_num(refs[f"phot_{b}_mean_mag"])
        sn = np.nan_to_num(refs[f"phot_{b}_mean_flux_over_error"].astype(np.float64))
        phot[f"phot_{b}_mean_mag_error"] = np.abs(2.5 / np.log(10.0) / np.fmax(1.0, sn))
    refmag, calibrator = reference_mags(info, refs)
    phot["legacy_survey_mag"] = refmag
    phot["expnum"] = info.expnum
    phot["ccdname"] = ccdname
    phot["exptime"] = t
    phot["gain"] = _float(info.header.get("GAIN"), 0.0)
    phot["airmass"] = info.airmass
    phot["filter"] = info.band
    phot["ra_now"], phot["dec_now"] = ra_now, dec_now
    _aperture_photometry(phot, sub, ivar, pixscale, t)

    # Astrometric offsets (arcsec): reference minus fitted position.
    cosd = np.cos(np.radians(dec_now))
    raoff = (ra_now - ra_fit) * 3600.0 * cosd
    decoff = (dec_now - dec_fit) * 3600.0
    ra_clip = _sigma_clip(raoff, 3.0, 3.0)
    dec_clip = _sigma_clip(decoff, 3.0, 3.0)
    stats.update(
        raoff=float(np.median(raoff)),
        decoff=float(np.median(decoff)),
        rarms=float(np.sqrt(np.mean(ra_clip**2))),
        decrms=float(np.sqrt(np.mean(dec_clip**2))),
        nastrom=float(len(ra_clip)),
    )
    snr = np.where(dflux > 0, flux / np.where(dflux > 0, dflux, 1.0), 0.0)
    stats["nphotom"] = float(np.sum(snr > 5.0))

    lo, hi = (
        SYNTHETIC_MAG_LIMITS if info.synthetic else PHOTCAL_MAG_LIMITS.get(info.band, (16.0, 20.0))
    )
    dmag = refmag - inst
    kept = (
        calibrator & ok & (refmag > lo) & (refmag < hi) & np.isfinite(dmag) & (snr > 5.0)
        & (phot["fracmasked"] < MAX_FRACMASKED)
    )  # fmt: skip
    if kept.sum() > 0 and info.synthetic:
        # Reference errors (BP/RP amplified by the transform) dominate: weight each star by
        # its combined reference and measurement error (see docs/zeropoints.md).
        sigma = np.hypot(
            reference_mag_errors(info, refs), np.hypot(dmagerr, MEASUREMENT_ERROR_FLOOR)
        )
        ikept = np.flatnonzero(kept)
        zpt, inlier = weighted_zeropoint(dmag[kept], sigma[kept])
        kept[ikept[~inlier]] = False
        stats.update(zpt=zpt, phrms=float(np.std(dmag[kept])), nused=float(kept.sum()))
        phot["psfmag"] = np.where(ok, inst + zpt, 0.0)
    elif kept.sum() > 0:
        # legacypipe: median of the 2.5σ-clipped (ref − inst).
        vals = dmag[kept]
        clipped, clo, chi = _clip_bounds(vals, 2.5, 2.5)
        ikept = np.flatnonzero(kept)
        kept[ikept[(vals < clo) | (vals > chi)]] = False
        zpt = float(np.median(clipped))
        stats.update(zpt=zpt, phrms=float(np.std(clipped)), nused=float(len(clipped)))
        phot["psfmag"] = np.where(ok, inst + zpt, 0.0)
    phot["used_for_photzpt"] = kept
    return phot, stats


def _aperture_photometry(
    phot: npt.NDArray[np.void],
    sub: npt.NDArray[np.float32],
    ivar: npt.NDArray[np.float32],
    pixscale: float,
    exptime: float,
) -> None:
    """6, 7 and 8 arcsec diameter aperture fluxes (electrons) at the fitted positions."""
    from photutils.aperture import CircularAperture, aperture_photometry

    pos = np.c_[phot["x_fit"], phot["y_fit"]].astype(np.float64)
    with np.errstate(divide="ignore"):
        err = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 0.0)
    for diam in (6, 7, 8):
        ap = CircularAperture(pos, diam / 2.0 / pixscale)
        table = aperture_photometry(
            sub, ap, error=err, mask=ivar == 0, method="subpixel", subpixels=4
        )
        phot[f"apflux_{diam}"] = np.asarray(table["aperture_sum"], np.float64) * exptime
        phot[f"apflux_{diam}_err"] = np.asarray(table["aperture_sum_err"], np.float64) * exptime


def _fill_metadata(
    row: np.void,
    image: str,
    info: ExposureInfo,
    ccd: CcdHdu,
    header: dict[str, Any],
    wcs: Any,
    shape: tuple[int, int],
) -> None:
    """Columns known from the headers and the WCS alone."""
    h, w = shape
    values: dict[str, Any] = {
        "image_filename": str(image_relpath(image)),
        "image_hdu": ccd.hdu,
        "camera": info.camera,
        "expnum": info.expnum,
        "plver": info.plver,
        "procdate": info.procdate,
        "plprocid": info.plprocid,
        "ccdname": ccd.ccdname,
        "object": info.object[:35],
        "propid": info.propid[:10],
        "filter": info.band,
        "exptime": info.exptime,
        "mjd_obs": info.mjd_obs,
        "airmass": info.airmass,
        "width": w,
        "height": h,
        "ra_bore": info.ra_bore,
        "dec_bore": info.dec_bore,
        "yshift": False,
        "ccd_cuts": 0,
        "good_region": [-1, -1, -1, -1],
        "humidity": _float(info.header.get("HUMIDITY"), 0.0),
        "outtemp": _float(info.header.get("OUTTEMP"), 0.0),
    }
    for key in ("crpix1", "crpix2", "crval1", "crval2", "cd1_1", "cd1_2", "cd2_1", "cd2_2"):
        values[key] = _float(header.get(key.upper()), 0.0)
    rc, dc = wcs.all_pix2world([(w + 1) / 2.0], [(h + 1) / 2.0], 1)
    values["ra"], values["dec"] = float(rc[0]), float(dc[0])
    for key, value in values.items():
        row[key] = value


def _fill_measurements(
    row: np.void,
    info: ExposureInfo,
    psf: PsfModel,
    sky: SplineSkyModel,
    sig1_img: float,
    skymed: float,
    skyrms: float,
    pixscale: float,
    stats: dict[str, float],
    shape: tuple[int, int],
) -> None:
    """Zeropoint, sky, PSF and (for calibrated CCDs) annotation columns."""
    h, w = shape
    zp0 = NOMINAL_ZP0.get((info.camera, info.band))
    row["fwhm"] = psf.fwhm
    row["skyrms"] = skyrms
    row["ccdskycounts"] = skymed
    if zp0 is not None and skymed > 0:
        row["ccdskysb"] = zp0 - 2.5 * math.log10(skymed / pixscale**2)
    zpt = stats["zpt"]
    row["ccdzpt"] = zpt
    row["ccdphrms"] = stats["phrms"]
    row["ccdraoff"] = stats["raoff"]
    row["ccddecoff"] = stats["decoff"]
    row["ccdrarms"] = stats["rarms"]
    row["ccddecrms"] = stats["decrms"]
    row["ccdnastrom"] = int(stats["nastrom"])
    row["ccdnphotom"] = int(stats["nphotom"])
    # legacypipe leaves sig1 in image units when there is no zeropoint.
    row["sig1"] = sig1_img / 10 ** (0.4 * (zpt - 22.5)) if zpt > 0 else sig1_img
    if zpt <= 0:
        return
    zpscale = 10 ** (0.4 * (zpt - 22.5))
    stamp = psf.at((w + 1) / 2.0, (h + 1) / 2.0)
    pnorm = psf_norm(stamp)
    gnorm = galaxy_norm(stamp, pixscale)
    half = stamp.shape[0] // 2
    gauss_gnorm = galaxy_norm(gaussian_psf(psf.fwhm, half), pixscale)
    row["psfnorm"] = row["psfnorm_mean"] = pnorm
    row["galnorm"] = row["galnorm_mean"] = gnorm
    for key, value in psf_moments(stamp).items():
        row[key] = value
    grid = sky.evaluate(
        np.linspace(0, w - 1, int(1 + w / 10)), np.linspace(0, h - 1, int(1 + h / 10))
    )
    grid = grid / zpscale
    row["meansky"], row["stdsky"] = float(np.mean(grid)), float(np.std(grid))
    row["maxsky"], row["minsky"] = float(grid.max()), float(grid.min())
    sig1 = float(row["sig1"])
    sigma = psf.fwhm / 2.35
    gnorm_gauss_psf = 1.0 / (2.0 * math.sqrt(math.pi) * sigma)
    for col, norm in (
        ("psfdepth", pnorm),
        ("galdepth", gnorm),
        ("gausspsfdepth", gnorm_gauss_psf),
        ("gaussgaldepth", gauss_gnorm),
    ):
        depth = -2.5 * (math.log10(5.0 * sig1 / norm) - 9.0) if norm > 0 and sig1 > 0 else 0.0
        row[col] = depth if math.isfinite(depth) else 0.0
    row["annotated"] = True


def _fill_geometry(row: np.void, wcs: Any, shape: tuple[int, int]) -> None:
    """Corners, centre, extent and pixel scale statistics (annotated CCDs)."""
    from lsdr.survey.core.tan import radec_to_tangent

    h, w = shape
    corners = wcs.all_pix2world([1, 1, w, w], [1, h, h, 1], 1)
    for k in range(4):
        row[f"ra{k}"], row[f"dec{k}"] = float(corners[0][k]), float(corners[1][k])
    midx, midy = (w + 1) / 2.0, (h + 1) / 2.0
    rc, dc = (float(v[0]) for v in wcs.all_pix2world([midx], [midy], 1))
    ra, dec = wcs.all_pix2world([1, w, midx, midx], [midy, midy, 1, h], 1)
    row["ra_center"], row["dec_center"] = rc, dc
    row["dra"] = float(np.max(_angle(ra, np.full(4, dc), rc, dc)))
    row["ddec"] = float(np.max(_angle(np.full(4, rc), dec, rc, dc)))
    step = 10
    scales = []
    for x in np.linspace(1 + step, w - step, 5):
        for y in np.linspace(1 + step, h - step, 5):
            sx = np.array([x - step, x - step, x + step, x + step])
            sy = np.array([y - step, y + step, y + step, y - step])
            sr, sd = wcs.all_pix2world(sx, sy, 1)
            r0, d0 = (float(v[0]) for v in wcs.all_pix2world([x], [y], 1))
            xi, eta = radec_to_tangent(sr, sd, r0, d0)
            xi, eta = xi * 3600.0, eta * 3600.0
            area = 0.5 * abs(np.dot(xi, np.roll(eta, 1)) - np.dot(eta, np.roll(xi, 1)))
            scales.append(math.sqrt(area / (2 * step) ** 2))
    row["pixscale_mean"], row["pixscale_std"] = float(np.mean(scales)), float(np.std(scales))
    row["pixscale_max"], row["pixscale_min"] = float(max(scales)), float(min(scales))


def _angle(ra: FloatArray, dec: FloatArray, ra0: float, dec0: float) -> FloatArray:
    """Angular distance (degrees) of positions from (ra0, dec0)."""
    r, d = np.radians(ra), np.radians(dec)
    r0, d0 = math.radians(ra0), math.radians(dec0)
    cos = np.sin(d) * math.sin(d0) + np.cos(d) * math.cos(d0) * np.cos(r - r0)
    return np.asarray(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), np.float64)


# ----------------------------------------------------------------------------------------------
# The image


def _gaia_for_image(layout: ReleaseLayout, image: str, ccds: list[CcdHdu]) -> npt.NDArray[np.void]:
    """Reference stars of every chunk touched by the image's CCDs (corners and centres)."""
    import fitsio

    path = layout.image(image)
    ras: list[float] = []
    decs: list[float] = []
    with fitsio.FITS(str(path)) as fits:
        for ccd in ccds:
            hdr = fits[ccd.hdu].read_header()
            header = {r["name"]: r["value"] for r in hdr.records() if r["name"]}
            w = int(header.get("ZNAXIS1", header.get("NAXIS1", 0)) or 0)
            h = int(header.get("ZNAXIS2", header.get("NAXIS2", 0)) or 0)
            wcs = ccd_wcs(header, (h, w))
            xs = np.linspace(1, w, 5)
            ys = np.linspace(1, h, 5)
            gx, gy = np.meshgrid(xs, ys)
            ra, dec = wcs.all_pix2world(gx.ravel(), gy.ravel(), 1)
            ras += list(np.asarray(ra))
            decs += list(np.asarray(dec))
    return read_gaia(layout, np.array(ras), np.array(decs))


def _header_cards(
    info: ExposureInfo, zpt: float, fwhm: float, pixscale: float, image: str
) -> list[dict[str, object]]:
    """legacy_zeropoints' output header: copied primary keys, EXPNUM, PLPROCID, CCD_ZPT etc."""
    cards: list[dict[str, object]] = []
    for key in ("AIRMASS", "OBJECT", "TELESCOP", "INSTRUME", "EXPTIME", "DATE-OBS", "MJD-OBS",
                "PROGRAM", "OBSERVER", "PROPID", "FILTER", "HA", "ZD", "AZ", "DOMEAZ",
                "HUMIDITY", "PLVER"):  # fmt: skip
        if key in info.header:
            value = info.header[key]
            cards.append({"name": key, "value": value.strip() if isinstance(value, str) else value})
    cards.append({"name": "EXPNUM", "value": info.expnum, "comment": "Exposure number"})
    cards.append({"name": "PROCDATE", "value": info.procdate, "comment": "CP processing date"})
    cards.append({"name": "PLPROCID", "value": info.plprocid, "comment": "CP processing batch"})
    if math.isfinite(info.ra_bore):
        cards.append({"name": "RA_BORE", "value": info.ra_bore})
    if math.isfinite(info.dec_bore):
        cards.append({"name": "DEC_BORE", "value": info.dec_bore})
    cards.append({"name": "CCD_ZPT", "value": zpt, "comment": "Exposure median zeropoint"})
    cards.append({"name": "FWHM", "value": fwhm, "comment": "Exposure median FWHM"})
    cards.append({"name": "SEEING", "value": fwhm * pixscale, "comment": "FWHM*pixscale"})
    rel = image_relpath(image)
    cards.append({"name": "FILENAME", "value": f"{rel.parent.name}/{rel.name}"})
    cards.append({"name": "LSDRENG", "value": ENGINE_VERSION, "comment": "lsdr lite engine"})
    return cards


def measure_image(
    layout: ReleaseLayout, image: str, *, run_calibs: bool = True, threads: int = 1
) -> ZeropointOutputs:
    """Zeropoints, annotations and calibs of every CCD of one CP image (``legacy_zeropoints``).

    A CCD's PsfEx and spline-sky calibs are made (per-CCD files) only when neither the per-CCD
    nor the merged per-exposure file holds a valid row for it; otherwise they are read back and
    used.  With ``run_calibs=False`` a missing calib is an ``InputFileError``.  A CCD without
    usable stars gets a row with ``ccdzpt = 0`` and ``ccdnphotom`` counting its S/N > 5 stars.
    """
    if threads < 1:
        raise UsageError(f"threads {threads} must be at least 1")
    path = layout.image(image)
    if not path.exists():
        raise InputFileError(f"{path}: image not found")
    for kind in ("ood", "oow"):
        companion = layout.image_companion(image, kind)
        if not companion.exists():
            raise InputFileError(f"{companion}: {kind} companion of {path.name} not found")
    info = read_exposure_info(path)
    ccds = list_ccds(path)
    for kind in ("ood", "oow"):
        companion = layout.image_companion(image, kind)
        names = [c.ccdname for c in list_ccds(companion)]
        missing = [c for c in ccds if c.ccdname not in names]
        if missing:
            raise InputFileError(
                f"{companion} HDU {missing[0].hdu} ({missing[0].ccdname}): missing; "
                "truncated file? re-transfer the file"
            )
    gaia = _gaia_for_image(layout, image, ccds)

    def one(ccd: CcdHdu) -> CcdResult:
        return measure_ccd(layout, image, info, ccd, gaia, run_calibs)

    if threads > 1 and len(ccds) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(one, ccds))
    else:
        results = [one(c) for c in ccds]

    # Everything measured: now write (calibs first, then the tables that refer to them).
    calibs: list[Path] = []
    made = False
    for res in results:
        if res.psf is not None:
            if res.psf_source is None:
                calibs.append(
                    write_psfex(layout.psfex_single(image, res.ccd.ccdname), res.psf, res.meta)
                )
                made = True
            else:
                calibs.append(res.psf_source)
        if res.sky is not None:
            if res.sky_source is None:
                calibs.append(
                    write_splinesky(layout.sky_single(image, res.ccd.ccdname), res.sky, res.meta)
                )
                made = True
            else:
                calibs.append(res.sky_source)

    rows = np.concatenate([r.row for r in results])
    zpts = rows["ccdzpt"][rows["ccdzpt"] > 0]
    median_zpt = float(np.median(zpts)) if len(zpts) else 0.0
    rows["zpt"] = median_zpt
    phrms = rows["ccdphrms"][np.isfinite(rows["ccdphrms"]) & (rows["ccdphrms"] > 0)]
    rows["phrms"] = float(np.median(phrms)) if len(phrms) else 0.0
    fwhms = rows["fwhm"][rows["fwhm"] > 0]
    fwhm = float(np.median(fwhms)) if len(fwhms) else 0.0
    pixscale = (
        float(np.median(rows["pixscale_mean"][rows["pixscale_mean"] > 0]))
        if np.any(rows["pixscale_mean"] > 0)
        else 0.0
    )
    header = _header_cards(info, median_zpt, fwhm, pixscale, image)

    import fitsio

    photom_parts = [r.photom for r in results if r.photom is not None]
    photom = np.concatenate(photom_parts) if photom_parts else np.zeros(0, PHOTOM_DTYPE)
    photom_path = layout.zpt_photom(image)
    with atomic_path(photom_path) as tmp:
        fitsio.write(str(tmp), photom, header=header, clobber=True)
    annotated_path = layout.zpt_annotated(image)
    with atomic_path(annotated_path) as tmp:
        fitsio.write(str(tmp), rows, header=header, clobber=True)
    return ZeropointOutputs(
        image=str(image_relpath(image)),
        annotated=annotated_path,
        photom=photom_path,
        calibs=tuple(dict.fromkeys(calibs)),
        n_ccds=len(results),
        n_no_stars=sum(1 for r in results if r.no_stars),
        made_calibs=made,
    )
