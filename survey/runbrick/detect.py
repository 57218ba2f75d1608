"""Source detection for the lite runbrick: PSF-matched detection maps, SED-matched peaks, blobs.

legacypipe's ``srcs`` stage in numpy/scipy: each CCD's image is correlated with its own PSF (the
matched filter for a point source), divided by Σp² so the map estimates a point source's flux,
and resampled (bilinear) onto the brick's TAN grid; the CCDs of a band are combined by inverse
variance (``detmap``, ``detiv``).  Peaks are searched in the S/N maps of SED-matched combinations
(each single band, a flat SED and a red one, as legacypipe), kept when above ``nsigma`` and
separated from every brighter peak by a saddle that drops by max(2σ, 10 % of the peak).  Blobs
are the connected regions of the ``nsigma`` map dilated by ~2″ with holes filled, as legacypipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.signal import fftconvolve

from lsdr.survey.core.tan import TanWcs
from lsdr.survey.runbrick.types import BrickGeometry, Source, Tim

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

DetectionMaps = dict[str, tuple[F32Array, F32Array]]
"""Per band: (detmap in nanomaggies of a point source, detiv in 1/nanomaggies²)."""

SADDLE_FRACTION = 0.1
SADDLE_MIN = 2.0
"""A fainter peak is a new source only if the S/N drops by max(2, 10 % of its peak) between
them (legacypipe ``sed_matched_detection`` defaults)."""
SADDLE_RADIUS = 50
"""Brick pixels around a peak searched for a brighter peak on the same saddle (legacypipe: 50)."""
BLOB_DILATE_ARCSEC = 8 * 0.262
"""Blobs are the nsigma pixels dilated by this much (legacypipe: 8 iterations at 0.262″)."""
RED_SED_COLOURS = {"g": 10 ** (-0.4 * 1.0), "r": 1.0, "i": 10 ** (0.4 * 0.5), "z": 10**0.4}
"""Flux ratios of the "red" SED (g−r = 1, r−z = 1 mag), relative to r."""


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


def _filtered_tim(tim: Tim) -> tuple[FloatArray, FloatArray]:
    """Matched-filtered flux map of a tim and its per-pixel inverse variance (cut-out grid)."""
    psf = tim_psf_stamp(tim)
    good = tim.invvar > 0
    image = np.where(good, tim.image, 0.0).astype(np.float64)
    # Correlation with the PSF = convolution with the flipped PSF.
    filtered = fftconvolve(image, psf[::-1, ::-1], mode="same")
    psfnorm2 = float(np.sum(psf**2))
    sig1 = tim_sig1(tim)
    detmap = filtered / psfnorm2
    iv = psfnorm2 / sig1**2 if sig1 > 0 else 0.0
    detiv = np.where(good, iv, 0.0)
    return detmap, detiv


def detection_maps(tims: Sequence[Tim], geom: BrickGeometry, bands: Sequence[str]) -> DetectionMaps:
    """Per band: PSF-matched-filter flux map and its inverse variance on the brick grid.

    Each tim is filtered on its own pixel grid with its own PSF, then sampled bilinearly at the
    brick pixels it covers (pixels whose nearest tim pixel is masked get zero weight); the tims
    of a band are averaged with inverse-variance weights.  Sampling runs in float32, in blocks
    of brick rows, on the resampler's interpolated coordinates.
    """
    out: DetectionMaps = {}
    for band in bands:
        num = np.zeros((geom.height, geom.width), np.float32)
        den = np.zeros((geom.height, geom.width), np.float32)
        for tim in tims:
            if tim.band != band:
                continue
            box = tim_footprint(tim, geom)
            if box is None:
                continue
            detmap, detiv = _filtered_tim(tim)
            _accumulate(
                tim, geom, box, detmap.astype(np.float32), detiv.astype(np.float32), num, den
            )
        detmap_b = np.zeros_like(num)
        np.divide(num, den, out=detmap_b, where=den > 0)
        out[band] = (detmap_b, den)
    return out


def _accumulate(
    tim: Tim,
    geom: BrickGeometry,
    box: tuple[slice, slice],
    detmap: F32Array,
    detiv: F32Array,
    num: F32Array,
    den: F32Array,
) -> None:
    """Add one tim's sampled detection map (×weight) and weight to the band's sums."""
    from lsdr.survey.runbrick.resample import fast_coordinates

    sy, sx = box
    h, w = tim.shape
    flat, ivflat = detmap.ravel(), detiv.ravel()
    bbox = (sx.start, sx.stop, sy.start, sy.stop)
    for r0, u, v in fast_coordinates(tim, geom, bbox):
        u32, v32 = u.astype(np.float32), v.astype(np.float32)
        inside = (u32 > -0.5) & (u32 < w - 0.5) & (v32 > -0.5) & (v32 < h - 0.5)
        np.clip(u32, 0, w - 1, out=u32)
        np.clip(v32, 0, h - 1, out=v32)
        near = np.rint(v32).astype(np.intp) * w + np.rint(u32).astype(np.intp)
        iv = np.where(inside, ivflat[near], np.float32(0.0))
        x0 = np.minimum(u32.astype(np.intp), max(w - 2, 0))
        y0 = np.minimum(v32.astype(np.intp), max(h - 2, 0))
        fx, fy = u32 - x0, v32 - y0
        base = y0 * w + x0
        dx, dy = (1 if w > 1 else 0), (w if h > 1 else 0)
        top = flat[base] * (1 - fx) + flat[base + dx] * fx
        bottom = flat[base + dy] * (1 - fx) + flat[base + dy + dx] * fx
        values = top * (1 - fy) + bottom * fy
        rows = slice(r0, r0 + u.shape[0])
        num[rows, sx] += iv * values
        den[rows, sx] += iv


def sed_list(bands: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
    """SED-matched filters searched, as legacypipe: each band alone, then flat and red SEDs."""
    seds: list[tuple[str, dict[str, float]]] = [(b, {b: 1.0}) for b in bands]
    if len(bands) > 1:
        seds.append(("Flat", {b: 1.0 for b in bands}))
        red = {b: RED_SED_COLOURS[b] for b in bands if b in RED_SED_COLOURS}
        if len(red) > 1:
            seds.append(("Red", red))
    return seds


def sed_sn_map(maps: DetectionMaps, sed: dict[str, float]) -> F32Array:
    """S/N map of an SED-matched combination: Σ (d·iv/w) / √Σ (iv/w²)."""
    shape = next(iter(maps.values()))[0].shape
    num = np.zeros(shape, np.float64)
    den = np.zeros(shape, np.float64)
    for band, weight in sed.items():
        if band not in maps or weight <= 0:
            continue
        detmap, detiv = maps[band]
        num += detmap.astype(np.float64) * detiv / weight
        den += detiv.astype(np.float64) / weight**2
    sn = np.where(den > 0, num / np.sqrt(np.maximum(den, 1e-300)), 0.0)
    return sn.astype(np.float32)


def max_sn_map(maps: DetectionMaps, bands: Sequence[str]) -> F32Array:
    """Pixel-wise maximum S/N over legacypipe's SED-matched filters."""
    best: F32Array | None = None
    for _, sed in sed_list(bands):
        sn = sed_sn_map(maps, sed)
        best = sn if best is None else np.maximum(best, sn)
    if best is None:
        raise ValueError("no bands to detect in")
    return best


def find_peaks(
    sn: F32Array,
    nsigma: float,
    *,
    veto: BoolArray | None = None,
) -> list[tuple[int, int]]:
    """Local maxima of an S/N map above ``nsigma`` that pass legacypipe's saddle test.

    Peaks are taken brightest first; a peak is dropped when, within ``SADDLE_RADIUS`` pixels,
    the region above its saddle level (peak − max(2, 10 % of peak)) connected to it already
    holds an accepted peak.  Returns (x, y) brick pixels, brightest first.
    """
    local_max = ndimage.maximum_filter(sn, size=3, mode="constant", cval=-np.inf) == sn
    cand = local_max & (sn > nsigma)
    if veto is not None:
        cand &= ~veto
    py, px = np.nonzero(cand)
    order = np.lexsort((px, py, -sn[py, px]))
    accepted = np.zeros(sn.shape, bool)
    peaks: list[tuple[int, int]] = []
    h, w = sn.shape
    r = SADDLE_RADIUS
    for k in order:
        x, y = int(px[k]), int(py[k])
        value = float(sn[y, x])
        level = value - max(SADDLE_MIN, SADDLE_FRACTION * value)
        y0, y1 = max(y - r, 0), min(y + r + 1, h)
        x0, x1 = max(x - r, 0), min(x + r + 1, w)
        near = accepted[y0:y1, x0:x1]
        if near.any():
            labels, _ = ndimage.label(sn[y0:y1, x0:x1] > level)
            own = labels[y - y0, x - x0]
            if own > 0 and np.any(near & (labels == own)):
                continue
        accepted[y, x] = True
        peaks.append((x, y))
    return peaks


def _refine_peak(sn: F32Array, x: int, y: int) -> tuple[float, float]:
    """Sub-pixel peak position from a parabola through the 3×3 neighbourhood."""
    h, w = sn.shape
    fx, fy = float(x), float(y)
    if 0 < x < w - 1:
        a, b, c = float(sn[y, x - 1]), float(sn[y, x]), float(sn[y, x + 1])
        d = a - 2 * b + c
        if d < 0:
            fx += float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    if 0 < y < h - 1:
        a, b, c = float(sn[y - 1, x]), float(sn[y, x]), float(sn[y + 1, x])
        d = a - 2 * b + c
        if d < 0:
            fy += float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    return fx, fy


def make_blobs(
    sn: F32Array, nsigma: float, geom: BrickGeometry, sources: Sequence[Source]
) -> tuple[npt.NDArray[np.int32], list[Blob]]:
    """Blob map (−1 outside any blob) and blobs: the dilated, hole-filled ``nsigma`` regions.

    Every source gets a blob: a source outside the hot regions (a reference star, say) gets a
    small disc of its own.  Blob ids are 0.. in raster order of their first pixel.
    """
    hot = sn > nsigma
    iterations = max(round(BLOB_DILATE_ARCSEC / geom.pixscale), 1)
    for src in sources:
        ix, iy = round(src.bx), round(src.by)
        if 0 <= ix < geom.width and 0 <= iy < geom.height:
            hot[iy, ix] = True
    if hot.any():
        hot = ndimage.binary_dilation(hot, iterations=iterations)
        hot = ndimage.binary_fill_holes(hot)
    labels, _ = ndimage.label(hot)
    blobmap = (labels - 1).astype(np.int32)
    found = ndimage.find_objects(labels)
    members: dict[int, list[int]] = {}
    for i, src in enumerate(sources):
        ix = min(max(round(src.bx), 0), geom.width - 1)
        iy = min(max(round(src.by), 0), geom.height - 1)
        b = int(blobmap[iy, ix])
        src.blob = b
        if b >= 0:
            members.setdefault(b, []).append(i)
    blobs: list[Blob] = []
    for b, box in enumerate(found):
        if box is None:
            continue
        sy, sx = box
        blobs.append(
            Blob(
                blob_id=b,
                x0=int(sx.start),
                x1=int(sx.stop),
                y0=int(sy.start),
                y1=int(sy.stop),
                mask=np.asarray(blobmap[sy, sx] == b),
                sources=tuple(members.get(b, [])),
            )
        )
    return blobmap, blobs


def detect_sources(
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    *,
    nsigma: float = 6.0,
    refs: Sequence[Source] | None = None,
    maps: DetectionMaps | None = None,
    avoid: BoolArray | None = None,
) -> tuple[list[Source], npt.NDArray[np.int32], list[Blob]]:
    """Detect sources on the SED-matched maps and group them into blobs.

    Reference sources (``refs``, e.g. Gaia stars) come first in the list and veto new
    detections within 2″ of their position; no new source either where ``avoid`` is set
    (legacypipe's ``avoid_map``: the CLUSTER masks).  New sources are type PSF with the
    detection-map fluxes as starting values.  Returns (sources, blob map, blobs).
    """
    if maps is None:
        maps = detection_maps(tims, geom, bands)
    sn = max_sn_map(maps, bands)
    brick_wcs = geom.wcs()
    sources: list[Source] = []
    veto = np.zeros(sn.shape, bool) if avoid is None else np.array(avoid, bool)
    veto_r = 2.0 / geom.pixscale
    for ref in refs or ():
        bx, by = brick_wcs.radec_to_pixel(ref.ra, ref.dec)
        ref.bx, ref.by = float(bx) - 1.0, float(by) - 1.0
        sources.append(ref)
        x0, x1 = int(ref.bx - veto_r), int(ref.bx + veto_r) + 2
        y0, y1 = int(ref.by - veto_r), int(ref.by + veto_r) + 2
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, geom.width), min(y1, geom.height)
        if x1 > x0 and y1 > y0:
            yy, xx = np.mgrid[y0:y1, x0:x1]
            veto[y0:y1, x0:x1] |= np.hypot(xx - ref.bx, yy - ref.by) < veto_r
    for x, y in find_peaks(sn, nsigma, veto=veto):
        fx, fy = _refine_peak(sn, x, y)
        ra, dec = brick_wcs.pixel_to_radec(fx + 1.0, fy + 1.0)
        flux = {b: float(maps[b][0][y, x]) for b in bands if b in maps}
        sources.append(Source(ra=float(ra), dec=float(dec), type="PSF", flux=flux, bx=fx, by=fy))
    blobmap, blobs = make_blobs(sn, nsigma, geom, sources)
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
        out.append(
            Source(
                ra=float(row["ra"]),
                dec=float(row["dec"]),
                type="PSF",
                ref_cat=cat.decode() if isinstance(cat, bytes) else str(cat),
                ref_id=int(row["ref_id"]),
            )
        )
    return out


def stage_srcs(
    *,
    tims: Sequence[Tim],
    geom: BrickGeometry,
    bands: Sequence[str],
    refs: npt.NDArray[np.void] | None = None,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
) -> dict[str, object]:
    """Stage ``srcs``: detection and blobs; state gains ``sources``, ``blobmap`` and ``blobs``.

    No new source is detected inside a CLUSTER mask of ``refmap`` (as legacypipe).
    """
    from lsdr.survey.runbrick.refs import REF_CLUSTER

    avoid = None if refmap is None else (np.asarray(refmap) & REF_CLUSTER) != 0
    sources, blobmap, blobs = detect_sources(
        tims, geom, bands, refs=ref_sources(refs, geom), avoid=avoid
    )
    return {"sources": sources, "blobmap": blobmap, "blobs": blobs}
