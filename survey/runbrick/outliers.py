"""Stage ``outliers``: mask pixels of one exposure that the band's other exposures contradict.

legacypipe's cross-exposure masking (``outliers.py`` ``mask_outlier_pixels``), for artefacts the
CP did not flag (cosmic rays, satellite trails).  Per band with at least two exposures:

1. Each tim is blurred to a common Gaussian PSF (σ_target = max over the band of σ_psf + ½
   pixel, σ_psf = FWHM/2.35; in arcsec so mixed cameras agree) — masked pixels are filled by
   normalised convolution — and resampled once onto the brick grid (``resample.resample_tim``),
   with weight ``invvar · 4πσ_blur²`` (the blur's noise reduction).
2. The weighted coadd of the band; where ≥ 5 exposures overlap, the lowest and highest value
   at each pixel are left out.
3. Each exposure is compared with the coadd of the *others*: ``sn = Δ/√(1/w + 1/w_other)`` and
   ``rel = Δ/max(other, σ₁)``; hot where ``sn > 5`` and ``rel > 2``, off the veto (Gaia stars'
   1″ disc as legacypipe draws it, i.e. √(1″/pixscale) brick pixels; saturated pixels of any
   exposure grown by 10 CCD pixels, bleed trails by 3).  Hot pixels grow as legacypipe's: dilate 1;
   add pixels within 5 with sn > 3; dilate 1; add pixels within 5 with sn > 2; dilate 3.
4. The flagged brick pixels are mapped back to the tim: a CCD pixel is masked when the brick
   pixel nearest its centre is flagged (legacypipe's rule).  This is computed exactly with the
   two WCSs on the few candidate CCD pixels near the flagged ones — cheaper and simpler than
   resampling the others' coadd onto every CCD grid, and exact whatever the pixel-scale ratio.
   Masked pixels get ``invvar = 0`` and the DQ ``outlier`` bit (2048, on top of the CP code in
   ``tim.dq``), so fitting, forced photometry, coadds and any/allmask see them.

Differences from legacypipe: only positive outliers are masked (with two exposures a negative
outlier is the other exposure's artefact); the per-pixel "others" leave this exposure's value
out correctly where it was the clipped minimum or maximum; masked pixels are filled by
normalised convolution rather than patched from a first coadd; no ``outliers-*`` JPEGs.
``metrics/<bri>/outlier-mask-<brick>.fits.fz`` is written as legacypipe's: one HCOMPRESSed uint8
HDU ``MASK-<camera>-<expnum>-<ccdname>`` per tim (value 1 = OUTLIER_POS) with the cut-out's
WCS and X0/Y0.  Bands with a single exposure, and pixels with a single exposure, are not
compared (``outlier_stats`` records them).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import binary_dilation, find_objects, gaussian_filter, label

from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.dqmaps import dq_bits
from lsdr.survey.runbrick.metrics import brick_header
from lsdr.survey.runbrick.resample import Resampled, resample_tim
from lsdr.survey.runbrick.types import BrickGeometry, Tim

log = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
F32Array = npt.NDArray[np.float32]

HOT_SIGMA = 5.0
"""S/N of the difference against the other exposures for a hot pixel."""
HOT_RELDIFF = 2.0
"""The difference must also exceed twice the others' value (or σ₁): not a star's PSF mismatch."""
WARM_SIGMA = 3.0
LUKEWARM_SIGMA = 2.0
WARM_REACH = 5
"""Pixels around hot ones searched for warm (sn > 3), then lukewarm (sn > 2) pixels."""
CLIP_EXPOSURES = 5
"""Overlapping exposures from which the min and max are left out of the comparison coadd."""
BLUR_EXTRA_PIXELS = 0.5
"""σ_target = max(σ_psf + this), in each CCD's pixels."""
SATUR_VETO_GROW = 10
BLEED_VETO_GROW = 3
STAR_VETO_ARCSEC = 1.0
"""legacypipe compares r² with this radius in pixels: the disc is √(1″/pixscale) pixels wide."""
GROW_REACH = 1 + WARM_REACH + 1 + WARM_REACH + 3
"""How far the hot-pixel growth can reach from a seed, brick pixels."""
OUTLIER_POS = 1
"""Value of a masked pixel in the outlier-mask file (legacypipe ``bits.OUTLIER_POS``)."""
OUTLIER_DQ = np.int16(ts.DQ_BITS["outlier"])
PSF_SIGMA_PER_FWHM = 1.0 / 2.35
"""legacypipe's ``psf_sigma = psf_fwhm / 2.35``."""


# -- blurring and the band coadd ----------------------------------------------------------------
def blur_sigmas(tims: Sequence[Tim]) -> list[float]:
    """Per tim, the Gaussian σ (its own pixels) that brings its PSF to the band's common one."""
    scales = [t.wcs.pixscale for t in tims]
    sig_px = [max(t.psf_fwhm, 0.0) * PSF_SIGMA_PER_FWHM for t in tims]
    target = max((s + BLUR_EXTRA_PIXELS) * p for s, p in zip(sig_px, scales, strict=True))
    return [
        math.sqrt(max(target**2 - (s * p) ** 2, 0.0)) / p
        for s, p in zip(sig_px, scales, strict=True)
    ]


def blurred_tim(tim: Tim, sigma: float) -> Tim:
    """The tim blurred by ``sigma`` pixels: masked pixels filled by normalised convolution.

    The weight becomes ``invvar · 4πσ²`` (white noise blurred by a unit Gaussian of σ pixels
    has variance 1/(4πσ²)), zero where the pixel was masked.
    """
    good = tim.invvar > 0
    if sigma <= 0:
        return dataclasses.replace(tim, image=np.where(good, tim.image, np.float32(0.0)))
    num = gaussian_filter(np.where(good, tim.image, np.float32(0.0)).astype(np.float32), sigma)
    den = gaussian_filter(good.astype(np.float32), sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        image = np.where(good, num / den, np.float32(0.0)).astype(np.float32)
    invvar = (tim.invvar * np.float32(4.0 * math.pi * sigma**2)).astype(np.float32)
    return dataclasses.replace(tim, image=image, invvar=invvar)


@dataclasses.dataclass
class BandStack:
    """The band's blurred exposures on the brick grid and their (clipped) weighted sums."""

    placed: list[tuple[int, Resampled]]
    """(index in the band, resampled blurred tim) of every tim that lands on the grid."""
    coimg: F32Array
    cow: F32Array
    nimg: npt.NDArray[np.int16]
    minidx: npt.NDArray[np.int16]
    maxidx: npt.NDArray[np.int16]
    """Band index of the exposure left out as minimum / maximum (−1 where none is)."""


def stack_band(btims: Sequence[Tim], geom: BrickGeometry) -> BandStack:
    """Blur, resample and stack a band's tims; the min and max are out where ≥ 5 overlap."""
    shape = (geom.height, geom.width)
    coimg = np.zeros(shape, np.float32)
    cow = np.zeros(shape, np.float32)
    nimg = np.zeros(shape, np.int16)
    minval = np.full(shape, np.float32(np.inf), np.float32)
    maxval = np.full(shape, np.float32(-np.inf), np.float32)
    minwt = np.zeros(shape, np.float32)
    maxwt = np.zeros(shape, np.float32)
    minidx = np.full(shape, np.int16(-1), np.int16)
    maxidx = np.full(shape, np.int16(-1), np.int16)
    placed: list[tuple[int, Resampled]] = []
    for k, (tim, sigma) in enumerate(zip(btims, blur_sigmas(btims), strict=True)):
        res = resample_tim(blurred_tim(tim, sigma), geom, k)
        if res is None:
            continue
        placed.append((k, res))
        sl = res.slices
        img, wt = res.image, res.invvar
        has = wt > 0
        coimg[sl] += wt * img
        cow[sl] += wt
        nimg[sl] += has.astype(np.int16)
        for vals, wts, idx, better in (
            (minval[sl], minwt[sl], minidx[sl], has & (img < minval[sl])),
            (maxval[sl], maxwt[sl], maxidx[sl], has & (img > maxval[sl])),
        ):
            vals[better] = img[better]
            wts[better] = wt[better]
            idx[better] = k
    clip = nimg >= CLIP_EXPOSURES
    if clip.any():
        coimg[clip] -= minwt[clip] * minval[clip] + maxwt[clip] * maxval[clip]
        cow[clip] -= minwt[clip] + maxwt[clip]
    minidx[~clip] = -1
    maxidx[~clip] = -1
    return BandStack(placed, coimg, cow, nimg, minidx, maxidx)


# -- vetoes ------------------------------------------------------------------------------------
def grow_in_windows(
    seeds: BoolArray, reach: int, grow: Callable[[BoolArray, tuple[slice, slice]], BoolArray]
) -> BoolArray:
    """Apply ``grow`` to each connected group of seeds in a window ``reach`` pixels wider.

    ``grow`` takes the window's seeds and the window's slices.  Dilations and "add the
    neighbours where a condition holds" distribute over unions, so growing each group alone and
    OR-ing the results equals growing all seeds at once — at the cost of the groups' windows
    rather than of the whole grid.
    """
    out = np.zeros(seeds.shape, bool)
    if not seeds.any():
        return out
    labels, _ = label(seeds, structure=np.ones((3, 3), bool))
    h, w = seeds.shape
    for i, box in enumerate(find_objects(labels), start=1):
        if box is None:
            continue
        ys, xs = box
        win = (
            slice(max(ys.start - reach, 0), min(ys.stop + reach, h)),
            slice(max(xs.start - reach, 0), min(xs.stop + reach, w)),
        )
        out[win] |= grow(labels[win] == i, win)
    return out


def _dilate(n: int) -> Callable[[BoolArray, tuple[slice, slice]], BoolArray]:
    def grow(seed: BoolArray, _: tuple[slice, slice]) -> BoolArray:
        return np.asarray(binary_dilation(seed, iterations=n), bool) if n > 0 else seed

    return grow


def star_veto(geom: BrickGeometry, refs: npt.NDArray[np.void] | None) -> BoolArray:
    """Gaia stars' small discs (legacypipe: r² < 1″/pixscale, r in brick pixels)."""
    veto = np.zeros((geom.height, geom.width), bool)
    if refs is None or len(refs) == 0:
        return veto
    cat = np.char.strip(np.asarray(refs["ref_cat"]).astype("S2"))
    gaia = refs[(cat == b"G2") | (cat == b"GE")]
    if len(gaia) == 0:
        return veto
    bx, by = geom.wcs().radec_to_pixel(np.asarray(gaia["ra"]), np.asarray(gaia["dec"]))
    pixrad = STAR_VETO_ARCSEC / geom.pixscale
    reach = math.ceil(pixrad)
    for x, y in zip(bx - 1.0, by - 1.0, strict=True):
        x0, x1 = max(math.floor(x - reach), 0), min(math.ceil(x + reach) + 1, geom.width)
        y0, y1 = max(math.floor(y - reach), 0), min(math.ceil(y + reach) + 1, geom.height)
        if x1 <= x0 or y1 <= y0:
            continue
        r2 = (np.arange(y0, y1) - y)[:, None] ** 2 + (np.arange(x0, x1) - x)[None, :] ** 2
        veto[y0:y1, x0:x1] |= r2 < pixrad
    return veto


def dq_veto(btims: Sequence[Tim], geom: BrickGeometry) -> BoolArray:
    """Brick pixels near saturated (10 pixels) or bleeding (3 pixels) CCD pixels of the band.

    legacypipe grows by 10 and 3 brick pixels, which are CCD pixels for its cameras; here the
    growth is in CCD pixels (``n · max(1, CCD/brick pixel size)`` brick pixels) so coarse
    CCDs, whose saturated cores and filled-in edges are coarse too, are vetoed alike.  Each
    flagged CCD pixel marks the brick pixel at its centre, grown by the CCD pixel's half-size.
    """
    shape = (geom.height, geom.width)
    veto = np.zeros(shape, bool)
    for name, n in (("satur", SATUR_VETO_GROW), ("bleed", BLEED_VETO_GROW)):
        seed = np.zeros(shape, bool)
        grow = 0
        for tim in btims:
            bits = dq_bits(tim.dq, tim.camera)
            jy, jx = np.nonzero(bits & np.int16(ts.DQ_BITS[name]))
            if len(jy) == 0:
                continue
            ibx, iby, inb = _nearest_brick_pixel(tim, geom, jx, jy)
            seed[iby[inb], ibx[inb]] = True
            ratio = max(1.0, tim.wcs.pixscale / geom.pixscale)
            grow = max(grow, math.ceil(n * ratio + 0.5 * ratio))
        veto |= grow_in_windows(seed, grow, _dilate(grow))
    return veto


# -- comparison ----------------------------------------------------------------------------------
def grow_hot(hot: BoolArray, snmap: F32Array) -> BoolArray:
    """legacypipe's growth of hot pixels into warm (sn > 3) and lukewarm (sn > 2) neighbours."""

    def grow(seed: BoolArray, win: tuple[slice, slice]) -> BoolArray:
        sn = snmap[win]
        m = binary_dilation(seed, iterations=1)
        m |= binary_dilation(m, iterations=WARM_REACH) & (sn > WARM_SIGMA)
        m = binary_dilation(m, iterations=1)
        m |= binary_dilation(m, iterations=WARM_REACH) & (sn > LUKEWARM_SIGMA)
        return np.asarray(binary_dilation(m, iterations=3), bool)

    return grow_in_windows(hot, GROW_REACH, grow)


def hot_pixels(k: int, res: Resampled, stack: BandStack, veto: BoolArray) -> tuple[BoolArray, int]:
    """Flagged brick pixels (within ``res``'s slices) of band exposure ``k``; pixels compared."""
    sl = res.slices
    img, wt = res.image, res.invvar
    nimg = stack.nimg[sl]
    out = stack.minidx[sl] == k
    out |= stack.maxidx[sl] == k
    otherwt = np.where(out, stack.cow[sl], stack.cow[sl] - wt)
    othersum = np.where(out, stack.coimg[sl], stack.coimg[sl] - img * wt)
    compared = (wt > 0) & (nimg >= 2) & (otherwt > 1e-16)
    if not compared.any():
        return np.zeros(img.shape, bool), 0
    sig1 = np.float32(1.0 / math.sqrt(float(np.median(wt[wt > 0]))))
    snmap = np.zeros(img.shape, np.float32)
    rel = np.zeros(img.shape, np.float32)
    ow = otherwt[compared]
    other = othersum[compared] / ow
    diff = img[compared] - other
    snmap[compared] = diff / np.sqrt(1.0 / wt[compared] + 1.0 / ow)
    rel[compared] = diff / np.maximum(other, sig1)
    hot = compared & (snmap > HOT_SIGMA) & (rel > HOT_RELDIFF) & ~veto[sl]
    return grow_hot(hot, snmap), int(compared.sum())


def _nearest_brick_pixel(
    tim: Tim, geom: BrickGeometry, jx: npt.NDArray[np.intp], jy: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], BoolArray]:
    """Nearest brick pixel (0-based x, y, inside the grid) of cut-out pixels ``(jx, jy)``."""
    ra, dec = tim.wcs.pixel_to_radec(jx + tim.x0 + 1.0, jy + tim.y0 + 1.0)
    bx, by = geom.wcs().radec_to_pixel(ra, dec)
    ibx = np.rint(bx - 1.0).astype(np.intp)
    iby = np.rint(by - 1.0).astype(np.intp)
    inb = (ibx >= 0) & (ibx < geom.width) & (iby >= 0) & (iby < geom.height)
    return ibx, iby, inb


def mask_on_tim(
    tim: Tim, geom: BrickGeometry, flagged: BoolArray, origin: tuple[int, int]
) -> BoolArray:
    """CCD pixels of the tim whose nearest brick pixel is flagged.

    ``flagged`` covers brick pixels from ``origin`` = (y0, x0).  Candidates are the CCD pixels
    nearest the flagged brick pixels, grown by ⌈0.71 r + 0.5⌉ (r = brick/CCD pixel size: the
    farthest a CCD pixel centre inside a flagged brick pixel can be); each candidate is then
    tested exactly.
    """
    h, w = tim.shape
    mask = np.zeros((h, w), bool)
    fy, fx = np.nonzero(flagged)
    if len(fy) == 0:
        return mask
    by0, bx0 = origin
    ra, dec = geom.wcs().pixel_to_radec(fx + bx0 + 1.0, fy + by0 + 1.0)
    u, v = tim.wcs.radec_to_pixel(ra, dec)
    iu = np.rint(u - 1.0 - tim.x0).astype(np.intp)
    iv = np.rint(v - 1.0 - tim.y0).astype(np.intp)
    ok = (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h)
    if not ok.any():
        return mask
    iu, iv = iu[ok], iv[ok]
    grow = math.ceil(0.71 * geom.pixscale / tim.wcs.pixscale + 0.5)
    ya, yb = max(int(iv.min()) - grow, 0), min(int(iv.max()) + grow + 1, h)
    xa, xb = max(int(iu.min()) - grow, 0), min(int(iu.max()) + grow + 1, w)
    cand = np.zeros((yb - ya, xb - xa), bool)
    cand[iv - ya, iu - xa] = True
    cand = binary_dilation(cand, structure=np.ones((3, 3), bool), iterations=grow)
    jy, jx = np.nonzero(cand)
    jy, jx = jy + ya, jx + xa
    ibx, iby, inb = _nearest_brick_pixel(tim, geom, jx, jy)
    ly, lx = iby - by0, ibx - bx0
    inb &= (ly >= 0) & (ly < flagged.shape[0]) & (lx >= 0) & (lx < flagged.shape[1])
    sel = np.flatnonzero(inb)
    hit = flagged[ly[sel], lx[sel]]
    mask[jy[sel[hit]], jx[sel[hit]]] = True
    return mask


def apply_mask(tim: Tim, mask: BoolArray) -> Tim:
    """A copy of the tim with ``invvar = 0`` and the DQ outlier bit on the masked pixels."""
    if not mask.any():
        return tim
    invvar = np.where(mask, np.float32(0.0), tim.invvar).astype(np.float32)
    dq = np.where(mask, tim.dq | OUTLIER_DQ, tim.dq).astype(np.int16)
    return dataclasses.replace(tim, invvar=invvar, dq=dq)


# -- the band, the file, the stage -------------------------------------------------------------
def band_outlier_masks(
    btims: Sequence[Tim], geom: BrickGeometry, stars: BoolArray
) -> tuple[list[BoolArray], dict[str, Any]]:
    """Per tim of one band, its outlier mask (CCD pixels), and the band's statistics."""
    masks = [np.zeros(t.shape, bool) for t in btims]
    exposures = {(t.camera, t.expnum) for t in btims}
    stats: dict[str, Any] = {"n_tims": len(btims), "n_exposures": len(exposures)}
    if len(exposures) < 2:
        stats["skipped"] = "fewer than 2 exposures"
        return masks, stats
    stack = stack_band(btims, geom)
    veto = stars | dq_veto(btims, geom)
    n_compared = 0
    flagged_brick = 0
    for k, res in stack.placed:
        flagged, compared = hot_pixels(k, res, stack, veto)
        n_compared += compared
        flagged_brick += int(flagged.sum())
        if flagged.any():
            masks[k] = mask_on_tim(btims[k], geom, flagged, (res.y0, res.x0))
    stats.update(
        brick_pixels_multi=int((stack.nimg >= 2).sum()),
        brick_pixels_clipped=int((stack.nimg >= CLIP_EXPOSURES).sum()),
        tim_brick_pixels_compared=n_compared,
        brick_pixels_flagged=flagged_brick,
        veto_pixels=int(veto.sum()),
    )
    return masks, stats


def cutout_wcs_cards(tim: Tim) -> dict[str, str | float]:
    """The WCS header cards of the tim's cut-out (CRPIX shifted by X0, Y0)."""
    cut = dataclasses.replace(
        tim.wcs, crpix1=tim.wcs.crpix1 - tim.x0, crpix2=tim.wcs.crpix2 - tim.y0
    )
    return cut.header_cards()


def write_outlier_masks(
    layout: ReleaseLayout, geom: BrickGeometry, tims: Sequence[Tim], masks: Sequence[BoolArray]
) -> Path:
    """Write ``metrics/<bri>/outlier-mask-<brick>.fits.fz``: one uint8 HDU per tim."""
    import fitsio

    path = layout.metrics(geom.brickname, "outlier-mask")
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as out:
        out.write(None, header=brick_header(geom))
        for tim, mask in zip(tims, masks, strict=True):
            hdr: list[dict[str, Any]] = [
                {"name": k, "value": v} for k, v in cutout_wcs_cards(tim).items()
            ]
            hdr += [
                {"name": "IMTYPE", "value": "outlier_mask", "comment": "LegacySurvey image type"},
                {"name": "CAMERA", "value": tim.camera},
                {"name": "EXPNUM", "value": tim.expnum},
                {"name": "CCDNAME", "value": tim.ccdname},
                {"name": "X0", "value": tim.x0},
                {"name": "Y0", "value": tim.y0},
            ]
            data = (mask * np.uint8(OUTLIER_POS)).astype(np.uint8)
            out.write(
                data,
                header=hdr,
                extname=f"MASK-{tim.camera}-{tim.expnum}-{tim.ccdname}",
                compress="HCOMPRESS",
            )
    return path


def outlier_masks(
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    refs: npt.NDArray[np.void] | None = None,
) -> tuple[list[BoolArray], dict[str, Any]]:
    """Every tim's outlier mask (CCD pixels, in ``tims`` order) and the statistics per band."""
    masks = [np.zeros(t.shape, bool) for t in tims]
    stars = star_veto(geom, refs)
    per_band: dict[str, Any] = {}
    for band in bands:
        idx = [i for i, t in enumerate(tims) if t.band == band]
        if not idx:
            continue
        bmasks, per_band[band] = band_outlier_masks([tims[i] for i in idx], geom, stars)
        for i, m in zip(idx, bmasks, strict=True):
            masks[i] = m
    return masks, per_band


def stage_outliers(
    *,
    layout: ReleaseLayout,
    geom: BrickGeometry,
    bands: Sequence[str],
    tims: Sequence[Tim],
    refs: npt.NDArray[np.void] | None = None,
    options: Any = None,
) -> dict[str, Any]:
    """Stage ``outliers``: mask each tim's positive outliers; write the outlier-mask file.

    Skipped (the tims pass through) when ``options.outliers`` is False (``--no-outliers``).
    """
    if options is not None and not getattr(options, "outliers", True):
        return {}
    t0 = time.monotonic()
    masks, per_band = outlier_masks(tims, geom, bands, refs)
    masked = [apply_mask(t, m) for t, m in zip(tims, masks, strict=True)]
    n_masked = {t.name: int(m.sum()) for t, m in zip(tims, masks, strict=True)}
    n_good = sum(int((t.invvar > 0).sum()) for t in tims)
    total = sum(n_masked.values())
    path = write_outlier_masks(layout, geom, tims, masks) if tims else None
    stats = {
        "bands": per_band,
        "masked_per_tim": n_masked,
        "masked_pixels": total,
        "masked_fraction": total / n_good if n_good else 0.0,
        "seconds": time.monotonic() - t0,
    }
    log.info(
        "%s: outliers masked %d CCD pixels (%.2e of the unmasked) in %.1f s",
        geom.brickname,
        total,
        stats["masked_fraction"],
        stats["seconds"],
    )
    return {
        "tims": masked,
        "outlier_stats": stats,
        "outlier_products": [path] if path is not None else [],
    }
