"""The post-tractor phases through ``lsdr run``: products, no-op rerun, a corrupted coadd, publish.

Runs on a copy of the two bricks' real lite-runbrick products (``border_release``) with the
session's Prefect server, as a release team would after ``lsdr run tractor``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest
from border_release import EAST, WEST

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.bricklist import write_brick_list

PHASES = ("brightneighbors", "depth", "summary", "sweeps", "external", "package")


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv; the session's Prefect server via the env."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture
def release(border_release: ReleaseLayout, tmp_path: Path) -> ReleaseLayout:
    """A writable copy of the two bricks' release, with its brick list."""
    root = tmp_path / "rel"
    shutil.copytree(border_release.root, root, symlinks=True)
    layout = ReleaseLayout(root)
    write_brick_list(layout, [WEST, EAST])
    return layout


def run(phase: str, layout: ReleaseLayout, *extra: str) -> subprocess.CompletedProcess[str]:
    """``lsdr run <phase> --release-dir R`` without progress bars."""
    return lsdr("run", phase, "--release-dir", str(layout.root), *extra)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_post_tractor_phases_rerun_corruption_and_publish(
    prefect_api: str, release: ReleaseLayout, tmp_path: Path
) -> None:
    """Every phase writes its products; a rerun does nothing; a flipped byte fails one brick."""
    for phase in PHASES:
        result = run(phase, release)
        assert result.returncode == 0, phase + result.stdout[-2000:] + result.stderr[-3000:]
        assert f"{phase}: 0 done" not in result.stdout and " 0 failed" in result.stdout, phase
    assert release.brick_summary.exists() and release.depth_histogram.exists()
    summary = fitsio.read(str(release.brick_summary))
    for brick in (WEST, EAST):  # recomputed here from the catalogue and the nexp coadds
        [row] = summary[summary["brickname"] == brick]
        cat = fitsio.read(str(release.tractor(brick)), ext=1)
        primary = cat[cat["brick_primary"]]
        kinds = np.char.strip(primary["type"].astype(str))
        assert row["nobjs"] == len(primary) > 0
        assert (row["npsf"], row["nrex"]) == ((kinds == "PSF").sum(), (kinds == "REX").sum())
        unique = (fitsio.read(str(release.coadd_maskbits(brick)), ext=1) & 1) == 0  # NPRIMARY
        for band in ("g", "r", "z"):
            nexp = fitsio.read(str(release.coadd(brick, "nexp", band)), ext=1)
            assert row[f"nexp_{band}"] == int(np.median(nexp[unique])), (brick, band)
    [sweep_file] = release.sweep_dir("10.0").glob("sweep-*.fits")
    sweep = fitsio.read(str(sweep_file), ext="SWEEP")
    for brick in (WEST, EAST):  # each row equals its runbrick catalogue row, primary only
        cat = fitsio.read(str(release.tractor(brick)), ext=1)
        rows = sweep[sweep["BRICKNAME"] == brick]
        src = cat[cat["brick_primary"]]
        assert 0 < len(rows) == len(src)
        order = np.argsort(rows["OBJID"])
        for name in sweep.dtype.names:
            if name.lower() in cat.dtype.names:
                np.testing.assert_array_equal(rows[name][order], src[name.lower()], err_msg=name)
    assert len(list(release.external_dir.glob("survey-*.fits"))) == 5
    assert release.log_tarball("180").exists()
    top = release.directory_checksums(release.root)
    assert top.exists()

    for phase in PHASES:
        again = run(phase, release)
        assert again.returncode == 0 and f"{phase}: 0 done" in again.stdout, again.stdout

    # One byte flipped in a coadd of WEST: that brick fails verification, naming the file; the
    # other is verified and its directory's checksum file is still written.
    image = release.coadd(WEST, "image", "r")
    saved = image.read_bytes()
    data = bytearray(saved)
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    bad = run("package", release)
    assert bad.returncode == 1, bad.stdout[-2000:]
    failed = [line for line in bad.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and WEST in failed[0] and image.name in failed[0], bad.stdout
    assert release.directory_checksums(release.coadd_dir(EAST)).exists()
    image.write_bytes(saved)
    fixed = run("package", release)
    assert fixed.returncode == 0, fixed.stdout[-2000:]

    # Publish: a dry run copies nothing; the real one copies products, not images/ or state/.
    dest = tmp_path / "published"
    dry = run("publish", release, "--destination", str(dest), "--dry-run")
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    assert not dest.exists() or not any(dest.iterdir())
    real = run("publish", release, "--destination", str(dest))
    assert real.returncode == 0, real.stdout[-2000:] + real.stderr[-2000:]
    tractor = release.tractor(EAST).relative_to(release.root)
    assert (dest / tractor).read_bytes() == release.tractor(EAST).read_bytes()
    assert (dest / top.name).exists()
    assert not (dest / "images").exists() and not (dest / "state").exists()
