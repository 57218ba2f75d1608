"""The WCS of a CCD cut-out from its CP image header, as a TAN with polynomial distortion.

legacypipe takes a tim's WCS from the image header (``image.py`` ``get_wcs``: the CP's TPV
converted to TAN-SIP), not from the survey-ccds ``crval/crpix/cd`` columns, which are only the
linear part: on real CP images those miss the distortion (1–2″ on the Mosaic and 90Prime
cut-outs of the test data, tens of pixels across a whole Mosaic CCD).  The lite engine's
stages use ``TanWcs``'s two projections only, so a cut-out's header WCS (any that astropy
reads, TPV included) is fitted, over the cut-out, by ``PolyTanWcs``: a TAN about the cut-out
centre plus a polynomial in each direction (pixel → tangent plane and back), as SIP does.  A
header with a plain TAN and no distortion gives the exact ``TanWcs``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.tan import TanWcs, radec_to_tangent, tangent_to_radec

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

POLY_ORDER = 5
"""Total degree of the distortion polynomials."""
FIT_GRID = 24
"""Sample points per side of the cut-out when fitting."""
MAX_RESIDUAL_PX = 0.05
"""A fit whose worst check-point residual exceeds this many pixels is logged as a warning."""
DISTORTION_KEYS = ("PV1_", "PV2_", "A_ORDER", "B_ORDER")


def _terms(u: FloatArray, v: FloatArray, order: int) -> FloatArray:
    """Monomials u^i v^j, i + j ≤ order, as columns (one row per point)."""
    cols = [u**i * v ** (d - i) for d in range(order + 1) for i in range(d + 1)]
    return np.stack(cols, axis=-1)


@dataclass(frozen=True)
class PolyTanWcs(TanWcs):
    """A TAN WCS whose pixel ↔ tangent-plane mapping is a polynomial fitted over a cut-out.

    ``crval``/``crpix``/``cd`` are the linear part (so ``pixscale`` stays right); the
    polynomials, in coordinates scaled by ``scale`` (pixels, or degrees / pixscale), give the
    tangent-plane offsets of a pixel and the pixel of a tangent-plane position.
    """

    scale: float = 1.0
    to_xi: tuple[float, ...] = ()
    to_eta: tuple[float, ...] = ()
    to_x: tuple[float, ...] = ()
    to_y: tuple[float, ...] = ()
    order: int = POLY_ORDER

    def pixel_to_radec(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Sky positions (degrees) of FITS pixel coordinates (1-based)."""
        u = (np.asarray(x, np.float64) - self.crpix1) / self.scale
        v = (np.asarray(y, np.float64) - self.crpix2) / self.scale
        t = _terms(u, v, self.order)
        xi = t @ np.asarray(self.to_xi)
        eta = t @ np.asarray(self.to_eta)
        return tangent_to_radec(xi, eta, self.crval1, self.crval2)

    def radec_to_pixel(
        self, ra: npt.ArrayLike, dec: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """FITS pixel coordinates (1-based) of sky positions in degrees."""
        xi, eta = radec_to_tangent(ra, dec, self.crval1, self.crval2)
        step = self.pixscale / 3600.0 * self.scale
        t = _terms(xi / step, eta / step, self.order)
        return t @ np.asarray(self.to_x) + self.crpix1, t @ np.asarray(self.to_y) + self.crpix2


def has_distortion(header: Any) -> bool:
    """Whether a FITS header's WCS is more than a plain TAN (TPV, SIP, …)."""
    ctype = str(header.get("CTYPE1", "")).upper()
    if ctype and not ctype.endswith("-TAN"):
        return True
    keys = list(header.keys())
    return any(str(k).upper().startswith(DISTORTION_KEYS) for k in keys)


def _linear_tan(header: Any) -> TanWcs:
    cd = [float(header.get(k, 0.0)) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2")]
    return TanWcs(
        float(header["CRVAL1"]),
        float(header["CRVAL2"]),
        float(header["CRPIX1"]),
        float(header["CRPIX2"]),
        *cd,
    )


def shift_crval(wcs: TanWcs, dra_arcsec: float, ddec_arcsec: float) -> TanWcs:
    """legacypipe's astrometric zeropoint: CRVAL += (Δα/cos δ, Δδ) from ``ccdraoff/ccddecoff``."""
    from dataclasses import replace

    dec = wcs.crval2
    return replace(
        wcs,
        crval1=wcs.crval1 + dra_arcsec / 3600.0 / math.cos(math.radians(dec)),
        crval2=dec + ddec_arcsec / 3600.0,
    )


def fit_header_wcs(header: Any, bounds: tuple[int, int, int, int]) -> TanWcs:
    """The header's WCS over CCD pixels ``bounds`` = 0-based ``(x0, x1, y0, y1)``, exclusive.

    A plain TAN header is returned as is; otherwise astropy evaluates the header WCS on a grid
    over the region and ``PolyTanWcs`` is fitted to it (both directions), checked on the
    points between the grid points.
    """
    header_wcs = _linear_tan(header)
    if not has_distortion(header):
        return header_wcs
    from astropy.io.fits import Header
    from astropy.wcs import WCS, FITSFixedWarning

    cards = header if isinstance(header, Header) else Header(_cards(header))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        full = WCS(cards, naxis=2)
    x0, x1, y0, y1 = bounds
    # FITS pixel centres of the region's edge pixels, 1-based.
    xa, xb, ya, yb = x0 + 1.0, float(x1), y0 + 1.0, float(y1)
    xc, yc = (xa + xb) / 2.0, (ya + yb) / 2.0
    scale = max(xb - xa, yb - ya, 1.0) / 2.0
    gx, gy = np.meshgrid(np.linspace(xa, xb, FIT_GRID), np.linspace(ya, yb, FIT_GRID))
    ra, dec = (np.asarray(a, np.float64) for a in full.all_pix2world(gx.ravel(), gy.ravel(), 1))
    rc, dc = (float(a[0]) for a in full.all_pix2world([xc], [yc], 1))
    xi, eta = radec_to_tangent(ra, dec, rc, dc)
    u, v = (gx.ravel() - xc) / scale, (gy.ravel() - yc) / scale
    order = min(POLY_ORDER, FIT_GRID // 3)
    fwd = _terms(u, v, order)
    to_xi, *_ = np.linalg.lstsq(fwd, xi, rcond=None)
    to_eta, *_ = np.linalg.lstsq(fwd, eta, rcond=None)
    # Linear part: d(xi, eta)/d(pixel) at the centre.
    cd = np.array([[to_xi[2], to_xi[1]], [to_eta[2], to_eta[1]]]) / scale
    pixscale_deg = math.sqrt(abs(float(np.linalg.det(cd))))
    step = pixscale_deg * scale
    inv = _terms(xi / step, eta / step, order)
    to_x, *_ = np.linalg.lstsq(inv, u * scale, rcond=None)
    to_y, *_ = np.linalg.lstsq(inv, v * scale, rcond=None)
    wcs = PolyTanWcs(
        crval1=rc,
        crval2=dc,
        crpix1=xc,
        crpix2=yc,
        cd1_1=float(cd[0, 0]),
        cd1_2=float(cd[0, 1]),
        cd2_1=float(cd[1, 0]),
        cd2_2=float(cd[1, 1]),
        scale=scale,
        to_xi=tuple(float(c) for c in to_xi),
        to_eta=tuple(float(c) for c in to_eta),
        to_x=tuple(float(c) for c in to_x),
        to_y=tuple(float(c) for c in to_y),
        order=order,
    )
    residual = _check(full, wcs, (xa, xb, ya, yb))
    if residual > MAX_RESIDUAL_PX:
        log.warning("header WCS fit over %s: worst residual %.3f px", bounds, residual)
    return wcs


def _check(full: Any, wcs: TanWcs, box: tuple[float, float, float, float]) -> float:
    """Worst pixel distance, both ways, between the fit and astropy between the grid points."""
    xa, xb, ya, yb = box
    n = FIT_GRID - 1
    dx, dy = (xb - xa) / (2 * n), (yb - ya) / (2 * n)
    gx, gy = np.meshgrid(np.linspace(xa + dx, xb - dx, n), np.linspace(ya + dy, yb - dy, n))
    ra, dec = (np.asarray(a, np.float64) for a in full.all_pix2world(gx.ravel(), gy.ravel(), 1))
    x, y = wcs.radec_to_pixel(ra, dec)
    back_ra, back_dec = wcs.pixel_to_radec(gx.ravel(), gy.ravel())
    bx, by = (np.asarray(a, np.float64) for a in full.all_world2pix(back_ra, back_dec, 1))
    one = np.hypot(x - gx.ravel(), y - gy.ravel())
    two = np.hypot(bx - gx.ravel(), by - gy.ravel())
    return float(max(one.max(), two.max()))


def _cards(header: Any) -> list[tuple[str, Any]]:
    """(keyword, value) pairs of a fitsio header or a mapping, for astropy."""
    records = getattr(header, "records", None)
    if callable(records):
        return [
            (str(r["name"]), r["value"])
            for r in records()
            if r.get("name") and str(r["name"]).upper() not in ("COMMENT", "HISTORY", "")
        ]
    return [(str(k), v) for k, v in dict(header).items()]
