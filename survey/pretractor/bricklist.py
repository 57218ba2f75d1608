"""The brick list of a release: bricks touched by the CCDs that survived the cuts.

This is ``queue_calibs.py --touching`` on the merged CCD tables: rows with ``ccd_cuts == 0``;
a brick is on the list when a CCD centre lies within queue_calibs' radius of its centre or a
CCD footprint overlaps its 3600² image (:func:`lsdr.survey.core.bricks.bricks_touching_ccds`).
With a region, only bricks whose centre lies in the box are candidates (queue_calibs' region
cut); without one, every brick near a CCD is.  Names are in RA order, as queue_calibs prints
them; the list file holds names only, one a line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import BrickNameError, SurveyError
from lsdr.survey.core.fileio import read_name_list, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout

log = logging.getLogger(__name__)

CHUNK = 100_000
"""CCDs processed at once (bounds the memory of the footprint tests)."""


def ccd_footprints(ccds: np.ndarray) -> tuple[grid.FloatArray, ...]:
    """Centres (ra, dec) and pixel-edge corners (N, 4) of CCD rows, from their TAN WCS columns.

    Corners are at pixels (0.5, 0.5) … (W+0.5, H+0.5), as legacypipe's ``ccds_touching_wcs``.
    """

    def col(name: str) -> grid.FloatArray:
        return np.asarray(ccds[name], np.float64)

    crval1, crval2, crpix1, crpix2 = (col(c) for c in ("crval1", "crval2", "crpix1", "crpix2"))
    cd11, cd12, cd21, cd22 = (col(c) for c in ("cd1_1", "cd1_2", "cd2_1", "cd2_2"))
    width, height = col("width"), col("height")
    corner_ra, corner_dec = grid.ccd_corners_from_wcs(
        crval1, crval2, crpix1 + 0.5, crpix2 + 0.5, cd11, cd12, cd21, cd22, width + 1, height + 1
    )
    centre_ra, centre_dec = grid.ccd_corners_from_wcs(
        crval1, crval2, crpix1, crpix2, cd11, cd12, cd21, cd22, (width + 1) / 2, (height + 1) / 2
    )
    return centre_ra[:, 2], centre_dec[:, 2], corner_ra, corner_dec


def bricks_for_ccds(ccds: np.ndarray, region: grid.RaDecBox | None) -> list[str]:
    """Names of the bricks touched by the CCDs with ``ccd_cuts == 0`` (in ``region`` if given)."""
    if "ccd_cuts" in (ccds.dtype.names or ()):
        ccds = ccds[ccds["ccd_cuts"] == 0]
    if len(ccds) == 0:
        log.info("no CCDs with ccd_cuts == 0: the brick list is empty")
        return []
    ra, dec, corner_ra, corner_dec = ccd_footprints(ccds)
    fixed = grid.bricks_in_region(region) if region is not None else None
    kept: dict[int, grid.Brick] = {}
    for start in range(0, len(ccds), CHUNK):
        part = slice(start, start + CHUNK)
        candidates = fixed if fixed is not None else _near_bricks(corner_ra[part], corner_dec[part])
        candidates = [b for b in candidates if b.brickid not in kept]
        for brick in grid.bricks_touching_ccds(
            candidates, ra[part], dec[part], corner_ra[part], corner_dec[part]
        ):
            kept[brick.brickid] = brick
    ordered = sorted(kept.values(), key=lambda b: (b.ra, b.dec))
    log.info("%d bricks touched by %d CCDs", len(ordered), len(ccds))
    return [b.brickname for b in ordered]


def _near_bricks(corner_ra: grid.FloatArray, corner_dec: grid.FloatArray) -> list[grid.Brick]:
    """Every brick that could be kept for these CCDs: a superset for the exact test.

    A brick whose centre is within queue_calibs' radius of a CCD centre has a square of that
    half-width about its centre overlapping the CCD, and that square also holds the brick's
    3600² image; the grid's polygon search with such squares finds them all.
    """
    side_pix = math.ceil(2 * (grid.QUEUE_CLOSEST_RADIUS + 1e-3) * 3600.0 / grid.BRICK_PIXSCALE)
    _, ids = grid.bricks_touching_polygons(corner_ra, corner_dec, width_pix=side_pix)
    return [grid.brick_by_id(int(i)) for i in np.unique(ids)]


def write_brick_list(layout: ReleaseLayout, bricks: Sequence[str]) -> Path:
    """Write ``layout.brick_list`` atomically: validated brick names, one a line."""
    names = [grid.validate_brickname(b) for b in bricks]
    if len(set(names)) != len(names):
        raise SurveyError("the brick list has duplicated names")
    return write_text_atomic(layout.brick_list, "".join(f"{n}\n" for n in names))


def read_brick_list(layout: ReleaseLayout) -> list[str]:
    """The brick names of ``layout.brick_list``, each validated against the grid."""
    return read_name_list(
        layout.brick_list, "brick list", grid.validate_brickname, (BrickNameError,)
    )
