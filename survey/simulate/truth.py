"""The simulated sky and its truth catalogue: the coverage, stars and galaxies."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import RegionError
from lsdr.survey.core.refcat import GAIA_REF_EPOCH
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.gaia import GAIA_G_LIMIT, gaia_from_grz

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Coverage:
    """The simulated sky: the region's bricks plus a margin (never crosses RA 0)."""

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    @property
    def area(self) -> float:
        """Square degrees."""
        dsin = math.sin(math.radians(self.dec_max)) - math.sin(math.radians(self.dec_min))
        return math.degrees(math.radians(self.ra_max - self.ra_min) * dsin) * 180.0 / math.pi

    @property
    def center(self) -> tuple[float, float]:
        """Centre (RA, Dec), degrees."""
        return (self.ra_min + self.ra_max) / 2, (self.dec_min + self.dec_max) / 2


def coverage_for(config: SimulationConfig) -> Coverage:
    """The sky to simulate: the bricks whose centres are in the region, plus the margin."""
    bricks = grid.bricks_in_region(config.region)
    if not bricks:
        box = config.region
        raise RegionError(
            f"empty region: no brick centre in RA {box.ra_min:g}..{box.ra_max:g}, "
            f"Dec {box.dec_min:g}..{box.dec_max:g}"
        )
    if config.region.wraps:
        raise RegionError(
            "the simulator does not cross RA 0/360: choose a region that does not wrap"
        )
    dec_min = max(min(b.dec1 for b in bricks) - config.margin, -89.0)
    dec_max = min(max(b.dec2 for b in bricks) + config.margin, 89.0)
    widest = math.cos(math.radians(max(abs(dec_min), abs(dec_max))))
    ra_margin = config.margin / max(widest, 0.05)
    ra_min = max(min(b.ra1 for b in bricks) - ra_margin, 0.0)
    ra_max = min(max(b.ra2 for b in bricks) + ra_margin, 360.0 - 1e-9)
    return Coverage(ra_min, ra_max, dec_min, dec_max)


TRUTH_DTYPE = np.dtype(
    [
        ("id", ">i8"),
        ("type", "S3"),
        ("ra", ">f8"),
        ("dec", ">f8"),
        ("flux_g", ">f4"),
        ("flux_r", ">f4"),
        ("flux_z", ">f4"),
        ("mag_g", ">f4"),
        ("mag_r", ">f4"),
        ("mag_z", ">f4"),
        ("sersic", ">f4"),
        ("shape_r", ">f4"),
        ("shape_e1", ">f4"),
        ("shape_e2", ">f4"),
        ("pmra", ">f4"),
        ("pmdec", ">f4"),
        ("ref_epoch", ">f4"),
        ("gaia_source_id", ">i8"),
        ("border_star", "?"),
    ]
)
"""Truth columns: fluxes in nanomaggies (22.5 − 2.5 log10 flux = AB mag), shapes in tractor
terms (shape_r the half-light radius along the major axis, arcsec; e1, e2 ellipticity with
position angle ½·atan2(e2, e1) from north through east), positions at ``ref_epoch``."""


def _uniform_sky(rng: np.random.Generator, cov: Coverage, n: int) -> tuple[FloatArray, FloatArray]:
    """Positions uniform on the sphere inside the coverage box."""
    ra = rng.uniform(cov.ra_min, cov.ra_max, n)
    s0, s1 = math.sin(math.radians(cov.dec_min)), math.sin(math.radians(cov.dec_max))
    dec = np.degrees(np.arcsin(rng.uniform(s0, s1, n)))
    return ra, dec


def _power_law_mags(
    rng: np.random.Generator, n: int, lo: float, hi: float, slope: float
) -> FloatArray:
    """Magnitudes with dN/dm ∝ 10^(slope·m) between lo and hi."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.asarray(np.log10(rng.uniform(a, b, n)) / slope, np.float64)


BORDER_GALAXY_OFFSET = 46.0 / 3600.0
"""Dec offset (deg) of the border galaxy from the border star (r = 9: BRIGHT radius 40″)."""


def make_truth(config: SimulationConfig, rng: np.random.Generator) -> npt.NDArray[np.void]:
    """Draw the truth catalogue: stars (some bright), exponential and de Vaucouleurs galaxies."""
    cov = coverage_for(config)
    nstar = int(rng.poisson(config.star_density * cov.area))
    nbright = int(rng.poisson(config.bright_star_density * cov.area))
    ngal = int(rng.poisson(config.galaxy_density * cov.area))

    star_r = np.concatenate(
        [_power_law_mags(rng, nstar, 15.0, 24.0, 0.2), rng.uniform(10.0, 13.0, nbright)]
    )
    nstars = len(star_r)
    sra, sdec = _uniform_sky(rng, cov, nstars)
    s_gr = np.clip(rng.normal(0.9, 0.35, nstars), 0.2, 1.6)
    s_rz = np.clip(0.5 * s_gr + rng.normal(0.05, 0.12, nstars), -0.1, 1.8)
    if config.border_star:
        # On the border between the region's central brick and its western neighbour.
        center = grid.brick_radec(*cov.center)
        sra = np.append(sra, center.ra1)
        sdec = np.append(sdec, center.dec)
        star_r = np.append(star_r, 9.0)
        s_gr = np.append(s_gr, 0.6)
        s_rz = np.append(s_rz, 0.3)
        nstars += 1

    gal_r = _power_law_mags(rng, ngal, 18.0, 24.5, 0.35)
    gra, gdec = _uniform_sky(rng, cov, ngal)
    g_gr = np.clip(rng.normal(1.0, 0.3, ngal), 0.3, 1.8)
    g_rz = np.clip(rng.normal(0.6, 0.25, ngal), 0.0, 1.5)
    is_dev = rng.uniform(size=ngal) < 0.4
    median_re = np.where(is_dev, 0.8, 1.0) * 10 ** (-0.12 * (gal_r - 21.0))
    shape_r = np.clip(median_re * np.exp(rng.normal(0, 0.35, ngal)), 0.25, 6.0)
    emod = rng.uniform(0.0, 0.5, ngal)
    phi = rng.uniform(0, math.pi, ngal)
    if config.border_star:
        # A galaxy on the same border just outside the star's BRIGHT circle (40″): its blob
        # straddles the circle's edge, the case the bright-neighbour step extends BRIGHT to.
        gra = np.append(gra, sra[-1])
        gdec = np.append(gdec, sdec[-1] + BORDER_GALAXY_OFFSET)
        gal_r = np.append(gal_r, 16.5)
        g_gr, g_rz = np.append(g_gr, 0.9), np.append(g_rz, 0.5)
        is_dev, shape_r = np.append(is_dev, False), np.append(shape_r, 3.0)
        emod, phi = np.append(emod, 0.0), np.append(phi, 0.0)
        ngal += 1

    n = nstars + ngal
    truth = np.zeros(n, TRUTH_DTYPE)
    truth["id"] = np.arange(1, n + 1)
    truth["type"][:nstars] = b"PSF"
    truth["type"][nstars:] = np.where(is_dev, b"DEV", b"EXP")
    truth["ra"] = np.concatenate([sra, gra])
    truth["dec"] = np.concatenate([sdec, gdec])
    r = np.concatenate([star_r, gal_r])
    gr = np.concatenate([s_gr, g_gr])
    rz = np.concatenate([s_rz, g_rz])
    mags = {"g": r + gr, "r": r, "z": r - rz}
    for band, mag in mags.items():
        truth[f"mag_{band}"] = mag
        truth[f"flux_{band}"] = 10 ** (-0.4 * (mag - 22.5))
    truth["sersic"][nstars:] = np.where(is_dev, 4.0, 1.0)
    truth["shape_r"][nstars:] = shape_r
    truth["shape_e1"][nstars:] = emod * np.cos(2 * phi)
    truth["shape_e2"][nstars:] = emod * np.sin(2 * phi)
    truth["pmra"][:nstars] = rng.normal(-4.0, 6.0, nstars)
    truth["pmdec"][:nstars] = rng.normal(-3.0, 6.0, nstars)
    truth["ref_epoch"] = GAIA_REF_EPOCH
    truth["border_star"][nstars - 1] = config.border_star

    gaia = gaia_from_grz(mags["g"][:nstars], mags["r"][:nstars], mags["z"][:nstars])
    in_gaia = np.nonzero(gaia[1] < GAIA_G_LIMIT)[0]
    truth["gaia_source_id"][in_gaia] = 4_000_000_000_000_000 + truth["id"][in_gaia] * 1000
    return truth
