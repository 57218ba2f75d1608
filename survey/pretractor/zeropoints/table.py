"""A CCD's row of the annotated table: metadata, measurements and geometry columns."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.layout import image_relpath
from lsdr.survey.pretractor.psfex import PsfModel, galaxy_norm, gaussian_psf, psf_moments, psf_norm
from lsdr.survey.pretractor.splinesky import SplineSkyModel
from lsdr.survey.pretractor.zeropoints.exposure import ExposureInfo, finite_float
from lsdr.survey.pretractor.zeropoints.planes import CcdHdu

FloatArray = npt.NDArray[np.float64]

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


def fill_metadata(
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
        "humidity": finite_float(info.header.get("HUMIDITY"), 0.0),
        "outtemp": finite_float(info.header.get("OUTTEMP"), 0.0),
    }
    for key in ("crpix1", "crpix2", "crval1", "crval2", "cd1_1", "cd1_2", "cd2_1", "cd2_2"):
        values[key] = finite_float(header.get(key.upper()), 0.0)
    rc, dc = wcs.all_pix2world([(w + 1) / 2.0], [(h + 1) / 2.0], 1)
    values["ra"], values["dec"] = float(rc[0]), float(dc[0])
    for key, value in values.items():
        row[key] = value


def fill_measurements(
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


def fill_geometry(row: np.void, wcs: Any, shape: tuple[int, int]) -> None:
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
