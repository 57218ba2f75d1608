"""Drawing sources and detector effects into a simulated CCD image.

Stars are Moffat profiles; galaxies are elliptical Sérsic profiles (exponential n=1, de
Vaucouleurs n=4) convolved with the same Moffat.  Profiles are integrated over pixels by
evaluating them on a sub-pixel grid, so centroids are unbiased even when the PSF is only ~2
pixels wide.  Detector effects (saturation with bleed trails, cosmic rays, bad columns) use the
CP data-quality codes of the ``ood`` companion: 1 bad, 3 saturated, 4 bleed, 5 cosmic ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
Profile = Callable[[FloatArray, FloatArray], FloatArray]
"""A surface-brightness function of pixel offsets (dx, dy)."""

DQ_BAD = 1
DQ_SATURATED = 3
DQ_BLEED = 4
DQ_COSMIC_RAY = 5
"""CP data-quality codes (legacypipe's ``remap_dq_cp_codes`` maps them to its DQ bits)."""

SERSIC_B = {1: 1.678347, 4: 7.669249}
"""Sérsic b_n so that r_e encloses half the light (n=1 exponential, n=4 de Vaucouleurs)."""

OVERSAMPLE = 3
"""Sub-pixels per pixel side when integrating profiles over pixels."""
STAR_RADIUS_FWHM = 6.0
"""Stars are drawn out to at least this many FWHM (the PsfEx stamp's half-size): a β = 3.5
Moffat holds 2e-4 of its flux beyond, which the normalisation puts back."""


@dataclass(frozen=True, slots=True)
class Moffat:
    """A circular Moffat PSF: FWHM in pixels and β; normalised to unit total flux."""

    fwhm: float
    beta: float

    @property
    def alpha(self) -> float:
        """Core width α (pixels): FWHM = 2α√(2^(1/β) − 1)."""
        return self.fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def peak(self) -> float:
        """Central surface brightness of a unit-flux profile, per pixel²."""
        return (self.beta - 1.0) / (math.pi * self.alpha**2)

    def profile(self, r2: FloatArray) -> FloatArray:
        """Surface brightness (unit flux) at squared radius r2 (pixels²)."""
        return np.asarray(self.peak() * (1.0 + r2 / self.alpha**2) ** (-self.beta), np.float64)

    def radius_below(self, flux: float, threshold: float) -> float:
        """Radius (pixels) beyond which a source of ``flux`` is fainter than ``threshold``/pixel."""
        ratio = flux * self.peak() / max(threshold, 1e-30)
        if ratio <= 1.0:
            return 0.0
        return self.alpha * math.sqrt(ratio ** (1.0 / self.beta) - 1.0)

    def stamp(self, half: int, oversample: int = OVERSAMPLE) -> FloatArray:
        """The PSF centred on a (2·half+1)² pixel stamp, pixel-integrated, unit total flux."""
        return _pixelise(lambda dx, dy: self.profile(dx**2 + dy**2), 0.0, 0.0, half, oversample)

    def noise_equivalent_area(self) -> float:
        """Noise-equivalent area 1/Σp² (pixels²) of the pixelised PSF."""
        half = math.ceil(8 * self.fwhm) + 2
        p = self.stamp(half)
        return float(1.0 / np.sum(p**2))


def _subgrid(half: int, oversample: int) -> FloatArray:
    """Sub-pixel centre offsets covering pixels −half..half, in pixels."""
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    return np.asarray((np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel(), np.float64)


def _pixelise(func: Profile, fx: float, fy: float, half: int, oversample: int) -> FloatArray:
    """Integrate ``func(dx, dy)`` over pixels of a stamp whose centre pixel holds (fx, fy)."""
    grid = _subgrid(half, oversample)
    dx = grid[None, :] - fx
    dy = grid[:, None] - fy
    values = func(dx, dy)
    n = 2 * half + 1
    binned = values.reshape(n, oversample, n, oversample).mean(axis=(1, 3))
    return np.asarray(binned, np.float64)


def sersic_sky_profile(n: int, r_e: float, e1: float, e2: float, cd_arcsec: FloatArray) -> Profile:
    """A function of pixel offsets giving an unnormalised elliptical Sérsic profile.

    ``r_e`` is the half-light radius along the major axis (arcsec); (e1, e2) the ellipticity
    components, the position angle θ = ½·atan2(e2, e1) measured from north through east;
    ``cd_arcsec`` is the CD matrix in arcsec/pixel, so the shape is defined on the sky.
    """
    e = min(math.hypot(e1, e2), 0.95)
    q = (1.0 - e) / (1.0 + e)
    theta = 0.5 * math.atan2(e2, e1)
    b = SERSIC_B[n]
    sin_t, cos_t = math.sin(theta), math.cos(theta)

    def profile(dx: FloatArray, dy: FloatArray) -> FloatArray:
        east = cd_arcsec[0, 0] * dx + cd_arcsec[0, 1] * dy  # ξ grows with RA, i.e. east
        north = cd_arcsec[1, 0] * dx + cd_arcsec[1, 1] * dy
        major = north * cos_t + east * sin_t
        minor = -north * sin_t + east * cos_t
        r = np.sqrt(major**2 + (minor / q) ** 2) / r_e
        return np.asarray(np.exp(-b * (r ** (1.0 / n) - 1.0)), np.float64)

    return profile


def add_star(
    image: F32Array, x: float, y: float, flux: float, psf: Moffat, threshold: float
) -> None:
    """Add a point source of total ``flux`` at 0-based pixel (x, y), out to where it fades.

    The stamp reaches ``STAR_RADIUS_FWHM`` FWHM or, for bright stars, the radius where the
    profile drops below ``threshold``, and is scaled to sum to ``flux``: the injected total is
    the truth's flux (a cut at 2 FWHM lost 0.4 % of a star at S/N 20, 1 % at S/N 5).
    """
    reach = max(psf.radius_below(flux, threshold), STAR_RADIUS_FWHM * psf.fwhm)
    half = int(min(math.ceil(reach), 300))
    cx, cy = round(x), round(y)
    stamp = _pixelise(lambda dx, dy: psf.profile(dx**2 + dy**2), x - cx, y - cy, half, OVERSAMPLE)
    _paste(image, stamp * (flux / stamp.sum()), cx, cy, half)


def add_galaxy(
    image: F32Array,
    x: float,
    y: float,
    flux: float,
    n: int,
    r_e: float,
    e1: float,
    e2: float,
    cd_arcsec: FloatArray,
    psf: Moffat,
    psf_kernel: FloatArray,
) -> None:
    """Add a PSF-convolved Sérsic galaxy of total ``flux`` at 0-based pixel (x, y).

    The profile is drawn out to 8 r_e (the truncation legacypipe's models use too), convolved
    with the pixel-integrated PSF stamp ``psf_kernel`` and normalised to ``flux``.
    """
    from scipy.signal import fftconvolve

    pixscale = math.sqrt(abs(float(np.linalg.det(cd_arcsec))))
    extent = (8.0 if n == 4 else 5.0) * r_e / pixscale
    half = int(min(max(math.ceil(extent), 2), 80))
    cx, cy = round(x), round(y)
    profile = sersic_sky_profile(n, r_e, e1, e2, cd_arcsec)
    galaxy = _pixelise(profile, x - cx, y - cy, half, OVERSAMPLE)
    total = galaxy.sum()
    if not total > 0:
        return
    convolved = fftconvolve(galaxy / total, psf_kernel, mode="full")
    khalf = psf_kernel.shape[0] // 2
    convolved *= flux / convolved.sum()
    _paste(image, convolved, cx, cy, half + khalf)


def _paste(image: F32Array, stamp: FloatArray, cx: int, cy: int, half: int) -> None:
    """Add ``stamp`` (centred on pixel cx, cy) into ``image``, clipped at the edges."""
    h, w = image.shape
    x0, y0 = cx - half, cy - half
    x1, y1 = cx + half + 1, cy + half + 1
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = stamp.shape[1] - max(0, x1 - w)
    sy1 = stamp.shape[0] - max(0, y1 - h)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    image[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] += stamp[sy0:sy1, sx0:sx1].astype(
        np.float32
    )


def saturate(counts: F32Array, dq: npt.NDArray[np.int16], full_well: float) -> int:
    """Clip pixels above the full well and bleed the excess charge along their columns.

    Returns the number of saturated pixels (DQ 3); bleed pixels get DQ 4.
    """
    over = counts > full_well
    nsat = int(over.sum())
    if not nsat:
        return 0
    height = counts.shape[0]
    for col in np.unique(np.nonzero(over)[1]):
        column = counts[:, col]
        rows = np.nonzero(column > full_well)[0]
        excess = float(np.sum(column[rows] - full_well))
        length = math.ceil(excess / full_well / 2.0)
        lo = max(int(rows.min()) - length, 0)
        hi = min(int(rows.max()) + length + 1, height)
        bleed = np.zeros(height, bool)
        bleed[lo:hi] = True
        bleed[rows] = False
        column[bleed] = np.maximum(column[bleed], full_well)
        dq[bleed & (dq[:, col] == 0), col] = DQ_BLEED
        column[rows] = full_well
        dq[rows, col] = DQ_SATURATED
    return nsat


def add_cosmic_rays(
    counts: F32Array,
    dq: npt.NDArray[np.int16],
    number: int,
    flagged_fraction: float,
    rng: np.random.Generator,
) -> int:
    """Add ``number`` short cosmic-ray tracks; a ``flagged_fraction`` of them get DQ 5.

    Returns the number of unflagged tracks (left for outlier rejection to find).
    """
    h, w = counts.shape
    unflagged = 0
    for _ in range(number):
        length = int(rng.integers(1, 6))
        angle = rng.uniform(0, math.pi)
        x0, y0 = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        steps = np.arange(length)
        xs = np.clip(np.round(x0 + steps * math.cos(angle)).astype(int), 0, w - 1)
        ys = np.clip(np.round(y0 + steps * math.sin(angle)).astype(int), 0, h - 1)
        counts[ys, xs] += rng.uniform(800.0, 6000.0, size=length).astype(np.float32)
        if rng.uniform() < flagged_fraction:
            dq[ys, xs] = np.where(dq[ys, xs] == 0, DQ_COSMIC_RAY, dq[ys, xs])
        else:
            unflagged += 1
    return unflagged


def add_bad_column(
    counts: F32Array, dq: npt.NDArray[np.int16], weight: F32Array, rng: np.random.Generator
) -> int:
    """Spoil part of one column (hot or dead), flagged DQ 1 with zero weight; returns the column."""
    h, w = counts.shape
    col = int(rng.integers(w // 10, w - w // 10))
    start = int(rng.integers(0, h // 2))
    stop = int(rng.integers(start + h // 4, h + 1))
    hot = rng.uniform() < 0.5
    counts[start:stop, col] = counts[start:stop, col] * (4.0 if hot else 0.05)
    dq[start:stop, col] = DQ_BAD
    weight[start:stop, col] = 0.0
    return col
