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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.ampcorr import amp_boxes, amp_scale, apply_amp_correction
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.pretractor.ccdtables import read_survey_ccds
from lsdr.survey.pretractor.psfex import galaxy_norm, psf_norm, read_psfex
from lsdr.survey.pretractor.splinesky import read_splinesky
from lsdr.survey.runbrick.ccdwcs import fit_header_wcs, shift_crval
from lsdr.survey.runbrick.types import BrickGeometry, Tim

log = logging.getLogger(__name__)
CalibT = TypeVar("CalibT")

CUTOUT_MARGIN = 4
"""CCD pixels read beyond the brick's footprint: the support of the Lanczos-3 resampling."""
WCS_SLACK = 32
"""Extra CCD pixels around the table-WCS cut-out over which the header WCS is fitted."""
DQ_IGNORED = {"mosaic": (7, 8), "90prime": (7, 8), "decam": (8,)}
"""CP DQ codes legacypipe does not mask, per camera (diff-detect and streak flags)."""
SHOT_NOISE_CAMERAS = ("mosaic", "90prime")
"""Cameras whose CP weight maps hold sky and read noise only: legacypipe adds the sources'
Poisson noise (``remap_invvar_shotnoise`` in ``mosaic.py``/``bok.py``)."""


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


def read_image_header(path: Path, hdu: int) -> Any:
    """The header of HDU ``hdu`` of a CP image (where its WCS is)."""
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            return fits[hdu].read_header()
    except (OSError, ValueError, IndexError) as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(f"{path} HDU {hdu}: cannot read header ({reason})") from err


def _cutout_wcs(
    path: Path, hdu: int, row: np.void, geom: BrickGeometry
) -> tuple[TanWcs, tuple[int, int, int, int] | None]:
    """The CCD's WCS from its image header over the cut-out, and the cut-out's bounds.

    The survey-ccds TAN (the header's linear part) finds the CCD pixels under the brick, with
    ``WCS_SLACK`` spare; the header WCS (TPV on CP images) is fitted over that region and
    gives the cut-out.  A header without a WCS falls back to the table's TAN.
    """
    width, height = int(row["width"]), int(row["height"])
    table_wcs = ccd_wcs(row)
    rough = cutout_bounds(table_wcs, width, height, geom, CUTOUT_MARGIN + WCS_SLACK)
    if rough is None:
        return table_wcs, None
    header = read_image_header(path, hdu)
    if "CRVAL1" not in header or "CRPIX1" not in header:
        return table_wcs, cutout_bounds(table_wcs, width, height, geom)
    dra, ddec = float(row["ccdraoff"]), float(row["ccddecoff"])
    for _ in range(3):
        wcs = shift_crval(fit_header_wcs(header, rough), dra, ddec)
        bounds = cutout_bounds(wcs, width, height, geom)
        if bounds is None or _inside(bounds, rough):
            return wcs, bounds
        rough = _grow(bounds, rough, width, height)
    raise InputFileError(f"{path} HDU {hdu}: the header WCS does not converge over the brick")


def _inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    x_in = outer[0] <= inner[0] and inner[1] <= outer[1]
    return x_in and outer[2] <= inner[2] and inner[3] <= outer[3]


def _grow(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int], width: int, height: int
) -> tuple[int, int, int, int]:
    return (
        max(0, min(a[0], b[0]) - WCS_SLACK),
        min(width, max(a[1], b[1]) + WCS_SLACK),
        max(0, min(a[2], b[2]) - WCS_SLACK),
        min(height, max(a[3], b[3]) + WCS_SLACK),
    )


def image_per_second(path: Path, hdu: int, camera: str) -> bool:
    """Whether a CP image is in counts per second (else counts per exposure).

    Per second when either header's ``BUNIT`` says so (the CP's Mosaic and 90Prime primary
    headers and lsdr's synthetic images say ``counts/s``; 90Prime's CCD headers say ``ADU``
    nonetheless); otherwise per exposure for DECam, whose CP images carry no ``BUNIT`` and
    are in counts per exposure (legacypipe's ``DecamImage.set_ccdzpt`` adds 2.5 log10(exptime)
    to ``ccdzpt``), per second for the other cameras.
    """
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            units = [str(fits[i].read_header().get("BUNIT", "")).strip() for i in (hdu, 0)]
    except (OSError, ValueError, IndexError) as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(f"{path} HDU {hdu}: cannot read header ({reason})") from err
    per_second = ("/s", "/sec", "/second", "s-1", "s^-1")
    if any(u.lower().replace(" ", "").endswith(per_second) for u in units):
        return True
    return camera != "decam"


def read_calib(
    what: str,
    reader: Callable[[Path, int, str], CalibT],
    paths: Sequence[Path],
    expnum: int,
    ccdname: str,
) -> CalibT:
    """A CCD's calib from the first of ``paths`` (merged, then per-CCD) that holds its row.

    legacypipe's order (``image.py``): the merged per-exposure file when it exists, else the
    per-CCD file written by ``legacy_zeropoints`` (or lsdr's zeropoints phase) before merging.
    """
    problems = []
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        try:
            return reader(path, expnum, ccdname)
        except InputFileError as err:
            problems.append(str(err))
    raise InputFileError(
        f"no {what} calib for exposure {expnum} CCD {ccdname}: " + "; ".join(problems)
    )


def header_sky_level(path: Path) -> float | None:
    """The CP's exposure sky level ``SKYADU`` (image units) of the primary header, if any."""
    import fitsio

    try:
        value = fitsio.read_header(str(path), ext=0).get("SKYADU")
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:160]
        raise InputFileError(f"{path}: cannot read the primary header ({reason})") from err
    return None if value is None else float(value)


def with_source_noise(
    weight: npt.NDArray[Any], signal: npt.NDArray[np.float32], exptime: float
) -> npt.NDArray[np.float32]:
    """Inverse variance (s²/e²) of a CP image including the Poisson noise of its sources.

    legacypipe's ``remap_invvar_shotnoise``: variance = 1/weight + |image − sky| / exptime,
    with the image in electrons per second and the sky the primary header's constant
    ``SKYADU`` (the spline sky where a file lacks it).  Without it bright stars' ``flux_ivar``
    counts sky noise only.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        var = 1.0 / weight.astype(np.float32) + np.abs(signal) / np.float32(exptime)
        out = np.where(weight > 0, 1.0 / var, np.float32(0.0))
    return np.asarray(np.nan_to_num(out, nan=0.0, posinf=0.0), np.float32)


def read_tim(
    layout: ReleaseLayout, row: np.void, geom: BrickGeometry, index: int = -1
) -> Tim | None:
    """The tim of one survey-ccds row, or None when the CCD has no pixel under the brick."""
    image = _text(row["image_filename"])
    camera = _text(row["camera"])
    expnum = int(row["expnum"])
    ccdname = _text(row["ccdname"])
    hdu = int(row["image_hdu"])
    wcs, bounds = _cutout_wcs(layout.image(image), hdu, row, geom)
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
    sky = read_calib(
        "spline sky",
        read_splinesky,
        (layout.sky_single(image, ccdname), layout.sky_merged(image)),
        expnum,
        ccdname,
    )
    psf = read_calib(
        "PsfEx",
        read_psfex,
        (layout.psfex_merged(image), layout.psfex_single(image, ccdname)),
        expnum,
        ccdname,
    )

    skyimg = sky.evaluate(np.arange(x0, x1), np.arange(y0, y1)).astype(np.float32)
    bad = (dq != 0) | ~(wt > 0) | ~np.isfinite(img) | ~np.isfinite(wt)
    ignored = DQ_IGNORED.get(camera, ())
    if ignored:
        bad &= ~(np.isin(dq, ignored) & (wt > 0) & np.isfinite(img))
    if camera in SHOT_NOISE_CAMERAS:
        const_sky = header_sky_level(layout.image(image))
        sky_level = skyimg if const_sky is None else np.float32(const_sky)
        wt = with_source_noise(wt, img - sky_level, float(row["exptime"]))
    zpt = float(row["ccdzpt"])
    zpscale = 10.0 ** (0.4 * (zpt - 22.5))
    if not image_per_second(layout.image(image), hdu, camera):
        zpscale *= float(row["exptime"])
    nmgy = np.where(bad, np.float32(0.0), (img - skyimg) / np.float32(zpscale)).astype(np.float32)
    invvar = np.where(bad, np.float32(0.0), wt * np.float32(zpscale**2)).astype(np.float32)
    del img, skyimg, wt
    # legacypipe's per-amplifier zeropoints (Mosaic, 90Prime), after the sky (core/ampcorr.py).
    boxes = amp_boxes(camera, _text(row["filter"]), ccdname, float(row["mjd_obs"]))
    apply_amp_correction(nmgy, invvar, amp_scale(boxes, x0, y0, nmgy.shape))

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
        zpt_error=zeropoint_error(row),
        image_filename=image,
        ccd_row=index,
    )


def zeropoint_error(row: np.void) -> float:
    """Relative flux error of a CCD's zeropoint: the rms of its calibrators over √their number.

    0 when the table does not say (no calibrators, or columns absent).
    """
    names = row.dtype.names or ()
    if "ccdphrms" not in names or "ccdnphotom" not in names:
        return 0.0
    n, rms = int(row["ccdnphotom"]), float(row["ccdphrms"])
    if n <= 0 or not math.isfinite(rms) or rms <= 0:
        return 0.0
    return 0.4 * math.log(10.0) * rms / math.sqrt(n)


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
