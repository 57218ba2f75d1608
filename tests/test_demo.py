"""``lsdr demo`` through the real CLI, run once for the session and read by every test here.

The demo runs without astrometry.net's Python module (a fresh machine's case); the tests read
its products, its console and log file, rerun it, and let the real legacypipe read its kd file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from demo_release import DemoRun, lsdr, product_mtimes

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.bricks import write_survey_bricks
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.ccdtables import read_survey_ccds
from lsdr.survey.runbrick.tims import ccds_touching_brick
from lsdr.survey.runbrick.types import BrickGeometry
from lsdr.survey.runbrick.writecat import read_catalog

POST_PHASES = ("brightneighbors", "depth", "summary", "sweeps", "external", "package")

CONSOLE_LINES_MAX = 80
"""A person reads the demo's whole console output (stdout and stderr) without scrolling far."""
INFO_RECORD = re.compile(
    # Prefect's console format, ``12:00:01.234 | INFO    | distributed.scheduler - …``, and
    # its flow/task run variant ``| INFO    | Flow run 'x' - …``; distributed's own handler's
    # ``distributed.core - INFO - …``.
    r"\| INFO +\| (?:prefect|distributed|dask|lsdr|Flow run|Task run)"
    r"|(?:distributed|dask)[\w.]* - INFO - "
)
"""An INFO log record from Prefect, Dask/distributed or lsdr, as a console handler prints it."""


def info_records(text: str) -> list[str]:
    """The lines of ``text`` that are INFO log records of Prefect, Dask or lsdr."""
    return [line for line in text.splitlines() if INFO_RECORD.search(line)]


@pytest.fixture(scope="module")
def demo(demo_release: DemoRun) -> DemoRun:
    """The session's demo release (``tests/demo_release.py``), made without astrometry."""
    return demo_release


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_runs_every_phase_on_every_brick(demo: DemoRun) -> None:
    """The whole release on the 15 bricks without libkd, summary and plots printed.

    Each brick has a catalogue and a colour image; every post-tractor product exists.
    """
    out, first = demo.out, demo.first
    layout = ReleaseLayout(out)
    bricks = layout.brick_list.read_text().split()
    assert len(bricks) == 15
    assert "kdtree: 1 done, 0 already done, 0 failed" in first.stdout
    assert layout.survey_ccds_kd.stat().st_size > 0
    assert "tractor: 15 done, 0 already done, 0 failed" in first.stdout
    for brick in bricks:
        catalogue = read_catalog(layout.tractor(brick))
        assert len(catalogue) > 50, f"{brick}: only {len(catalogue)} sources"
        assert layout.coadd_jpeg(brick, "image").stat().st_size > 0
        assert brick in first.stdout
    assert str(layout.tractor(bricks[0])) in first.stdout  # where the catalogues are
    assert str(layout.coadd_jpeg(bricks[0], "image")) in first.stdout
    for phase in POST_PHASES:
        assert f"{phase}: " in first.stdout and f"{phase}: 0 done" not in first.stdout, phase
    assert " 0 failed" in first.stdout and "FAILED" not in first.stdout
    assert f"release directory: {layout.root}" in first.stdout
    assert "| tractor | 15 | 0 | 0 |" in first.stdout  # the release summary table
    for path in (layout.brick_summary, layout.depth_histogram, layout.log_tarball("180")):
        assert path.stat().st_size > 0, path
    assert list(layout.sweep_dir("10.0").glob("sweep-*.fits"))
    assert len(list(layout.external_dir.glob(f"survey-{layout.dr}-*.fits"))) == 5
    assert layout.directory_checksums(layout.root).exists()
    plots = sorted(layout.plots_dir.glob("*.png"))
    assert len(plots) >= 4 and all(str(p) in first.stdout for p in plots)
    # It ends with the release summary: the products, then the plots.
    assert str(plots[-1]) in first.stdout.rstrip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_console_is_short_and_its_log_file_complete(demo: DemoRun) -> None:
    """Without a terminal: at most 80 lines, one per finished phase, no INFO records.

    The INFO records (Prefect's, distributed's, the workers' runbrick) are in the run's log
    file under ``state/``, whose path is printed once.
    """
    first, layout = demo.first, ReleaseLayout(demo.out)
    console = first.stdout + first.stderr
    assert len(console.splitlines()) <= CONSOLE_LINES_MAX, console
    assert not info_records(console), info_records(console)[:5]
    assert re.search(
        r"^tractor: 15 units: 15 done, 0 already done, 0 failed \(\w+\)$", first.stderr, re.M
    ), first.stderr
    [log_line] = [line for line in first.stderr.splitlines() if line.startswith("log: ")]
    run_log = Path(log_line.removeprefix("log: "))
    assert run_log.resolve().parent.parent == layout.state_dir.resolve(), run_log
    logged = run_log.read_text().splitlines()
    for source in ("prefect.", "distributed.", "lsdr.survey.runbrick"):  # runbrick: the workers
        assert any("| INFO " in line and source in line for line in logged), source


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_rerun_recomputes_nothing_and_verbose_shows_info(demo: DemoRun) -> None:
    """A second ``lsdr demo -v`` finds every unit done, rewrites nothing, prints INFO records."""
    out = demo.out
    again = lsdr("demo", "--out", str(out), "--verbose")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    verbose = info_records(again.stdout + again.stderr)
    assert any(not re.search(r"\| INFO +\| lsdr", line) for line in verbose), again.stderr
    assert "tractor: 0 done, 15 already done, 0 failed" in again.stdout
    for phase in POST_PHASES:
        assert f"{phase}: 0 done" in again.stdout, phase
    assert product_mtimes(out) == demo.mtimes

    status = lsdr("status", "--release-dir", str(out))
    assert status.returncode == 0
    for brick in ReleaseLayout(out).brick_list.read_text().split():
        assert brick in status.stdout


def text(value: object) -> str:
    """A FITS string cell as text."""
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


@pytest.mark.slow
@pytest.mark.legacypipe
@pytest.mark.timeout(3000)
def test_real_legacypipe_reads_the_demo_kd_file(
    demo: DemoRun, legacypipe: LegacypipeBuild, tmp_path: Path
) -> None:
    """The real legacypipe, on the demo's kd file, finds each brick's and exposure's CCDs.

    Its own ``LegacySurveyData.ccds_touching_wcs`` (3600² brick grids) gives, for every demo
    brick, exactly the CCDs of lsdr's brick–CCD overlap (``ccds_touching_brick``), and
    ``find_ccds(expnum=…)``, through the ``expnum`` tree, each exposure's CCDs of the table.
    """
    layout = ReleaseLayout(demo.out)
    survey = tmp_path / "survey"  # a copy: the probe writes nothing into the release
    survey.mkdir()
    for table in (*layout.root.glob("survey-ccds-*.fits.gz"), layout.survey_ccds_kd):
        shutil.copy2(table, survey / table.name)
    write_survey_bricks(survey / layout.survey_bricks.name)
    bricks = layout.brick_list.read_text().split()
    done = subprocess.run(
        [str(legacypipe.python), str(Path(__file__).with_name("legacypipe_ccd_probe.py")),
         str(survey), *bricks],
        env=legacypipe.env(), capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["kd_files"] == [str(survey / layout.survey_ccds_kd.name)]
    ccds = read_survey_ccds(layout, kept_only=True)
    bands = sorted({text(f) for f in ccds["filter"]})
    for brick in bricks:
        mine = ccds_touching_brick(ccds, BrickGeometry.for_brick(brick), bands)
        pairs = sorted(
            [int(e), text(n)] for e, n in zip(mine["expnum"], mine["ccdname"], strict=True)
        )
        assert pairs and got["bricks"][brick] == pairs, brick
    expnums = sorted({int(e) for e in ccds["expnum"]})
    assert sorted(int(e) for e in got["expnums"]) == expnums
    for expnum in expnums:
        rows = ccds[ccds["expnum"] == expnum]
        assert got["expnums"][str(expnum)] == sorted([expnum, text(n)] for n in rows["ccdname"])
