"""Stage ``refs``: reference stars and star clusters on the brick, and their mask map.

The same selection and masks as legacypipe's ``get_reference_sources`` / ``get_reference_map``
(facts read from its ``reference.py`` and ``gaiacat.py``):

- **Gaia** (chunks of the release): ``mag`` = G (else RP, else BP); ``zguess`` = the Gaia→DECam z
  colour transform (7th-order polynomial in BP − RP clipped to [−0.6, 4.1], 1.4 when BP or RP
  is missing); ``mask_mag`` = min(mag, zguess + 1), 99 without any magnitude; BRIGHT for
  mask_mag < 13, MEDIUM for mask_mag < 16.
- **Tycho-2** (``tycho2.kd.fits``, within 1° of the brick centre): ``isgalaxy == 0``; ``mag`` =
  ggguess (else V_T, Hp, B_T); ``mask_mag`` = zguess + 1 where brighter; kept when < 13; BRIGHT
  and MEDIUM; positions moved to the mean of their two epochs.  A Tycho star within 1″ of a
  Gaia star (Gaia moved to the Tycho epoch) is dropped and that Gaia star marked BRIGHT.
- **Clusters** (``NGC-star-clusters.fits``, see ``starclusters``): those within the margin
  grid's radius plus their own of its centre; CLUSTER ellipses.

Radius: 1630″ · 1.396^(−mask_mag) (clusters: the catalogue's), ``radius_pix`` =
ceil(radius·3600/pixscale); BRIGHT uses (radius_pix + 1) // 2.  A brick pixel (i, j), 0-based,
is in a circle when (i − x)² + (j − y)² ≤ radius_pix² about the star's 0-based position, and in
an ellipse when v₁²/r² + v₂²/(r·ba)² < 1 for the offset turned by the unit-scaled CD matrix and
then by 90° + PA.  Stars are read over the brick grown by the margin of a mag-0 star (plus the
10 pixels legacypipe's catalogue reader adds) and kept while within ``keep_radius`` (Gaia 4×,
Tycho 2× the radius) of the grid.  The large-galaxy atlas (GALAXY) is not read.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.refcat import read_gaia
from lsdr.survey.core.tycho2 import TYCHO_RADIUS_DEG, angular_distance, read_tycho2
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.types import BrickGeometry

log = logging.getLogger("lsdr.survey.runbrick")

REF_BRIGHT = 0x1
REF_MEDIUM = 0x2
REF_CLUSTER = 0x4
REF_GALAXY = 0x8
"""Bits of the ``refmap`` (legacypipe's ``REF_MAP_BITS``); ``catalog.maskbits_image`` turns
them into the flavour's maskbits."""
BRIGHT_MAG = 13.0
MEDIUM_MAG = 16.0
CATALOG_MARGIN_PIX = 10
"""legacypipe's Gaia reader keeps stars up to 10 pixels beyond the (margin) grid."""
TYCHO_GAIA_COARSE_DEG = 10.0 / 3600.0
TYCHO_GAIA_MATCH_DEG = 1.0 / 3600.0
TYCHO_EPOCH = 1991.5
GAIA_Z_COEFFS = (
    0.4811198057,
    -0.9990015041,
    0.1403990019,
    0.2150988888,
    -0.2917655866,
    0.1326831887,
    -0.0259205004,
    0.0018548776,
)
"""z − G as a polynomial in BP − RP (legacypipe ``gaia_to_decam``, DECam z, by Rongpu Zhou)."""
GAIA_COLOUR_RANGE = (-0.6, 4.1)
GAIA_AVERAGE_COLOUR = 1.4
GAIA_MISSING_MAG = 30.0

REFS_DTYPE = np.dtype(
    [
        ("ref_cat", "S2"),
        ("ref_id", ">i8"),
        ("ra", ">f8"),
        ("dec", ">f8"),
        ("mag", ">f4"),
        ("mask_mag", ">f4"),
        ("zguess", ">f4"),
        ("radius", ">f4"),
        ("keep_radius", ">f4"),
        ("radius_pix", ">i4"),
        ("ba", ">f4"),
        ("pa", ">f4"),
        ("ibx", ">i4"),
        ("iby", ">i4"),
        ("in_bounds", "?"),
        ("isbright", "?"),
        ("ismedium", "?"),
        ("isgaia", "?"),
        ("istycho", "?"),
        ("iscluster", "?"),
        ("ref_epoch", ">f4"),
        ("pmra", ">f4"),
        ("pmdec", ">f4"),
    ]
)
"""One row per reference object (radius in degrees; ibx/iby 0-based brick pixels; pm mas/yr)."""


def mask_radius(mag: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """legacypipe's ``mask_radius_for_mag``: radius in degrees, computed in float32 as there."""
    m = np.asarray(mag, np.float32)
    return np.asarray(np.float32(1630.0 / 3600.0) * np.float32(1.396) ** (-m), np.float32)


def gaia_zguess(gaia: npt.NDArray[np.void]) -> npt.NDArray[np.float32]:
    """The DECam z magnitude guessed from Gaia G, BP, RP (float32, as legacypipe)."""
    g, bp, rp = (
        np.array(gaia[c], np.float32)
        for c in ("phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag")
    )
    for arr in (g, bp, rp):
        arr[~np.isfinite(arr)] = 0.0
    colour = bp - rp
    colour[~np.isfinite(colour) | (bp == 0) | (rp == 0)] = GAIA_AVERAGE_COLOUR
    cc = np.clip(colour, *GAIA_COLOUR_RANGE).astype(np.float32)
    mag = g.copy()
    for order, coeff in enumerate(GAIA_Z_COEFFS):
        mag += np.float32(coeff) * cc**order
    mag[g == 0] = GAIA_MISSING_MAG
    return mag


def margin_pixels(pixscale: float) -> int:
    """The margin (pixels) within which reference stars are read: a mag-0 star's radius."""
    return math.ceil(float(mask_radius(0.0)) * 3600.0 / pixscale)


def reference_points(geom: BrickGeometry) -> tuple[npt.NDArray[np.float64], ...]:
    """RA, Dec of a grid (≤ 100 pixels apart) over the brick grown by the reading margin.

    The Gaia chunks holding any of them are the ones read (legacypipe's healpix sampling).
    """
    m = margin_pixels(geom.pixscale) + CATALOG_MARGIN_PIX
    xs = np.linspace(1 - m, geom.width + m, 2 + int((geom.width + 2 * m) / 100.0))
    ys = np.linspace(1 - m, geom.height + m, 2 + int((geom.height + 2 * m) / 100.0))
    xx, yy = np.meshgrid(xs, ys)
    return tuple(geom.wcs().pixel_to_radec(xx.ravel(), yy.ravel()))


def _gaia_rows(layout: ReleaseLayout, geom: BrickGeometry) -> npt.NDArray[np.void]:
    gaia = read_gaia(layout, *reference_points(geom))
    out = np.zeros(0, REFS_DTYPE)
    if len(gaia) == 0:
        return out
    m = margin_pixels(geom.pixscale) + CATALOG_MARGIN_PIX
    x, y = geom.wcs().radec_to_pixel(gaia["ra"], gaia["dec"])
    on = (x >= 1 - m) & (x <= geom.width + m) & (y >= 1 - m) & (y <= geom.height + m)
    gaia = gaia[on]
    g = np.asarray(gaia["phot_g_mean_mag"], np.float32)
    sortmag = g.copy()
    sortmag[sortmag == 0] = np.asarray(gaia["phot_rp_mean_mag"], np.float32)[sortmag == 0]
    gaia = gaia[np.argsort(sortmag, kind="stable")]
    mag = np.array(gaia["phot_g_mean_mag"], np.float32)
    for fallback in ("phot_rp_mean_mag", "phot_bp_mean_mag"):
        mag[mag == 0] = np.asarray(gaia[fallback], np.float32)[mag == 0]
    zguess = gaia_zguess(gaia)
    zguess[zguess == 0] = mag[zguess == 0]
    mask_mag = np.minimum(mag, zguess + np.float32(1.0))
    bad = mag == 0
    mask_mag[bad] = 99.0
    radius = mask_radius(mask_mag)
    radius[bad] = 0.0
    out = np.zeros(len(gaia), REFS_DTYPE)
    out["ref_cat"], out["ref_id"] = b"G2", gaia["source_id"]
    out["ra"], out["dec"] = gaia["ra"], gaia["dec"]
    out["mag"], out["mask_mag"], out["zguess"] = mag, mask_mag, zguess
    out["radius"], out["keep_radius"] = radius, 4.0 * radius
    out["isgaia"] = True
    out["isbright"], out["ismedium"] = mask_mag < BRIGHT_MAG, mask_mag < MEDIUM_MAG
    out["ba"], out["pa"] = 1.0, 0.0
    for col in ("ref_epoch", "pmra", "pmdec"):
        v = np.asarray(gaia[col], np.float32)
        out[col] = np.where(np.isfinite(v), v, 0.0) if col != "ref_epoch" else v
    return out


def _tycho_rows(path: Path, ra: float, dec: float) -> npt.NDArray[np.void]:
    tycho = read_tycho2(path, ra, dec, TYCHO_RADIUS_DEG)
    tycho = tycho[tycho["isgalaxy"] == 0]
    mag = np.array(tycho["ggguess"], np.float32)
    bad = ~np.isfinite(mag)
    mag[bad] = np.asarray(tycho["mag_vt"], np.float32)[bad]
    for fallback in ("mag_hp", "mag_bt"):
        mag[mag == 0] = np.asarray(tycho[fallback], np.float32)[mag == 0]
    zguess = np.asarray(tycho["zguess"], np.float32)
    mask_mag = mag.copy()
    with np.errstate(invalid="ignore"):
        redder = np.isfinite(zguess) & (zguess + np.float32(1.0) < mag)
    mask_mag[redder] = zguess[redder] + np.float32(1.0)
    keep = mask_mag < BRIGHT_MAG
    tycho, mag, mask_mag, zguess = tycho[keep], mag[keep], mask_mag[keep], zguess[keep]
    pmra = np.asarray(tycho["pm_ra"], np.float32)
    pmdec = np.asarray(tycho["pm_dec"], np.float32)
    pmra, pmdec = (np.where(np.isfinite(p), p, np.float32(0.0)) for p in (pmra, pmdec))
    epoch_ra = np.asarray(tycho["epoch_ra"], np.float32).copy()
    epoch_dec = np.asarray(tycho["epoch_dec"], np.float32).copy()
    epoch_ra[epoch_ra == 0] = 1991.25
    epoch_dec[epoch_dec == 0] = 1991.25
    ref_epoch = (epoch_ra + epoch_dec) / np.float32(2.0)
    cosdec = np.cos(np.deg2rad(tycho["dec"]))
    radius = mask_radius(mask_mag)
    out = np.zeros(len(tycho), REFS_DTYPE)
    out["ref_cat"] = b"T2"
    out["ref_id"] = (
        tycho["tyc1"].astype(np.int64) * 1000000
        + tycho["tyc2"].astype(np.int64) * 10
        + tycho["tyc3"].astype(np.int64)
    )
    out["ra"] = tycho["ra"] + (ref_epoch - epoch_ra) * pmra / 3600.0 / cosdec
    out["dec"] = tycho["dec"] + (ref_epoch - epoch_dec) * pmdec / 3600.0
    out["mag"], out["mask_mag"], out["zguess"] = mag, mask_mag, zguess
    out["radius"], out["keep_radius"] = radius, 2.0 * radius
    out["istycho"] = out["isbright"] = out["ismedium"] = True
    out["ba"], out["pa"] = 1.0, 0.0
    out["ref_epoch"], out["pmra"], out["pmdec"] = ref_epoch, pmra * 1000.0, pmdec * 1000.0
    return out


def drop_gaia_duplicates(
    gaia: npt.NDArray[np.void], tycho: npt.NDArray[np.void]
) -> npt.NDArray[np.void]:
    """Tycho stars without a Gaia counterpart; the matched Gaia stars become BRIGHT (in place).

    Gaia is moved back to 1991.5 for a 10″ nearest-neighbour match, then to each Tycho star's
    own epoch: a pair closer than 1″ is one star (legacypipe ``merge_gaia_tycho``).
    """
    if len(gaia) == 0 or len(tycho) == 0:
        return tycho
    gepoch = np.asarray(gaia["ref_epoch"], np.float64)
    gra, gdec = np.asarray(gaia["ra"], np.float64), np.asarray(gaia["dec"], np.float64)
    pmra, pmdec = np.asarray(gaia["pmra"], np.float64), np.asarray(gaia["pmdec"], np.float64)
    cosg = np.cos(np.deg2rad(gdec))
    dt = TYCHO_EPOCH - gepoch
    ra91, dec91 = gra + dt * pmra / 3.6e6 / cosg, gdec + dt * pmdec / 3.6e6
    drop = np.zeros(len(tycho), bool)
    for i, t in enumerate(tycho):
        d = angular_distance(float(t["ra"]), float(t["dec"]), ra91, dec91)
        j = int(np.argmin(d))
        if d[j] > TYCHO_GAIA_COARSE_DEG:
            continue
        dtj = float(t["ref_epoch"]) - gepoch[j]
        ra_t = gra[j] + dtj * pmra[j] / 3.6e6 / cosg[j]
        dec_t = gdec[j] + dtj * pmdec[j] / 3.6e6
        if math.hypot((ra_t - t["ra"]) * cosg[j], dec_t - t["dec"]) <= TYCHO_GAIA_MATCH_DEG:
            drop[i] = True
            gaia["isbright"][j] = True
            gaia["istycho"][j] = True
    return tycho[~drop]


def _cluster_rows(path: Path, geom: BrickGeometry) -> npt.NDArray[np.void]:
    from lsdr.survey.runbrick.starclusters import read_star_clusters

    clusters = read_star_clusters(path)
    m = margin_pixels(geom.pixscale)
    rc, dc = geom.wcs().pixel_to_radec((geom.width + 1) / 2.0, (geom.height + 1) / 2.0)
    grid_radius = geom.pixscale * math.hypot(geom.width + 2 * m, geom.height + 2 * m) / 2 / 3600
    d = angular_distance(float(rc), float(dc), clusters["ra"], clusters["dec"])
    index = np.nonzero(d < grid_radius + clusters["radius"])[0]
    out = np.zeros(len(index), REFS_DTYPE)
    out["ref_cat"], out["ref_id"] = b"CL", index
    for col in ("ra", "dec", "radius", "ba", "pa"):
        out[col] = clusters[col][index]
    out["iscluster"] = True
    return out


def brick_refs(
    layout: ReleaseLayout, geom: BrickGeometry, clusters: Path | None = None
) -> npt.NDArray[np.void]:
    """Tycho-2, Gaia and cluster rows (in that order) whose masks or keep radius reach the grid."""
    rc, dc = geom.wcs().pixel_to_radec((geom.width + 1) / 2.0, (geom.height + 1) / 2.0)
    tycho = (
        _tycho_rows(layout.tycho2_kd, float(rc), float(dc))
        if layout.tycho2_kd.exists()
        else np.zeros(0, REFS_DTYPE)
    )
    gaia = _gaia_rows(layout, geom)
    tycho = drop_gaia_duplicates(gaia, tycho)
    parts = [tycho, gaia]
    if clusters is not None:
        parts.append(_cluster_rows(clusters, geom))
    refs = np.concatenate(parts)
    with np.errstate(invalid="ignore"):
        refs = refs[np.isfinite(refs["radius"])]
    r64 = refs["radius"].astype(np.float64)
    refs["radius_pix"] = np.ceil(r64 * 3600.0 / geom.pixscale)
    keep = np.ceil(np.maximum(refs["keep_radius"], refs["radius"]) * 3600.0 / geom.pixscale)
    x, y = geom.wcs().radec_to_pixel(refs["ra"], refs["dec"])
    refs["ibx"] = np.round(x - 1.0).astype(np.int32)
    refs["iby"] = np.round(y - 1.0).astype(np.int32)
    near = (x > -keep) & (x < geom.width + keep) & (y > -keep) & (y < geom.height + keep)
    refs = np.asarray(refs[near])
    refs["in_bounds"] = (
        (refs["ibx"] >= 0)
        & (refs["ibx"] < geom.width)
        & (refs["iby"] >= 0)
        & (refs["iby"] < geom.height)
    )
    return refs


def _bounding_box(x: float, y: float, r: int, geom: BrickGeometry) -> tuple[int, int, int, int]:
    """Pixels [x0:x1, y0:y1] that can be within r of (x, y), clipped to the grid."""
    x0 = int(np.clip(math.floor(x - r), 0, geom.width))
    x1 = int(np.clip(math.ceil(x + 1 + r), 0, geom.width))
    y0 = int(np.clip(math.floor(y - r), 0, geom.height))
    y1 = int(np.clip(math.ceil(y + 1 + r), 0, geom.height))
    return x0, x1, y0, y1


def reference_map(refs: npt.NDArray[np.void], geom: BrickGeometry) -> npt.NDArray[np.uint8]:
    """BRIGHT / MEDIUM circles and CLUSTER ellipses on the brick grid (``REF_*`` bits)."""
    out = np.zeros((geom.height, geom.width), np.uint8)
    if len(refs) == 0:
        return out
    wcs = geom.wcs()
    cd = np.array([[wcs.cd1_1, wcs.cd1_2], [wcs.cd2_1, wcs.cd2_2]]) / (wcs.pixscale / 3600.0)
    x, y = wcs.radec_to_pixel(refs["ra"], refs["dec"])
    x, y = x - 1.0, y - 1.0
    for flag, bit in (
        ("isbright", REF_BRIGHT),
        ("ismedium", REF_MEDIUM),
        ("iscluster", REF_CLUSTER),
    ):
        for i in np.nonzero(refs[flag] & (refs["radius"] > 0))[0]:
            r = int(refs["radius_pix"][i])
            if bit == REF_BRIGHT:
                r = (r + 1) // 2
            x0, x1, y0, y1 = _bounding_box(float(x[i]), float(y[i]), r, geom)
            if x0 == x1 or y0 == y1:
                continue
            dx = np.arange(x0, x1)[None, :] - x[i]
            dy = np.arange(y0, y1)[:, None] - y[i]
            if bit != REF_CLUSTER:
                inside = dx**2 + dy**2 <= r**2
            else:
                du = cd[0, 0] * dx + cd[0, 1] * dy
                dv = cd[1, 0] * dx + cd[1, 1] * dy
                pa = float(refs["pa"][i]) if np.isfinite(refs["pa"][i]) else 0.0
                ct, st = math.cos(math.radians(90.0 + pa)), math.sin(math.radians(90.0 + pa))
                v1, v2 = ct * du - st * dv, st * du + ct * dv
                r1, r2 = float(r), float(r) * float(refs["ba"][i])
                inside = v1**2 / r1**2 + v2**2 / r2**2 < 1.0
            out[y0:y1, x0:x1] |= np.where(inside, np.uint8(bit), np.uint8(0))
    return out


def stage_refs(
    *, layout: ReleaseLayout, geom: BrickGeometry, options: RunbrickOptions | None = None
) -> dict[str, Any]:
    """Stage ``refs``: ``refs`` (REFS_DTYPE rows) and ``refmap`` (``REF_*`` bits)."""
    from lsdr.survey.runbrick.starclusters import find_star_clusters

    clusters = find_star_clusters(options.star_clusters_cat if options else None)
    if clusters is None:
        log.warning(
            "%s: refs: no star-cluster list (NGC-star-clusters.fits) found: no CLUSTER masks",
            geom.brickname,
        )
    refs = brick_refs(layout, geom, clusters)
    refmap = reference_map(refs, geom)
    counts = {
        name: int(np.count_nonzero(refmap & bit))
        for name, bit in (("BRIGHT", REF_BRIGHT), ("MEDIUM", REF_MEDIUM), ("CLUSTER", REF_CLUSTER))
    }
    log.info(
        "%s: refs: %d Tycho-2, %d Gaia, %d clusters touching the brick (clusters from %s); "
        "mask pixels %s",
        geom.brickname,
        int(np.count_nonzero(refs["ref_cat"] == b"T2")),
        int(np.count_nonzero(refs["isgaia"])),
        int(np.count_nonzero(refs["iscluster"])),
        clusters,
        counts,
    )
    return {"refs": refs, "refmap": refmap}
