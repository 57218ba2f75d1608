"""Stage ``tims``: the calibrated pixels of every CCD that touches the brick.

For each survey-ccds row with ``ccd_cuts == 0`` in a band of the run whose footprint overlaps
the brick grid, read the cut-out of the CP image (``ooi``), its data-quality (``ood``) and
inverse-variance weight (``oow``) planes, the CCD's merged PsfEx PSF and spline sky, subtract
the sky and scale to nanomaggies.  As in legacypipe (``image.py`` ``get_tractor_image``):
the CP image is in counts per second and ``ccdzpt`` is the AB magnitude of 1 count/s, so the
image is divided by ``zpscale = 10^(0.4 (ccdzpt − 22.5))`` and the weight multiplied by its
square; the CCD's TAN WCS from the table has its CRVAL shifted by the astrometric offsets
``ccdraoff``/``ccddecoff``.  Pixels with a non-zero DQ code (except the codes legacypipe
ignores for Mosaic and 90Prime), no weight or non-finite values get ``invvar = 0``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.ccdtables import read_survey_ccds
from lsdr.survey.errors import InputFileError
from lsdr.survey.layout import ReleaseLayout
from lsdr.survey.psfex import galaxy_norm, psf_norm, read_psfex
from lsdr.survey.runbrick.types import BrickGeometry, Tim
from lsdr.survey.splinesky import read_splinesky
from lsdr.survey.tan import TanWcs

log = logging.getLogger(__name__)

CUTOUT_MARGIN = 4
"""CCD pixels read beyond the brick's footprint: the support of the Lanczos-3 resampling."""
DQ_IGNORED = {"mosaic": (7, 8), "90prime": (7, 8)}
"""CP DQ codes legacypipe does not mask, per camera (diff-detect and streak flags)."""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode().strip()
    return str(value).strip()


def ccd_wcs(row: np.void) -> TanWcs:
    """The TAN WCS of a survey-ccds row, CRVAL shifted by the astrometric offsets (legacypipe)."""
    dec = float(row["crval2"])
    dra = float(row["ccdraoff"]) / 3600.0 / math.cos(math.radians(dec))
    ddec = float(row["ccddecoff"]) / 3600.0
    return TanWcs(
        crval1=float(row["crval1"]) + dra,
        crval2=dec + ddec,
        crpix1=float(row["crpix1"]),
        crpix2=float(row["crpix2"]),
        cd1_1=float(row["cd1_1"]),
        cd1_2=float(row["cd1_2"]),
        cd2_1=float(row["cd2_1"]),
        cd2_2=float(row["cd2_2"]),
    )


def _brick_outline(geom: BrickGeometry, n: int = 8) -> tuple[npt.NDArray[np.float64], ...]:
    """RA, Dec of points along the edges of the brick grid (pixel edges, 1-based FITS)."""
    xs = np.linspace(0.5, geom.width + 0.5, n)
    ys = np.linspace(0.5, geom.height + 0.5, n)
    x = np.concatenate([xs, xs, np.full(n, 0.5), np.full(n, geom.width + 0.5)])
    y = np.concatenate([np.full(n, 0.5), np.full(n, geom.height + 0.5), ys, ys])
    return geom.wcs().pixel_to_radec(x, y)


def cutout_bounds(
    wcs: TanWcs, width: int, height: int, geom: BrickGeometry, margin: int = CUTOUT_MARGIN
) -> tuple[int, int, int, int] | None:
    """0-based ``(x0, x1, y0, y1)`` (exclusive ends) of the CCD pixels under the brick, or None.

    The brick outline is projected into the CCD; its bounding box, grown by ``margin``, is
    clipped to the CCD.  Exact for TAN-to-TAN within the brick's tiny extent.
    """
    ra, dec = _brick_outline(geom)
    x, y = wcs.radec_to_pixel(ra, dec)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    # 1-based FITS pixel p covers [p-0.5, p+0.5]; 0-based index = p - 1.
    x0 = max(0, math.floor(x.min() - 0.5) - margin)
    y0 = max(0, math.floor(y.min() - 0.5) - margin)
    x1 = min(width, math.ceil(x.max() - 0.5) + 1 + margin)
    y1 = min(height, math.ceil(y.max() - 0.5) + 1 + margin)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return x0, x1, y0, y1


def ccds_touching_brick(
    ccds: npt.NDArray[np.void], geom: BrickGeometry, bands: Sequence[str]
) -> npt.NDArray[np.void]:
    """The rows (ccd_cuts == 0, band in ``bands``) whose pixels overlap the brick grid."""
    keep = np.zeros(len(ccds), bool)
    for i, row in enumerate(ccds):
        if int(row["ccd_cuts"]) != 0 or _text(row["filter"]) not in bands:
            continue
        bounds = cutout_bounds(ccd_wcs(row), int(row["width"]), int(row["height"]), geom, 0)
        keep[i] = bounds is not None
    return ccds[keep]


def _read_slice(path: Path, hdu: int, bounds: tuple[int, int, int, int], what: str) -> Any:
    import fitsio

    x0, x1, y0, y1 = bounds
    try:
        with fitsio.FITS(str(path)) as fits:
            return fits[hdu][y0:y1, x0:x1]
    except (OSError, ValueError, IndexError) as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(f"{path} HDU {hdu}: cannot read {what} ({reason})") from err


def read_tim(
    layout: ReleaseLayout, row: np.void, geom: BrickGeometry, index: int = -1
) -> Tim | None:
    """The tim of one survey-ccds row, or None when the CCD has no pixel under the brick."""
    image = _text(row["image_filename"])
    camera = _text(row["camera"])
    expnum = int(row["expnum"])
    ccdname = _text(row["ccdname"])
    hdu = int(row["image_hdu"])
    width, height = int(row["width"]), int(row["height"])
    wcs = ccd_wcs(row)
    bounds = cutout_bounds(wcs, width, height, geom)
    if bounds is None:
        return None
    x0, x1, y0, y1 = bounds
    img = np.asarray(_read_slice(layout.image(image), hdu, bounds, "image"), np.float32)
    dq_raw = _read_slice(layout.image_companion(image, "ood"), hdu, bounds, "DQ plane")
    wt = np.asarray(_read_slice(layout.image_companion(image, "oow"), hdu, bounds, "weight"))
    dq = np.asarray(dq_raw).astype(np.int16)
    if img.shape != dq.shape or img.shape != wt.shape:
        raise InputFileError(
            f"{layout.image(image)} HDU {hdu}: image, DQ and weight cut-outs differ in shape"
        )
    sky = read_splinesky(layout.sky_merged(image), expnum, ccdname)
    psf = read_psfex(layout.psfex_merged(image), expnum, ccdname)

    skyimg = sky.evaluate(np.arange(x0, x1), np.arange(y0, y1)).astype(np.float32)
    bad = (dq != 0) | ~(wt > 0) | ~np.isfinite(img) | ~np.isfinite(wt)
    ignored = DQ_IGNORED.get(camera, ())
    if ignored:
        bad &= ~(np.isin(dq, ignored) & (wt > 0) & np.isfinite(img))
    zpt = float(row["ccdzpt"])
    zpscale = 10.0 ** (0.4 * (zpt - 22.5))
    nmgy = np.where(bad, np.float32(0.0), (img - skyimg) / np.float32(zpscale)).astype(np.float32)
    invvar = np.where(bad, np.float32(0.0), wt * np.float32(zpscale**2)).astype(np.float32)
    del img, skyimg, wt

    xc = x0 + (x1 - x0) / 2.0 + 0.5
    yc = y0 + (y1 - y0) / 2.0 + 0.5
    stamp = psf.at(xc, yc)
    fwhm = float(psf.fwhm) if psf.fwhm > 0 else float(row["fwhm"])
    return Tim(
        name=f"{camera} {expnum}-{ccdname}",
        camera=camera,
        expnum=expnum,
        ccdname=ccdname,
        band=_text(row["filter"]),
        mjd_obs=float(row["mjd_obs"]),
        image=nmgy,
        invvar=invvar,
        dq=dq,
        x0=x0,
        y0=y0,
        wcs=wcs,
        psf=psf,
        psf_fwhm=fwhm,
        sig1=float(row["sig1"]),
        psfnorm=psf_norm(stamp),
        galnorm=galaxy_norm(stamp, wcs.pixscale),
        exptime=float(row["exptime"]),
        zpt=zpt,
        image_filename=image,
        ccd_row=index,
    )


def select_ccds(
    layout: ReleaseLayout, geom: BrickGeometry, bands: Sequence[str]
) -> npt.NDArray[np.void]:
    """The survey-ccds rows runbrick would use for the brick (cuts passed, band, overlap)."""
    ccds = read_survey_ccds(layout, kept_only=True)
    touching = ccds_touching_brick(ccds, geom, bands)
    order = np.lexsort((touching["ccdname"], touching["expnum"]))
    return touching[order]


def read_tims(
    layout: ReleaseLayout,
    geom: BrickGeometry,
    bands: Sequence[str],
    ccds: npt.NDArray[np.void] | None = None,
) -> list[Tim]:
    """The tims of the brick, in the order of ``ccds`` (default: ``select_ccds``)."""
    if ccds is None:
        ccds = select_ccds(layout, geom, bands)
    tims = []
    for i, row in enumerate(ccds):
        tim = read_tim(layout, row, geom, i)
        if tim is not None:
            tims.append(tim)
            log.info("%s: tim %s %dx%d", geom.brickname, tim.name, tim.shape[1], tim.shape[0])
    return tims


def stage_tims(
    *, layout: ReleaseLayout, geom: BrickGeometry, bands: Sequence[str]
) -> dict[str, Any]:
    """Stage ``tims``: the CCD rows used (``ccds``) and their tims (``tims``)."""
    ccds = select_ccds(layout, geom, bands)
    tims = read_tims(layout, geom, bands, ccds)
    used = [t.ccd_row for t in tims]
    ccds = ccds[used]
    for i, tim in enumerate(tims):
        tim.ccd_row = i
    return {"ccds": ccds, "tims": tims}
