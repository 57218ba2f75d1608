"""The nightly increment: what "arrived" means, the watermark, and what an increment reruns.

The fast tests check the bookkeeping on the ledger and on hand-made files.  The slow one copies
the session's release of the three-brick survey (``tests/small_survey.py``), adds two exposures
whose CCDs fall on two of the bricks, runs ``lsdr run nightly`` and checks in the ledger what
started (the bricks the new CCDs touch computed here with astropy from the images' headers,
``tests/geometry.py``), that the products equal a release made from scratch on the same images,
and that a second night with nothing new runs nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import fitsio
import numpy as np
import pytest
from demo_release import lsdr
from geometry import image_bricks
from release_values import compare_releases
from small_survey import BRICKS, SmallRelease, release, simulation

from lsdr.flows.nightly import nightly
from lsdr.infra.ledger import Ledger, SeenImage
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import NightlyOptions, ReleaseOptions
from lsdr.tasks import nightly as plan

IMAGE = "mosaic/CP/V4.3/CP20161110/k4m_161111_043008_ooi_zd_ls9.fits.fz"


# -- fast: the bookkeeping ----------------------------------------------------------------------
def seen(image: str, state: str, size: int = 10, mtime_ns: int = 5) -> SeenImage:
    """A seen-image record."""
    return SeenImage(image, state, size, mtime_ns, 1, None)


def test_arrived_means_not_settled_by_path_and_stamp_not_by_time() -> None:
    """New paths (whatever their mtime), replaced files and failed images arrive; others not."""
    known = {
        "a.fits.fz": seen("a.fits.fz", "done"),
        "b.fits.fz": seen("b.fits.fz", "done"),
        "c.fits.fz": seen("c.fits.fz", "failed"),
        "d.fits.fz": seen("d.fits.fz", "dropped"),
        "e.fits.fz": seen("e.fits.fz", "outside"),
    }
    current = {
        "a.fits.fz": (10, 5),  # unchanged
        "b.fits.fz": (11, 5),  # replaced: another size
        "c.fits.fz": (10, 5),  # failed last time: tried again
        "d.fits.fz": (10, 5),
        "e.fits.fz": (10, 5),
        "f.fits.fz": (10, 1),  # copied in keeping an old mtime: new all the same
    }
    got = {a.image: a.why for a in plan.arrivals(current, known)}
    assert got == {"b.fits.fz": plan.CHANGED, "c.fits.fz": plan.PENDING, "f.fits.fz": plan.NEW}


def test_failed_and_half_transferred_images_stay_pending() -> None:
    """Done with bricks: done; done without: outside; superseded: dropped; failed: pending."""
    arrived = [plan.Arrival(name, 1, 1, plan.NEW) for name in ("ok", "far", "old", "half", "bad")]
    states = {("zeropoints", n): "done" for n in ("ok", "far", "bad")}
    states |= {("merge-calibs", "ok"): "done", ("merge-calibs", "far"): "done"}
    states[("merge-calibs", "bad")] = "failed"
    dropped = {"old": "superseded by a newer processing", "half": "missing ood file x_ood.fits"}
    touched = {"ok": ["1804p325"], "far": []}
    settled = plan.settle_arrivals(arrived, 3, ["ok", "far", "bad"], dropped, states, touched)
    by_image = {i.image: i for i in settled.images}
    assert {n: i.state for n, i in by_image.items()} == {
        "ok": "done",
        "far": "outside",
        "old": "dropped",
        "half": "failed",
        "bad": "failed",
    }
    assert [n for n, i in by_image.items() if not i.settled] == ["half", "bad"]
    assert settled.touched == {"ok": ["1804p325"], "far": []}
    assert all(i.increment == 3 for i in settled.images)


def test_the_watermark_moves_only_with_a_successful_increment(tmp_path: Path) -> None:
    """Stopped or failed increments leave the watermark where the last success put it."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    assert ledger.watermark() is None
    first = ledger.start_increment()
    ledger.finish_increment(first, "stopped", new_images=2, bricks=0, summary="s")
    assert ledger.watermark() is None
    second = ledger.start_increment()
    ledger.finish_increment(second, "succeeded", new_images=2, bricks=1, summary="s")
    mark = ledger.watermark()
    assert mark is not None
    third = ledger.start_increment()
    ledger.finish_increment(third, "failed", new_images=1, bricks=0, summary="")
    assert ledger.watermark() == mark
    assert [i.status for i in ledger.increments()] == ["stopped", "succeeded", "failed"]
    ledger.record_images([seen("x", "failed"), seen("y", "done")])
    ledger.record_images([seen("x", "done", size=12)])
    images = ledger.seen_images()
    assert (images["x"].state, images["x"].size, images["y"].state) == ("done", 12, "done")


def test_an_older_ledger_gains_the_nightly_tables(tmp_path: Path) -> None:
    """A ledger made before the increment existed reads as empty, then is extended on write."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = Ledger(url)
    ledger.plan("zeropoints", ["a.fits.fz"])
    ledger.close()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        for table in ("nightly_images", "increments", "chain_options"):
            db.execute(f"DROP TABLE {table}")
    old = Ledger.existing(url)
    assert old is not None
    assert old.seen_images() == {} and old.watermark() is None
    assert old.chain_options("release") is None
    old.close()
    again = Ledger(url)
    again.record_chain_options("release", ReleaseOptions().model_dump_json())
    again.record_images([seen("a.fits.fz", "done")])
    assert again.chain_options("release") is not None
    assert list(again.seen_images()) == ["a.fits.fz"]
    assert again.get("zeropoints", "a.fits.fz") is not None  # the units are still there


def write_ccd_image(path: Path, ra: float, dec: float, size: int = 200) -> None:
    """A one-CCD CP-like image: a primary header and one TAN image HDU centred at (ra, dec)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 0.262 / 3600.0
    header = {
        "EXTNAME": "CCD1",
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": ra,
        "CRVAL2": dec,
        "CRPIX1": (size + 1) / 2,
        "CRPIX2": (size + 1) / 2,
        "CD1_1": -scale,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": scale,
    }
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(None, header={"OBSTYPE": "object"})
        f.write(np.zeros((size, size), np.float32), header=header)


def small_release(root: Path) -> ReleaseLayout:
    """A release that has 'run': one image seen, a brick list, the release's options recorded."""
    layout = ReleaseLayout(root)
    old = layout.images_dir / "mosaic" / "CP20161110" / "k4m_161111_000000_ooi_zd_ls9.fits.fz"
    write_ccd_image(old, 180.375, 32.5)
    (root / "bricks.txt").write_text("1804p325\n1807p325\n")
    ledger = Ledger(f"sqlite:///{layout.ledger_db}")
    ledger.record_chain_options("release", ReleaseOptions().model_dump_json())
    st = old.stat()
    rel = old.relative_to(layout.images_dir).as_posix()
    ledger.record_images([SeenImage(rel, "done", st.st_size, st.st_mtime_ns, 0, None)])
    return layout


def test_a_night_without_new_images_runs_nothing_and_says_so(tmp_path: Path) -> None:
    """No unit is planned; the summary file says so; the watermark moves; a new image then shows.

    A dry run lists the new image and the brick under it (the image is centred on 1807p325,
    far from the other brick), and records nothing.
    """
    layout = small_release(tmp_path / "release")
    result = nightly.fn(str(layout.root))
    assert result.status == "no-op" and result.images == [] and result.units_run == {}
    ledger = Ledger(f"sqlite:///{layout.ledger_db}")
    assert ledger.counts() == []  # not one unit planned
    assert ledger.watermark() is not None
    text = layout.nightly_summary.read_text()
    assert "No new images: nothing to do, nothing was run." in text
    assert not list(layout.nightly_summary.parent.glob("*.tmp*"))

    centre = grid.brick_by_name("1807p325")
    new = layout.images_dir / "mosaic" / "CP20161111" / "k4m_161112_000000_ooi_zd_ls9.fits.fz"
    write_ccd_image(new, centre.ra, centre.dec)
    dry = nightly.fn(str(layout.root), NightlyOptions(dry_run=True))
    rel = new.relative_to(layout.images_dir).as_posix()
    assert [(i.image, i.why, i.bricks) for i in dry.images] == [(rel, plan.NEW, ["1807p325"])]
    assert len(ledger.increments()) == 1  # the dry run recorded no increment
    assert rel not in ledger.seen_images()


def test_nightly_refuses_a_release_that_never_ran(tmp_path: Path) -> None:
    """``lsdr run nightly`` on a release without a recorded release run: one line, exit 2."""
    root = tmp_path / "release"
    (root / "images").mkdir(parents=True)
    done = lsdr("run", "nightly", "--release-dir", str(root))
    assert done.returncode == 2, done.stderr
    assert "no release has run here" in done.stderr
    assert not (root / "state").exists()


# -- slow: an increment on a simulated survey ---------------------------------------------------
OVER = grid.RaDecBox(180.4, 180.6, 32.3, 32.7)
"""The new exposures' sky: two CCDs of the template Mosaic pointing, over two of the bricks."""


def add_new_exposures(root: Path) -> list[str]:
    """Two repeat visits of one Mosaic pointing, a night later, only its CCDs over ``OVER``."""
    from lsdr.survey.simulate.simulator import add_exposure

    images = ReleaseLayout(root).images_dir
    return [
        add_exposure(root, IMAGE, config=simulation(), visit=v, over=OVER)
        .relative_to(images)
        .as_posix()
        for v in (1, 2)
    ]


def ledger_attempts(root: Path) -> dict[tuple[str, str], tuple[int, str]]:
    """(phase, key) -> (attempts, state), read from the ledger's table."""
    with sqlite3.connect(root / "state" / "ledger.sqlite") as db:
        rows = db.execute("SELECT phase, key, attempts, state FROM units")
        return {(p, k): (a, s) for p, k, a, s in rows}


def started(
    before: dict[tuple[str, str], tuple[int, str]], after: dict[tuple[str, str], tuple[int, str]]
) -> dict[str, set[str]]:
    """Per phase, the units whose attempts grew (or that are new) between two readings."""
    out: dict[str, set[str]] = {}
    for (phase, key), (attempts, _) in after.items():
        if attempts > before.get((phase, key), (0, ""))[0]:
            out.setdefault(phase, set()).add(key)
    return out


def header_touched(root: Path, image: str, listed: set[str]) -> set[str]:
    """The listed bricks an image's CCDs overlap: astropy WCS of its HDUs, independent geometry."""
    return image_bricks(root / "images" / image) & listed


def next_to(brick: str, others: set[str]) -> bool:
    """Whether a brick shares an edge or a corner with one of ``others`` (its bounds)."""
    b = grid.brick_by_name(brick)
    eps = 1e-9
    for name in others - {brick}:
        o = grid.brick_by_name(name)
        ra = b.ra1 <= o.ra2 + eps and o.ra1 <= b.ra2 + eps
        if ra and b.dec1 <= o.dec2 + eps and o.dec1 <= b.dec2 + eps:
            return True
    return False


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_an_increment_redoes_the_new_images_and_their_bricks_and_equals_a_fresh_release(
    small_release: SmallRelease, tmp_path: Path
) -> None:
    """Only the new images' units, the bricks they touch and what reads those bricks start.

    Then the products equal a release made from scratch on the same images, and a second
    increment with nothing new starts nothing and says so.  The increment runs on a copy of
    the session's release of the small survey (the images keep their stamps).
    """
    survey = small_release.survey
    root = shutil.copytree(small_release.release, tmp_path / "increment")
    listed = set((root / "bricks.txt").read_text().split())
    assert listed == BRICKS == {"1801p325", "1804p325", "1807p325"}
    new = add_new_exposures(root)

    before = ledger_attempts(root)
    done = lsdr("run", "nightly", "--release-dir", str(root), "--workers", "2")
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    after = ledger_attempts(root)
    again = started(before, after)
    touched = set().union(*(header_touched(root, image, listed) for image in new))
    assert touched == {"1804p325", "1807p325"}  # the test's set-up: two of the three bricks
    assert again["zeropoints"] == set(new)
    assert again["merge-calibs"] == set(new)
    assert again["discover"] == {"images"}
    assert {"merge", "kdtree", "bricks"} <= set(again)
    assert again["tractor"] == touched
    assert again["depth"] == touched
    assert again["verify"] == touched  # each brick's checksums, verified again
    # A brick's bright-neighbour mask reads its own and its neighbours' maps: the touched
    # bricks and the listed bricks next to one (sharing an edge or a corner).
    assert again["brightneighbors"] == touched | {b for b in listed if next_to(b, touched)}
    # The sweep box and the summary's RA-degree chunk the touched bricks fall in (5° boxes).
    assert again["sweeps"] == {"sweep-180p030-185p035"}
    assert again["summary"] == {"180"}
    release_wide = {"depth-merge", "summary-merge", "external", "checksums", "logs"}
    image_units = {"discover", "zeropoints", "merge-calibs", "merge", "kdtree", "bricks"}
    per_brick = {"tractor", "brightneighbors", "depth", "verify", "sweeps", "summary"}
    assert set(again) == image_units | per_brick | release_wide, set(again)
    assert all(state == "done" for _, state in after.values())
    # Everything else was found done: the untouched brick and the other images never started.
    assert after[("tractor", "1801p325")][0] == before[("tractor", "1801p325")][0]

    summary = (root / "state" / "nightly-summary.md").read_text()
    for image in new:
        assert image in summary and image in console
    assert "## Bricks redone (2)" in summary
    assert "- 1804p325" in summary and "- 1807p325" in summary and "- 1801p325" not in summary
    assert "bricks redone: 1804p325, 1807p325" in console

    fresh = shutil.copytree(survey, tmp_path / "fresh")
    assert add_new_exposures(fresh) == new
    release(fresh)
    comparison = compare_releases(root, fresh)
    assert comparison.equal, comparison.by_path()

    before = ledger_attempts(root)
    quiet = lsdr("run", "nightly", "--release-dir", str(root))
    assert quiet.returncode == 0, quiet.stdout[-3000:] + quiet.stderr[-3000:]
    assert ledger_attempts(root) == before
    assert "nightly: no-op: 0 images arrived" in quiet.stderr
    assert "No new images" in (root / "state" / "nightly-summary.md").read_text()
