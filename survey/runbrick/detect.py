"""Source detection for the lite runbrick: detection maps, SED-matched peaks, blobs.

legacypipe's ``srcs`` stage (``detection.py``) in numpy/scipy, step for step, so that both
engines find the same peaks on the same pixels:

- each CCD's sky-subtracted image (masked pixels zeroed) is smoothed by a Gaussian of the
  CCD's PSF σ (FWHM / 2.35) and divided by psfnorm² = 1/(4πσ²), so the map estimates a point
  source's flux; its inverse variance is 1/(sig1/psfnorm)², smoothed the same way, ramped down
  over 10 pixels at the CCD's edges (``apodize``); both are sampled at the nearest CCD pixel of
  each brick pixel and averaged over a band's CCDs by inverse variance;
- SED-matched combinations are searched one after the other (each band alone, reddest band
  first, then a flat and a red SED); a peak is a pixel ≥ its 8 neighbours above ``nsigma``,
  not vetoed (within 4 px of a source found before, or in the avoid map), separated from every
  source found before by a saddle that drops by max(2σ, 10 % of the peak) on the 4-connected
  grey-dilated map, and ``nsigma`` above the 16th percentile of the S/N in a 10–20 px annulus;
- blobs are the hot regions (the ``nsigma`` pixels dilated by 8 px, holes filled) that hold a
  source, joined across saturated columns, each a group fitted together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from lsdr.survey.core.tan import TanWcs
from lsdr.survey.runbrick.dqmaps import SATUR_GROW
from lsdr.survey.runbrick.types import BrickGeometry, Source, Tim

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


SADDLE_FRACTION = 0.1
SADDLE_MIN = 2.0
"""A fainter peak is a new source only if the S/N drops by max(2, 10 % of its peak) between
it and every source found before (legacypipe ``sed_matched_detection`` defaults)."""
SADDLE_RADIUS = 50
"""Brick pixels around a peak searched for a source on the same saddle (legacypipe: 50)."""
EXCLUSION_RADIUS = 4
"""Pixels around a source found before (or a reference star) where no new peak is taken."""
APODIZE_PIXELS = 10
"""CCD-edge pixels over which the detection inverse variance ramps up (``stage_srcs``)."""
APERTURE_RADII = (10, 20)
"""Annulus (pixels) whose 16th-percentile S/N a peak must exceed by ``nsigma``."""
BLOB_DILATE = 8
"""Blobs are the nsigma pixels dilated by this many pixels, whatever the pixel scale
(legacypipe's ``blob_dilate`` default)."""
FLAT_SED = {"g": 1.0, "r": 1.0, "i": 1.0, "z": 1.0}
RED_SED = {"g": 2.5, "r": 1.0, "i": 0.632, "z": 0.4}
"""legacypipe's SED weights: a band's detection map is divided by its weight before the
bands are combined (so larger weights count a band less)."""


@dataclass(frozen=True)
class Blob:
    """A connected region of the detection map and the sources in it, fitted together."""

    blob_id: int
    x0: int
    x1: int
    y0: int
    y1: int
    """Half-open bounding box on the brick grid (0-based pixels): [y0:y1, x0:x1]."""
    mask: npt.NDArray[np.bool_]
    """Pixels of the bounding box that belong to the blob."""
    sources: tuple[int, ...]
    """Indices into the brick's source list."""

    @property
    def npix(self) -> int:
        """Number of brick pixels in the blob."""
        return int(self.mask.sum())

    @property
    def slices(self) -> tuple[slice, slice]:
        """Slices of the bounding box into brick-grid arrays."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def tim_sig1(tim: Tim) -> float:
    """Per-pixel noise of a tim: survey-ccds ``sig1`` or, when absent, the median from invvar."""
    if tim.sig1 > 0 and math.isfinite(tim.sig1):
        return float(tim.sig1)
    good = tim.invvar[tim.invvar > 0]
    if good.size == 0:
        return 0.0
    return float(np.median(1.0 / np.sqrt(good)))


def tim_psf_stamp(tim: Tim) -> FloatArray:
    """The tim's normalised PSF stamp at the centre of its cut-out (CCD pixels, 1-based)."""
    h, w = tim.shape
    return tim.psf.at(tim.x0 + w / 2.0 + 0.5, tim.y0 + h / 2.0 + 0.5)


def brick_to_tim_coords(
    tim: Tim, brick_wcs: TanWcs, bx: FloatArray, by: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """0-based cut-out pixel coordinates of 0-based brick pixels."""
    ra, dec = brick_wcs.pixel_to_radec(bx + 1.0, by + 1.0)
    tx, ty = tim.wcs.radec_to_pixel(ra, dec)
    return tx - 1.0 - tim.x0, ty - 1.0 - tim.y0


def tim_footprint(tim: Tim, geom: BrickGeometry, margin: int = 2) -> tuple[slice, slice] | None:
    """Brick-grid slices covering a tim's cut-out, or None when it misses the brick."""
    h, w = tim.shape
    xs = np.array([0.0, w - 1.0, 0.0, w - 1.0, w / 2.0, w / 2.0, 0.0, w - 1.0])
    ys = np.array([0.0, 0.0, h - 1.0, h - 1.0, 0.0, h - 1.0, h / 2.0, h / 2.0])
    ra, dec = tim.wcs.pixel_to_radec(xs + 1.0 + tim.x0, ys + 1.0 + tim.y0)
    bx, by = geom.wcs().radec_to_pixel(ra, dec)
    x0 = max(math.floor(bx.min() - 1.0) - margin, 0)
    x1 = min(math.ceil(bx.max() - 1.0) + margin + 1, geom.width)
    y0 = max(math.floor(by.min() - 1.0) - margin, 0)
    y1 = min(math.ceil(by.max() - 1.0) + margin + 1, geom.height)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class DetectionMaps:
    """Per band: the point-source flux map, its inverse variance and the saturation map."""

    detmap: dict[str, F32Array]
    """Nanomaggies of a point source centred on the pixel."""
    detiv: dict[str, F32Array]
    """Inverse variance of ``detmap`` (1/nanomaggies²); 0 where no CCD of the band lands."""
    satur: dict[str, BoolArray]
    """Pixels saturated in any CCD of the band (not grown)."""

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands mapped, in the order given."""
        return tuple(self.detmap)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the maps."""
        first = next(iter(self.detmap.values()))
        return int(first.shape[0]), int(first.shape[1])


def apodize_ramp(n: int) -> FloatArray:
    """legacypipe's edge ramp: an arctan from 0 to 1 over n + 2 points, the ends dropped."""
    ramp = np.arctan(np.linspace(-np.pi, np.pi, n + 2))
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    return np.asarray(ramp[1:-1], np.float64)


def _smoothed_tim(tim: Tim, apodize: int | None) -> tuple[FloatArray, FloatArray]:
    """A tim's Gaussian-smoothed point-source flux map and inverse variance (cut-out grid)."""
    sigma = tim.psf_fwhm / 2.35
    if not sigma > 0:
        raise ValueError(f"{tim.name}: PSF FWHM {tim.psf_fwhm} is not positive")
    psfnorm = 1.0 / (2.0 * math.sqrt(math.pi) * sigma)
    good = tim.invvar > 0
    image = np.where(good, tim.image, 0.0).astype(np.float64)
    sig1 = tim_sig1(tim)
    iv = (psfnorm / sig1) ** 2 if sig1 > 0 else 0.0
    detiv = np.where(good, iv, 0.0)
    detmap = ndimage.gaussian_filter(image, sigma) / psfnorm**2
    detiv = ndimage.gaussian_filter(detiv, sigma)
    if apodize:
        ramp = apodize_ramp(int(apodize))
        n = min(len(ramp), detiv.shape[0], detiv.shape[1])
        if n:
            r = ramp[:n]
            detiv[:n, :] *= r[:, None]
            detiv[:, :n] *= r[None, :]
            detiv[-n:, :] *= r[::-1][:, None]
            detiv[:, -n:] *= r[::-1][None, :]
    return detmap, detiv


def detection_maps(
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    *,
    apodize: int | None = APODIZE_PIXELS,
) -> DetectionMaps:
    """Per band: the detection map, its inverse variance and the any-CCD saturation map.

    Each tim is smoothed on its own pixel grid, then sampled at the nearest tim pixel of every
    brick pixel it covers; a band's tims are averaged with inverse-variance weights.
    """
    from lsdr.survey.runbrick.tractorschema import DQ_BITS

    satur_bit = np.int16(DQ_BITS["satur"])
    shape = (geom.height, geom.width)
    detmaps: dict[str, F32Array] = {}
    detivs: dict[str, F32Array] = {}
    saturs: dict[str, BoolArray] = {}
    for band in bands:
        num = np.zeros(shape, np.float32)
        den = np.zeros(shape, np.float32)
        sat = np.zeros(shape, bool)
        for tim in tims:
            if tim.band != band:
                continue
            box = tim_footprint(tim, geom)
            if box is None:
                continue
            detmap, detiv = _smoothed_tim(tim, apodize)
            saturated = (tim.dq & satur_bit) != 0
            _accumulate(tim, geom, box, detmap, detiv, saturated, num, den, sat)
        detmap_b = np.zeros_like(num)
        np.divide(num, np.maximum(den, np.float32(1e-16)), out=detmap_b)
        detmaps[band], detivs[band], saturs[band] = detmap_b, den, sat
    return DetectionMaps(detmaps, detivs, saturs)


def _accumulate(
    tim: Tim,
    geom: BrickGeometry,
    box: tuple[slice, slice],
    detmap: FloatArray,
    detiv: FloatArray,
    saturated: BoolArray,
    num: F32Array,
    den: F32Array,
    sat: BoolArray,
) -> None:
    """Add one tim's map (×weight), weight and saturation at the brick pixels it covers."""
    from lsdr.survey.runbrick.resample import fast_coordinates

    sy, sx = box
    h, w = tim.shape
    flat = detmap.astype(np.float32).ravel()
    ivflat = detiv.astype(np.float32).ravel()
    satflat = saturated.ravel()
    bbox = (sx.start, sx.stop, sy.start, sy.stop)
    for r0, u, v in fast_coordinates(tim, geom, bbox):
        iu, iv_ = np.rint(u).astype(np.intp), np.rint(v).astype(np.intp)
        inside = (iu >= 0) & (iu < w) & (iv_ >= 0) & (iv_ < h)
        near = np.where(inside, iv_ * w + iu, 0)
        weight = np.where(inside, ivflat[near], np.float32(0.0))
        rows = slice(r0, r0 + u.shape[0])
        num[rows, sx] += weight * np.where(inside, flat[near], np.float32(0.0))
        den[rows, sx] += weight
        sat[rows, sx] |= inside & satflat[near]


def sed_list(bands: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
    """SED-matched filters searched, in legacypipe's order.

    Each band alone from the last band given (the reddest) to the first, then the flat and the
    red SED over the bands they weight.
    """
    seds: list[tuple[str, dict[str, float]]] = [(b, {b: 1.0}) for b in reversed(bands)]
    if len(bands) > 1:
        for name, weights in (("Flat", FLAT_SED), ("Red", RED_SED)):
            sed = {b: weights[b] for b in bands if weights.get(b, 0.0) > 0}
            if len(sed) > 1:
                seds.append((name, sed))
    return seds


def sed_sn_map(maps: DetectionMaps, sed: dict[str, float]) -> tuple[F32Array, F32Array]:
    """S/N map of an SED-matched combination and its inverse variance.

    With band weights w: map = Σ (d·iv/w) / Σ (iv/w²), inverse variance Σ (iv/w²).
    """
    num = np.zeros(maps.shape, np.float32)
    div = np.zeros(maps.shape, np.float32)
    for band, weight in sed.items():
        if band not in maps.detmap or weight <= 0:
            continue
        num += maps.detmap[band] * maps.detiv[band] / np.float32(weight)
        div += maps.detiv[band] / np.float32(weight**2)
    sedmap = num / np.maximum(div, np.float32(1e-16))
    return (sedmap * np.sqrt(div)).astype(np.float32), div


def local_peaks(sn: F32Array, nsigma: float) -> BoolArray:
    """Pixels above ``nsigma`` and ≥ each of their 8 neighbours, never on the map's edge."""
    peaks = sn > nsigma
    peaks[0, :] = peaks[-1, :] = False
    peaks[:, 0] = peaks[:, -1] = False
    c = sn[1:-1, 1:-1]
    inner = peaks[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                inner &= c >= sn[1 + dy : sn.shape[0] - 1 + dy, 1 + dx : sn.shape[1] - 1 + dx]
    return peaks


@dataclass(frozen=True)
class Peaks:
    """New peaks of one SED (or of all of them): brick pixels, S/N, the SED that found them."""

    x: npt.NDArray[np.intp]
    y: npt.NDArray[np.intp]
    sn: FloatArray
    sed: tuple[str, ...]

    def __len__(self) -> int:
        """Number of peaks."""
        return len(self.x)


def _disc_veto(
    veto: BoolArray, xs: npt.NDArray[np.intp], ys: npt.NDArray[np.intp], radius: float
) -> None:
    """Set ``veto`` within ``radius`` pixels of each (x, y)."""
    h, w = veto.shape
    r = math.ceil(radius)
    for x, y in zip(xs, ys, strict=True):
        x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, w)
        y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        veto[y0:y1, x0:x1] |= np.hypot(xx - x, yy - y) < radius


def _aperture_floor(sn: F32Array, div: F32Array, x: int, y: int) -> float:
    """16th percentile of the S/N on covered pixels 10–20 px from (x, y); −1 when none."""
    rin, rout = APERTURE_RADII
    h, w = sn.shape
    y0, y1 = max(y - rout, 0), min(y + rout + 1, h)
    x0, x1 = max(x - rout, 0), min(x + rout + 1, w)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    r2 = (yy - y) ** 2 + (xx - x) ** 2
    ring = (r2 >= rin**2) & (r2 <= rout**2) & (div[y0:y1, x0:x1] > 0)
    values = sn[y0:y1, x0:x1][ring]
    return float(np.percentile(values, 16.0)) if values.size else -1.0


def sed_peaks(
    sn: F32Array,
    div: F32Array,
    nsigma: float,
    *,
    known: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray],
    satur: BoolArray | None = None,
    veto: BoolArray | None = None,
    blob_dilate: int = 8,
) -> tuple[BoolArray, npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]:
    """The new peaks of one SED's S/N map and the hot regions of this SED that hold a source.

    ``known`` = (x, y, radius) of the sources found before (reference stars, earlier SEDs):
    no peak within their radius, and a peak is cut when the region above its saddle level
    holds one of them or a brighter peak of this map.  ``satur`` pixels count as above every
    saddle level; no peak is taken on ``veto``.  Returns (hot map, x, y, peak S/N).
    """
    above = sn > nsigma
    hot = ndimage.binary_fill_holes(ndimage.binary_dilation(above, iterations=blob_dilate))
    hotlabels, nhot = ndimage.label(hot)
    cross = ndimage.generate_binary_structure(2, 1)
    dilated = ndimage.grey_dilation(sn, footprint=cross)
    if satur is not None:
        dilated[satur] = 1e9
    lowest = ndimage.binary_dilation(dilated > nsigma - SADDLE_MIN, iterations=1)
    if satur is not None:
        lowest |= satur
    allblobs, _ = ndimage.label(lowest)
    allslices = ndimage.find_objects(allblobs)
    vetomap = np.zeros(sn.shape, bool) if veto is None else np.array(veto, bool)
    kx, ky, kr = known
    for radius in np.unique(kr):
        sel = kr == radius
        _disc_veto(vetomap, kx[sel], ky[sel], float(radius))
    py, px = np.nonzero(local_peaks(sn, nsigma))
    order = np.argsort(-sn[py, px], kind="stable")
    px, py = px[order], py[order]
    found_x: list[int] = [int(v) for v in kx]
    found_y: list[int] = [int(v) for v in ky]
    out_x: list[int] = []
    out_y: list[int] = []
    out_sn: list[float] = []
    h, w = sn.shape
    r = SADDLE_RADIUS
    for x, y in zip(px.tolist(), py.tolist(), strict=True):
        if vetomap[y, x]:
            continue
        value = float(sn[y, x])
        level = value - max(SADDLE_MIN, SADDLE_FRACTION * value)
        label = int(allblobs[y, x])
        box = allslices[label - 1]
        if box is None:
            continue
        ys, xs = box
        y0, y1 = max(y - r, ys.start), min(y + r + 1, ys.stop)
        x0, x1 = max(x - r, xs.start), min(x + r + 1, xs.stop)
        win = (slice(y0, y1), slice(x0, x1))
        region = (dilated[win] > level) & (allblobs[win] == label)
        parts, _ = ndimage.label(region)
        own = int(parts[y - y0, x - x0])
        if own == 0:
            continue
        mine = parts == own
        cut = False
        if found_x:
            fx = np.asarray(found_x) - x0
            fy = np.asarray(found_y) - y0
            ok = (fx >= 0) & (fx < x1 - x0) & (fy >= 0) & (fy < y1 - y0)
            cut = bool(np.any(parts[fy[ok], fx[ok]] == own))
        mine = ndimage.binary_fill_holes(mine)
        if cut:
            vetomap[win] |= mine
            continue
        if value - _aperture_floor(sn, div, x, y) < nsigma:
            continue
        vetomap[win] |= mine
        found_x.append(x)
        found_y.append(y)
        out_x.append(x)
        out_y.append(y)
        out_sn.append(value)
    keep = np.zeros(nhot + 1, bool)
    ox, oy = np.asarray(out_x, np.intp), np.asarray(out_y, np.intp)
    keep[hotlabels[oy, ox]] = True
    if len(kx):
        keep[hotlabels[np.clip(ky, 0, h - 1), np.clip(kx, 0, w - 1)]] = True
    keep[0] = False
    return keep[hotlabels], ox, oy, np.asarray(out_sn, np.float64)


def run_sed_filters(
    maps: DetectionMaps,
    nsigma: float,
    *,
    known: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray] | None = None,
    satur: dict[str, BoolArray] | None = None,
    veto: BoolArray | None = None,
    blob_dilate: int = 8,
) -> tuple[Peaks, BoolArray]:
    """All SEDs in turn; each one's new peaks become known sources (radius 4 px) for the next.

    Returns the new peaks (in the order found) and the union of the SEDs' hot regions.
    """
    empty = np.zeros(0, np.intp)
    kx, ky, kr = known if known is not None else (empty, empty, np.zeros(0))
    kx, ky, kr = np.asarray(kx, np.intp), np.asarray(ky, np.intp), np.asarray(kr, np.float64)
    n0 = len(kx)
    hot = np.zeros(maps.shape, bool)
    sns: list[float] = []
    names: list[str] = []
    for name, sed in sed_list(maps.bands):
        if all(not np.any(maps.detiv[b] > 0) for b in sed if b in maps.detiv):
            continue
        sn, div = sed_sn_map(maps, sed)
        sat = None
        if satur is not None:
            sat = np.zeros(maps.shape, bool)
            for b in sed:
                if b in satur:
                    sat |= satur[b]
        sedhot, px, py, psn = sed_peaks(
            sn, div, nsigma, known=(kx, ky, kr), satur=sat, veto=veto, blob_dilate=blob_dilate
        )
        hot |= sedhot
        kx, ky = np.append(kx, px), np.append(ky, py)
        kr = np.append(kr, np.full(len(px), float(EXCLUSION_RADIUS)))
        sns += psn.tolist()
        names += [name] * len(px)
    peaks = Peaks(kx[n0:], ky[n0:], np.asarray(sns, np.float64), tuple(names))
    return peaks, hot


def merge_hot_satur(hot: BoolArray, satur: BoolArray) -> BoolArray:
    """Join hot runs that a saturated run connects, column by column (bleed trails, cores).

    In each column, a run of hot-or-saturated pixels that holds two or more hot runs becomes
    hot as a whole, so a star split by its saturated core stays one blob.
    """
    out = hot.copy()
    for i in np.nonzero(satur.any(axis=0))[0]:
        col = hot[:, i]
        runs, n = ndimage.label(col)
        if n < 2:
            continue
        merged, n2 = ndimage.label(col | satur[:, i])
        if n2 >= n:
            continue
        starts = [s[0].start for s in ndimage.find_objects(runs) if s is not None]
        counts = np.bincount(merged[starts], minlength=n2 + 1)
        for label in np.nonzero(counts > 1)[0]:
            out[merged == label, i] = True
    return out


def make_blobs(
    hot: BoolArray, geom: BrickGeometry, sources: Sequence[Source]
) -> tuple[npt.NDArray[np.int32], list[Blob]]:
    """Blob map (−1 outside any blob) and blobs: the hole-filled hot regions holding a source.

    A source outside every hot region (a reference star, say) gets a disc of the dilation
    radius of its own.  Blob ids are 0.. in raster order of the regions' first pixel; regions
    without a source are no blob.
    """
    hot = np.array(hot, bool)
    iterations = BLOB_DILATE
    lonely = np.zeros(hot.shape, bool)
    for src in sources:
        ix, iy = round(src.bx), round(src.by)
        if 0 <= ix < geom.width and 0 <= iy < geom.height and not hot[iy, ix]:
            lonely[iy, ix] = True
    if lonely.any():
        hot |= ndimage.binary_dilation(lonely, iterations=iterations)
    hot = ndimage.binary_fill_holes(hot)
    labels, nlab = ndimage.label(hot)
    where: list[int] = []
    for src in sources:
        ix = min(max(round(src.bx), 0), geom.width - 1)
        iy = min(max(round(src.by), 0), geom.height - 1)
        where.append(int(labels[iy, ix]))
    used = sorted({lab for lab in where if lab > 0})
    remap = np.full(nlab + 1, -1, np.int32)
    for new, lab in enumerate(used):
        remap[lab] = new
    blobmap = remap[labels]
    found = ndimage.find_objects(labels)
    members: dict[int, list[int]] = {}
    for i, (src, lab) in enumerate(zip(sources, where, strict=True)):
        src.blob = int(remap[lab]) if lab > 0 else -1
        if src.blob >= 0:
            members.setdefault(src.blob, []).append(i)
    blobs: list[Blob] = []
    for new, lab in enumerate(used):
        sy, sx = found[lab - 1]
        blobs.append(
            Blob(
                blob_id=new,
                x0=int(sx.start),
                x1=int(sx.stop),
                y0=int(sy.start),
                y1=int(sy.stop),
                mask=np.asarray(blobmap[sy, sx] == new),
                sources=tuple(members.get(new, [])),
            )
        )
    return blobmap, blobs


def grown_satur(maps: DetectionMaps) -> dict[str, BoolArray]:
    """Each band's saturation map grown by ``SATUR_GROW`` pixels (peaks avoid its edge)."""
    out: dict[str, BoolArray] = {}
    for band, sat in maps.satur.items():
        out[band] = (
            np.asarray(ndimage.binary_dilation(sat, iterations=SATUR_GROW), bool)
            if sat.any()
            else sat.copy()
        )
    return out


def detect_sources(
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    *,
    nsigma: float = 6.0,
    refs: Sequence[Source] | None = None,
    maps: DetectionMaps | None = None,
    avoid: BoolArray | None = None,
    satur: dict[str, BoolArray] | None = None,
) -> tuple[list[Source], npt.NDArray[np.int32], list[Blob]]:
    """Detect sources with the SED-matched filters and group them into blobs.

    Reference sources (``refs``, e.g. Gaia stars) come first in the list; no new peak within
    4 px of one, nor where ``avoid`` is set (legacypipe's ``avoid_map``: the CLUSTER masks).
    New sources are type PSF at their peak pixel with the detection-map fluxes as starting
    values.  ``satur`` is ``grown_satur(maps)`` when the caller has it already.  Returns
    (sources, blob map, blobs).
    """
    if maps is None:
        maps = detection_maps(tims, geom, bands)
    brick_wcs = geom.wcs()
    sources: list[Source] = []
    kx: list[int] = []
    ky: list[int] = []
    for ref in refs or ():
        bx, by = brick_wcs.radec_to_pixel(ref.ra, ref.dec)
        ref.bx, ref.by = float(bx) - 1.0, float(by) - 1.0
        sources.append(ref)
        kx.append(round(ref.bx))
        ky.append(round(ref.by))
    if satur is None:
        satur = grown_satur(maps)
    known = (
        np.asarray(kx, np.intp),
        np.asarray(ky, np.intp),
        np.full(len(kx), float(EXCLUSION_RADIUS)),
    )
    iterations = BLOB_DILATE
    peaks, hot = run_sed_filters(
        maps, nsigma, known=known, satur=satur, veto=avoid, blob_dilate=iterations
    )
    for x, y, sn, sed in zip(peaks.x, peaks.y, peaks.sn, peaks.sed, strict=True):
        ra, dec = brick_wcs.pixel_to_radec(float(x) + 1.0, float(y) + 1.0)
        flux = {b: float(maps.detmap[b][y, x]) for b in bands if b in maps.detmap}
        src = Source(ra=float(ra), dec=float(dec), type="PSF", flux=flux, bx=float(x), by=float(y))
        src.extra["peak_sn"] = float(sn)
        src.extra["peak_sed"] = sed
        sources.append(src)
    any_satur = np.zeros(maps.shape, bool)
    for sat in satur.values():
        any_satur |= sat
    hot = merge_hot_satur(hot, any_satur) if any_satur.any() else hot
    blobmap, blobs = make_blobs(hot, geom, sources)
    return sources, blobmap, blobs


def ref_sources(refs: npt.NDArray[np.void] | None, geom: BrickGeometry) -> list[Source]:
    """Reference stars (``refs`` stage rows) on the brick grid, as PSF sources to be fitted.

    Star clusters are masks only (legacypipe's ``ignore_source``): they make no source.
    """
    if refs is None or len(refs) == 0:
        return []
    out: list[Source] = []
    for row in refs:
        if "iscluster" in (refs.dtype.names or ()) and row["iscluster"]:
            continue
        ibx, iby = int(row["ibx"]), int(row["iby"])
        if not (0 <= ibx < geom.width and 0 <= iby < geom.height):
            continue
        cat = row["ref_cat"]
        src = Source(
            ra=float(row["ra"]),
            dec=float(row["dec"]),
            type="PSF",
            ref_cat=cat.decode() if isinstance(cat, bytes) else str(cat),
            ref_id=int(row["ref_id"]),
        )
        for flag in ("isbright", "ismedium"):
            if flag in (refs.dtype.names or ()):
                src.extra[flag] = bool(row[flag])
        out.append(src)
    return out


def stage_srcs(
    *,
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    refs: npt.NDArray[np.void] | None = None,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
) -> dict[str, object]:
    """Stage ``srcs``: detection and blobs; state gains ``sources``, ``blobmap``, ``blobs``.

    And ``saturated_pix``: per band, the grown saturation map (maskbit SATUR_<b>, as
    legacypipe). No new source is detected inside a CLUSTER mask of ``refmap`` (as legacypipe).
    """
    from lsdr.survey.runbrick.refs import REF_CLUSTER

    avoid = None if refmap is None else (np.asarray(refmap) & REF_CLUSTER) != 0
    maps = detection_maps(tims, geom, bands)
    satur = grown_satur(maps)
    sources, blobmap, blobs = detect_sources(
        tims, geom, bands, refs=ref_sources(refs, geom), avoid=avoid, maps=maps, satur=satur
    )
    return {"sources": sources, "blobmap": blobmap, "blobs": blobs, "saturated_pix": satur}
