"""The release chain: in-place updates keep a unit done; the summary; no publish with failures."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import fitsio
import pytest

from lsdr.flows.release import summary_markdown
from lsdr.flows.report import PhaseResult
from lsdr.flows.settings import ledger_for, settings_for
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.tasks.execute import execute_unit
from lsdr.tasks.sidecars import amend_outputs, done_result
from lsdr.tasks.unit import Unit, UnitOutput


def write_original(layout: ReleaseLayout, unit: Unit) -> UnitOutput:
    """A unit that writes one product (as runbrick writes a brick's maskbits)."""
    product = layout.root / "maskbits.fits"
    product.write_bytes(b"original")
    return UnitOutput((product,))


def test_amended_outputs_keep_the_unit_done(tmp_path: Path) -> None:
    """A later phase rewrites a done unit's output: done again only after the re-stamp."""
    layout = ReleaseLayout(tmp_path)
    product = tmp_path / "maskbits.fits"
    unit = Unit("tractor", "1804p325")
    assert execute_unit(write_original, layout, unit, "test").state == "done"
    assert done_result(layout, unit, "test") is not None
    product.write_bytes(b"updated by brightneighbors")
    assert done_result(layout, unit, "test") is None
    assert amend_outputs(layout, "tractor", "1804p325", [product])
    assert done_result(layout, unit, "test") is not None
    assert not amend_outputs(layout, "tractor", "1801p325", [product])  # no sidecar: nothing


def test_release_summary_lists_phases_failures_and_products(tmp_path: Path) -> None:
    """Units per phase, each failure with its class, the products that exist, the plots."""
    layout = ReleaseLayout(tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "depth-histogram.png").write_bytes(b"png")
    layout.brick_summary.write_bytes(b"x")
    results = [
        {"phase": "tractor", "counts": {"done": 14, "cached": 0, "failed": 1},
         "failed": [["1801p320", "science", "truncated image c4d.fits.fz"]]},
        {"phase": "publish", "counts": {"done": 0, "cached": 0, "failed": 0}, "failed": [],
         "skipped": "failed units in tractor"},
    ]  # fmt: skip
    text = summary_markdown(layout, [PhaseResult.model_validate(r) for r in results])
    assert "| tractor | 14 | 0 | 1 |" in text
    assert "- tractor 1801p320 [science]: truncated image c4d.fits.fz" in text
    assert "- publish not run: failed units in tractor" in text
    assert f"- brick summary: `{layout.brick_summary}`" in text
    assert "depth-histogram.png" in text
    assert "sweeps" not in text  # no sweep directory: not listed as a product


# -- the publish gate on a real release ---------------------------------------------------------
def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this venv's ``lsdr`` (the session's Prefect server via the environment)."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False)


def simulate_two_bricks(root: Path) -> None:
    """The simulated sky of the two border bricks (1801p325, 1804p325): images, Gaia, inputs.

    One pass per band; 8000 stars/deg² so that each CCD of this thin strip keeps enough Gaia
    calibrators for the ``ccdnmatch`` cut (as ``runbrick_survey``).
    """
    from border_release import REGION

    from lsdr.survey.simulate.config import PassSpec, SimulationConfig
    from lsdr.survey.simulate.simulator import simulate_survey

    passes = (PassSpec("90prime", "g", 1), PassSpec("90prime", "r", 1), PassSpec("mosaic", "z", 1))
    config = SimulationConfig(
        region=REGION, passes=passes, star_density=8000.0, reprocessed=0, workers=2
    )
    simulate_survey(root, config)


def sha256_files(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (relative POSIX path) with its SHA-256."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_release_with_a_failed_unit_is_not_published_until_it_is_fixed(
    prefect_api: str, tmp_path: Path
) -> None:
    """``lsdr run release --destination D`` with one unreadable input publishes nothing, says so.

    The whole chain runs on a real simulated survey (pre-tractor, two bricks of the lite
    runbrick, post-processing, package); one external catalogue is cut short, so its match unit
    fails (science) while every other unit completes.  Nothing reaches the destination and the
    console and the release summary say why.  With the file restored the same command reruns
    that unit and publishes.
    """
    from border_release import EAST, REGION, WEST

    root = tmp_path / "rel"
    simulate_two_bricks(root)
    layout = ReleaseLayout(root)
    catalogue = root / "external-input" / "dr12" / "boss" / "qso" / "DR12Q" / "DR12Q.fits"
    good = catalogue.read_bytes()
    catalogue.write_bytes(good[: len(good) // 2])
    dest = tmp_path / "published"
    region = f"{REGION.ra_min},{REGION.ra_max},{REGION.dec_min},{REGION.dec_max}"
    command = ("run", "release", "--release-dir", str(root), "--region", region)
    command += ("-W", "600", "-H", "600", "--pixscale", "1.58", "--workers", "2")
    command += ("--destination", str(dest))

    first = lsdr(*command)
    output = first.stdout[-3000:] + first.stderr[-3000:]
    assert first.returncode == 1, output
    assert not dest.exists(), f"published despite a failed unit: {sorted(dest.rglob('*'))[:5]}"
    assert "release: not published: failed units in external" in first.stderr, output
    lines = first.stdout.splitlines()
    [failed] = [line for line in lines if "FAILED" in line]
    assert failed.startswith(f"  FAILED dr12Q [science]: {catalogue}: "), failed
    # Everything but that unit was made: the bricks, the other matches, the packaging.
    assert "tractor: 2 done, 0 already done, 0 failed" in lines, first.stdout
    assert "external: 4 done, 0 already done, 1 failed" in lines, first.stdout
    assert any(line.startswith("package: ") and line.endswith(" 0 failed") for line in lines)
    assert layout.brick_list.read_text() == f"{WEST}\n{EAST}\n"
    for brick in (WEST, EAST):
        assert len(fitsio.read(str(layout.tractor(brick)), ext=1)) > 0, brick
    summary = (layout.state_dir / "release-summary.md").read_text()
    assert "- publish not run: failed units in external" in summary
    assert f"- external dr12Q [science]: {catalogue}: " in summary
    ledger = ledger_for(settings_for(str(root), None))
    assert [(r.key, r.failure_class) for r in ledger.failed()] == [("dr12Q", "science")]
    assert ledger.get("publish", str(dest)) is None, "the publish unit was started"

    catalogue.write_bytes(good)
    second = lsdr(*command)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    lines = second.stdout.splitlines()
    assert "tractor: 0 done, 2 already done, 0 failed" in lines, second.stdout
    assert "external: 1 done, 4 already done, 0 failed" in lines, second.stdout
    assert "publish: 1 done, 0 already done, 0 failed" in lines, second.stdout
    published = sha256_files(dest)
    for brick in (WEST, EAST):
        name = layout.tractor(brick).relative_to(root).as_posix()
        assert published[name] == hashlib.sha256(layout.tractor(brick).read_bytes()).hexdigest()
    assert "external/survey-dr10-dr12Q.fits" in published
    assert not any(name.startswith(("state/", "images/")) for name in published)
