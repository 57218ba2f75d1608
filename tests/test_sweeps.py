"""Sweeps: the declared columns, the boxes, and rows equal to the catalogue rows they came from."""

from __future__ import annotations

from pathlib import Path

import fitsio
import numpy as np
import pytest
from postprocess_fakes import write_fake_brick

from lsdr.survey.bricks import brick_by_name
from lsdr.survey.layout import ReleaseLayout
from lsdr.survey.sweeps import (
    SWEEP_DTYPE,
    SWEEP_MAIN_DTYPE,
    SweepBox,
    sweep_boxes,
    write_sweep,
)

# 1798p325 (RA 179.70..180.00) ends on the RA 180 box edge where 1801p325 starts;
# 1816p350 (Dec 34.875..35.125) straddles the Dec 35 edge.
BRICKS = ["1798p325", "1801p325", "1804p325", "1816p347", "1816p350"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """Fake catalogues (g, r, z) for the bricks, some straddling 5° box edges."""
    layout = ReleaseLayout(tmp_path_factory.mktemp("sweeps"))
    rng = np.random.default_rng(4)
    for brick in BRICKS:
        write_fake_brick(layout, brick, rng, n=400, nexp_bands=(), size=60)
    return layout


def test_sweep_dtype_is_legacypipes_declaration():
    """144 columns (DR10 griz, 25 light-curve epochs); the main file drops the 14 LC_ ones."""
    assert len(SWEEP_DTYPE.names) == 144
    assert SWEEP_DTYPE.names[:5] == ("RELEASE", "BRICKID", "BRICKNAME", "OBJID", "TYPE")
    assert SWEEP_DTYPE["MASKBITS"] == np.dtype(">i4")
    assert SWEEP_DTYPE["LC_MJD_W2"] == np.dtype((">f8", (25,)))
    assert SWEEP_DTYPE["DCHISQ"] == np.dtype((">f4", (5,)))
    assert SWEEP_DTYPE.names[-2:] == ("SERSIC", "SERSIC_IVAR")
    assert len(SWEEP_MAIN_DTYPE.names) == 130
    assert not [n for n in SWEEP_MAIN_DTYPE.names if n.startswith("LC_")]


def test_boxes_hold_every_brick_overlapping_them(release: ReleaseLayout):
    """5°×5° boxes; a brick on a box edge belongs to both boxes, a brick ending on one to one."""
    boxes = {(b.ra1, b.dec1): b.bricks for b in sweep_boxes(release, BRICKS)}
    assert boxes == {
        (175.0, 30.0): ("1798p325",),
        (180.0, 30.0): ("1801p325", "1804p325", "1816p347", "1816p350"),
        (180.0, 35.0): ("1816p350",),
    }
    names = [
        release.sweep("10.0", b.ra1, b.dec1, b.ra2, b.dec2).name
        for b in sweep_boxes(release, BRICKS)
    ]
    assert "sweep-180p030-185p035.fits" in names and "sweep-175p030-180p035.fits" in names


def _key(brickid: np.ndarray, objid: np.ndarray) -> np.ndarray:
    return brickid.astype(np.int64) * 1_000_000 + objid


def test_sweep_rows_equal_their_catalogue_rows(release: ReleaseLayout):
    """Every sweep value equals the catalogue's; only primary objects in the box, once each."""
    box = next(b for b in sweep_boxes(release, BRICKS) if (b.ra1, b.dec1) == (180.0, 30.0))
    result = write_sweep(release, box, "10.0")
    assert result.path is not None and result.bands == "g,r,z"
    with fitsio.FITS(result.path) as fits:
        sweep = fits["SWEEP"].read()
        header = fits[0].read_header()
    assert (header["RAMIN"], header["DECMAX"], header["BANDS"]) == (180.0, 35.0, "g,r,z")
    # dtypes: exactly the declaration (fitsio reads FITS strings back as str).
    declared = [(n, SWEEP_MAIN_DTYPE[n].str.replace("|S", "<U")) for n in SWEEP_MAIN_DTYPE.names]
    assert [(n, sweep.dtype[n].str) for n in sweep.dtype.names] == declared

    keys = _key(sweep["BRICKID"], sweep["OBJID"])
    assert len(np.unique(keys)) == len(sweep)
    expected_total = 0
    for brick in box.bricks:
        cat = fitsio.read(str(release.tractor(brick)), ext="CATALOG")
        sel = (
            cat["brick_primary"]
            & (cat["ra"] >= box.ra1)
            & (cat["ra"] < box.ra2)
            & (cat["dec"] >= box.dec1)
            & (cat["dec"] < box.dec2)
        )
        expected_total += int(sel.sum())
        rows = sweep[sweep["BRICKNAME"] == brick]
        assert len(rows) == sel.sum()
        src = cat[sel]
        for name in SWEEP_MAIN_DTYPE.names:
            if name.lower() in cat.dtype.names:
                np.testing.assert_array_equal(rows[name], src[name.lower()], err_msg=name)
    assert len(sweep) == result.rows == expected_total
    assert np.all(sweep["FLUX_I"] == 0) and np.all(sweep["MW_TRANSMISSION_I"] == 1)
    assert np.all(sweep["RA"] >= 180) and np.all(sweep["DEC"] < 35)


def test_straddling_brick_splits_between_boxes(release: ReleaseLayout):
    """1816p350's primary objects go to the box below or above Dec 35, none lost or doubled."""
    cat = fitsio.read(str(release.tractor("1816p350")), ext="CATALOG")
    primary = int(cat["brick_primary"].sum())
    counts = []
    for box in sweep_boxes(release, ["1816p350"]):
        result = write_sweep(release, box, "10.0")
        assert result.path is not None
        sweep = fitsio.read(result.path, ext="SWEEP")
        counts.append(int(np.sum(sweep["BRICKNAME"] == "1816p350")))
    assert len(counts) == 2 and min(counts) > 0 and sum(counts) == primary


def test_missing_catalogue_and_empty_box(release: ReleaseLayout):
    """A brick without catalogue is counted; a box without primary objects writes no file."""
    b = brick_by_name("1801p325")
    box = SweepBox(180.0, 30.0, 185.0, 35.0, ("1801p325", "1801p327"))
    result = write_sweep(release, box, "9.9")
    assert (result.bricks_read, result.bricks_missing) == (1, 1)
    assert result.rows > 0
    empty = SweepBox(175.0, 30.0, 180.0, 35.0, ("1801p325",))
    result = write_sweep(release, empty, "9.9")
    assert result.path is None and result.rows == 0
    assert not release.sweep("9.9", 175.0, 30.0, 180.0, 35.0).exists()
    assert b.ra1 == 180.0  # the reason the box below is empty
    assert not list(Path(release.sweep_dir("9.9")).glob("tmp-*"))


def test_rerun_rewrites_the_same_table(release: ReleaseLayout):
    """Writing a box twice gives the same rows (a unit is idempotent)."""
    box = sweep_boxes(release, ["1804p325"])[0]
    first = fitsio.read(write_sweep(release, box, "8.0").path or "", ext="SWEEP")
    second = fitsio.read(write_sweep(release, box, "8.0").path or "", ext="SWEEP")
    assert np.array_equal(first, second)
