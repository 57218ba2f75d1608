"""One CCD rendered: the truth's sources and detector effects on its sky, and its true row."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.ampcorr import amp_boxes, amp_scale
from lsdr.survey.core.cameras import get_camera
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.exposures import ExposurePlan, ccd_wcs
from lsdr.survey.simulate.render import (
    Moffat,
    add_bad_column,
    add_cosmic_rays,
    add_galaxy,
    add_star,
    saturate,
)

TRUTH_CCD_DTYPE = np.dtype(
    [
        ("image_filename", "S120"),
        ("image_hdu", ">i2"),
        ("camera", "S8"),
        ("expnum", ">i8"),
        ("ccdname", "S5"),
        ("filter", "S1"),
        ("plver", "S8"),
        ("superseded", "?"),
        ("exptime", ">f4"),
        ("mjd_obs", ">f8"),
        ("airmass", ">f4"),
        ("ccdzpt", ">f4"),
        ("zpt", ">f4"),
        ("transparency", ">f4"),
        ("seeing", ">f4"),
        ("fwhm", ">f4"),
        ("moffat_beta", ">f4"),
        ("skymag", ">f4"),
        ("sky_level", ">f4"),
        ("sig1", ">f4"),
        ("psfdepth", ">f4"),
        ("pixscale", ">f4"),
        ("width", ">i2"),
        ("height", ">i2"),
        ("ra_bore", ">f8"),
        ("dec_bore", ">f8"),
        ("crval1", ">f8"),
        ("crval2", ">f8"),
        ("crpix1", ">f4"),
        ("crpix2", ">f4"),
        ("cd1_1", ">f4"),
        ("cd1_2", ">f4"),
        ("cd2_1", ">f4"),
        ("cd2_2", ">f4"),
        ("n_sources", ">i4"),
        ("n_saturated", ">i4"),
        ("n_cosmic_rays", ">i4"),
        ("n_cr_unflagged", ">i4"),
        ("bad_column", ">i2"),
    ]
)
"""Per-CCD truth: ``ccdzpt`` in legacypipe's convention (AB mag of 1 e-/s), ``fwhm`` in
pixels, ``sky_level`` in e-/s/pixel, ``sig1`` the sky noise in nanomaggies per pixel,
``psfdepth`` the 5σ point-source depth (AB mag)."""


@dataclass(frozen=True, slots=True)
class CcdImage:
    """The three planes of one simulated CCD, ready to write."""

    name: str
    header: dict[str, str | float | int]
    image: npt.NDArray[np.float32]
    dq: npt.NDArray[np.int16]
    weight: npt.NDArray[np.float32]


def render_ccd(
    plan: ExposurePlan,
    ccd: str,
    binning: int,
    truth: npt.NDArray[np.void],
    config: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[CcdImage, npt.NDArray[np.void]]:
    """Render one CCD: sources, sky, noise and detector effects; with its truth row."""
    camera = get_camera(plan.camera)
    facts = camera.band(plan.band)
    width, height = camera.ccd_width // binning, camera.ccd_height // binning
    wcs = ccd_wcs(camera, ccd, binning, plan.ra_bore, plan.dec_bore, plan.rotation)
    pixscale = camera.pixscale * binning
    ccdzpt = plan.zeropoint(facts.zpt0, facts.k_ext) + float(rng.normal(0.0, 0.02))
    psf = Moffat(plan.seeing / pixscale, camera.moffat_beta)
    sky = 10 ** (-0.4 * (plan.sky_mag - ccdzpt)) * pixscale**2
    t = plan.exptime
    sky_sigma = math.sqrt(sky * t + camera.read_noise**2) / t
    # Where each source is at the epoch of the exposure (proper motion from ref_epoch).
    years = (plan.mjd_obs() - 51_544.5) / 365.25 + 2000.0 - truth["ref_epoch"]
    dec = truth["dec"] + truth["pmdec"] * years / 3.6e6
    ra = truth["ra"] + truth["pmra"] * years / 3.6e6 / np.cos(np.radians(truth["dec"]))
    x, y = wcs.radec_to_pixel(ra, dec)
    x0, y0 = x - 1.0, y - 1.0
    pad = 60
    on = (x0 > -pad) & (x0 < width + pad) & (y0 > -pad) & (y0 < height + pad)
    flux = truth[f"flux_{plan.band}"].astype(np.float64) * 10 ** (0.4 * (ccdzpt - 22.5))

    model = np.zeros((height, width), np.float32)
    kernel = psf.stamp(math.ceil(4 * psf.fwhm) + 1)
    cd_arcsec = 3600.0 * np.array([[wcs.cd1_1, wcs.cd1_2], [wcs.cd2_1, wcs.cd2_2]])
    threshold = 0.02 * sky_sigma
    for i in np.nonzero(on)[0]:
        kind = truth["type"][i]
        if kind == b"PSF":
            add_star(model, float(x0[i]), float(y0[i]), float(flux[i]), psf, threshold)
        else:
            add_galaxy(
                model,
                float(x0[i]),
                float(y0[i]),
                float(flux[i]),
                int(truth["sersic"][i]),
                float(truth["shape_r"][i]),
                float(truth["shape_e1"][i]),
                float(truth["shape_e2"][i]),
                cd_arcsec,
                psf,
                kernel,
            )

    # The CP's amplifier gain mismatches, which legacypipe's per-amp zeropoints take out again.
    uncorrected = amp_scale(
        amp_boxes(plan.camera, plan.band, ccd, plan.mjd_obs()), 0, 0, model.shape
    )
    if uncorrected is not None:
        model /= uncorrected

    # Sky with a gentle gradient, in e-/s; then counts, noise and detector effects in e-.
    yy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    gx, gy, curv = rng.normal(0.0, 0.01, 3)
    sky_map = sky * (1.0 + gx * xx + gy * yy + curv * (xx**2 + yy**2 - 0.67))
    counts = (model + sky_map) * np.float32(t)
    noise = rng.standard_normal((height, width), dtype=np.float32)
    counts += noise * np.sqrt(np.maximum(counts, 0.0) + np.float32(camera.read_noise**2))
    dq = np.zeros((height, width), np.int16)
    nsat = saturate(counts, dq, camera.full_well)
    native_mpix = width * height * binning**2 / 1e6
    ncr = int(rng.poisson(config.cosmic_rays_per_mpix * native_mpix * t / 100.0))
    unflagged = add_cosmic_rays(counts, dq, ncr, config.flagged_cr_fraction, rng)
    weight = (t * t / (sky_map * t + camera.read_noise**2)).astype(np.float32)
    bad_col = add_bad_column(counts, dq, weight, rng)
    image = (counts / np.float32(t)).astype(np.float32)

    nea = psf.noise_equivalent_area()
    zp_scale = 10 ** (0.4 * (ccdzpt - 22.5))
    header: dict[str, str | float | int] = {
        "EXTNAME": ccd,
        "CCDNAME": ccd.lower() if camera.name != "decam" else ccd,
        "INHERIT": True,
        "BUNIT": "counts/s",
        **wcs.header_cards(),
        "GAIN": camera.gain,
        "RDNOISE": camera.read_noise,
        "SATURATE": round(camera.full_well / t, 2),
        "FWHM": round(psf.fwhm, 3),
        "SEEINGP1": round(psf.fwhm, 3),
        "SKYADU1": round(float(sky), 4),
        "CCDSUM": f"{binning} {binning}",
    }
    row = np.zeros(1, TRUTH_CCD_DTYPE)[0]
    values = {
        "image_filename": str(plan.image_relpath()).encode(),
        "image_hdu": camera.ccds.index(next(c for c in camera.ccds if c.name == ccd)) + 1,
        "camera": camera.name.encode(),
        "expnum": plan.expnum,
        "ccdname": ccd.encode(),
        "filter": plan.band.encode(),
        "plver": plan.plver.encode(),
        "superseded": plan.version_tag != "ls9",
        "exptime": t,
        "mjd_obs": plan.mjd_obs(),
        "airmass": plan.airmass,
        "ccdzpt": ccdzpt,
        "zpt": plan.zeropoint(facts.zpt0, facts.k_ext),
        "transparency": plan.transparency,
        "seeing": plan.seeing,
        "fwhm": psf.fwhm,
        "moffat_beta": psf.beta,
        "skymag": plan.sky_mag,
        "sky_level": sky,
        "sig1": sky_sigma / zp_scale,
        "psfdepth": ccdzpt - 2.5 * math.log10(5.0 * sky_sigma * math.sqrt(nea)),
        "pixscale": pixscale,
        "width": width,
        "height": height,
        "ra_bore": plan.ra_bore,
        "dec_bore": plan.dec_bore,
        "crval1": wcs.crval1,
        "crval2": wcs.crval2,
        "crpix1": wcs.crpix1,
        "crpix2": wcs.crpix2,
        "cd1_1": wcs.cd1_1,
        "cd1_2": wcs.cd1_2,
        "cd2_1": wcs.cd2_1,
        "cd2_2": wcs.cd2_2,
        "n_sources": int(on.sum()),
        "n_saturated": nsat,
        "n_cosmic_rays": ncr,
        "n_cr_unflagged": unflagged,
        "bad_column": bad_col,
    }
    for key, value in values.items():
        row[key] = value
    return CcdImage(ccd, header, image, dq, weight), row
