"""What a rerun of a release redoes after its inputs change: only what read the change.

The release is the three-brick simulated survey of ``tests/small_survey.py``, released once for
the session (the ``small_release`` fixture: a real ``lsdr run release``, every phase, cheap
bricks).  Each test copies it (every file copied: new stamps, same bytes), changes one thing,
reruns the release through the real CLI, and reads from the ledger which units started again
(their ``attempts`` grew).  The bricks an image's CCDs touch are computed here with astropy
from the image's own headers (``tests/geometry.py``), not by lsdr.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import fitsio
import pytest
from demo_release import copy_release
from geometry import image_bricks
from small_survey import BRICKS, SmallRelease, run_release, simulation

STOPPED_BEFORE_TABLES = ("discover", "zeropoints", "merge-calibs", "tractor")
"""Phases an image edited in a card nobody reads reruns units of."""
SCIENCE_AFTER = (
    "merge", "kdtree", "bricks", "depth", "depth-merge", "summary", "summary-merge", "sweeps",
    "external", "verify",
)  # fmt: skip
"""Phases reading the products of those units, which come out byte-identical."""


def rerun(root: Path) -> tuple[int, str]:
    """``lsdr run release`` on ``root`` with its first run's options: exit status and console."""
    done = run_release(root)
    return done.returncode, done.stdout + done.stderr


def ledger_rows(root: Path) -> dict[tuple[str, str], tuple[int, str, str | None]]:
    """(phase, key) -> (attempts, state, failure class), read from the ledger's table."""
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        rows = db.execute("SELECT phase, key, attempts, state, failure_class FROM units")
        return {(p, k): (a, s, f) for p, k, a, s, f in rows}


def started_again(
    before: dict[tuple[str, str], tuple[int, str, str | None]],
    after: dict[tuple[str, str], tuple[int, str, str | None]],
) -> dict[str, set[str]]:
    """Per phase, the units started since ``before`` (attempts grew, or new)."""
    out: dict[str, set[str]] = {}
    for (phase, key), (attempts, _, _) in after.items():
        if attempts > before.get((phase, key), (0, "", None))[0]:
            out.setdefault(phase, set()).add(key)
    return out


def touched_bricks(root: Path, image: str) -> set[str]:
    """The brick-list bricks that the image's CCDs with ``ccd_cuts == 0`` overlap.

    Corners at the CCD pixel edges from each HDU's WCS (astropy); cuts from the release's
    survey-ccds tables.
    """
    kept: set[str] = set()
    for table in root.glob("survey-ccds-*-*.fits.gz"):
        rows = fitsio.read(str(table), ext=1, columns=["image_filename", "ccdname", "ccd_cuts"])
        for name, ccd, cuts in rows:
            if text(name) == image and int(cuts) == 0:
                kept.add(text(ccd))
    listed = set((root / "bricks.txt").read_text().split())
    return image_bricks(root / "images" / image, kept) & listed


def text(value: object) -> str:
    """A FITS string cell as text."""
    return (value.decode() if isinstance(value, bytes) else str(value)).strip()


def mosaic_image(root: Path) -> str:
    """The Mosaic z image touching the fewest bricks, but some (a cheap rerun)."""
    images = sorted(
        line for line in (root / "image-list.txt").read_text().split() if "/k4m_" in line
    )
    touching = {i: len(touched_bricks(root, i)) for i in images}
    return min((i for i in images if touching[i]), key=lambda i: (touching[i], i))


def cached_state(root: Path, phase: str, timeout: float = 120.0) -> Any:
    """The state of the ``<phase>-already-done`` task run of a flow run on ``root``, or None.

    The server records task runs from events, after the CLI has exited: polled until one of a
    flow run whose ``release_dir`` is ``root`` appears (the deadline only stops the polling).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    name = TaskRunFilter(name=TaskRunFilterName(any_=[f"{phase}-already-done"]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            for run in client.read_task_runs(task_run_filter=name):
                if run.flow_run_id is None:
                    continue
                flow_run = client.read_flow_run(run.flow_run_id)
                if flow_run.parameters.get("release_dir") == str(root):
                    return run.state
            if time.monotonic() > deadline:
                return None
            time.sleep(1.0)


@pytest.fixture()
def release(small_release: SmallRelease, tmp_path: Path) -> Path:
    """A copy of the session's small release, for one test to change."""
    return copy_release(small_release.release, tmp_path / "release")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_input_touched_reruns_nothing(release: Path) -> None:
    """A copied release (new stamps everywhere), its inputs touched again: no unit starts.

    Prefect shows the found-done units as one Cached task run per phase, with the reason.
    """
    for top in ("images", "gaia", "external-input", "truth"):
        for path in (release / top).rglob("*"):
            if path.is_file():
                os.utime(path)
    before = ledger_rows(release)
    status, console = rerun(release)
    assert status == 0, console[-3000:]
    assert started_again(before, ledger_rows(release)) == {}
    n = len(BRICKS)
    assert f"tractor: {n} units: 0 done, {n} already done, 0 failed" in console

    state = cached_state(release, "tractor")
    assert state is not None and state.name == "Cached"
    assert (state.message or "").startswith(f"{n} units already done: {n} ")
    assert "contents are the same" in (state.message or "")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_header_card_nobody_reads_stops_the_cascade_at_identical_outputs(release: Path) -> None:
    """The image's units and bricks rerun, and their outputs come out byte-identical.

    So the tables, the kd-tree, the brick list and every post-tractor unit stay done.
    """
    image = mosaic_image(release)
    bricks = touched_bricks(release, image)
    with fitsio.FITS(str(release / "images" / image), "rw") as f:
        f[0].write_key("LSDRNOTE", "a card no unit reads")
    before = ledger_rows(release)
    status, console = rerun(release)
    assert status == 0, console[-3000:]
    again = started_again(before, ledger_rows(release))
    assert again["discover"] == {"images"}  # it reads primary headers
    assert again["zeropoints"] == {image}
    assert again["merge-calibs"] == {image}
    assert again["tractor"] == bricks
    # Runbrick rewrote the maskbits the bright-neighbour step had updated: that step redoes
    # its update; the bricks' logs are new (a log records its run), so their tarball is too.
    assert again.get("brightneighbors", set()) <= bricks
    assert set(again) <= {*STOPPED_BEFORE_TABLES, "brightneighbors", "logs", "checksums"}
    for phase in SCIENCE_AFTER:
        assert phase not in again, (phase, again[phase])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_changed_image_reruns_exactly_its_units_and_the_bricks_its_ccds_touch(
    release: Path,
) -> None:
    """New pixels in one image rerun its units, the CCD tables and the bricks its CCDs touch.

    Only those bricks: every other brick's catalogues keep their stamps.
    """
    image = mosaic_image(release)
    bricks = touched_bricks(release, image)
    assert 0 < len(bricks) < len(BRICKS)
    with fitsio.FITS(str(release / "images" / image), "rw") as f:
        for hdu in range(1, len(f)):
            pixels = f[hdu].read()
            pixels[200:210, 200:210] += 400.0  # a new source in every CCD
            f[hdu].write(pixels)
    others = sorted(BRICKS - bricks)
    untouched = {
        p: p.stat().st_mtime_ns for b in others for p in (release / "tractor").rglob(f"*{b}*")
    }
    before = ledger_rows(release)
    status, console = rerun(release)
    assert status == 0, console[-3000:]
    again = started_again(before, ledger_rows(release))
    assert again["zeropoints"] == {image}
    assert again["merge-calibs"] == {image}
    assert {"merge", "kdtree", "bricks"} <= set(again)
    assert again["tractor"] == bricks
    assert untouched and all(p.stat().st_mtime_ns == t for p, t in untouched.items())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_truncated_image_fails_alone_and_the_summary_names_it(release: Path) -> None:
    """Its zeropoints fail (science, naming the file); every other unit ends done; exit 1."""
    image = mosaic_image(release)
    bricks = touched_bricks(release, image)
    path = release / "images" / image
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    before = ledger_rows(release)
    status, console = rerun(release)
    assert status == 1, console[-3000:]
    after = ledger_rows(release)
    failed = {unit: row for unit, row in after.items() if row[1] != "done"}
    assert failed == {
        ("zeropoints", image): (before[("zeropoints", image)][0] + 1, "failed", "science")
    }
    again = started_again(before, after)
    assert again["tractor"] == bricks  # their CCD rows went
    summary = (release / "state" / "release-summary.md").read_text()
    assert image in summary and "[science]" in summary


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_new_exposure_reruns_only_the_bricks_it_overlaps(release: Path) -> None:
    """A repeat visit of one Mosaic pointing, a night later, reruns the bricks it touches.

    Its own units, the tables and those bricks: no other image's zeropoints, no other brick.
    """
    from lsdr.survey.simulate.simulator import add_exposure

    like = mosaic_image(release)
    new = add_exposure(release, like, days=1, config=simulation())
    image = str(new.relative_to(release / "images"))
    before = ledger_rows(release)
    status, console = rerun(release)
    assert status == 0, console[-3000:]
    again = started_again(before, ledger_rows(release))
    assert again["discover"] == {"images"}
    assert again["zeropoints"] == {image}
    assert again["merge-calibs"] == {image}
    bricks = touched_bricks(release, image)
    assert bricks and again["tractor"] == bricks
