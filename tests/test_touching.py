"""Bricks touched by CCD footprints equal an independent astropy-based computation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from geometry import independent_touching

from lsdr.survey.core import bricks as grid


def ccd_wcs(ra: float, dec: float, rot: float, pixscale: float, w: int, h: int) -> WCS:
    """A rotated TAN WCS for a synthetic CCD."""
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = [ra, dec]
    out.wcs.crpix = [w / 2 + 0.5, h / 2 + 0.5]
    s = pixscale / 3600.0
    c, sn = np.cos(rot), np.sin(rot)
    out.wcs.cd = [[-s * c, s * sn], [s * sn, s * c]]
    return out


def random_ccds(n: int, seed: int, dec_range: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Corners of n random rotated CCDs, via astropy (pixel edges 0.5 and W+0.5)."""
    rng = np.random.default_rng(seed)
    ras, decs = [], []
    for _ in range(n):
        ra = rng.uniform(0, 360)
        dec = rng.uniform(*dec_range)
        w, h = int(rng.integers(200, 4096)), int(rng.integers(200, 4096))
        wcs = ccd_wcs(ra, dec, rng.uniform(0, np.pi), rng.choice([0.262, 0.454]), w, h)
        r, d = wcs.all_pix2world([0.5, 0.5, w + 0.5, w + 0.5], [0.5, h + 0.5, h + 0.5, 0.5], 1)
        ras.append(r % 360.0)
        decs.append(d)
    return np.array(ras), np.array(decs)


@pytest.mark.parametrize(
    ("seed", "dec_range"),
    [(1, (-60.0, 60.0)), (2, (80.0, 89.5)), (3, (-89.0, -75.0))],
    ids=["mid", "north", "south"],
)
def test_touching_matches_independent_projection(seed: int, dec_range: tuple[float, float]):
    """Polygon overlap with brick images equals astropy projection + polygon clipping."""
    cra, cdec = random_ccds(25, seed, dec_range)
    ccd, ids = grid.bricks_touching_polygons(cra, cdec)
    mine = set(zip(ccd.tolist(), ids.tolist(), strict=True))
    assert mine == independent_touching(cra, cdec)
    assert len(mine) >= 25


def test_touching_across_ra_zero():
    """A CCD straddling RA 0 touches bricks on both sides of it."""
    wcs = ccd_wcs(0.05, 1.0, 0.0, 0.262, 4096, 2048)
    r, d = wcs.all_pix2world([0.5, 0.5, 4096.5, 4096.5], [0.5, 2048.5, 2048.5, 0.5], 1)
    ccd, ids = grid.bricks_touching_polygons(np.array([r % 360]), np.array([d]))
    ras = [grid.brick_by_id(int(i)).ra for i in ids]
    assert min(ras) < 1.0 and max(ras) > 359.0
    assert set(zip(ccd.tolist(), ids.tolist(), strict=True)) == independent_touching(
        np.array([r % 360]), np.array([d])
    )


def test_ccd_corners_from_wcs_match_astropy():
    """Corners computed from survey-ccds WCS columns equal astropy's pixel_to_world."""
    wcs = ccd_wcs(180.3, 32.4, 0.3, 0.454, 4032, 4096)
    cd = wcs.wcs.cd
    ra, dec = grid.ccd_corners_from_wcs(
        180.3, 32.4, wcs.wcs.crpix[0], wcs.wcs.crpix[1],
        cd[0, 0], cd[0, 1], cd[1, 0], cd[1, 1], 4032, 4096,
    )  # fmt: skip
    r, d = wcs.all_pix2world([1, 1, 4032, 4032], [1, 4096, 4096, 1], 1)
    assert np.allclose(ra[0], r, atol=1e-10) and np.allclose(dec[0], d, atol=1e-10)


def test_queue_shortcut_keeps_near_bricks():
    """A brick whose centre is within the queue_calibs radius of a CCD centre is kept."""
    brick = grid.brick_by_name("1804p325")
    far = grid.brick_by_name("1807p330")
    tiny = 0.001
    cra = np.array([[brick.ra - tiny, brick.ra - tiny, brick.ra + tiny, brick.ra + tiny]])
    cdec = np.array([[brick.dec - tiny, brick.dec + tiny, brick.dec + tiny, brick.dec - tiny]])
    kept = grid.bricks_touching_ccds(
        [brick, far], np.array([brick.ra]), np.array([brick.dec]), cra, cdec
    )
    assert kept == [brick]
