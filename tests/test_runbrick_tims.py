"""Stage ``tims``: CCD pixels under the brick, sky-subtracted and in nanomaggies."""

from __future__ import annotations

import fitsio
import numpy as np
import pytest
from runbrick_survey import BRICK, prepared_survey

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.tims import read_tims, select_ccds
from lsdr.survey.runbrick.types import BrickGeometry, Tim

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """The prepared synthetic survey."""
    return prepared_survey(tmp_path_factory)


@pytest.fixture(scope="module")
def tims(survey: ReleaseLayout) -> list[Tim]:
    """Tims of a 1200² grid at the brick centre."""
    geom = BrickGeometry.for_brick(BRICK, width=1200, height=1200)
    return read_tims(survey, geom, ("g", "r", "z"))


def isolated_stars(survey: ReleaseLayout, tim: Tim) -> list[tuple[float, float, float]]:
    """(u, v, truth flux) of bright truth stars on the tim with no bright neighbour."""
    truth = fitsio.read(str(survey.truth_catalog))
    flux = truth[f"flux_{tim.band}"].astype(np.float64)
    x, y = tim.wcs.radec_to_pixel(truth["ra"], truth["dec"])
    u, v = x - 1.0 - tim.x0, y - 1.0 - tim.y0
    h, w = tim.shape
    rad = 4.0 * tim.psf_fwhm
    out = []
    for k in np.nonzero((truth["type"] == "PSF") & (flux > 20))[0]:
        if not (rad < u[k] < w - rad - 1 and rad < v[k] < h - rad - 1):
            continue
        d = np.hypot(u - u[k], v - v[k])
        if np.any((d > 0) & (d < 2 * rad) & (flux > 0.02 * flux[k])):
            continue
        out.append((float(u[k]), float(v[k]), float(flux[k])))
    return out


def test_tims_cover_every_band_and_sit_on_the_ccd(survey: ReleaseLayout, tims: list[Tim]):
    """Every band has tims; cut-outs lie inside their CCD; table order is kept."""
    assert {t.band for t in tims} == {"g", "r", "z"}
    ccds = select_ccds(survey, BrickGeometry.for_brick(BRICK, width=1200, height=1200), "grz")
    assert len(tims) == len(ccds)
    for tim, row in zip(tims, ccds, strict=True):
        h, w = tim.shape
        assert tim.x0 >= 0 and tim.y0 >= 0
        assert tim.x0 + w <= row["width"] and tim.y0 + h <= row["height"]
        assert tim.image.dtype == np.float32 and tim.invvar.dtype == np.float32
        assert np.all(tim.invvar[tim.dq != 0] == 0)
        assert 0.1 < tim.psfnorm < 0.5 and 0.05 < tim.galnorm < tim.psfnorm


def test_star_flux_in_nanomaggies_matches_truth(survey: ReleaseLayout, tims: list[Tim]):
    """Aperture sums (4 FWHM) of isolated truth stars equal their truth flux to a few %."""
    ratios = []
    for tim in tims:
        h, w = tim.shape
        yy, xx = np.mgrid[0:h, 0:w]
        for u, v, flux in isolated_stars(survey, tim):
            m = np.hypot(xx - u, yy - v) < 4.0 * tim.psf_fwhm
            if np.any(tim.invvar[m] == 0):
                continue
            ratios.append(float(tim.image[m].sum()) / flux)
    assert len(ratios) >= 5
    assert abs(np.median(ratios) - 1.0) < 0.03
    assert np.all(np.abs(np.array(ratios) - 1.0) < 0.15)


def test_invvar_matches_pixel_scatter(tims: list[Tim]):
    """image·√invvar has a robust standard deviation ~1 over the good pixels."""
    for tim in tims:
        good = tim.invvar > 0
        if good.sum() < 2000:
            continue
        chi = tim.image[good] * np.sqrt(tim.invvar[good])
        sigma = 1.4826 * np.median(np.abs(chi - np.median(chi)))
        assert 0.9 < sigma < 1.15, tim.name
        assert abs(np.median(chi)) < 0.3, tim.name


def test_no_ccd_far_away(survey: ReleaseLayout):
    """A brick no CCD touches has no tims."""
    geom = BrickGeometry.for_brick("0001p000", width=200, height=200)
    assert read_tims(survey, geom, ("g", "r", "z")) == []
