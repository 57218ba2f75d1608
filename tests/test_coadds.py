"""Resampling to the brick grid and the coadd products of stage ``coadds``."""

from __future__ import annotations

import math

import fitsio
import numpy as np
import pytest
from PIL import Image
from runbrick_survey import BRICK, prepared_survey

from lsdr.survey.psfex import PsfModel, gaussian_psf
from lsdr.survey.runbrick.coadds import stage_coadds
from lsdr.survey.runbrick.resample import resample_tim
from lsdr.survey.runbrick.tims import stage_tims
from lsdr.survey.runbrick.types import BrickGeometry, Tim
from lsdr.survey.tan import TanWcs


def synthetic_tim(geom: BrickGeometry, pixscale: float, angle: float) -> tuple[Tim, list]:
    """A noiseless CCD (rotated, other pixel size) with Gaussian stars of known flux."""
    rng = np.random.default_rng(3)
    n = int(geom.width * geom.pixscale / pixscale) + 40
    p = pixscale / 3600.0
    c, s = math.cos(angle), math.sin(angle)
    wcs = TanWcs(geom.ra, geom.dec, n / 2 + 0.5, n / 2 + 0.5, -p * c, p * s, p * s, p * c)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    img = np.zeros((n, n))
    sigma = 1.3
    stars = []
    for gu in np.linspace(25, n - 25, 4):
        u, v = gu + rng.uniform(-3, 3), float(rng.uniform(25, n - 25))
        flux = float(rng.uniform(50, 500))
        img += (
            flux
            * np.exp(-0.5 * ((xx - u) ** 2 + (yy - v) ** 2) / sigma**2)
            / (2 * np.pi * sigma**2)
        )
        stars.append((u, v, flux))
    bases = gaussian_psf(sigma * 2.35, 10)[None].astype(np.float32)
    tim = Tim("test 1-N1", "test", 1, "N1", "r", 58000.0, img.astype(np.float32),
              np.full((n, n), 4.0, np.float32), np.zeros((n, n), np.int16), 0, 0, wcs,
              PsfModel(bases, fwhm=sigma * 2.35), sigma * 2.35, 0.5, 0.2, 0.15)  # fmt: skip
    return tim, stars


@pytest.mark.parametrize(("pixscale", "angle"), [(0.262, 0.0), (0.524, 0.3), (0.908, 0.05)])
def test_resampling_conserves_star_flux(pixscale: float, angle: float):
    """Stars keep their flux to < 1 % on the brick grid; invvar scales by the area ratio."""
    geom = BrickGeometry.for_brick(BRICK, width=300, height=300)
    tim, stars = synthetic_tim(geom, pixscale, angle)
    res = resample_tim(tim, geom)
    assert res is not None
    s = (geom.pixscale / pixscale) ** 2
    assert res.area_ratio == pytest.approx(s)
    assert np.allclose(res.invvar[res.invvar > 0], 4.0 / s**2, rtol=1e-5)
    yy, xx = np.mgrid[res.y0 : res.y1, res.x0 : res.x1]
    bw = geom.wcs()
    checked = 0
    for u, v, flux in stars:
        ra, dec = tim.wcs.pixel_to_radec(u + 1.0, v + 1.0)
        bx, by = bw.radec_to_pixel(ra, dec)
        r = 6 * 1.3 * pixscale / geom.pixscale
        m = np.hypot(xx - (bx - 1), yy - (by - 1)) < r
        if not (r < bx - 1 < geom.width - r - 1 and r < by - 1 < geom.height - r - 1):
            continue
        assert np.all(res.invvar[m] > 0)
        assert float(res.image[m].sum()) == pytest.approx(flux, rel=0.01)
        checked += 1
    assert checked >= 2


@pytest.fixture(scope="module")
def coadded(tmp_path_factory: pytest.TempPathFactory):
    """Stage tims + coadds on a 400² grid of the prepared survey, written to a copy."""
    from runbrick_survey import private_copy

    layout = private_copy(prepared_survey(tmp_path_factory), tmp_path_factory.mktemp("co") / "r")
    geom = BrickGeometry.for_brick(BRICK, width=400, height=400)
    state = stage_tims(layout=layout, geom=geom, bands=("g", "r", "z"))
    out = stage_coadds(layout=layout, geom=geom, bands=("g", "r", "z"), **state)
    return layout, geom, state, out


@pytest.mark.slow
def test_coadd_products_have_legacypipe_names_headers_compression(coadded):
    """Every product exists with extname <TYPE>_<band>, IMTYPE/PRODTYPE/BUNIT and compression."""
    layout, geom, _, out = coadded
    compress = {"image": "RICE_1", "invvar": "RICE_1", "nexp": "HCOMPRESS_1", "depth": "GZIP_1",
                "galdepth": "GZIP_1", "psfsize": "GZIP_1"}  # fmt: skip
    for band in "grz":
        for kind, ctype in compress.items():
            path = layout.coadd(BRICK, kind, band)
            assert path in out["coadd_products"]
            with fitsio.FITS(str(path)) as f:
                assert f[1].get_extname() == f"{kind.upper()}_{band}"
                hdr = f[1].read_header()
                data = f[1].read()
            assert hdr["ZCMPTYPE"] == ctype
            assert hdr["IMTYPE"] == kind and hdr["FILTERX"] == band
            assert data.shape == (geom.height, geom.width)
            assert hdr["CRPIX1"] == 200.5 and hdr["CD1_1"] < 0
        assert (
            fitsio.read_header(str(layout.coadd(BRICK, "image", band)), 1)["BUNIT"] == "nanomaggy"
        )
    assert not list(layout.coadd_dir(BRICK).glob("tmp-*"))


@pytest.mark.slow
def test_nexp_depth_and_psfsize(coadded):
    """nexp counts tims with data; depth = psfnorm²·invvar where one tim covers; psfsize sane."""
    layout, _, state, _ = coadded
    for band in "grz":
        nexp = fitsio.read(str(layout.coadd(BRICK, "nexp", band)))
        iv = fitsio.read(str(layout.coadd(BRICK, "invvar", band)))
        depth = fitsio.read(str(layout.coadd(BRICK, "depth", band)))
        psfsize = fitsio.read(str(layout.coadd(BRICK, "psfsize", band)))
        tims = [t for t in state["tims"] if t.band == band]
        assert nexp.max() <= len(tims) and nexp.max() >= 1
        assert np.all((nexp > 0) == (iv > 0))
        one = nexp == 1
        if one.any():
            # one tim: depth = psfnorm² · (brick invvar · s²)
            ratios = depth[one] / iv[one]
            expect = [t.psfnorm**2 * (0.262 / t.wcs.pixscale) ** 4 for t in tims]
            assert np.all(np.min(np.abs(ratios[:, None] / np.array(expect) - 1), axis=1) < 0.01)
        # legacypipe: the FWHM of the Gaussian with the same N_eff = 1/psfnorm² (arcsec).
        size = [2.3548 / (2 * np.sqrt(np.pi)) / t.psfnorm * t.wcs.pixscale for t in tims]
        good = psfsize[nexp > 0]
        assert min(size) * 0.999 < good.min() and good.max() < max(size) * 1.001
        fwhm = [t.psf_fwhm * t.wcs.pixscale for t in tims]
        assert min(fwhm) < np.median(good) < 1.5 * max(fwhm)


@pytest.mark.slow
def test_ccds_table_and_jpeg(coadded):
    """-ccds.fits has the survey-ccds columns plus bounds; the JPEG is W×H RGB."""
    layout, geom, state, _ = coadded
    table = fitsio.read(str(layout.coadd_ccds(BRICK)))
    wanted = ["image_filename", "expnum", "ccdname", "ccdzpt", "psfnorm", "galnorm"]
    wanted += [f"{p}_{c}" for p in ("ccd", "brick") for c in ("x0", "x1", "y0", "y1")]
    for col in wanted:
        assert col in table.dtype.names
    assert 1 <= len(table) <= len(state["tims"])
    assert np.all(table["brick_x1"] < geom.width) and np.all(table["brick_x0"] >= 0)
    with Image.open(layout.coadd_jpeg(BRICK, "image")) as im:
        assert im.size == (geom.width, geom.height) and im.mode == "RGB"
