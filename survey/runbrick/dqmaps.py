"""Per-band data-quality maps on the brick grid: any/all DQ bits, exposure count, saturation.

The CP ``ood`` planes hold integer codes (1 bad, 2 no value, 3 saturated, 4 bleed, 5 cosmic
ray, 6 low weight, 7 difference detection, 8 streak); ``dq_bits`` turns them into legacypipe's
DQ bit mask (``remap_dq_cp_codes``: 1, 2, 6 → badpix, 3 → satur, 4 → bleed, 5 → cr, 7, 8 →
trans; a bad pixel touching a saturated one counts as saturated), skipping the codes legacypipe
ignores per camera.  Each tim's DQ is taken at the nearest CCD pixel of every brick pixel its
Lanczos footprint covers (as ``resample.resample_tim`` places the tim), and per band

- ``ormask``/``andmask``: OR / AND of the DQ bits over the exposures covering a pixel (AND is 0
  where none does) — the catalogue's ``anymask_<b>``/``allmask_<b>`` and maskbit ALLMASK_<b>
  (``andmask`` ≠ 0) as legacypipe's ``make_coadds``;
- ``nobs``: the number of exposures covering a pixel, masked or not (catalogue ``nobs_<b>``);
- ``satur``: legacypipe's saturation map with ``--nsatur 2`` (production): saturated in at least
  ``NSATUR`` exposures, or in all of them, then grown by 4 pixels (``stage_srcs``) — maskbit
  SATUR_<b>.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
import numpy.typing as npt
from scipy.ndimage import binary_dilation

from lsdr.survey.runbrick import tractorschema as ts
from lsdr.survey.runbrick.resample import LANCZOS_ORDER, brick_bbox, fast_coordinates
from lsdr.survey.runbrick.types import BrickGeometry, Tim

CP_CODE_BITS: dict[int, str] = {
    1: "badpix",
    2: "badpix",
    3: "satur",
    4: "bleed",
    5: "cr",
    6: "badpix",
    7: "trans",
    8: "trans",
}
"""CP DQ code → legacypipe DQ bit name (``cpimage.remap_dq_cp_codes``)."""
IGNORED_CODES: dict[str, tuple[int, ...]] = {"decam": (8,), "mosaic": (7, 8), "90prime": (7, 8)}
"""CP codes legacypipe leaves out per camera (streaks; Mosaic/90Prime difference detection)."""
NSATUR = 2
"""Exposures that must be saturated for SATUR_<b> (``--nsatur 2`` of the production scripts)."""
SATUR_GROW = 4
"""Pixels the saturation map is grown by (``binary_dilation(iterations=4)`` in stage_srcs)."""
ALL_DQ_BITS = reduce(lambda a, b: a | b, ts.DQ_BITS.values())
"""Start value of the AND mask: every DQ bit."""


def dq_bits(codes: npt.NDArray[np.integer], camera: str) -> npt.NDArray[np.int16]:
    """legacypipe's DQ bit mask of a CP code plane (per-camera ignored codes dropped).

    The ``outlier`` bit the outliers stage sets on top of the codes is passed through.
    """
    outlier = np.int16(ts.DQ_BITS["outlier"])
    raw = np.asarray(codes)
    dq = raw & ~outlier if np.issubdtype(raw.dtype, np.integer) else raw
    sat = dq == 3
    if sat.any():
        dq = np.where((dq == 1) & binary_dilation(sat), 3, dq)
    out = np.zeros(dq.shape, np.int16)
    ignored = IGNORED_CODES.get(camera, ())
    for code, name in CP_CODE_BITS.items():
        if code not in ignored:
            out[dq == code] |= np.int16(ts.DQ_BITS[name])
    if np.issubdtype(raw.dtype, np.integer):
        out |= raw & outlier
    return out


@dataclass
class BandMasks:
    """DQ summaries of one band on the brick grid."""

    band: str
    ormask: npt.NDArray[np.int16]
    andmask: npt.NDArray[np.int16]
    nobs: npt.NDArray[np.int16]
    satur: npt.NDArray[np.bool_]


def tim_dq_on_brick(
    tim: Tim, geom: BrickGeometry
) -> tuple[tuple[slice, slice], npt.NDArray[np.bool_], npt.NDArray[np.int16]] | None:
    """(brick slices, covered, DQ bits) of one tim: nearest CCD pixel over its Lanczos footprint."""
    bbox = brick_bbox(tim, geom)
    if bbox is None:
        return None
    x0, x1, y0, y1 = bbox
    h, w = tim.shape
    bits = dq_bits(tim.dq, tim.camera).ravel()
    covered = np.zeros((y1 - y0, x1 - x0), bool)
    dq = np.zeros((y1 - y0, x1 - x0), np.int16)
    lo = LANCZOS_ORDER - 1
    for r0, u, v in fast_coordinates(tim, geom, bbox):
        nr = u.shape[0]
        fu, fv = np.floor(u), np.floor(v)
        ok = (fu >= lo) & (fu + LANCZOS_ORDER < w) & (fv >= lo) & (fv + LANCZOS_ORDER < h)
        near = np.rint(v).astype(np.intp) * w + np.rint(u).astype(np.intp)
        rows = slice(r0 - y0, r0 - y0 + nr)
        covered[rows] = ok
        dq[rows] = np.where(ok, bits[np.where(ok, near, 0)], np.int16(0))
    if not covered.any():
        return None
    return (slice(y0, y1), slice(x0, x1)), covered, dq


def band_masks(
    tims: Sequence[Tim], geom: BrickGeometry, band: str, nsatur: int = NSATUR
) -> BandMasks:
    """The DQ summaries of one band (all zero where no tim of the band lands)."""
    shape = (geom.height, geom.width)
    ormask = np.zeros(shape, np.int16)
    andmask = np.full(shape, np.int16(ALL_DQ_BITS), np.int16)
    nobs = np.zeros(shape, np.int16)
    nsat = np.zeros(shape, np.int16)
    satur_bit = np.int16(ts.DQ_BITS["satur"])
    for tim in tims:
        if tim.band != band:
            continue
        placed = tim_dq_on_brick(tim, geom)
        if placed is None:
            continue
        sl, covered, dq = placed
        ormask[sl] |= dq
        andmask[sl] &= np.where(covered, dq, np.int16(ALL_DQ_BITS))
        nobs[sl] += covered.astype(np.int16)
        nsat[sl] += ((dq & satur_bit) != 0).astype(np.int16)
    andmask[nobs == 0] = 0
    satur = (nsat >= nsatur) | ((nsat == nobs) & (nobs > 0))
    if satur.any():
        satur = binary_dilation(satur, iterations=SATUR_GROW)
    return BandMasks(band, ormask, andmask, nobs, np.asarray(satur, bool))
