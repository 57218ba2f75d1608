"""The brick list: bricks touched by surviving CCDs, in a region, written clean."""

from __future__ import annotations

from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import BrickNameError, InputFileError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.bricklist import (
    bricks_for_ccds,
    ccd_footprints,
    read_brick_list,
    write_brick_list,
)

TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"


def real_ccds(case: str) -> np.ndarray:
    """A real legacypipe test-case CCD table."""
    return fitsio.read(str(TEST_DATA / case / "survey-ccds-1.fits.gz"))


@pytest.mark.parametrize("case", ["testcase3", "testcase6", "mzlsbass2"])
def test_without_region_equals_queue_calibs_rule_over_a_covering_box(case: str):
    """No region = the touching rule applied to every brick of a box holding all the CCDs."""
    ccds = real_ccds(case)
    ra, dec, cra, cdec = ccd_footprints(ccds)
    box = grid.RaDecBox(ra.min() - 1.5, ra.max() + 1.5, dec.min() - 1.5, dec.max() + 1.5)
    expected = grid.bricks_touching_ccds(grid.bricks_in_region(box), ra, dec, cra, cdec)
    got = bricks_for_ccds(ccds, None)
    assert set(got) == {b.brickname for b in expected}
    assert got == sorted(got, key=lambda n: (grid.brick_by_name(n).ra, grid.brick_by_name(n).dec))
    test_brick = {"testcase3": "2447p120", "testcase6": "1102p240", "mzlsbass2": "1773p595"}[case]
    assert test_brick in got


def test_region_and_cuts_limit_the_list():
    """Only bricks centred in the region; CCDs with ccd_cuts != 0 touch nothing."""
    ccds = real_ccds("testcase6")
    everything = bricks_for_ccds(ccds, None)
    target = grid.brick_by_name("1102p240")
    box = grid.RaDecBox(target.ra1, target.ra2, target.dec1, target.dec2)
    assert bricks_for_ccds(ccds, box) == ["1102p240"]
    cut = ccds.copy()
    cut["ccd_cuts"] = 0x10
    assert bricks_for_ccds(cut, None) == []
    assert len(everything) > 1


@pytest.mark.slow
def test_many_ccds_give_every_brick_in_a_few_vectorised_passes(monkeypatch: pytest.MonkeyPatch):
    """10^5 CCD rows: the right list, from whole-table footprints and one test per chunk.

    The CCDs (DECam-sized, 88 deep on average) cover a 10°×5° box completely, so the truth is
    every brick centred in it.  The footprints are computed once for the table and the
    touching test runs once per chunk of rows (never per CCD); smaller chunks give the same
    list.  How long it takes is bench/bench_bricks.py's business.
    """
    from lsdr.survey.pretractor import bricklist

    base = real_ccds("testcase3")
    rng = np.random.default_rng(0)
    rows = np.resize(base, 100_000)
    rows["crval1"] = rng.uniform(150, 160, len(rows))
    rows["crval2"] = rng.uniform(0, 5, len(rows))
    rows["width"], rows["height"] = 2046, 4094
    rows["crpix1"], rows["crpix2"] = 1023.5, 2047.5
    rows["ccd_cuts"] = 0
    box = grid.RaDecBox(150, 160, 0, 5)
    expected = [
        b.brickname for b in sorted(grid.bricks_in_region(box), key=lambda b: (b.ra, b.dec))
    ]
    assert len(expected) == 840  # 40 bricks of 0.25° in RA × 21 Dec rows (0, 0.25, …, 5)

    footprints: list[int] = []
    tests: list[int] = []
    real_footprints, real_test = bricklist.ccd_footprints, grid.bricks_touching_ccds

    def counted_footprints(ccds: np.ndarray) -> tuple[np.ndarray, ...]:
        footprints.append(len(ccds))
        return real_footprints(ccds)

    def counted_test(candidates, ra, *args):
        tests.append(len(ra))
        return real_test(candidates, ra, *args)

    monkeypatch.setattr(bricklist, "ccd_footprints", counted_footprints)
    monkeypatch.setattr(grid, "bricks_touching_ccds", counted_test)
    assert bricks_for_ccds(rows, box) == expected
    assert footprints == [100_000] and tests == [100_000]

    footprints.clear()
    tests.clear()
    monkeypatch.setattr(bricklist, "CHUNK", 30_000)
    assert bricks_for_ccds(rows, box) == expected
    assert footprints == [100_000] and tests == [30_000, 30_000, 30_000, 10_000]


def test_brick_list_file(tmp_path: Path):
    """Names only, one a line, validated on write and on read."""
    layout = ReleaseLayout(tmp_path)
    path = write_brick_list(layout, ["1102p240", "2447p120"])
    assert path.read_text() == "1102p240\n2447p120\n"
    assert read_brick_list(layout) == ["1102p240", "2447p120"]
    with pytest.raises(BrickNameError):
        write_brick_list(layout, ["../etc"])
    path.write_text("1102p240\n12 bricks touched\n")
    with pytest.raises(InputFileError, match="line 2"):
        read_brick_list(layout)
