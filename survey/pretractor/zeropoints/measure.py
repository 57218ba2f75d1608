"""One CCD measured: sky, PSF, photometry and its annotated row (nothing written)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.ampcorr import amp_boxes, amp_scale, apply_amp_correction
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.ccdschema import ANNOTATED_DTYPE
from lsdr.survey.pretractor.psfex import CalibMeta, PsfModel, moffat_alpha, read_psfex
from lsdr.survey.pretractor.psfex import as_stored as stored_psf
from lsdr.survey.pretractor.splinesky import SplineSkyModel, read_splinesky
from lsdr.survey.pretractor.splinesky import as_stored as stored_sky
from lsdr.survey.pretractor.zeropoints.exposure import ExposureInfo
from lsdr.survey.pretractor.zeropoints.photometry import photometry
from lsdr.survey.pretractor.zeropoints.planes import CcdHdu, ccd_wcs, read_planes
from lsdr.survey.pretractor.zeropoints.psf import fit_psf, header_fwhm
from lsdr.survey.pretractor.zeropoints.sky import measure_sky
from lsdr.survey.pretractor.zeropoints.stats import sample, sigma_clip
from lsdr.survey.pretractor.zeropoints.table import fill_geometry, fill_measurements, fill_metadata

FloatArray = npt.NDArray[np.float64]

ENGINE_VERSION = "lsdr-lite-1"
"""Written as ``legpipev`` in calib files."""
MAX_REFS = 1000
"""Brightest Gaia stars fitted per CCD (legacypipe's ``maxgaia``)."""
CCDNMATCH_MIN = 20
"""Fewer S/N > 5 stars than this is legacypipe's ``ccdnmatch`` cut: counted in ``n_no_stars``."""
DQ_IGNORED = (7, 8)
"""CP data-quality codes legacypipe ignores for Mosaic and 90Prime (diff-detect, streak)."""


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
    fill_metadata(row, image, info, ccd, planes.header, wcs, (h, w))

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
    pix = sample(img[good])
    clipped = sigma_clip(pix, 3.0, 3.0)
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

    fwhm_guess = header_fwhm(planes.header, info.header, pixscale)
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

    # As legacy_zeropoints: the per-amplifier offsets taken out of the sky-subtracted image
    # before the photometry (the PSF is fitted before, as PsfEx runs on the CP image).
    scale = amp_scale(amp_boxes(info.camera, info.band, ccdname, info.mjd_obs), 0, 0, (h, w))
    if scale is not None:
        ivar = ivar.copy()
        apply_amp_correction(sub, ivar, scale)
    phot, zpt_stats = photometry(
        sub, ivar, dq, psf, info, refs, ra_now, dec_now, xr, yr, wcs, pixscale, ccdname
    )
    fill_measurements(row, info, psf, sky, sig1_img, skymed, skyrms, pixscale, zpt_stats, (h, w))
    if row["annotated"]:
        fill_geometry(row, wcs, (h, w))
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
