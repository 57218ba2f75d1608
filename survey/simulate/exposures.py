"""Planning the exposures: pointings, dates and CCD WCSs of each pass, and superseded ones."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from lsdr.survey.core.cameras import BandFacts, Camera, get_camera
from lsdr.survey.core.tan import TanWcs
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.truth import Coverage, coverage_for

PROCESSING_DATE = "2020-01-15T12:00:00"
"""The CP processing date written in every primary header (fixed, so files are reproducible)."""


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


def ccd_on_sky(wcs: TanWcs, width: int, height: int, cov: Coverage) -> bool:
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
        if ccd_on_sky(
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
