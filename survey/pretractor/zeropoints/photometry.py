"""PSF photometry of the Gaia stars on a CCD, and the CCD's zeropoint from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.pretractor.psfex import PsfModel
from lsdr.survey.pretractor.zeropoints.exposure import ExposureInfo, finite_float
from lsdr.survey.pretractor.zeropoints.psf import stamp
from lsdr.survey.pretractor.zeropoints.refmags import reference_mag_errors, reference_mags
from lsdr.survey.pretractor.zeropoints.stats import clip_bounds, sigma_clip

FloatArray = npt.NDArray[np.float64]

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

MEASUREMENT_ERROR_FLOOR = 0.005
"""Added in quadrature to a star's PSF-fit magnitude error (PSF-model mismatch) for weighting."""

ZPT_CLIP_SIGMA = 3.0
"""Normalised-residual clip of the synthetic survey's weighted zeropoint."""
MAX_FRACMASKED = 0.3
"""Stars with more of their PSF-weighted pixels masked are not used for the zeropoint."""


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
    data = stamp(sub, xi, yi, radius).astype(np.float64)
    wt = stamp(ivar, xi, yi, radius).astype(np.float64)
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


def photometry(
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
    phot["gain"] = finite_float(info.header.get("GAIN"), 0.0)
    phot["airmass"] = info.airmass
    phot["filter"] = info.band
    phot["ra_now"], phot["dec_now"] = ra_now, dec_now
    _aperture_photometry(phot, sub, ivar, pixscale, t)

    # Astrometric offsets (arcsec): reference minus fitted position.
    cosd = np.cos(np.radians(dec_now))
    raoff = (ra_now - ra_fit) * 3600.0 * cosd
    decoff = (dec_now - dec_fit) * 3600.0
    ra_clip = sigma_clip(raoff, 3.0, 3.0)
    dec_clip = sigma_clip(decoff, 3.0, 3.0)
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
        clipped, clo, chi = clip_bounds(vals, 2.5, 2.5)
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
