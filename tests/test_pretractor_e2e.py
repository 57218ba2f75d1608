"""``lsdr run pretractor`` on the synthetic 15-brick survey, end to end, through the real CLI.

One survey, five acts in order: the first run makes every product and recovers the truth;
a second run recomputes nothing; touching one image (same bytes) changes nothing, and editing
one reprocesses that image and the merges;
a truncated image fails alone, with its file and HDU named, and the exit code says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.flows.settings import ledger_for
from lsdr.infra.settings import load_settings
from lsdr.survey.core.bricks import RaDecBox
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

pytestmark = pytest.mark.slow

REGION = RaDecBox(180.0, 181.0, 32.0, 33.0)


def lsdr(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lsdr`` command of this venv; the session's Prefect server via the env."""
    command = [sys.executable, "-m", "lsdr", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)


@pytest.fixture(scope="module")
def release(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cookbook's worked example, simulated, after one ``lsdr run pretractor``."""
    root = tmp_path_factory.mktemp("pretractor") / "release"
    simulate_survey(root, SimulationConfig(region=REGION, workers=2))
    result = lsdr("run", "pretractor", "--release-dir", str(root), "--region", "cookbook")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return root


def products(root: Path) -> dict[str, int]:
    """Every product file (not state) with its mtime."""
    skip = {"state", "images", "gaia", "truth"}
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] not in skip
    }


def attempts(root: Path, phase: str) -> dict[str, int]:
    """Starts of each unit of a phase, from the ledger."""
    ledger = ledger_for(load_settings(root))
    return {r.key: r.attempts for r in ledger.rows(phase)}


def test_first_run_writes_every_product(release: Path):
    """Image list, zeropoint tables, calibs, merged calibs, CCD tables, kd-tree, brick list."""
    layout = ReleaseLayout(release)
    images = layout.image_list.read_text().split()
    assert len(images) == 20  # 21 exposures written, one superseded duplicate dropped
    for image in images:
        assert layout.zpt_annotated(image).exists() and layout.zpt_photom(image).exists()
        assert layout.psfex_merged(image).exists() and layout.sky_merged(image).exists()
    for camera, band in (("90prime", "g"), ("90prime", "r"), ("mosaic", "z")):
        assert layout.survey_ccds(camera, band).exists()
        assert layout.ccds_annotated(camera, band).exists()
    assert layout.survey_ccds_kd.exists()
    assert len(layout.brick_list.read_text().split()) == 15


def test_zeropoints_and_fwhm_match_the_truth(release: Path):
    """Recovered ccdzpt: median offset < 0.01 mag, scatter < 0.02 mag; FWHM within 5 %."""
    layout = ReleaseLayout(release)
    truth = fitsio.read(layout.truth_ccds)
    true = {(int(t["expnum"]), t["ccdname"].strip()): t for t in truth if not t["superseded"]}
    rows = np.concatenate(
        [fitsio.read(p) for p in sorted(release.glob("ccds-annotated-*.fits.gz"))]
    )
    dz, df = [], []
    for r in rows:
        t = true[(int(r["expnum"]), r["ccdname"].strip())]
        if r["ccdnphotom"] > 0:
            dz.append(r["ccdzpt"] - t["ccdzpt"])
        df.append(r["fwhm"] / t["fwhm"] - 1.0)
    dz_arr, df_arr = np.array(dz), np.array(df)
    assert len(dz_arr) >= 0.9 * len(rows)
    assert abs(np.median(dz_arr)) < 0.01
    assert np.std(dz_arr) < 0.02
    assert np.max(np.abs(df_arr)) < 0.05


def test_brick_list_equals_the_bricks_the_ccds_touch(release: Path):
    """The brick list: the region's bricks touched by the CCDs that pass the cuts.

    Checked with the independent astropy projection of tests/geometry.py on the corners of the
    ccds-annotated rows with ccd_cuts == 0.
    """
    from geometry import independent_touching

    from lsdr.survey.core import bricks as grid

    rows = np.concatenate(
        [fitsio.read(p) for p in sorted(release.glob("ccds-annotated-*.fits.gz"))]
    )
    kept = rows[rows["ccd_cuts"] == 0]
    assert 0 < len(kept) <= len(rows)
    corners_ra = np.stack([kept[f"ra{i}"] for i in range(4)], axis=1)
    corners_dec = np.stack([kept[f"dec{i}"] for i in range(4)], axis=1)
    touched = {brickid for _, brickid in independent_touching(corners_ra, corners_dec)}
    in_region = {b.brickid: b.brickname for b in grid.bricks_in_region(REGION)}
    expected = sorted(in_region[i] for i in touched if i in in_region)
    assert sorted(ReleaseLayout(release).brick_list.read_text().split()) == expected


def test_second_run_recomputes_nothing(release: Path):
    """Nothing changed: every unit found done (ledger starts unchanged, no file rewritten)."""
    before_files = products(release)
    before = {p: attempts(release, p) for p in ("zeropoints", "merge", "kdtree", "bricks")}
    result = lsdr("run", "pretractor", "--release-dir", str(release), "--region", "cookbook")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "zeropoints: 0 done, 20 already done, 0 failed" in result.stdout
    assert {p: attempts(release, p) for p in before} == before
    assert products(release) == before_files


def test_touching_one_image_changes_nothing(release: Path):
    """A touched image with the same bytes: every unit is found done, no product is rewritten."""
    layout = ReleaseLayout(release)
    path = layout.image(layout.image_list.read_text().split()[3])
    before_files = products(release)
    before = attempts(release, "zeropoints")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    result = lsdr("run", "pretractor", "--release-dir", str(release), "--region", "cookbook")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "zeropoints: 0 done, 20 already done, 0 failed" in result.stdout
    assert attempts(release, "zeropoints") == before
    assert products(release) == before_files


def test_editing_one_image_reprocesses_it_and_the_merges(release: Path):
    """New bytes in one image (a header card): its zeropoints and merged calibs rerun.

    Its per-CCD calibs exist and are not remade; nothing outside that image's products and the
    merged tables changes.
    """
    layout = ReleaseLayout(release)
    image = layout.image_list.read_text().split()[3]
    before_files = products(release)
    before = attempts(release, "zeropoints")
    with fitsio.FITS(str(layout.image(image)), "rw") as f:
        f[0].write_key("LSDRNOTE", "an edit for the rerun test")
    result = lsdr("run", "pretractor", "--release-dir", str(release), "--region", "cookbook")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "zeropoints: 1 done, 19 already done, 0 failed" in result.stdout
    assert "merge-calibs: 1 done, 19 already done, 0 failed" in result.stdout
    after = attempts(release, "zeropoints")
    assert {k for k in after if after[k] != before[k]} == {image}
    changed = {p for p, t in products(release).items() if before_files.get(p) != t}
    mine = {
        str(p.relative_to(release))
        for p in (
            layout.zpt_annotated(image),
            layout.zpt_photom(image),
            layout.psfex_merged(image),
            layout.sky_merged(image),
        )
    }
    assert {str(layout.zpt_annotated(image).relative_to(release))} <= changed
    assert not any(p.startswith(("calib/psfex-single", "calib/sky-single")) for p in changed)
    others = changed - mine
    assert all(p.startswith(("survey-ccds-", "ccds-annotated-", "bricks.txt")) for p in others), (
        others
    )


def test_truncated_image_fails_alone_with_file_and_hdu(release: Path, tmp_path: Path):
    """A truncated .fits.fz: that image is failed/science naming file and HDU; exit code 1."""
    layout = ReleaseLayout(release)
    image = layout.image_list.read_text().split()[5]
    path = layout.image(image)
    shutil.copy2(path, tmp_path / "saved.fits.fz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        result = lsdr("run", "zeropoints", "--release-dir", str(release))
    finally:
        shutil.copy2(tmp_path / "saved.fits.fz", path)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "zeropoints: 0 done, 19 already done, 1 failed" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("FAILED"))
    assert image in line and "[science]" in line and path.name in line and "HDU" in line
    [failed] = ledger_for(load_settings(release)).failed("zeropoints")
    assert failed.key == image and failed.failure_class == "science"


def test_tractor_phase_on_one_brick_and_rerun(release: Path):
    """`lsdr run tractor` (a 400² cut of one brick): catalogue, coadds, checksums; rerun skips."""
    from lsdr.survey.runbrick.writecat import read_catalog

    layout = ReleaseLayout(release)
    args = ["run", "tractor", "--release-dir", str(release), "--brick", "1804p325"]
    result = lsdr(*args, "-W", "400", "-H", "400")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "tractor: 1 done" in result.stdout
    cat = read_catalog(layout.tractor("1804p325"))
    types = {t.decode() if isinstance(t, bytes) else str(t) for t in np.unique(cat["type"])}
    assert len(cat) >= 3 and types <= {"PSF", "REX", "EXP", "DEV", "SER"}
    # The outliers stage removes the unflagged cosmic rays: every source is a simulated object.
    truth = fitsio.read(str(layout.truth_catalog), columns=["ra", "dec"])
    cosd = np.cos(np.radians(cat["dec"]))[:, None]
    dra = (cat["ra"][:, None] - truth["ra"][None, :]) * cosd
    sep = np.hypot(dra, cat["dec"][:, None] - truth["dec"][None, :]).min(axis=1) * 3600
    assert (sep < 1.0).all(), sep
    assert layout.metrics("1804p325", "outlier-mask").exists()
    for band in ("g", "r", "z"):
        assert layout.coadd("1804p325", "image", band).exists()
    check = subprocess.run(
        ["sha256sum", "-c", str(layout.brick_checksums("1804p325").relative_to(release))],
        cwd=release,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert not layout.checkpoint("1804p325").exists()  # removed once the brick is done
    again = lsdr(*args, "-W", "400", "-H", "400")
    assert "tractor: 0 done, 1 already done, 0 failed" in again.stdout


def test_brick_past_its_fit_budget_reruns_with_bail_out(release: Path):
    """A brick out of fitting time saves its checkpoint, then reruns with --bail-out."""
    import fitsio as fio

    from lsdr.survey.runbrick import tractorschema as ts

    layout = ReleaseLayout(release)
    brick = "1804p322"
    result = lsdr(
        "run", "tractor", "--release-dir", str(release), "--brick", brick,
        "-W", "500", "-H", "500", "--fit-budget", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "tractor: 1 done" in result.stdout
    assert "fit budget of 0 s spent" in result.stderr and "bail_out=True" in result.stderr
    row = ledger_for(load_settings(release)).get("tractor", brick)
    assert row is not None and row.state == "done" and row.attempts == 2
    mask = fio.read(str(layout.coadd_maskbits(brick)))
    assert np.any(mask & ts.maskbits(("g", "r", "z"))["BAILOUT"])
