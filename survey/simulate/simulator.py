"""The simulator: a whole survey simulated (or found already simulated), or one exposure added."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr import __version__
from lsdr.survey.core.bricks import RaDecBox, write_survey_bricks
from lsdr.survey.core.cameras import get_camera
from lsdr.survey.core.errors import UsageError
from lsdr.survey.core.fileio import atomic_path, write_text_atomic
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.refcat import write_gaia_chunks
from lsdr.survey.posttractor.external_standins import write_standins
from lsdr.survey.simulate.ccds import TRUTH_CCD_DTYPE, CcdImage, render_ccd
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.cpfiles import write_planes
from lsdr.survey.simulate.exposures import (
    ExposurePlan,
    ccd_on_sky,
    ccd_wcs,
    plan_exposures,
    superseded,
)
from lsdr.survey.simulate.gaia import make_gaia, make_tycho
from lsdr.survey.simulate.truth import TRUTH_DTYPE, Coverage, coverage_for, make_truth

GENERATOR_VERSION = f"{__version__}+sim4"
"""Recorded with a simulated survey; a survey made by another generator is made again (bump the
suffix whenever the images or catalogues the same configuration gives change)."""


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
    write_planes(layout, job.plan, ccds)
    if job.also_superseded:
        old = superseded(job.plan)
        write_planes(layout, old, ccds)
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


def fitsio_read(path: Path) -> npt.NDArray[np.void]:
    """HDU 1 of a FITS table."""
    import fitsio

    return np.asarray(fitsio.read(str(path), ext=1))


def read_all_gaia(layout: ReleaseLayout) -> npt.NDArray[np.void]:
    """Every Gaia chunk of the release, as one table."""
    from lsdr.survey.core.refcat import GAIA_DTYPE

    parts = [fitsio_read(p).astype(GAIA_DTYPE) for p in layout.gaia_chunks()]
    return np.concatenate(parts) if parts else np.zeros(0, GAIA_DTYPE)


def _write_tycho(
    layout: ReleaseLayout,
    config: SimulationConfig,
    truth: npt.NDArray[np.void],
    gaia: npt.NDArray[np.void],
) -> None:
    """``tycho2.kd.fits`` of the bright simulated stars (one placeholder row when none)."""
    from lsdr.survey.core.tycho2 import write_tycho2

    box = config.region
    centre = ((box.ra_min + box.ra_max) / 2.0, (box.dec_min + box.dec_max) / 2.0)
    write_tycho2(layout.tycho2_kd, make_tycho(truth, gaia), placeholder_near=centre)


def _already_simulated(layout: ReleaseLayout, config: SimulationConfig) -> SimulationResult | None:
    """The recorded result when this exact survey is already on disk, untouched."""
    try:
        record = json.loads(layout.simulation_record.read_text())
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


def _write_bricks(layout: ReleaseLayout, config: SimulationConfig) -> None:
    """``survey-bricks.fits.gz`` of the simulated footprint: runbrick finds its brick there."""
    cover = coverage_for(config)
    box = RaDecBox(cover.ra_min, cover.ra_max, cover.dec_min, cover.dec_max)
    write_survey_bricks(layout.survey_bricks, box)


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
        if not layout.survey_bricks.exists():  # the same
            _write_bricks(layout, config)
        if not layout.tycho2_kd.exists():  # likewise, before the Tycho-2 file existed
            _write_tycho(layout, config, fitsio_read(layout.truth_catalog), read_all_gaia(layout))
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
    _write_bricks(layout, config)
    _write_tycho(layout, config, truth, gaia)
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
    files.append(layout.tycho2_kd)
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
    write_text_atomic(layout.simulation_record, json.dumps(record, indent=1))
    return result


def add_exposure(
    root: Path,
    like: str,
    *,
    days: int = 1,
    config: SimulationConfig | None = None,
    visit: int = 1,
    over: RaDecBox | None = None,
    at: tuple[float, float] | None = None,
) -> Path:
    """Simulate one more exposure of a survey already on disk; return its image's path.

    A repeat visit: the pointing, band and conditions of the exposure whose image is ``like``
    (relative to ``images/``), ``days`` nights later, with a new exposure number and new noise;
    its CCDs are appended to ``truth/truth-ccds.fits``.  ``config``: the survey's (default: the
    demo's).  What a nightly increment finds, for tests and benchmarks of reruns.

    ``visit`` (1, 2, …) tells apart several visits of one pointing on one night: each is
    ``visit - 1`` minutes later, with an exposure number of its own.  ``over``: a sub-region;
    only the template's CCDs that fall on it are written (as the survey writes only the CCDs on
    its sky), so the new exposure covers just that part of the survey.  The sources are the
    survey's own truth catalogue either way.  ``at``: another boresight (RA, Dec) for the
    visit, so that surveys of other extents can be given exposures with the same CCD WCS.
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
    if visit < 1 or visit > 999:
        raise UsageError(f"visit {visit} must be between 1 and 999")
    utc = template.utc + dt.timedelta(days=days, minutes=visit - 1)
    camera = get_camera(template.camera)
    night = (utc - dt.timedelta(hours=19)).date()
    if camera.expnum_in_header:
        # Simulated numbers are 3 mod 7: +1, +8, +15, … are never taken by the survey.
        expnum = template.expnum + 1 + 7 * (visit - 1)
        dtacqnam = f"/data/observer/{camera.prefix}.{expnum}.fits"
    else:
        frame = (utc - dt.datetime(1858, 11, 17, tzinfo=dt.UTC)).days - 50_000
        number = f"{10_000 - visit:04d}"  # the survey's run from 0001: 9999, 9998, … are free
        dtacqnam = f"/descache/bass/{night.strftime('%Y%m%d')}/d{frame}.{number}.fits"
        expnum = int(f"{frame}{number}")
    if at is not None:
        # Elsewhere, any of the camera's CCDs may fall on the sky (or on ``over``).
        every = tuple(c.name for c in get_camera(template.camera).ccds)
        template = dataclasses.replace(template, ra_bore=at[0] % 360.0, dec_bore=at[1], ccds=every)
        if over is None:
            cov = coverage_for(config)
            over = RaDecBox(cov.ra_min, cov.ra_max, cov.dec_min, cov.dec_max)
    written = template.ccds if over is None else _ccds_over(template, config.binning, over)
    if not written:
        raise UsageError(f"{like}: no CCD of this exposure falls on {over}")
    plan = dataclasses.replace(
        template,
        expnum=expnum,
        utc=utc,
        dtacqnam=dtacqnam,
        ccds=written,
        seed=(template.seed + 7919 * visit) % 2**31,
    )
    # fitsio reads the S3 type column back as str: the renderer compares bytes.
    truth = np.asarray(fitsio.read(str(layout.truth_catalog), ext=1)).astype(TRUTH_DTYPE)
    rows = _simulate_exposure(_ExposureJob(layout.root, plan, config.binning, config, truth, False))
    old = np.asarray(fitsio.read(str(layout.truth_ccds), ext=1))
    ccds = np.concatenate([old.astype(TRUTH_CCD_DTYPE), np.array(rows, TRUTH_CCD_DTYPE)])
    with atomic_path(layout.truth_ccds) as tmp:
        fitsio.write(str(tmp), ccds, clobber=True, extname="TRUTH_CCDS")
    return layout.image(plan.image_relpath())


def _ccds_over(plan: ExposurePlan, binning: int, box: RaDecBox) -> tuple[str, ...]:
    """The exposure's CCDs that overlap the box (tested on a grid of their pixels)."""
    camera = get_camera(plan.camera)
    width, height = camera.ccd_width // binning, camera.ccd_height // binning
    cov = Coverage(box.ra_min, box.ra_max, box.dec_min, box.dec_max)
    return tuple(
        c
        for c in plan.ccds
        if ccd_on_sky(
            ccd_wcs(camera, c, binning, plan.ra_bore, plan.dec_bore, plan.rotation),
            width,
            height,
            cov,
        )
    )
