"""A failed unit costs its own products, never its phase or the next ones (issue 14).

End to end (slow): on a small simulated survey already measured once, one CP image is cut in
the middle of its second CCD's data; ``lsdr run release`` then fails that image's zeropoints
unit, leaves it out of the CCD tables (its older zeropoint table is still on disk), and makes
every other product, checked against the simulator's truth.  A second image truncated after its
zeropoints ran fails in ``merge-calibs`` planning, is recorded, not retried, and comes back once
restored.  Fast: the planners and the runner's bookkeeping on real files, sidecars and ledger.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.flows.planning import read_planned_list, release_bricks, upstream_failures
from lsdr.flows.release import summary_markdown
from lsdr.flows.report import PhaseResult
from lsdr.flows.settings import ledger_for
from lsdr.infra.ledger import UnitFinish
from lsdr.infra.settings import load_settings
from lsdr.survey.core.bricks import RaDecBox
from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.phase_options import TractorOptions
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.merge import merge_calibs_unit, plan_merge_calibs
from lsdr.tasks.sidecars import settle
from lsdr.tasks.tractor import plan_tractor
from lsdr.tasks.unit import Unit, UnitOutput

REGION = RaDecBox(180.42, 180.76, 32.375, 32.625)
"""Two bricks' centres (1804p325, 1807p325): the brick list of ``--region``."""
REGION_ARG = "180.42,180.76,32.375,32.625"
BRICK_ARGS = ("-W", "900", "-H", "900", "--pixscale", "0.524")
"""The centre of each brick at the demo's binned pixel: every brick has CCDs there."""
FITS_BLOCK = 2880


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv; the session's Prefect server via the env."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)


def truncate_in_second_ccd(path: Path) -> int:
    """Cut a CP ``.fits.fz`` in the middle of its second CCD's data, off a FITS block boundary."""
    with fitsio.FITS(str(path)) as fits:
        offsets = fits[2].get_offsets()
    cut = (offsets["data_start"] + offsets["data_end"]) // 2
    cut += 1000 if cut % FITS_BLOCK == 0 else 0
    os.truncate(path, cut)
    return cut


def truth_ccds(layout: ReleaseLayout, without: set[str]) -> set[tuple[str, str]]:
    """(image, CCD name) of every CCD the simulator wrote, not superseded, not of ``without``."""
    truth = fitsio.read(str(layout.truth_ccds))
    return {
        (str(t["image_filename"]).strip(), str(t["ccdname"]).strip())
        for t in truth
        if not t["superseded"] and str(t["image_filename"]).strip() not in without
    }


def survey_ccds(layout: ReleaseLayout) -> set[tuple[str, str]]:
    """(image, CCD name) of every row of the release's survey-ccds tables."""
    rows = [fitsio.read(str(p)) for p in sorted(layout.root.glob("survey-ccds-*-*.fits.gz"))]
    table = np.concatenate(rows)
    return {(str(r["image_filename"]).strip(), str(r["ccdname"]).strip()) for r in table}


def touched_bricks(layout: ReleaseLayout, images: set[str]) -> set[str]:
    """Bricks centred in REGION that the truth CCDs of ``images`` touch (astropy projection)."""
    from astropy.wcs import WCS
    from geometry import independent_touching

    from lsdr.survey.core import bricks as grid

    truth = fitsio.read(str(layout.truth_ccds))
    rows = [t for t in truth if str(t["image_filename"]).strip() in images]
    corners_ra, corners_dec = [], []
    for t in rows:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [t["crval1"], t["crval2"]]
        w.wcs.crpix = [t["crpix1"], t["crpix2"]]
        w.wcs.cd = [[t["cd1_1"], t["cd1_2"]], [t["cd2_1"], t["cd2_2"]]]
        x = np.array([0.5, t["width"] + 0.5, t["width"] + 0.5, 0.5])
        y = np.array([0.5, 0.5, t["height"] + 0.5, t["height"] + 0.5])
        ra, dec = w.all_pix2world(x, y, 1)
        corners_ra.append(ra)
        corners_dec.append(dec)
    touched = {b for _, b in independent_touching(np.array(corners_ra), np.array(corners_dec))}
    cols = grid.all_bricks_columns()
    inside = (
        (cols["ra"] >= REGION.ra_min)
        & (cols["ra"] < REGION.ra_max)
        & (cols["dec"] >= REGION.dec_min)
        & (cols["dec"] < REGION.dec_max)
    )
    names = {
        int(i): n.decode() if isinstance(n, bytes) else str(n)
        for i, n in zip(cols["brickid"], cols["brickname"], strict=True)
    }
    return {names[int(i)] for i in cols["brickid"][inside] if int(i) in touched}


@dataclass(frozen=True)
class Run:
    """The release made once for the module: which image was cut, and what the CLI printed."""

    layout: ReleaseLayout
    bad: str
    """The truncated image (its key: the path under ``images/``)."""
    result: subprocess.CompletedProcess[str]
    destination: Path


@pytest.fixture(scope="module")
def run(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Simulate, measure once intact, truncate one z image, then ``lsdr run release``."""
    base = tmp_path_factory.mktemp("failures-stay-local")
    survey = base / "survey"
    passes = tuple(
        PassSpec(c, b, 2) for c, b in (("90prime", "g"), ("90prime", "r"), ("mosaic", "z"))
    )
    config = SimulationConfig(
        region=REGION, passes=passes, star_density=8000.0, reprocessed=0, workers=2
    )
    simulate_survey(survey, config)
    root = base / "release"
    shutil.copytree(survey, root, symlinks=True)
    layout = ReleaseLayout(root)
    first = lsdr("run", "pretractor", "--release-dir", str(root), "--region", REGION_ARG)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    z_images = sorted(i for i in layout.image_list.read_text().split() if "_ooi_z" in i)
    bad = z_images[1]
    truncate_in_second_ccd(layout.image(bad))
    # The demo's case: the image's zeropoint table from the intact run is still on disk.
    assert layout.zpt_annotated(bad).exists()
    destination = base / "published"
    result = lsdr(
        "run", "release", "--release-dir", str(root), "--region", REGION_ARG, *BRICK_ARGS,
        "--destination", str(destination),
    )  # fmt: skip
    return Run(layout, bad, result, destination)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_release_exits_1_and_names_the_failure_and_what_was_left_out(run: Run) -> None:
    """Exit 1; the FAILED line and the left-out warning name the image; no traceback."""
    out, err = run.result.stdout, run.result.stderr
    assert run.result.returncode == 1, out + err[-3000:]
    assert "Traceback" not in out + err
    failed = [line.strip() for line in out.splitlines() if line.strip().startswith("FAILED")]
    assert len(failed) == 1, out
    assert failed[0].startswith(f"FAILED {run.bad} [science]: ")
    assert str(run.layout.image(run.bad)) in failed[0]
    assert f"merge: 1 image left out: {run.bad} (zeropoints failed: " in err
    summary = (run.layout.state_dir / "release-summary.md").read_text()
    assert f"- zeropoints {run.bad} [science]: {run.layout.image(run.bad)}" in summary
    assert f"- merge: 1 image left out: {run.bad} (zeropoints failed: " in summary
    assert "- publish not run: failed units in zeropoints" in summary
    assert not run.destination.exists() or not any(run.destination.iterdir())


@pytest.mark.slow
def test_only_the_truncated_image_failed_in_the_ledger(run: Run) -> None:
    """Every unit of every phase is done except that image's zeropoints unit."""
    ledger = ledger_for(load_settings(run.layout.root))
    counts = {c.phase: c.counts for c in ledger.counts()}
    phases = {
        "discover", "zeropoints", "merge-calibs", "merge", "kdtree", "bricks", "tractor",
        "brightneighbors", "depth", "depth-merge", "summary", "summary-merge", "sweeps",
        "external", "verify", "logs", "checksums",
    }  # fmt: skip
    assert phases <= set(counts), counts
    for phase, by_state in counts.items():
        expected_failed = 1 if phase == "zeropoints" else 0
        assert by_state.get("failed", 0) == expected_failed, (phase, by_state)
        assert set(by_state) <= {"done", "failed"}, (phase, by_state)
    [failure] = ledger.failed()
    assert (failure.phase, failure.key, failure.failure_class) == ("zeropoints", run.bad, "science")
    assert str(run.layout.image(run.bad)) in failure.message


@pytest.mark.slow
def test_ccd_tables_hold_exactly_the_other_images_ccds(run: Run) -> None:
    """survey-ccds: the truth's CCDs minus the truncated image's (its old table is not read)."""
    expected = truth_ccds(run.layout, without={run.bad})
    assert survey_ccds(run.layout) == expected
    assert not any(image == run.bad for image, _ in expected | survey_ccds(run.layout))


@pytest.mark.slow
def test_every_brick_the_other_ccds_touch_has_a_catalogue_without_the_bad_image(
    run: Run,
) -> None:
    """The brick list, catalogues and per-brick CCD lists, from the remaining images only."""
    layout = run.layout
    remaining = {image for image, _ in truth_ccds(layout, without={run.bad})}
    bricks = touched_bricks(layout, remaining)
    assert len(bricks) == 2
    assert set(layout.brick_list.read_text().split()) == bricks
    z_left = {i for i in remaining if "_ooi_z" in i}
    truth = fitsio.read(str(layout.truth_catalog), columns=["ra", "dec"])
    used: set[str] = set()
    for brick in sorted(bricks):
        cat = fitsio.read(str(layout.tractor(brick)), ext=1)
        assert len(cat) > 50, brick
        assert cat["nobs_z"].max() <= len(z_left)
        cosd = np.cos(np.radians(cat["dec"]))[:, None]
        dra = (cat["ra"][:, None] - truth["ra"][None, :]) * cosd
        sep = np.hypot(dra, cat["dec"][:, None] - truth["dec"][None, :]).min(axis=1) * 3600
        assert np.mean(sep < 1.0) > 0.9, (brick, np.mean(sep < 1.0))
        ccds = fitsio.read(str(layout.coadd_ccds(brick)))
        used |= {str(f).strip() for f in ccds["image_filename"]}
    assert used == remaining  # every other image contributes; the truncated one never


@pytest.mark.slow
def test_image_truncated_after_its_zeropoints_fails_in_merge_planning(
    run: Run, tmp_path: Path
) -> None:
    """merge-calibs records it (science, the file named); rerun reports it; restored, it runs."""
    root = tmp_path / "release"
    shutil.copytree(run.layout.root, root, symlinks=True)
    layout = ReleaseLayout(root)
    g_images = sorted(i for i in layout.image_list.read_text().split() if "_ooi_g" in i)
    image = g_images[0]
    path = layout.image(image)
    saved = tmp_path / "saved.fits.fz"
    shutil.copy2(path, saved)
    truncate_in_second_ccd(path)

    result = lsdr("run", "merge", "--release-dir", str(root))
    out, err = result.stdout, result.stderr
    assert result.returncode == 1, out + err[-3000:]
    assert "Traceback" not in out + err
    [line] = [x.strip() for x in out.splitlines() if x.strip().startswith("FAILED")]
    assert line.startswith(f"FAILED {image} [science]: {path}")
    assert "merge: 2 images left out: " in err
    assert f"{image} (merge-calibs failed: {path}" in err
    assert f"{run.bad} (zeropoints failed: " in err
    ledger = ledger_for(load_settings(root))
    row = ledger.get("merge-calibs", image)
    assert row is not None and row.state == "failed" and row.failure_class == "science"
    assert survey_ccds(layout) == truth_ccds(layout, without={run.bad, image})

    again = lsdr("run", "merge", "--release-dir", str(root))
    assert again.returncode == 1, again.stdout + again.stderr[-3000:]
    assert "failed before with the same inputs" in again.stdout
    after = ledger.get("merge-calibs", image)
    assert after is not None and after.attempts == row.attempts  # reported, not run again

    shutil.copy2(saved, path)
    restored = lsdr("run", "merge", "--release-dir", str(root))
    # Its own units all done, but the z image, whose zeropoints failed, is still left out:
    # units not done, exit 1.
    assert restored.returncode == 1, restored.stdout + restored.stderr[-3000:]
    assert "merge-calibs: 1 done" in restored.stdout
    assert f"merge: 1 image left out: {run.bad} (zeropoints failed: " in restored.stderr
    assert survey_ccds(layout) == truth_ccds(layout, without={run.bad})


# -- fast: the planners and the runner's bookkeeping, on real files ---------------------------
def write_cp_image(path: Path, ccds: int = 2) -> None:
    """A small tile-compressed multi-extension FITS file named like a CP image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(None, header={"NEXTEND": ccds, "EXPNUM": 1})
        for i in range(ccds):
            data = rng.normal(size=(200, 200)).astype(np.float32)
            fits.write(data, extname=f"CCD{i + 1}", compress="RICE")


IMAGE = "mosaic/CP/V4.3/CP20161110/k4m_161111_064815_ooi_zd_ls9.fits.fz"


def unreadable_unit(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """A unit function that reads its first input as text (fails on a missing one)."""
    try:
        Path(unit.inputs[0]).read_bytes()
    except OSError as err:
        raise InputFileError(f"{unit.inputs[0]}: cannot read ({err.strerror})") from err
    return UnitOutput(())


def test_merge_calibs_planner_turns_a_truncated_image_into_a_recorded_failure(
    tmp_path: Path,
) -> None:
    """No exception: a unit failed in planning, science, naming the file; not retried blindly."""
    layout = ReleaseLayout(tmp_path)
    intact = "mosaic/CP/V4.3/CP20161109/k4m_161110_080300_ooi_zd_ls9.fits.fz"
    write_cp_image(layout.image(intact))
    write_cp_image(layout.image(IMAGE))
    path = layout.image(IMAGE)
    truncate_in_second_ccd(path)
    good, bad = plan_merge_calibs(layout, [intact, IMAGE])
    assert good.plan_error is None
    # the image (its CCD list and exposure header) and a PsfEx and a sky file for each CCD
    assert good.inputs[0] == str(layout.image(intact)) and len(good.inputs) == 5
    assert bad.plan_error is not None and str(path) in bad.plan_error
    assert bad.inputs == (str(path),)  # replacing the image changes the fingerprint

    result = execute_unit(merge_calibs_unit, layout, bad, "test")
    assert result.state == "failed" and result.failure_class == "science"
    assert result.message is not None and str(path) in result.message
    again = settle(layout, bad, "test").result
    assert again is not None and again.state == "failed"


def test_unreadable_brick_list_is_one_failed_unit_not_an_exception(tmp_path: Path) -> None:
    """A malformed brick list: one tractor unit keyed by the file, failed with its line named."""
    from lsdr.survey.pretractor.bricklist import read_brick_list

    layout = ReleaseLayout(tmp_path)
    layout.brick_list.write_text("1804p325\n../1804p325\n")
    names, bad = read_planned_list("tractor", layout.brick_list, lambda: read_brick_list(layout))
    assert names == []
    [unit] = bad
    assert unit.key == layout.brick_list.name
    result = execute_unit(unreadable_unit, layout, unit, "test")
    assert result.state == "failed" and result.failure_class == "science"
    assert result.message is not None and str(layout.brick_list) in result.message
    assert "line 2" in result.message


def test_tractor_planner_with_a_corrupt_ccd_table_fails_each_brick_naming_it(
    tmp_path: Path,
) -> None:
    """A survey-ccds table that is not FITS: every brick unit is failed in planning."""
    layout = ReleaseLayout(tmp_path)
    table = tmp_path / "survey-ccds-90prime-g.fits.gz"
    table.write_bytes(b"this is not a FITS table")
    units = plan_tractor(layout, ["1804p325", "1807p325"], TractorOptions())
    assert [u.key for u in units] == ["1804p325", "1807p325"]
    for unit in units:
        assert unit.plan_error is not None and str(table) in unit.plan_error
        assert str(table) in unit.inputs


def test_upstream_failures_come_from_sidecars_and_from_the_ledger(tmp_path: Path) -> None:
    """A failed sidecar, and a unit given up after lost workers (ledger only); not a done one."""
    settings = load_settings(tmp_path)
    layout = ReleaseLayout(tmp_path)
    (tmp_path / "ok.dat").write_bytes(b"fine")
    missing = tmp_path / "gone.dat"
    for key, source in (("a.fits.fz", missing), ("b.fits.fz", tmp_path / "ok.dat")):
        execute_unit(unreadable_unit, layout, Unit("zeropoints", key, (str(source),)), "test")
    ledger_for(settings).finish(
        "zeropoints",
        [UnitFinish("c.fits.fz", "failed", failure_class="infra", message="worker lost")],
    )
    found = upstream_failures(settings, "zeropoints", ["a.fits.fz", "b.fits.fz", "c.fits.fz"])
    assert set(found) == {"a.fits.fz", "c.fits.fz"}
    assert (
        found["a.fits.fz"].startswith("zeropoints failed: ") and str(missing) in found["a.fits.fz"]
    )
    assert found["c.fits.fz"] == "zeropoints failed: worker lost"


def test_post_tractor_bricks_leave_out_a_failed_brick_even_with_an_old_catalogue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Done with a catalogue: kept; failed with an old catalogue: left out, named; none: skipped."""
    from lsdr.survey.pretractor.bricklist import write_brick_list

    settings = load_settings(tmp_path)
    layout = ReleaseLayout(tmp_path)
    write_brick_list(layout, ["1804p325", "1807p325", "1801p325"])
    for brick in ("1804p325", "1807p325"):
        layout.tractor(brick).parent.mkdir(parents=True, exist_ok=True)
        layout.tractor(brick).write_bytes(b"catalogue")
    (tmp_path / "ok.dat").write_bytes(b"fine")
    for brick, source in (("1804p325", tmp_path / "ok.dat"), ("1807p325", tmp_path / "gone")):
        execute_unit(unreadable_unit, layout, Unit("tractor", brick, (str(source),)), "test")
    with caplog.at_level(logging.WARNING, logger="lsdr.flows"):
        names, left_out = release_bricks(settings, None, "sweeps")
    assert names == ["1804p325"]
    assert [key for key, _ in left_out] == ["1807p325"]
    assert left_out[0][1].startswith("tractor failed: ")
    assert "sweeps: 1 brick left out: 1807p325 (tractor failed: " in caplog.text


def test_release_summary_has_a_left_out_section(tmp_path: Path) -> None:
    """The release summary names each phase's left-out units and why."""
    layout = ReleaseLayout(tmp_path)
    results = [
        {"phase": "zeropoints", "counts": {"done": 19, "cached": 0, "failed": 1},
         "failed": [[IMAGE, "science", "x.fits.fz HDU 2: truncated"]]},
        {"phase": "merge", "counts": {"done": 1, "cached": 0, "failed": 0}, "failed": [],
         "left_out": [[IMAGE, "zeropoints failed: x.fits.fz HDU 2: truncated"]],
         "left_out_what": "image"},
    ]  # fmt: skip
    text = summary_markdown(layout, [PhaseResult.model_validate(r) for r in results])
    assert (
        f"- merge: 1 image left out: {IMAGE} (zeropoints failed: x.fits.fz HDU 2: truncated)"
        in (text)
    )


def test_a_list_that_reads_again_clears_its_failed_unit(tmp_path: Path) -> None:
    """Once the brick list is fixed, its failed unit (sidecar and ledger row) is gone."""
    from lsdr.flows.settings import ledger_for, settings_for
    from lsdr.survey.pretractor.bricklist import read_brick_list
    from lsdr.tasks.batch import run_batch_now
    from lsdr.tasks.sidecars import sidecar_path

    layout = ReleaseLayout(tmp_path)
    settings = settings_for(str(tmp_path), None)
    layout.brick_list.write_text("1804p325\n../1804p325\n")
    read = lambda: read_brick_list(layout)  # noqa: E731
    _, bad = read_planned_list("tractor", layout.brick_list, read, settings)
    ledger = ledger_for(settings)
    ledger.plan("tractor", [u.key for u in bad])
    run_batch_now(unreadable_unit, bad, str(tmp_path), ledger.url, "test")
    assert ledger.get("tractor", "bricks.txt").state == "failed"  # type: ignore[union-attr]
    layout.brick_list.write_text("1804p325\n")
    names, bad = read_planned_list("tractor", layout.brick_list, read, settings)
    assert (names, bad) == (["1804p325"], [])
    assert ledger.get("tractor", "bricks.txt") is None
    assert not sidecar_path(layout, "tractor", "bricks.txt").exists()
