"""``lsdr demo`` through the real CLI: simulate and the whole release; a rerun does nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lsdr.survey.layout import ReleaseLayout
from lsdr.survey.runbrick.writecat import read_catalog


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv (the session's Prefect server via the env)."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=3000, check=False)


PRODUCT_DIRS = ("tractor", "tractor-i", "coadd", "metrics", "sweep", "external", "plots", "logs")
POST_PHASES = ("brightneighbors", "depth", "summary", "sweeps", "external", "package")


def product_mtimes(root: Path) -> dict[str, int]:
    """Every product of the release (per-brick, post-processing, top level) with its mtime."""
    files = [p for top in PRODUCT_DIRS for p in (root / top).rglob("*") if p.is_file()]
    files += [p for p in root.glob("*") if p.is_file()]
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in files}


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_runs_every_brick_and_a_rerun_recomputes_nothing(
    prefect_api: str, tmp_path: Path
) -> None:
    """The whole release on the 15 bricks, summary and plots printed; a rerun does nothing.

    Each brick has a catalogue and a colour image; every post-tractor product exists.
    """
    out = tmp_path / "demo"
    first = lsdr("demo", "--out", str(out))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    layout = ReleaseLayout(out)
    bricks = layout.brick_list.read_text().split()
    assert len(bricks) == 15
    assert "tractor: 15 done, 0 already done, 0 failed" in first.stdout
    for brick in bricks:
        catalogue = read_catalog(layout.tractor(brick))
        assert len(catalogue) > 50, f"{brick}: only {len(catalogue)} sources"
        assert layout.coadd_jpeg(brick, "image").stat().st_size > 0
        assert f"{brick}  {layout.tractor(brick)}" in first.stdout
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
    before = product_mtimes(out)

    again = lsdr("demo", "--out", str(out))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "tractor: 0 done, 15 already done, 0 failed" in again.stdout
    for phase in POST_PHASES:
        assert f"{phase}: 0 done" in again.stdout, phase
    assert product_mtimes(out) == before

    status = lsdr("status", "--release-dir", str(out))
    assert status.returncode == 0
    for brick in bricks:
        assert brick in status.stdout
