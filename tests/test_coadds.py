"""Resampling to the brick grid and the coadd products of stage ``coadds``."""

from __future__ import annotations

import dataclasses
import math

import fitsio
import numpy as np
import pytest
from PIL import Image
from runbrick_survey import BRICK, prepared_survey

from lsdr.survey.core.tan import TanWcs
from lsdr.survey.pretractor.psfex import PsfModel, gaussian_psf
from lsdr.survey.runbrick.coadds import stage_coadds
from lsdr.survey.runbrick.resample import (
    fast_lanczos_weights,
    lanczos_weights,
    resample_tim,
    resample_tim_reference,
)
from lsdr.survey.runbrick.tims import stage_tims
from lsdr.survey.runbrick.types import BrickGeometry, Tim


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


def test_fast_lanczos_weights_match_sinc_weights():
    """The two-sine weights equal the sinc·sinc ones, also at fractions next to 0 and 1."""
    rng = np.random.default_rng(5)
    frac = np.concatenate(
        [rng.random(20000), 10 ** -rng.uniform(0, 30, 2000), 1 - 10 ** -rng.uniform(0, 15, 2000)]
    )
    frac = np.concatenate([np.clip(frac, 0.0, np.nextafter(1.0, 0.0)), [0.0, 0.5]])
    fast = fast_lanczos_weights(frac)
    assert fast.dtype == np.float32 and fast.shape == (6, len(frac))
    assert np.abs(fast - lanczos_weights(frac)).max() < 1e-6
    assert np.array_equal(fast[:, -2], [0, 0, 1, 0, 0, 0])


@pytest.mark.parametrize(("pixscale", "angle"), [(0.262, 0.02), (0.524, 0.3), (0.908, 0.05)])
def test_fast_resampling_matches_reference(pixscale: float, angle: float):
    """resample_tim equals the first implementation: images to 1e-6, invvar bit for bit.

    A noisy CCD with a masked block and a model image; only pixels whose CCD coordinate sits
    within ~1e-7 pixel of a rounding edge may pick another nearest pixel (at most 2 here).  An
    unrotated grid of the brick's pixel size is left out: every coordinate is then an integer
    to rounding, and which side of it either implementation lands on is arbitrary.
    """
    geom = BrickGeometry.for_brick(BRICK, width=160, height=140)
    tim, _ = synthetic_tim(geom, pixscale, angle)
    rng = np.random.default_rng(11)
    image = tim.image + rng.normal(0, 0.5, tim.shape).astype(np.float32)
    invvar = rng.uniform(2.0, 6.0, tim.shape).astype(np.float32)
    invvar[40:47, 30:90] = 0.0
    invvar[70, 55] = 0.0
    tim = dataclasses.replace(tim, image=image, invvar=invvar)
    model = (tim.image * np.float32(0.9)).astype(np.float32)
    fast = resample_tim(tim, geom, 0, (model,))
    ref = resample_tim_reference(tim, geom, 0, (model,))
    assert fast is not None and ref is not None
    assert (fast.x0, fast.x1, fast.y0, fast.y1) == (ref.x0, ref.x1, ref.y0, ref.y1)
    assert fast.area_ratio == ref.area_ratio
    assert fast.image.dtype == fast.invvar.dtype == np.float32
    assert int(np.sum(fast.invvar != ref.invvar)) <= 2
    assert (ref.invvar == 0).sum() > 100  # the masked block reached the brick
    both = (fast.invvar > 0) & (ref.invvar > 0)
    for a, b in ((fast.image, ref.image), (fast.extras[0], ref.extras[0])):
        assert np.abs(a - b)[both].max() <= 1e-6 * np.abs(b).max()
        assert np.all(a[fast.invvar == 0] == 0)


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
    """nexp counts tims with data; depth = psfnorm²/sig1² where one tim covers; psfsize sane."""
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
            # one tim: legacypipe's flat depth psfnorm²/sig1² of that tim, sources or not
            expect = np.array([t.psfnorm**2 / t.sig1**2 for t in tims])
            off = np.abs(depth[one][:, None] / expect - 1).min(axis=1)
            assert np.all(off < 1e-5)
            assert len(np.unique(depth[one])) <= len(tims)
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
