"""Stage ``refs`` (minimal): Gaia stars on the brick and their BRIGHT / MEDIUM mask circles.

legacypipe (``reference.py``) masks a circle of radius 1630″·1.396^(−mask_mag) around every
Gaia star with ``mask_mag < 16`` (MEDIUM, maskbit 11) and half that radius for
``mask_mag < 13`` (BRIGHT, maskbit 1).  Here ``mask_mag`` is Gaia G (legacypipe takes
min(G, z_guess + 1); the lite engine has no colour-based z guess yet).  Tycho-2, the large-galaxy
atlas and star clusters are not used.  Stars outside the brick whose circle reaches it count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.refcat import read_gaia
from lsdr.survey.runbrick.types import BrickGeometry

MASKBIT_BRIGHT = 1 << 1
MASKBIT_MEDIUM = 1 << 11
BRIGHT_MAG = 13.0
MEDIUM_MAG = 16.0

REFS_DTYPE = np.dtype(
    [
        ("ref_cat", "S2"),
        ("ref_id", ">i8"),
        ("ra", ">f8"),
        ("dec", ">f8"),
        ("mag", ">f4"),
        ("radius", ">f4"),
        ("ibx", ">i4"),
        ("iby", ">i4"),
        ("in_bounds", "?"),
        ("isbright", "?"),
        ("ismedium", "?"),
    ]
)
"""One row per reference star (radius in degrees; ibx/iby 0-based brick pixels)."""


def mask_radius(mag: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """legacypipe's ``mask_radius_for_mag``: radius in degrees for a mask magnitude."""
    return np.asarray(1630.0 / 3600.0 * 1.396 ** (-np.asarray(mag, np.float64)), np.float64)


def reference_points(geom: BrickGeometry) -> tuple[npt.NDArray[np.float64], ...]:
    """RA, Dec of the brick's corners and centre: the chunks holding them are those read."""
    cx = np.array([0.5, geom.width + 0.5, geom.width + 0.5, 0.5, (geom.width + 1) / 2])
    cy = np.array([0.5, 0.5, geom.height + 0.5, geom.height + 0.5, (geom.height + 1) / 2])
    return tuple(geom.wcs().pixel_to_radec(cx, cy))


def brick_refs(layout: ReleaseLayout, geom: BrickGeometry) -> npt.NDArray[np.void]:
    """Gaia stars inside the brick grid or whose mask circle reaches it."""
    wcs = geom.wcs()
    gaia = read_gaia(layout, *reference_points(geom))
    if len(gaia) == 0:
        return np.zeros(0, REFS_DTYPE)
    g = np.asarray(gaia["phot_g_mean_mag"], np.float64)
    g = np.where(np.isfinite(g) & (g > 0), g, 99.0)
    radius = mask_radius(g)
    x, y = wcs.radec_to_pixel(gaia["ra"], gaia["dec"])
    rpix = radius * 3600.0 / geom.pixscale
    reach = np.where(g < MEDIUM_MAG, rpix, 0.0)
    near = (
        np.isfinite(x)
        & (x > 0.5 - reach)
        & (x < geom.width + 0.5 + reach)
        & (y > 0.5 - reach)
        & (y < geom.height + 0.5 + reach)
    )
    sel = np.nonzero(near)[0]
    out = np.zeros(len(sel), REFS_DTYPE)
    out["ref_cat"] = b"G2"
    out["ref_id"] = gaia["source_id"][sel]
    out["ra"] = gaia["ra"][sel]
    out["dec"] = gaia["dec"][sel]
    out["mag"] = g[sel]
    out["radius"] = radius[sel]
    out["ibx"] = np.rint(x[sel] - 1.0).astype(np.int32)
    out["iby"] = np.rint(y[sel] - 1.0).astype(np.int32)
    out["in_bounds"] = (
        (x[sel] > 0.5) & (x[sel] < geom.width + 0.5) & (y[sel] > 0.5) & (y[sel] < geom.height + 0.5)
    )
    out["isbright"] = g[sel] < BRIGHT_MAG
    out["ismedium"] = g[sel] < MEDIUM_MAG
    return out


def reference_maskbits(refs: npt.NDArray[np.void], geom: BrickGeometry) -> npt.NDArray[np.int32]:
    """BRIGHT (half radius) and MEDIUM (full radius) circles on the brick grid."""
    out = np.zeros((geom.height, geom.width), np.int32)
    if len(refs) == 0:
        return out
    x, y = geom.wcs().radec_to_pixel(refs["ra"], refs["dec"])
    x, y = x - 1.0, y - 1.0
    for i in range(len(refs)):
        for flag, bit, frac in (
            ("ismedium", MASKBIT_MEDIUM, 1.0),
            ("isbright", MASKBIT_BRIGHT, 0.5),
        ):
            if not refs[flag][i]:
                continue
            r = float(refs["radius"][i]) * frac * 3600.0 / geom.pixscale
            x0, x1 = max(0, math.floor(x[i] - r)), min(geom.width, math.ceil(x[i] + r) + 1)
            y0, y1 = max(0, math.floor(y[i] - r)), min(geom.height, math.ceil(y[i] + r) + 1)
            if x1 <= x0 or y1 <= y0:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            inside = (xx - x[i]) ** 2 + (yy - y[i]) ** 2 < r * r
            out[y0:y1, x0:x1] |= np.where(inside, np.int32(bit), np.int32(0))
    return out


def stage_refs(*, layout: ReleaseLayout, geom: BrickGeometry) -> dict[str, Any]:
    """Stage ``refs``: ``refs`` (REFS_DTYPE rows) and ``refmap`` (BRIGHT/MEDIUM maskbits)."""
    refs = brick_refs(layout, geom)
    return {"refs": refs, "refmap": reference_maskbits(refs, geom)}
