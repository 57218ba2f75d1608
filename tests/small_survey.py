"""The three-brick simulated survey that the rerun tests release: cheap bricks, real units.

Three bricks in a row (1801p325, 1804p325, 1807p325), one pass per band (90Prime g, r and
Mosaic z), CCDs binned 4×, and each brick whole on a coarse 400² grid: a whole release runs
every phase on real simulated images in about a minute, and a brick reruns in seconds.  Used by
``tests/test_nightly.py`` (an increment) and ``tests/test_rerun_cost.py`` (what a rerun redoes),
which both start from one release of it made once per session (:func:`shared_release`).
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from demo_release import lsdr

from lsdr.survey.core import bricks as grid
from lsdr.survey.simulate.config import PassSpec, SimulationConfig

REGION = grid.RaDecBox(180.1, 180.9, 32.49, 32.51)
"""Three bricks in a row (1801p325, 1804p325, 1807p325) have their centres in it."""
BRICKS = {"1801p325", "1804p325", "1807p325"}
"""The brick list a release of the survey makes (its bricks with a centre in ``REGION``)."""
GRID = ("-W", "400", "-H", "400", "--pixscale", "2.37")
"""Each brick whole (0.263°) on a coarse grid: cheap bricks."""
BINNING = 4
"""CCDs binned 4× (Mosaic 1.05″, 90Prime 1.82″ pixels): a quarter of the demo's pixels."""


def simulation() -> SimulationConfig:
    """The small survey's configuration: one pass per band, enough stars for the cuts."""
    passes = (PassSpec("90prime", "g", 1), PassSpec("90prime", "r", 1), PassSpec("mosaic", "z", 1))
    return SimulationConfig(
        region=REGION,
        passes=passes,
        binning=BINNING,
        star_density=8000.0,
        galaxy_density=1500.0,
        reprocessed=0,
        workers=2,
    )


def run_release(root: Path) -> subprocess.CompletedProcess[str]:
    """``lsdr run release`` on the small survey in ``root``, always with the same options."""
    region = f"{REGION.ra_min},{REGION.ra_max},{REGION.dec_min},{REGION.dec_max}"
    return lsdr(
        "run", "release", "--release-dir", str(root), "--region", region, *GRID, "--workers", "2"
    )


def release(root: Path) -> str:
    """A release of the small survey in ``root`` that must succeed; its console."""
    done = run_release(root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


DONE = "released"
"""Written beside the shared release once it is made (its absence: make it)."""


@dataclass(frozen=True)
class SmallRelease:
    """The small survey as simulated (no product yet) and a release made of it."""

    survey: Path
    release: Path


def shared_release(shared: Path) -> SmallRelease:
    """The session's small survey and its release, in ``shared`` (made by the first caller).

    Under pytest-xdist the first worker to ask simulates and releases it under a file lock; the
    others wait for the lock and read it.  Both read-only: tests change copies
    (``demo_release.copy_release``, or ``shutil.copytree``, which keeps the images' stamps).
    """
    from lsdr.survey.simulate.simulator import simulate_survey

    shared.mkdir(parents=True, exist_ok=True)
    made = SmallRelease(shared / "survey", shared / "release")
    with open(shared / "release.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / DONE).exists():
            shutil.rmtree(made.survey, ignore_errors=True)
            shutil.rmtree(made.release, ignore_errors=True)
            simulate_survey(made.survey, simulation())
            shutil.copytree(made.survey, made.release)
            release(made.release)
            listed = set((made.release / "bricks.txt").read_text().split())
            assert listed == BRICKS, listed
            (shared / DONE).write_text(str(made.release))
    return made
