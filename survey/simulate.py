"""A synthetic survey: CP-like images with a truth catalogue, for demos, tests and validation.

``simulate_survey`` writes, under a release directory's ``images/``, multi-extension
``.fits.fz`` images (``ooi``) with their data-quality (``ood``) and inverse-variance weight
(``oow``) companions, named and laid out as the NOIRLab Community Pipeline does, for the cameras
of the cookbook's worked example (90Prime g and r, Mosaic z; DECam optional).  Beside them it
writes the truth (``truth/truth.fits``: every source; ``truth/truth-ccds.fits``: the true
zeropoint, seeing and sky of every CCD) and a Gaia-like reference catalogue in legacypipe's
HEALPix chunk layout.  See ``docs/simulate.md`` for the model and its conventions.

Everything derives from one seed through ``numpy.random.SeedSequence``, each exposure from its
own child sequence, so the files are identical whatever the number of worker processes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr import __version__
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.cameras import BandFacts, Camera, get_camera
from lsdr.survey.core.errors import RegionError, UsageError
from lsdr.survey.core.fileio import atomic_path, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.refcat import GAIA_DTYPE, GAIA_REF_EPOCH, write_gaia_chunks
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.posttractor.external_standins import write_standins
from lsdr.survey.render import (
    Moffat,
    add_bad_column,
    add_cosmic_rays,
    add_galaxy,
    add_star,
    saturate,
)

FloatArray = npt.NDArray[np.float64]

PROCESSING_DATE = "2020-01-15T12:00:00"
"""The CP processing date written in every primary header (fixed, so files are reproducible)."""

DEMO_BINNING = 2
"""Binning of the demo survey: 0.908″ pixels for 90Prime, 0.524″ for Mosaic (see docs)."""

GAIA_G_LIMIT = 20.8
"""Faintest star written to the reference catalogue, Gaia G magnitude."""

SYNTHETIC_GAIA_MATRIX = np.array(
    [
        [0.70, 0.30, 0.00],  # BP from g, r, z
        [0.15, 0.60, 0.25],  # G
        [0.00, 0.40, 0.60],  # RP
    ]
)
"""How the simulated stars' Gaia BP, G and RP magnitudes follow from their g, r, z (AB).

A linear, invertible stand-in for real colour transformations: the zeropoint phase predicts a
star's g, r or z from its Gaia magnitudes with the inverse (``grz_from_gaia``).
"""


def gaia_from_grz(g: FloatArray, r: FloatArray, z: FloatArray) -> FloatArray:
    """Gaia (BP, G, RP) magnitudes of synthetic stars, shape (3, N)."""
    return np.asarray(SYNTHETIC_GAIA_MATRIX @ np.stack([g, r, z]), np.float64)


def grz_from_gaia(bp: FloatArray, gmag: FloatArray, rp: FloatArray) -> FloatArray:
    """The (g, r, z) magnitudes a synthetic star with these Gaia magnitudes has, shape (3, N)."""
    return np.asarray(np.linalg.solve(SYNTHETIC_GAIA_MATRIX, np.stack([bp, gmag, rp])), np.float64)


@dataclass(frozen=True, slots=True)
class PassSpec:
    """Exposures of one camera and band: how many dithered passes tile the region."""

    camera: str
    band: str
    passes: int


DEFAULT_PASSES = (
    PassSpec("90prime", "g", 2),
    PassSpec("90prime", "r", 2),
    PassSpec("mosaic", "z", 2),
)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.  Defaults give the cookbook's worked example at the demo binning."""

    seed: int = 1
    region: grid.RaDecBox = field(default_factory=lambda: grid.RaDecBox(180.0, 181.0, 32.0, 33.0))
    passes: tuple[PassSpec, ...] = DEFAULT_PASSES
    binning: int = DEMO_BINNING
    star_density: float = 1500.0
    """Stars per square degree, r 15–24 (plus the bright stars)."""
    galaxy_density: float = 6000.0
    """Galaxies per square degree, r 18–24.5."""
    bright_star_density: float = 6.0
    """Stars per square degree with r 10–13: saturated cores, bleed trails, mask circles."""
    border_star: bool = True
    """Place a very bright star (r = 9) on a brick border of the region, and an r = 16.5
    galaxy on the same border at the edge of its BRIGHT circle (the bright-neighbour case)."""
    margin: float = 0.05
    """Degrees of sky simulated around the region's bricks."""
    cosmic_rays_per_mpix: float = 30.0
    """Cosmic rays per million native-size pixels per 100 s of exposure."""
    flagged_cr_fraction: float = 0.9
    """Fraction of cosmic rays the CP flagged in ``ood`` (the rest are left for outlier masks)."""
    reprocessed: int = 1
    """Exposures written twice, also as an older CP processing (discover keeps the newest)."""
    workers: int = 2

    def __post_init__(self) -> None:
        """Reject settings that cannot make a survey."""
        if self.binning < 1 or self.binning > 16:
            raise UsageError(f"binning {self.binning} must be between 1 and 16")
        if self.workers < 1:
            raise UsageError(f"workers {self.workers} must be at least 1")
        if not self.passes:
            raise UsageError("no camera/band to simulate")
        for spec in self.passes:
            camera = get_camera(spec.camera)
            camera.band(spec.band)
            if spec.passes < 1:
                raise UsageError(f"{spec.camera} {spec.band}: passes must be at least 1")
        for label, value in (
            ("star_density", self.star_density),
            ("galaxy_density", self.galaxy_density),
            ("bright_star_density", self.bright_star_density),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{label} {value} must be a non-negative number")


def parse_passes(
    cameras: Sequence[str] | None, bands: Sequence[str] | None, passes: int
) -> tuple[PassSpec, ...]:
    """PassSpecs for cameras given by name (each with all its bands, or only those asked for).

    With no cameras: the worked example's 90Prime g, r and Mosaic z (filtered by ``bands``).
    """
    if cameras:
        pairs = [(get_camera(n).name, b) for n in cameras for b in get_camera(n).band_names]
    else:
        pairs = [(s.camera, s.band) for s in DEFAULT_PASSES]
    specs = tuple(PassSpec(c, b, passes) for c, b in pairs if not bands or b in bands)
    if not specs:
        raise UsageError(f"none of the bands {list(bands or [])} is a band of the chosen cameras")
    return specs


# ----------------------------------------------------------------------------------------------
# Sky coverage and the truth catalogue


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


GENERATOR_VERSION = f"{__version__}+sim4"
"""Recorded with a simulated survey; a survey made by another generator is made again (bump the
suffix whenever the images or catalogues the same configuration gives change)."""
GAIA_BPRP_FLOOR = 0.002
"""Magnitude error floor of the simulated Gaia BP and RP: Gaia DR3's BP/RP calibration is good
to about 2 mmag for bright sources (Riello et al. 2021).  (It was 0.01 at first: five
times the real floor, which, amplified by the colour terms, gave Mosaic z zeropoints 1.3-1.6 %
errors per CCD that no survey calibrated on Gaia has.)"""


def make_gaia(truth: npt.NDArray[np.void], rng: np.random.Generator) -> npt.NDArray[np.void]:
    """The Gaia-like reference rows of the truth's catalogued stars, with Gaia-like errors."""
    stars = truth[truth["gaia_source_id"] > 0]
    n = len(stars)
    bp, gmag, rp = gaia_from_grz(
        stars["mag_g"].astype(np.float64),
        stars["mag_r"].astype(np.float64),
        stars["mag_z"].astype(np.float64),
    )
    sigma_mas = np.clip(0.02 * 10 ** (0.2 * (gmag - 13.0)), 0.02, 2.0)
    out = np.zeros(n, GAIA_DTYPE)
    out["source_id"] = stars["gaia_source_id"]
    cosd = np.cos(np.radians(stars["dec"]))
    out["ra"] = stars["ra"] + rng.normal(0, 1, n) * sigma_mas / 3.6e6 / cosd
    out["dec"] = stars["dec"] + rng.normal(0, 1, n) * sigma_mas / 3.6e6
    out["ra_error"] = sigma_mas
    out["dec_error"] = sigma_mas
    for col, mag, floor in (
        ("g", gmag, 0.0),
        ("bp", bp, GAIA_BPRP_FLOOR),
        ("rp", rp, GAIA_BPRP_FLOOR),
    ):
        snr = np.clip(2000.0 * 10 ** (-0.3 * (mag - 15.0)), 3.0, 5000.0)
        sigma = 1.0857 / snr + floor
        out[f"phot_{col}_mean_mag"] = mag + rng.normal(0, 1, n) * sigma
        out[f"phot_{col}_mean_flux_over_error"] = 1.0857 / sigma
        out[f"phot_{col}_n_obs"] = (
            rng.integers(20, 300, n) if col == "g" else rng.integers(10, 40, n)
        )
    out["astrometric_weight_al"] = 1.0 / sigma_mas**2
    out["astrometric_n_obs_al"] = rng.integers(100, 400, n)
    out["astrometric_n_good_obs_al"] = out["astrometric_n_obs_al"] - rng.integers(0, 5, n)
    out["ref_epoch"] = GAIA_REF_EPOCH
    out["parallax"] = np.abs(rng.normal(0.5, 0.4, n))
    out["parallax_error"] = 1.3 * sigma_mas
    out["pmra"] = stars["pmra"] + rng.normal(0, 1, n) * 1.2 * sigma_mas
    out["pmdec"] = stars["pmdec"] + rng.normal(0, 1, n) * 1.2 * sigma_mas
    out["pmra_error"] = 1.2 * sigma_mas
    out["pmdec_error"] = 1.2 * sigma_mas
    out["a_g_val"] = np.nan
    out["e_bp_min_rp_val"] = np.nan
    out["phot_bp_rp_excess_factor"] = rng.uniform(1.15, 1.35, n)
    out["astrometric_sigma5d_max"] = 1.5 * sigma_mas
    out["astrometric_params_solved"] = 31.0
    return out


# ----------------------------------------------------------------------------------------------
# Planning the exposures


@dataclass(frozen=True, slots=True)
class ExposurePlan:
    """One simulated exposure: where, when, in what conditions, and its files."""

    index: int
    camera: str
    band: str
    expnum: int
    ra_bore: float
    dec_bore: float
    rotation: float
    """Degrees; the CD matrix is rotated by this from north-up, east-left."""
    utc: dt.datetime
    exptime: float
    airmass: float
    seeing: float
    """FWHM, arcsec."""
    sky_mag: float
    transparency: float
    """Magnitudes lost to clouds."""
    ccds: tuple[str, ...]
    """The camera's CCDs that fall on the simulated sky."""
    plver: str
    version_tag: str
    """The CP file-name version (``ls9``; ``v1`` for a superseded processing)."""
    processing_date: str
    dtacqnam: str
    seed: int

    @property
    def night(self) -> dt.date:
        """The observing night: local (Arizona, UTC−7) date at the start of the night."""
        return (self.utc - dt.timedelta(hours=19)).date()

    def cp_name(self, kind: str) -> str:
        """The CP file name, e.g. ``ksb_170430_055945_ooi_r_ls9.fits.fz``."""
        camera = get_camera(self.camera)
        stamp = self.utc.strftime("%y%m%d_%H%M%S")
        filt = camera.band(self.band).filename_filter
        return f"{camera.prefix}_{stamp}_{kind}_{filt}_{self.version_tag}.fits.fz"

    def image_relpath(self, kind: str = "ooi") -> PurePosixPath:
        """Path under ``images/``: ``<camera>/CP/<plver>/CP<YYYYMMDD>/<name>``."""
        night = self.night.strftime("%Y%m%d")
        return PurePosixPath(self.camera, "CP", self.plver, f"CP{night}", self.cp_name(kind))

    def mjd_obs(self) -> float:
        """MJD of the shutter opening."""
        epoch = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)
        return (self.utc - epoch).total_seconds() / 86400.0

    def zeropoint(self, zpt0: float, k_ext: float) -> float:
        """Exposure zeropoint (1 e-/s) before per-CCD variations."""
        return zpt0 - k_ext * (self.airmass - 1.0) - self.transparency


def _fov(camera: Camera, binning: int) -> tuple[float, float]:
    """Width and height of the camera's CCD mosaic on the sky, degrees."""
    xs = [abs(c.x_offset) + camera.ccd_width / 2 for c in camera.ccds]
    ys = [abs(c.y_offset) + camera.ccd_height / 2 for c in camera.ccds]
    return 2 * max(xs) * camera.pixscale / 3600.0, 2 * max(ys) * camera.pixscale / 3600.0


def ccd_wcs(
    camera: Camera, ccd: str, binning: int, ra: float, dec: float, rotation: float
) -> TanWcs:
    """The TAN WCS of one CCD of an exposure pointed at (ra, dec)."""
    geometry = next(c for c in camera.ccds if c.name == ccd)
    width, height = camera.ccd_width // binning, camera.ccd_height // binning
    scale = camera.pixscale * binning / 3600.0
    rot = math.radians(rotation)
    cd = scale * np.array([[-math.cos(rot), math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    crpix1 = (width + 1) / 2 - geometry.x_offset / binning
    crpix2 = (height + 1) / 2 - geometry.y_offset / binning
    return TanWcs(ra, dec, crpix1, crpix2, cd[0, 0], cd[0, 1], cd[1, 0], cd[1, 1])


def _ccd_on_sky(wcs: TanWcs, width: int, height: int, cov: Coverage) -> bool:
    """Whether a CCD overlaps the coverage box (tested on a grid of its pixels)."""
    xs, ys = np.meshgrid(np.linspace(1, width, 9), np.linspace(1, height, 9))
    ra, dec = wcs.pixel_to_radec(xs.ravel(), ys.ravel())
    inside = (ra >= cov.ra_min) & (ra <= cov.ra_max) & (dec >= cov.dec_min) & (dec <= cov.dec_max)
    return bool(inside.any())


_CAMERA_EPOCHS = {"90prime": 57_800.0, "mosaic": 57_700.0, "decam": 57_300.0}
"""First night (MJD) of each camera's simulated observations (2017, late 2016, 2015).

Mosaic starts after MJD 57674, when the CP's third-pixel (``yshift``) problem was fixed:
earlier Mosaic CCDs get legacypipe's ``not_third_pix`` cut."""


def plan_exposures(config: SimulationConfig, seq: np.random.SeedSequence) -> list[ExposurePlan]:
    """Dithered passes of every camera and band over the coverage, with their conditions."""
    cov = coverage_for(config)
    rng = np.random.default_rng(seq)
    plans: list[ExposurePlan] = []
    counters: dict[str, int] = {}
    for spec in config.passes:
        camera = get_camera(spec.camera)
        facts = camera.band(spec.band)
        fov_w, fov_h = _fov(camera, config.binning)
        cosd = math.cos(math.radians(cov.center[1]))
        sky_w = (cov.ra_max - cov.ra_min) * cosd
        sky_h = cov.dec_max - cov.dec_min
        nx = max(1, math.ceil(sky_w / (0.95 * fov_w)))
        ny = max(1, math.ceil(sky_h / (0.95 * fov_h)))
        for p in range(spec.passes):
            shift_x = ((p * 0.37) % 1.0 - 0.5 * (p > 0)) * fov_w / 2
            shift_y = ((p * 0.29) % 1.0 - 0.5 * (p > 0)) * fov_h / 2
            for iy in range(ny):
                for ix in range(nx):
                    dx = (ix + 0.5) * sky_w / nx - sky_w / 2 + shift_x + rng.normal(0, 0.005)
                    dy = (iy + 0.5) * sky_h / ny - sky_h / 2 + shift_y + rng.normal(0, 0.005)
                    plans.append(
                        _plan_one(config, camera, facts, cov, rng, counters, len(plans), dx, dy)
                    )
    plans = [p for p in plans if p.ccds]
    return plans


def _plan_one(
    config: SimulationConfig,
    camera: Camera,
    facts: BandFacts,
    cov: Coverage,
    rng: np.random.Generator,
    counters: dict[str, int],
    index: int,
    dx: float,
    dy: float,
) -> ExposurePlan:
    """Conditions, time and CCDs of one exposure at tangent offset (dx, dy) from the centre."""
    ra0, dec0 = cov.center
    dec = dec0 + dy
    ra = ra0 + dx / math.cos(math.radians(dec))
    rotation = float(rng.normal(0.0, 0.02))
    seq_no = counters.get(camera.name, 0)
    counters[camera.name] = seq_no + 1
    night_mjd = _CAMERA_EPOCHS[camera.name] + 3 * seq_no + int(rng.integers(0, 3))
    utc = dt.datetime(1858, 11, 17, tzinfo=dt.UTC) + dt.timedelta(
        days=night_mjd, hours=float(rng.uniform(4.0, 10.5))
    )
    utc = utc.replace(microsecond=0)
    night = (utc - dt.timedelta(hours=19)).date()
    if camera.expnum_in_header:
        expnum = (70_000 if camera.name == "mosaic" else 500_000) + seq_no * 7 + 3
        dtacqnam = f"/data/observer/{camera.prefix}.{expnum}.fits"
    else:
        frame = int(night_mjd) - 50_000
        dtacqnam = f"/descache/bass/{night.strftime('%Y%m%d')}/d{frame}.{seq_no + 1:04d}.fits"
        expnum = int(f"{frame}{seq_no + 1:04d}")
    ccds = tuple(
        c.name
        for c in camera.ccds
        if _ccd_on_sky(
            ccd_wcs(camera, c.name, config.binning, ra, dec, rotation),
            camera.ccd_width // config.binning,
            camera.ccd_height // config.binning,
            cov,
        )
    )
    return ExposurePlan(
        index=index,
        camera=camera.name,
        band=facts.band,
        expnum=expnum,
        ra_bore=ra % 360.0,
        dec_bore=dec,
        rotation=rotation,
        utc=utc,
        exptime=float(round(facts.exptime * rng.uniform(0.8, 1.3), 1)),
        airmass=float(round(1.0 + abs(rng.normal(0.0, 0.2)), 3)),
        seeing=float(round(facts.seeing * rng.uniform(0.8, 1.25), 3)),
        sky_mag=float(round(facts.sky_mag - abs(rng.normal(0.0, 0.3)), 3)),
        transparency=float(round(abs(rng.normal(0.0, 0.05)), 3)),
        ccds=ccds,
        plver=camera.plver,
        version_tag="ls9",
        processing_date=PROCESSING_DATE,
        dtacqnam=dtacqnam,
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def superseded(plan: ExposurePlan) -> ExposurePlan:
    """The same exposure as an older CP processing (lower PLVER, earlier date, ``v1`` name)."""
    major, _, minor = plan.plver.lstrip("V").partition(".")
    older = f"V{major}.{max(int(minor.split('.')[0] or '1') - 1, 0)}"
    fields = {f: getattr(plan, f) for f in ExposurePlan.__slots__}
    fields.update(plver=older, version_tag="v1", processing_date="2018-06-01T12:00:00")
    return ExposurePlan(**fields)


# ----------------------------------------------------------------------------------------------
# One exposure


TRUTH_CCD_DTYPE = np.dtype(
    [
        ("image_filename", "S120"),
        ("image_hdu", ">i2"),
        ("camera", "S8"),
        ("expnum", ">i8"),
        ("ccdname", "S5"),
        ("filter", "S1"),
        ("plver", "S8"),
        ("superseded", "?"),
        ("exptime", ">f4"),
        ("mjd_obs", ">f8"),
        ("airmass", ">f4"),
        ("ccdzpt", ">f4"),
        ("zpt", ">f4"),
        ("transparency", ">f4"),
        ("seeing", ">f4"),
        ("fwhm", ">f4"),
        ("moffat_beta", ">f4"),
        ("skymag", ">f4"),
        ("sky_level", ">f4"),
        ("sig1", ">f4"),
        ("psfdepth", ">f4"),
        ("pixscale", ">f4"),
        ("width", ">i2"),
        ("height", ">i2"),
        ("ra_bore", ">f8"),
        ("dec_bore", ">f8"),
        ("crval1", ">f8"),
        ("crval2", ">f8"),
        ("crpix1", ">f4"),
        ("crpix2", ">f4"),
        ("cd1_1", ">f4"),
        ("cd1_2", ">f4"),
        ("cd2_1", ">f4"),
        ("cd2_2", ">f4"),
        ("n_sources", ">i4"),
        ("n_saturated", ">i4"),
        ("n_cosmic_rays", ">i4"),
        ("n_cr_unflagged", ">i4"),
        ("bad_column", ">i2"),
    ]
)
"""Per-CCD truth: ``ccdzpt`` in legacypipe's convention (AB mag of 1 e-/s), ``fwhm`` in
pixels, ``sky_level`` in e-/s/pixel, ``sig1`` the sky noise in nanomaggies per pixel,
``psfdepth`` the 5σ point-source depth (AB mag)."""


@dataclass(frozen=True, slots=True)
class CcdImage:
    """The three planes of one simulated CCD, ready to write."""

    name: str
    header: dict[str, str | float | int]
    image: npt.NDArray[np.float32]
    dq: npt.NDArray[np.int16]
    weight: npt.NDArray[np.float32]


def _sexagesimal(value: float, hours: bool) -> str:
    """``HH:MM:SS.ss`` (RA in hours) or ``±DD:MM:SS.s``."""
    v = value / 15.0 if hours else value
    sign = "-" if v < 0 else ""
    v = abs(v)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60) * 3600
    return f"{sign}{d:02d}:{m:02d}:{s:05.2f}" if hours else f"{sign}{d:02d}:{m:02d}:{s:04.1f}"


def primary_header(plan: ExposurePlan) -> dict[str, str | float | int]:
    """The CP primary header of an exposure, with the keys legacypipe reads."""
    camera = get_camera(plan.camera)
    facts = camera.band(plan.band)
    date_obs = plan.utc.strftime("%Y-%m-%dT%H:%M:%S.000")
    hdr: dict[str, str | float | int] = {
        "DATE": plan.processing_date,
        "OBJECT": f"lsdr-sim-{plan.index}",
        "INSTRUME": camera.instrument,
        "TELESCOP": camera.telescope,
        "OBSTYPE": "object",
        "PROCTYPE": "InstCal",
        "PRODTYPE": "image",
        "DATE-OBS": date_obs,
        "MJD-OBS": round(plan.mjd_obs(), 8),
        "EXPTIME": plan.exptime,
        "FILTER": facts.filter_header,
        "AIRMASS": plan.airmass,
        "RA": _sexagesimal(plan.ra_bore, hours=True),
        "DEC": _sexagesimal(plan.dec_bore, hours=False),
        "HA": "+00:30:00",
        "PROPID": "2026A-0001",
        "OBSID": f"{camera.prefix}{plan.utc.strftime('%y%m%d%H%M%S')}",
        "DTACQNAM": plan.dtacqnam,
        "DTNSANAM": plan.cp_name("ooi"),
        "DTCALDAT": plan.night.isoformat(),
        "PLVER": plan.plver,
        "PLPROCID": f"{plan.expnum % 0xFFFFFFF:07x}",
        "WCSCAL": "Successful",
        "BUNIT": "counts/s",
        "SEEING": plan.seeing,
        "NEXTEND": len(plan.ccds),
        "LSDRSIM": True,
    }
    if camera.expnum_in_header:
        hdr["EXPNUM"] = plan.expnum
    if camera.name == "decam":
        hdr["GAIN"] = camera.gain
    return hdr


def render_ccd(
    plan: ExposurePlan,
    ccd: str,
    binning: int,
    truth: npt.NDArray[np.void],
    config: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[CcdImage, npt.NDArray[np.void]]:
    """Render one CCD: sources, sky, noise and detector effects; with its truth row."""
    camera = get_camera(plan.camera)
    facts = camera.band(plan.band)
    width, height = camera.ccd_width // binning, camera.ccd_height // binning
    wcs = ccd_wcs(camera, ccd, binning, plan.ra_bore, plan.dec_bore, plan.rotation)
    pixscale = camera.pixscale * binning
    ccdzpt = plan.zeropoint(facts.zpt0, facts.k_ext) + float(rng.normal(0.0, 0.02))
    psf = Moffat(plan.seeing / pixscale, camera.moffat_beta)
    sky = 10 ** (-0.4 * (plan.sky_mag - ccdzpt)) * pixscale**2
    t = plan.exptime
    sky_sigma = math.sqrt(sky * t + camera.read_noise**2) / t
    # Where each source is at the epoch of the exposure (proper motion from ref_epoch).
    years = (plan.mjd_obs() - 51_544.5) / 365.25 + 2000.0 - truth["ref_epoch"]
    dec = truth["dec"] + truth["pmdec"] * years / 3.6e6
    ra = truth["ra"] + truth["pmra"] * years / 3.6e6 / np.cos(np.radians(truth["dec"]))
    x, y = wcs.radec_to_pixel(ra, dec)
    x0, y0 = x - 1.0, y - 1.0
    pad = 60
    on = (x0 > -pad) & (x0 < width + pad) & (y0 > -pad) & (y0 < height + pad)
    flux = truth[f"flux_{plan.band}"].astype(np.float64) * 10 ** (0.4 * (ccdzpt - 22.5))

    model = np.zeros((height, width), np.float32)
    kernel = psf.stamp(math.ceil(4 * psf.fwhm) + 1)
    cd_arcsec = 3600.0 * np.array([[wcs.cd1_1, wcs.cd1_2], [wcs.cd2_1, wcs.cd2_2]])
    threshold = 0.02 * sky_sigma
    for i in np.nonzero(on)[0]:
        kind = truth["type"][i]
        if kind == b"PSF":
            add_star(model, float(x0[i]), float(y0[i]), float(flux[i]), psf, threshold)
        else:
            add_galaxy(
                model,
                float(x0[i]),
                float(y0[i]),
                float(flux[i]),
                int(truth["sersic"][i]),
                float(truth["shape_r"][i]),
                float(truth["shape_e1"][i]),
                float(truth["shape_e2"][i]),
                cd_arcsec,
                psf,
                kernel,
            )

    # Sky with a gentle gradient, in e-/s; then counts, noise and detector effects in e-.
    yy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    gx, gy, curv = rng.normal(0.0, 0.01, 3)
    sky_map = sky * (1.0 + gx * xx + gy * yy + curv * (xx**2 + yy**2 - 0.67))
    counts = (model + sky_map) * np.float32(t)
    noise = rng.standard_normal((height, width), dtype=np.float32)
    counts += noise * np.sqrt(np.maximum(counts, 0.0) + np.float32(camera.read_noise**2))
    dq = np.zeros((height, width), np.int16)
    nsat = saturate(counts, dq, camera.full_well)
    native_mpix = width * height * binning**2 / 1e6
    ncr = int(rng.poisson(config.cosmic_rays_per_mpix * native_mpix * t / 100.0))
    unflagged = add_cosmic_rays(counts, dq, ncr, config.flagged_cr_fraction, rng)
    weight = (t * t / (sky_map * t + camera.read_noise**2)).astype(np.float32)
    bad_col = add_bad_column(counts, dq, weight, rng)
    image = (counts / np.float32(t)).astype(np.float32)

    nea = psf.noise_equivalent_area()
    zp_scale = 10 ** (0.4 * (ccdzpt - 22.5))
    header: dict[str, str | float | int] = {
        "EXTNAME": ccd,
        "CCDNAME": ccd.lower() if camera.name != "decam" else ccd,
        "INHERIT": True,
        "BUNIT": "counts/s",
        **wcs.header_cards(),
        "GAIN": camera.gain,
        "RDNOISE": camera.read_noise,
        "SATURATE": round(camera.full_well / t, 2),
        "FWHM": round(psf.fwhm, 3),
        "SEEINGP1": round(psf.fwhm, 3),
        "SKYADU1": round(float(sky), 4),
        "CCDSUM": f"{binning} {binning}",
    }
    row = np.zeros(1, TRUTH_CCD_DTYPE)[0]
    values = {
        "image_filename": str(plan.image_relpath()).encode(),
        "image_hdu": camera.ccds.index(next(c for c in camera.ccds if c.name == ccd)) + 1,
        "camera": camera.name.encode(),
        "expnum": plan.expnum,
        "ccdname": ccd.encode(),
        "filter": plan.band.encode(),
        "plver": plan.plver.encode(),
        "superseded": plan.version_tag != "ls9",
        "exptime": t,
        "mjd_obs": plan.mjd_obs(),
        "airmass": plan.airmass,
        "ccdzpt": ccdzpt,
        "zpt": plan.zeropoint(facts.zpt0, facts.k_ext),
        "transparency": plan.transparency,
        "seeing": plan.seeing,
        "fwhm": psf.fwhm,
        "moffat_beta": psf.beta,
        "skymag": plan.sky_mag,
        "sky_level": sky,
        "sig1": sky_sigma / zp_scale,
        "psfdepth": ccdzpt - 2.5 * math.log10(5.0 * sky_sigma * math.sqrt(nea)),
        "pixscale": pixscale,
        "width": width,
        "height": height,
        "ra_bore": plan.ra_bore,
        "dec_bore": plan.dec_bore,
        "crval1": wcs.crval1,
        "crval2": wcs.crval2,
        "crpix1": wcs.crpix1,
        "crpix2": wcs.crpix2,
        "cd1_1": wcs.cd1_1,
        "cd1_2": wcs.cd1_2,
        "cd2_1": wcs.cd2_1,
        "cd2_2": wcs.cd2_2,
        "n_sources": int(on.sum()),
        "n_saturated": nsat,
        "n_cosmic_rays": ncr,
        "n_cr_unflagged": unflagged,
        "bad_column": bad_col,
    }
    for key, value in values.items():
        row[key] = value
    return CcdImage(ccd, header, image, dq, weight), row


def _write_planes(layout: ReleaseLayout, plan: ExposurePlan, ccds: list[CcdImage]) -> list[Path]:
    """Write the ooi/ood/oow files of an exposure (RICE-compressed, as the CP's ``.fits.fz``)."""
    import fitsio

    primary = primary_header(plan)
    written = []
    for kind in ("ooi", "ood", "oow"):
        path = layout.image(plan.image_relpath(kind))
        with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(None, header=_cards(primary))
            for hdu, ccd in enumerate(ccds, start=1):
                header = _cards(ccd.header)
                dither = 1 + (plan.expnum * 7 + hdu * 131 + len(kind)) % 10_000
                if kind == "ood":
                    fits.write(ccd.dq, header=header, compress="RICE", extname=ccd.name)
                else:
                    data = ccd.image if kind == "ooi" else ccd.weight
                    # Images: steps of σ/4 as the CP's fpack (FZQVALUE 4).  Weights are
                    # smooth, so a relative step of 1e-4 (negative = absolute step).
                    # Weights keep exact zeros (SUBTRACTIVE_DITHER_2) for masked pixels.
                    qlevel = 4.0 if kind == "ooi" else -1e-4 * float(np.median(data))
                    fits.write(
                        data,
                        header=header,
                        compress="RICE",
                        qlevel=qlevel,
                        qmethod="SUBTRACTIVE_DITHER_1" if kind == "ooi" else "SUBTRACTIVE_DITHER_2",
                        dither_seed=dither,
                        extname=ccd.name,
                    )
        written.append(path)
    return written


def _cards(header: dict[str, str | float | int]) -> list[dict[str, object]]:
    """fitsio header records from a dict (keeps the order)."""
    return [{"name": k, "value": v} for k, v in header.items()]


@dataclass(frozen=True, slots=True)
class _ExposureJob:
    """Everything a worker process needs to render and write one exposure."""

    root: Path
    plan: ExposurePlan
    binning: int
    config: SimulationConfig
    truth: npt.NDArray[np.void]
    also_superseded: bool


def _simulate_exposure(job: _ExposureJob) -> list[npt.NDArray[np.void]]:
    """Render and write one exposure (and its superseded copy); return its truth-CCD rows."""
    layout = ReleaseLayout(job.root)
    rng = np.random.default_rng(job.plan.seed)
    ccds: list[CcdImage] = []
    rows = []
    for ccd in job.plan.ccds:
        image, row = render_ccd(job.plan, ccd, job.binning, job.truth, job.config, rng)
        ccds.append(image)
        rows.append(row)
    _write_planes(layout, job.plan, ccds)
    if job.also_superseded:
        old = superseded(job.plan)
        _write_planes(layout, old, ccds)
        for row in list(rows):
            copy = row.copy()
            copy["image_filename"] = str(old.image_relpath()).encode()
            copy["plver"] = old.plver.encode()
            copy["superseded"] = True
            rows.append(copy)
    return rows


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a simulation wrote."""

    root: Path
    exposures: int
    ccds: int
    sources: int
    reference_stars: int
    images: list[Path]
    reused: bool = False
    """True when the survey was already on disk with this configuration (nothing written)."""


SIMULATION_RECORD = "simulation.json"
"""``truth/simulation.json``: the configuration and files of the last simulation."""


def _config_key(config: SimulationConfig) -> str:
    """The configuration as stable text; ``workers`` changes how, not what, is written."""
    import dataclasses

    fields = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "workers"
    }
    return json.dumps(fields, sort_keys=True, default=repr)


def _stamp(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def _already_simulated(layout: ReleaseLayout, config: SimulationConfig) -> SimulationResult | None:
    """The recorded result when this exact survey is already on disk, untouched."""
    try:
        record = json.loads((layout.truth_dir / SIMULATION_RECORD).read_text())
        if record["config"] != _config_key(config) or record["version"] != GENERATOR_VERSION:
            return None
        for stamp in record["files"]:
            if _stamp(Path(stamp[0])) != stamp:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    result = record["result"]
    return SimulationResult(
        root=layout.root,
        exposures=int(result["exposures"]),
        ccds=int(result["ccds"]),
        sources=int(result["sources"]),
        reference_stars=int(result["reference_stars"]),
        images=[Path(p) for p in result["images"]],
        reused=True,
    )


def simulate_survey(root: Path, config: SimulationConfig | None = None) -> SimulationResult:
    """Write a synthetic survey under ``root`` (a release directory) and return what it wrote.

    A survey already simulated with the same configuration (and untouched since) is not
    written again: its files keep their modification times, so nothing downstream reruns.
    """
    config = config or SimulationConfig()
    layout = ReleaseLayout(Path(root))
    coverage_for(config)  # validate the region before anything is written
    done = _already_simulated(layout, config)
    if done is not None:
        write_standins(layout, overwrite=False)  # a survey simulated before they existed
        return done
    truth_seq, gaia_seq, plan_seq = np.random.SeedSequence(config.seed).spawn(3)
    truth = make_truth(config, np.random.default_rng(truth_seq))
    gaia = make_gaia(truth, np.random.default_rng(gaia_seq))
    plans = plan_exposures(config, plan_seq)
    jobs = [
        _ExposureJob(layout.root, plan, config.binning, config, truth, i < config.reprocessed)
        for i, plan in enumerate(plans)
    ]
    if config.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=config.workers) as pool:
            results = list(pool.map(_simulate_exposure, jobs))
    else:
        results = [_simulate_exposure(job) for job in jobs]

    import fitsio

    truth_ccds = np.concatenate([np.array(rows, TRUTH_CCD_DTYPE) for rows in results])
    layout.truth_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.truth_catalog) as tmp:
        fitsio.write(str(tmp), truth, clobber=True, extname="TRUTH")
    with atomic_path(layout.truth_ccds) as tmp:
        fitsio.write(str(tmp), truth_ccds, clobber=True, extname="TRUTH_CCDS")
    write_gaia_chunks(layout, gaia)
    write_standins(layout)  # SDSS stand-ins for the external matches, on truth objects
    images = sorted(layout.image(p.image_relpath()) for p in plans)
    images += [layout.image(superseded(j.plan).image_relpath()) for j in jobs if j.also_superseded]
    result = SimulationResult(
        root=layout.root,
        exposures=len(images),
        ccds=len(truth_ccds),
        sources=len(truth),
        reference_stars=len(gaia),
        images=images,
    )
    files = [layout.truth_catalog, layout.truth_ccds, *sorted(layout.gaia_dir.glob("*.fits"))]
    for image in images:
        files += [
            image,
            *(image.with_name(image.name.replace("_ooi_", k)) for k in ("_ood_", "_oow_")),
        ]
    record = {
        "version": GENERATOR_VERSION,
        "config": _config_key(config),
        "files": [_stamp(f) for f in files if f.exists()],
        "result": {
            "exposures": result.exposures,
            "ccds": result.ccds,
            "sources": result.sources,
            "reference_stars": result.reference_stars,
            "images": [str(p) for p in images],
        },
    }
    write_text_atomic(layout.truth_dir / SIMULATION_RECORD, json.dumps(record, indent=1))
    return result


def add_exposure(
    root: Path, like: str, *, days: int = 1, config: SimulationConfig | None = None
) -> Path:
    """Simulate one more exposure of a survey already on disk; return its image's path.

    A repeat visit: the pointing, band and conditions of the exposure whose image is ``like``
    (relative to ``images/``), ``days`` nights later, with a new exposure number and new noise;
    its CCDs are appended to ``truth/truth-ccds.fits``.  ``config``: the survey's (default: the
    demo's).  What a nightly increment finds, for tests and benchmarks of reruns.
    """
    import dataclasses

    import fitsio

    config = config or SimulationConfig()
    layout = ReleaseLayout(Path(root))
    _, _, plan_seq = np.random.SeedSequence(config.seed).spawn(3)
    plans = {str(p.image_relpath()): p for p in plan_exposures(config, plan_seq)}
    if like not in plans:
        raise UsageError(f"{like}: not an exposure of this simulated survey")
    template = plans[like]
    utc = template.utc + dt.timedelta(days=days)
    camera = get_camera(template.camera)
    night = (utc - dt.timedelta(hours=19)).date()
    if camera.expnum_in_header:
        expnum = template.expnum + 1  # simulated numbers are 3 mod 7: never taken
        dtacqnam = f"/data/observer/{camera.prefix}.{expnum}.fits"
    else:
        frame = (utc - dt.datetime(1858, 11, 17, tzinfo=dt.UTC)).days - 50_000
        dtacqnam = f"/descache/bass/{night.strftime('%Y%m%d')}/d{frame}.9999.fits"
        expnum = int(f"{frame}9999")
    plan = dataclasses.replace(
        template, expnum=expnum, utc=utc, dtacqnam=dtacqnam, seed=(template.seed + 7919) % 2**31
    )
    # fitsio reads the S3 type column back as str: the renderer compares bytes.
    truth = np.asarray(fitsio.read(str(layout.truth_catalog), ext=1)).astype(TRUTH_DTYPE)
    rows = _simulate_exposure(_ExposureJob(layout.root, plan, config.binning, config, truth, False))
    old = np.asarray(fitsio.read(str(layout.truth_ccds), ext=1))
    ccds = np.concatenate([old.astype(TRUTH_CCD_DTYPE), np.array(rows, TRUTH_CCD_DTYPE)])
    with atomic_path(layout.truth_ccds) as tmp:
        fitsio.write(str(tmp), ccds, clobber=True, extname="TRUTH_CCDS")
    return layout.image(plan.image_relpath())
