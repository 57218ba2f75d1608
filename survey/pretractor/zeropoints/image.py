"""One CP image calibrated: every CCD measured, then its annotated, photom and calib files."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout, image_relpath
from lsdr.survey.core.refcat import read_gaia
from lsdr.survey.pretractor.psfex import write_psfex
from lsdr.survey.pretractor.splinesky import write_splinesky
from lsdr.survey.pretractor.zeropoints.exposure import ExposureInfo, read_exposure_info
from lsdr.survey.pretractor.zeropoints.measure import ENGINE_VERSION, CcdResult, measure_ccd
from lsdr.survey.pretractor.zeropoints.photometry import PHOTOM_DTYPE
from lsdr.survey.pretractor.zeropoints.planes import CcdHdu, ccd_wcs, list_ccds


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
