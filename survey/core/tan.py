"""The TAN (gnomonic) WCS of a CCD, in numpy: sky to pixel and back.

CP images carry a TAN (or TPV) WCS per CCD; the simulator writes pure TAN, and the lite engines
project whole catalogues at once, so this is vectorised and has no astropy overhead.  FITS
pixel convention: the centre of the first pixel is (1, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TanWcs:
    """A TAN WCS: reference sky position, reference pixel and CD matrix (degrees/pixel)."""

    crval1: float
    crval2: float
    crpix1: float
    crpix2: float
    cd1_1: float
    cd1_2: float
    cd2_1: float
    cd2_2: float

    @property
    def pixscale(self) -> float:
        """Pixel scale, arcsec/pixel."""
        return 3600.0 * float(np.sqrt(abs(self.cd1_1 * self.cd2_2 - self.cd1_2 * self.cd2_1)))

    def header_cards(self) -> dict[str, str | float]:
        """The WCS as FITS header cards."""
        return {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CRVAL1": self.crval1,
            "CRVAL2": self.crval2,
            "CRPIX1": self.crpix1,
            "CRPIX2": self.crpix2,
            "CD1_1": self.cd1_1,
            "CD1_2": self.cd1_2,
            "CD2_1": self.cd2_1,
            "CD2_2": self.cd2_2,
        }

    def radec_to_pixel(
        self, ra: npt.ArrayLike, dec: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """FITS pixel coordinates (1-based) of sky positions in degrees."""
        xi, eta = radec_to_tangent(ra, dec, self.crval1, self.crval2)
        det = self.cd1_1 * self.cd2_2 - self.cd1_2 * self.cd2_1
        dx = (self.cd2_2 * xi - self.cd1_2 * eta) / det
        dy = (-self.cd2_1 * xi + self.cd1_1 * eta) / det
        return dx + self.crpix1, dy + self.crpix2

    def pixel_to_radec(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Sky positions (degrees) of FITS pixel coordinates (1-based)."""
        dx = np.asarray(x, np.float64) - self.crpix1
        dy = np.asarray(y, np.float64) - self.crpix2
        xi = self.cd1_1 * dx + self.cd1_2 * dy
        eta = self.cd2_1 * dx + self.cd2_2 * dy
        return tangent_to_radec(xi, eta, self.crval1, self.crval2)


def radec_to_tangent(
    ra: npt.ArrayLike, dec: npt.ArrayLike, ra0: float, dec0: float
) -> tuple[FloatArray, FloatArray]:
    """Gnomonic projection about (ra0, dec0): tangent-plane (xi, eta) in degrees."""
    r = np.radians(np.asarray(ra, np.float64))
    d = np.radians(np.asarray(dec, np.float64))
    r0 = np.radians(ra0)
    d0 = np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(r - r0)
    xi = np.cos(d) * np.sin(r - r0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(r - r0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def tangent_to_radec(
    xi: npt.ArrayLike, eta: npt.ArrayLike, ra0: float, dec0: float
) -> tuple[FloatArray, FloatArray]:
    """Inverse gnomonic projection: (ra, dec) in degrees of tangent-plane (xi, eta) in degrees."""
    x = np.radians(np.asarray(xi, np.float64))
    y = np.radians(np.asarray(eta, np.float64))
    d0 = np.radians(dec0)
    denom = np.cos(d0) - y * np.sin(d0)
    ra = np.radians(ra0) + np.arctan2(x, denom)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)
