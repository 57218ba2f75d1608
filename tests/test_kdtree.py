"""The unified kd-tree CCD file: its layout, its trees, and the real legacypipe reading it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest
from test_ccdtables import annotated_from_truth, run_probe

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey import bricks as grid
from lsdr.survey.bricks import write_survey_bricks
from lsdr.survey.ccdtables import merge_ccd_tables, read_survey_ccds
from lsdr.survey.errors import SurveyError
from lsdr.survey.kdtree import SYSTEM_PYTHON, read_ccds_kdtree, write_ccds_kdtree
from lsdr.survey.layout import ReleaseLayout
from lsdr.survey.simulate import PassSpec, SimulationConfig, simulate_survey

TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"

SEARCH = """
import sys, json, numpy as np
from astrometry.libkd.spherematch import tree_open, tree_search_radec
kd = tree_open(sys.argv[1], "ccds")
ek = tree_open(sys.argv[1], "expnum")
cone = tree_search_radec(kd, float(sys.argv[2]), float(sys.argv[3]), 1.0)
out = {"cone": sorted(int(i) for i in cone),
       "expnum": sorted(int(i) for i in ek.search(np.array([float(sys.argv[4])]), 0.5, 0, 0))}
print(json.dumps(out))
"""

pytestmark = pytest.mark.skipif(
    subprocess.run([str(SYSTEM_PYTHON), "-c", "import astrometry.libkd.spherematch"],
                   capture_output=True, check=False).returncode != 0,
    reason="Debian's python3-astrometry (libkd) is not installed",
)  # fmt: skip


def test_layout_matches_legacypipe_kd_files(tmp_path: Path):
    """HDU 1 is the CCD table, then the ccds tree's HDUs, then the expnum tree's, as in DR files."""
    src = TEST_DATA / "testcase3" / "survey-ccds-1.fits.gz"
    out = write_ccds_kdtree(src, tmp_path / "survey-ccds-dr10.kd.fits")
    with (
        fitsio.FITS(str(out)) as mine,
        fitsio.FITS(str(TEST_DATA / "testcase9" / "survey-ccds-1.kd.fits")) as real,
    ):

        def kinds(f: fitsio.FITS) -> list[str]:
            return [
                h.get_colnames()[0].rsplit("_", 1)[-1] if i > 1 else str(i)
                for i, h in enumerate(f)
                if i
            ]

        assert kinds(mine)[0] == kinds(real)[0] == "1"
        assert [c for c in kinds(mine) if c in ("ccds", "expnum")] == ["ccds"] * 5 + ["expnum"] * 6
        assert mine[1].get_colnames() == list(fitsio.read(str(src)).dtype.names)
    assert np.array_equal(read_ccds_kdtree(out), fitsio.read(str(src)))


def test_trees_find_the_table_rows(tmp_path: Path):
    """A 1° cone and an expnum search on the written trees return the right HDU-1 rows."""
    rng = np.random.default_rng(3)
    rows = fitsio.read(str(TEST_DATA / "testcase3" / "survey-ccds-1.fits.gz"))
    rows = np.tile(rows, 40)[:300]
    rows["ra"] = rng.uniform(10, 14, len(rows))
    rows["dec"] = rng.uniform(-2, 2, len(rows))
    rows["expnum"] = rng.integers(1, 30, len(rows))
    rows["ccd_cuts"][::7] = 0x10
    out = write_ccds_kdtree(rows, tmp_path / "t.kd.fits")
    table = read_ccds_kdtree(out)
    assert len(table) == np.count_nonzero(rows["ccd_cuts"] == 0)
    done = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", SEARCH, str(out), "12.0", "0.5", str(int(table["expnum"][0]))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    got = json.loads(done.stdout)
    r, d = np.radians(table["ra"]), np.radians(table["dec"])
    cosd = np.sin(d) * np.sin(np.radians(0.5)) + np.cos(d) * np.cos(np.radians(0.5)) * np.cos(
        r - np.radians(12.0)
    )
    near = np.flatnonzero(np.degrees(np.arccos(np.clip(cosd, -1, 1))) < 1.0)
    assert got["cone"] == sorted(near.tolist()) and len(near) > 5
    assert got["expnum"] == sorted(np.flatnonzero(table["expnum"] == table["expnum"][0]).tolist())


def test_no_rows_to_index_is_an_error(tmp_path: Path):
    """A table whose CCDs are all cut has nothing to index: SurveyError, no file."""
    rows = fitsio.read(str(TEST_DATA / "testcase3" / "survey-ccds-1.fits.gz"))
    rows["ccd_cuts"] = 1
    with pytest.raises(SurveyError, match="no CCDs"):
        write_ccds_kdtree(rows, tmp_path / "x.kd.fits")
    assert not (tmp_path / "x.kd.fits").exists()


@pytest.mark.legacypipe
@pytest.mark.slow
def test_real_legacypipe_finds_the_same_ccds_with_kd_and_fits_gz(
    legacypipe: LegacypipeBuild, tmp_path: Path
):
    """ccds_touching_wcs over the kd file equals the .fits.gz fallback for every brick touched."""
    root = tmp_path / "sim"
    passes = (PassSpec("90prime", "g", 2), PassSpec("mosaic", "z", 2))
    region = grid.RaDecBox(180.30, 180.60, 32.40, 32.60)
    simulate_survey(root, SimulationConfig(region=region, passes=passes, workers=2, reprocessed=0))
    layout = ReleaseLayout(root)
    merge_ccd_tables(layout, annotated_from_truth(layout), cut=False)
    write_survey_bricks(layout.survey_bricks)
    from lsdr.survey.bricklist import bricks_for_ccds

    bricks = bricks_for_ccds(read_survey_ccds(layout), None)
    assert len(bricks) >= 4
    fallback = run_probe(legacypipe, root, bricks)
    assert fallback["kd"] == 0
    write_ccds_kdtree(read_survey_ccds(layout, kept_only=False), layout.survey_ccds_kd)
    indexed = run_probe(legacypipe, root, bricks)
    assert indexed["kd"] == 1 and indexed["n"] == fallback["n"]
    assert indexed["bricks"] == fallback["bricks"]
    assert sum(len(v) for v in indexed["bricks"].values()) > 0  # type: ignore[attr-defined]
    shutil.rmtree(root / "images")
