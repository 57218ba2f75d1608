"""Independent geometry for tests: brick images and polygon clipping with astropy, no lsdr code.

Used to check ``bricks touching`` against a computation that shares nothing with
``survey/core/bricks.py`` but the grid's brick centres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits as afits
from astropy.wcs import WCS

from lsdr.survey.core import bricks as grid

HALF = grid.BRICK_SIZE_PIX / 2.0


def brick_wcs(brick: grid.Brick) -> WCS:
    """legacypipe's wcs_for_brick: TAN at the centre, CRPIX W/2+0.5, CD diag(-p, p)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [brick.ra, brick.dec]
    w.wcs.crpix = [HALF + 0.5, HALF + 0.5]
    p = grid.BRICK_PIXSCALE / 3600.0
    w.wcs.cd = [[-p, 0.0], [0.0, p]]
    return w


def clip_area(poly: np.ndarray, lo: float, hi: float) -> float:
    """Area of a polygon clipped to the square [lo, hi]² (Sutherland–Hodgman)."""
    pts = [tuple(p) for p in poly]
    for axis, bound, keep_greater in ((0, lo, True), (0, hi, False), (1, lo, True), (1, hi, False)):
        if not pts:
            break
        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cin = (cur[axis] >= bound) if keep_greater else (cur[axis] <= bound)
            pin = (prev[axis] >= bound) if keep_greater else (prev[axis] <= bound)
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) for k in range(2)))
            if cin:
                out.append(cur)
        pts = out
    if len(pts) < 3:
        return 0.0
    arr = np.array(pts)
    x, y = arr[:, 0], arr[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def independent_touching(corners_ra: np.ndarray, corners_dec: np.ndarray) -> set[tuple[int, int]]:
    """(ccd, brickid) pairs by projecting corners with astropy into every nearby brick image."""
    cols = grid.all_bricks_columns()
    bra, bdec = np.radians(cols["ra"]), np.radians(cols["dec"])
    pairs = set()
    for i in range(len(corners_ra)):
        # Candidates: every brick centre within 1.2 degrees of the CCD's first corner.
        r0, d0 = np.radians(corners_ra[i][0]), np.radians(corners_dec[i][0])
        cosd = np.sin(d0) * np.sin(bdec) + np.cos(d0) * np.cos(bdec) * np.cos(bra - r0)
        for brickid in cols["brickid"][cosd > np.cos(np.radians(1.2))]:
            brick = grid.brick_by_id(int(brickid))
            x, y = brick_wcs(brick).all_world2pix(corners_ra[i], corners_dec[i], 1)
            if not np.all(np.isfinite(x)):
                continue
            if clip_area(np.stack([x, y], axis=1), 0.5, grid.BRICK_SIZE_PIX + 0.5) > 1e-6:
                pairs.add((i, brick.brickid))
    return pairs


def image_bricks(image: Path, ccdnames: set[str] | None = None) -> set[str]:
    """The bricks a CP image's CCDs overlap (only ``ccdnames`` when given), by astropy.

    Corners at each HDU's pixel edges through its own WCS, then :func:`independent_touching`.
    """
    ras, decs = [], []
    with afits.open(image) as hdus:
        for hdu in hdus[1:]:
            if ccdnames is not None and hdu.name not in ccdnames:
                continue
            h, w = hdu.data.shape
            x = np.array([0.5, w + 0.5, w + 0.5, 0.5])
            y = np.array([0.5, 0.5, h + 0.5, h + 0.5])
            ra, dec = WCS(hdu.header).all_pix2world(x, y, 1)
            ras.append(ra)
            decs.append(dec)
    if not ras:
        return set()
    ids = {b for _, b in independent_touching(np.array(ras), np.array(decs))}
    return {grid.brick_by_id(i).brickname for i in ids}
