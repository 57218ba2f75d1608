"""Iterative detection: a second search for sources on a blob's residuals after its first fit.

legacypipe's ``OneBlob.iterative_detection`` (fitbits ITERATIVE): once a blob's sources are
fitted, the fitted models are subtracted and the detection of :mod:`detect` is run again on
the residual pixels of the blob, on the blob's own sub-grid of the brick, at the same
``nsigma``, staying 4 px clear of where the blob's sources started and off every
reference-mask pixel.  A residual peak is only believed when it is more than a fifth of what
the fitted models themselves show at that pixel (max over bands of the S/N of detection maps
made from the model images, floored at 1): residuals of a bright source's imperfect model are
a fraction of that model, a missed neighbour is not.  The new sources are then fitted like
the first ones, with the first ones held fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.runbrick.detect import (
    BLOB_DILATE,
    EXCLUSION_RADIUS,
    Blob,
    DetectionMaps,
    detection_maps,
    grown_satur,
    run_sed_filters,
)
from lsdr.survey.runbrick.types import BrickGeometry, Source, Tim

MODEL_FRACTION = 0.2
"""A residual peak must exceed this fraction of the models' own detection S/N there."""
ITERATIVE = "iterative"
"""``Source.extra`` key: the source was found by iterative detection."""


def blob_geometry(geom: BrickGeometry, blob: Blob) -> BrickGeometry:
    """The brick's TAN grid cut to the blob's bounding box (pixel (0, 0) = brick (x0, y0))."""
    wcs = geom.wcs()
    return replace(
        geom,
        width=blob.x1 - blob.x0,
        height=blob.y1 - blob.y0,
        crpix=(wcs.crpix1 - blob.x0, wcs.crpix2 - blob.y0),
    )


def _window_tim(tim: Tim, oy: int, ox: int, image: npt.NDArray[Any], ivar: npt.NDArray[Any]) -> Tim:
    """A tim cut to a view's window, with other pixels (a residual, a model) and weights."""
    h, w = image.shape
    return replace(
        tim,
        image=np.asarray(image, np.float32),
        invvar=np.asarray(ivar, np.float32),
        dq=tim.dq[oy : oy + h, ox : ox + w],
        x0=tim.x0 + ox,
        y0=tim.y0 + oy,
    )


def _sn_at(
    maps: DetectionMaps, x: npt.NDArray[np.intp], y: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Per peak, the largest single-band S/N of the maps at its pixel."""
    best = np.full(len(x), -np.inf)
    for band in maps.bands:
        sn = maps.detmap[band][y, x] * np.sqrt(maps.detiv[band][y, x])
        best = np.maximum(best, sn.astype(np.float64))
    return best


def iterative_sources(
    blob: Blob,
    views: Sequence[Any],
    models: Sequence[npt.NDArray[np.float64]],
    geom: BrickGeometry,
    bands: Sequence[str],
    start_xy: Sequence[tuple[float, float]],
    *,
    nsigma: float = 6.0,
    refmap: npt.NDArray[np.integer[Any]] | None = None,
) -> list[Source]:
    """New point sources on a blob's residuals (views' data − ``models``), or none.

    ``views`` are the blob's ``fit.TimView`` (weights zero outside the blob), ``models`` the
    fitted sources' full model on each view, ``start_xy`` the brick pixels where the blob's
    sources started (no new peak within 4 px), ``refmap`` the brick's reference map (no new
    peak where it is set).  Sources come back at their peak pixel, with the residual
    detection-map fluxes, flagged ``extra[ITERATIVE]``.
    """
    sub = blob_geometry(geom, blob)
    residual: list[Tim] = []
    modelled: list[Tim] = []
    for v, model in zip(views, models, strict=True):
        residual.append(_window_tim(v.tim, v.oy, v.ox, v.data - model, v.ivar))
        modelled.append(_window_tim(v.tim, v.oy, v.ox, model, v.ivar))
    maps = detection_maps(residual, sub, bands, apodize=None)
    h, w = sub.height, sub.width
    kx = np.clip(np.rint([x - blob.x0 for x, _ in start_xy]).astype(np.intp), 0, w - 1)
    ky = np.clip(np.rint([y - blob.y0 for _, y in start_xy]).astype(np.intp), 0, h - 1)
    veto = None
    if refmap is not None:
        veto = np.asarray(refmap[blob.y0 : blob.y1, blob.x0 : blob.x1]) != 0
    peaks, _hot = run_sed_filters(
        maps,
        nsigma,
        known=(kx, ky, np.full(len(kx), float(EXCLUSION_RADIUS))),
        satur=grown_satur(maps),
        veto=veto,
        blob_dilate=BLOB_DILATE,
    )
    if not len(peaks):
        return []
    model_maps = detection_maps(modelled, sub, bands, apodize=None)
    det_max = _sn_at(maps, peaks.x, peaks.y)
    mod_max = _sn_at(model_maps, peaks.x, peaks.y)
    keep = det_max > MODEL_FRACTION * np.maximum(mod_max, 1.0)
    brick_wcs = geom.wcs()
    out: list[Source] = []
    for x, y, sed, ok in zip(peaks.x, peaks.y, peaks.sed, keep, strict=True):
        if not ok:
            continue
        bx, by = float(x + blob.x0), float(y + blob.y0)
        ra, dec = brick_wcs.pixel_to_radec(bx + 1.0, by + 1.0)
        flux = {b: float(maps.detmap[b][y, x]) for b in bands if b in maps.detmap}
        src = Source(ra=float(ra), dec=float(dec), type="PSF", flux=flux, bx=bx, by=by)
        src.extra[ITERATIVE] = True
        src.extra["peak_sed"] = sed
        out.append(src)
    return out
