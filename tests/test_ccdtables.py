"""Merging annotated CCD tables: per camera-band files, ccd_cuts, and what legacypipe reads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.errors import InputFileError, SurveyError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.bricklist import ccd_footprints
from lsdr.survey.pretractor.ccdcuts import CutOptions, compute_ccd_cuts
from lsdr.survey.pretractor.ccdschema import ANNOTATED_DTYPE, CCD_CUTS, SURVEY_CCDS_DTYPE
from lsdr.survey.pretractor.ccdtables import merge_ccd_tables, read_survey_ccds
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"
REGION = grid.RaDecBox(180.40, 180.50, 32.45, 32.55)


def good_rows(n: int, camera: str = "decam", band: str = "g") -> np.ndarray:
    """``n`` annotated rows that pass every cut of ``camera`` (one full exposure each 62/4)."""
    rows = np.zeros(n, ANNOTATED_DTYPE)
    zpt = {"decam": {"g": 25.08, "r": 25.29, "z": 24.92}, "mosaic": {"z": 26.2},
           "90prime": {"g": 25.74, "r": 25.52}}[camera][band]  # fmt: skip
    per_exp = 62 if camera == "decam" else 4
    rows["camera"] = camera
    rows["filter"] = band
    rows["expnum"] = 1000 + np.arange(n) // per_exp
    rows["image_filename"] = [f"{camera}/x/img{e}.fits.fz" for e in rows["expnum"]]
    rows["image_hdu"] = np.arange(n) % per_exp + 1
    rows["ccdname"] = [f"N{i}" for i in rows["image_hdu"]]
    rows["plver"] = "V4.8.2a"
    rows["exptime"] = 90.0
    rows["mjd_obs"] = 57000.0 if camera == "decam" else 57800.0
    rows["airmass"] = 1.0
    rows["fwhm"] = 4.0
    rows["ccdzpt"] = zpt
    rows["zpt"] = zpt
    rows["ccdnphotom"] = 100
    rows["ccdskycounts"] = 10.0
    rows["yshift"] = True
    rows["sig1"] = 0.01
    rows["width"], rows["height"] = 2046, 4094
    rows["crval1"], rows["crval2"] = 180.0, 32.0
    rows["crpix1"], rows["crpix2"] = 1023.5, 2047.5
    rows["cd1_1"], rows["cd2_2"] = -0.262 / 3600, 0.262 / 3600
    rows["ra"], rows["dec"] = 180.0, 32.0
    return rows


def test_good_rows_pass_every_cut():
    """Rows built to pass the cuts of each camera get ccd_cuts == 0."""
    for camera, band in (("decam", "g"), ("mosaic", "z"), ("90prime", "r")):
        assert not compute_ccd_cuts(
            good_rows(124 if camera == "decam" else 8, camera, band), camera
        ).any()


@pytest.mark.parametrize(
    ("change", "bit"),
    [
        ({"filter": "Y"}, "not_grz"),
        ({"ccdnphotom": 19}, "ccdnmatch"),
        ({"ccdzpt": 24.5, "zpt": 24.5}, "zpt_small"),
        ({"ccdzpt": 25.5, "zpt": 25.5}, "zpt_large"),
        ({"phrms": 0.11}, "phrms"),
        ({"exptime": 29.0}, "exptime"),
        ({"fwhm": 11.5}, "seeing_bad"),
        ({"fwhm": np.nan}, "seeing_bad"),
        ({"ccdrarms": 0.3, "ccddecrms": 0.3}, "radecrms"),
        ({"ccdskycounts": 91.0}, "sky_is_bright"),
        ({"ccdskycounts": 400.0}, "sky_is_bright"),
        ({"ccdzpt": 25.4}, "zpt_diff_avg"),
        ({"ccdname": "S7", "ccdphrms": 0.2}, "phrms_s7"),
        ({"plver": "V3.9"}, "plver"),
        ({"mjd_obs": 56500.0}, "early_decam"),
    ],
)
def test_each_decam_cut_sets_its_bit(change: dict[str, object], bit: str):
    """Breaking one threshold on one CCD sets exactly that bit there (DECam thresholds)."""
    rows = good_rows(124)
    for key, value in change.items():
        rows[key][5] = value
    bits = compute_ccd_cuts(rows, "decam")
    assert bits[5] & CCD_CUTS[bit]
    assert not np.delete(bits, 5).any()


def test_north_cuts_and_too_many_bad_ccds():
    """Mosaic: not_third_pix before MJD 57674 without yshift; 2 bad CCDs of 4 cut the exposure."""
    rows = good_rows(8, "mosaic", "z")
    rows["yshift"][:2] = False
    rows["mjd_obs"] = 57500.0
    bits = compute_ccd_cuts(rows, "mosaic")
    assert np.all(bits[:2] & CCD_CUTS["not_third_pix"])
    assert np.all(bits[2:4] == CCD_CUTS["too_many_bad_ccds"])
    assert not bits[4:].any()
    assert not compute_ccd_cuts(rows, "mosaic", CutOptions(omit=frozenset({"not_third_pix"}))).any()
    real = fitsio.read(str(TEST_DATA / "mzlsbass2" / "survey-ccds-1.fits.gz"))
    assert set(real["plver"]) == {"V2.3", "V4.3"}  # why the plver cut is DECam-only


def test_badexp_and_plver_options():
    """A bad-exposure list flags whole exposures or single CCDs; plver_cut=False skips PLVER."""
    rows = good_rows(124)
    rows["plver"] = "V3.0"
    opts = CutOptions(bad_expid={(1000, None): "donuts", (1001, "N3"): "shifted"}, plver_cut=False)
    bits = compute_ccd_cuts(rows, "decam", opts)
    assert np.all(bits[:62] & CCD_CUTS["badexp_file"])
    assert bits[62 + 2] & CCD_CUTS["badexp_file"]
    assert np.count_nonzero(bits & CCD_CUTS["plver"]) == 0


def annotated_from_truth(layout: ReleaseLayout) -> list[Path]:
    """Per-image ``<base>-annotated.fits`` files built from the simulator's truth (all passing)."""
    truth = fitsio.read(str(layout.truth_ccds))
    paths = []
    for name in sorted(set(truth["image_filename"])):
        t = truth[truth["image_filename"] == name]
        rows = np.zeros(len(t), ANNOTATED_DTYPE)
        for col in set(t.dtype.names) & set(ANNOTATED_DTYPE.names):
            rows[col] = t[col]
        rows["ccdnphotom"] = 50
        rows["ccdskycounts"] = 5.0
        rows["yshift"] = True
        rows["plprocid"] = "abc1234"
        rows["propid"] = "2026A-0001"
        rows["ccd_cuts"] = CCD_CUTS["err_legacyzpts"]
        ra, dec, _, _ = ccd_footprints(rows)
        rows["ra"], rows["dec"] = ra, dec
        path = layout.zpt_annotated(str(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        fitsio.write(str(path), rows, clobber=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def merged_survey(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """A synthetic survey (90Prime g r, Mosaic z) with annotated files from its truth."""
    root = tmp_path_factory.mktemp("merge")
    passes = (PassSpec("90prime", "g", 1), PassSpec("90prime", "r", 1), PassSpec("mosaic", "z", 2))
    simulate_survey(root, SimulationConfig(region=REGION, passes=passes, workers=2, reprocessed=0))
    return ReleaseLayout(root)


def test_merge_splits_per_camera_band_and_cuts(merged_survey: ReleaseLayout):
    """One survey-ccds and one ccds-annotated table per camera-band; every row kept with bits."""
    layout = merged_survey
    files = annotated_from_truth(layout)
    truth = fitsio.read(str(layout.truth_ccds))
    result = merge_ccd_tables(
        layout, files, cut_options=CutOptions(omit=frozenset({"too_many_bad_ccds"}))
    )
    assert set(result.survey_ccds) == {("90prime", "g"), ("90prime", "r"), ("mosaic", "z")}
    assert result.n_rows == len(truth)
    total = 0
    for (camera, band), path in result.survey_ccds.items():
        assert path == layout.survey_ccds(camera, band) and path.name.endswith(".fits.gz")
        table = fitsio.read(str(path), ext=1)
        assert table.dtype.names == SURVEY_CCDS_DTYPE.names
        assert set(table["camera"]) == {camera}
        assert set(table["filter"]) == {band}
        annotated = fitsio.read(str(result.annotated[(camera, band)]), ext=1)
        assert annotated.dtype.names == ANNOTATED_DTYPE.names
        assert np.array_equal(annotated["ccd_cuts"], table["ccd_cuts"])
        total += len(table)
    assert total == len(truth)
    # The simulator's PLVERs pass (plver is DECam-only), and the 0x1 placeholder is gone.
    assert result.n_kept == len(truth), result.cut_counts
    assert len(read_survey_ccds(layout)) == len(truth)


def test_merge_cut_false_and_too_many_bad(merged_survey: ReleaseLayout):
    """cut=False zeroes ccd_cuts; with the real 4-CCD rule, partial exposures are cut."""
    layout = merged_survey
    files = annotated_from_truth(layout)
    strict = merge_ccd_tables(layout, files)
    truth = fitsio.read(str(layout.truth_ccds))
    per_exp = {e: int(np.sum(truth["expnum"] == e)) for e in set(truth["expnum"])}
    partial = sum(n for n in per_exp.values() if n / 4 < 0.7)
    assert strict.cut_counts.get("too_many_bad_ccds", 0) == partial
    loose = merge_ccd_tables(layout, files, cut=False)
    assert loose.n_kept == loose.n_rows and loose.cut_counts == {}


def test_merge_cut_expnum_and_stale_tables(tmp_path: Path):
    """cut_expnum drops expnum 0 rows; tables and the kd-tree of a previous merge are removed."""
    layout = ReleaseLayout(tmp_path)
    rows = good_rows(124)
    rows["expnum"][:62] = 0
    a = tmp_path / "a-annotated.fits"
    fitsio.write(str(a), rows)
    stale = layout.survey_ccds("decam", "z")
    stale.write_bytes(b"old")
    layout.survey_ccds_kd.write_bytes(b"old")
    result = merge_ccd_tables(layout, [a])
    assert result.dropped_expnums == (0,) and result.n_rows == 62
    assert not stale.exists() and not layout.survey_ccds_kd.exists()
    kept = merge_ccd_tables(layout, [a], cut_expnum=False)
    assert kept.n_rows == 124 and kept.dropped_expnums == ()


def test_corrupt_or_incomplete_annotated_file_is_named(tmp_path: Path):
    """A truncated file or one without required columns is an InputFileError naming it."""
    layout = ReleaseLayout(tmp_path)
    bad = tmp_path / "bad-annotated.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    with pytest.raises(InputFileError, match=r"bad-annotated\.fits"):
        merge_ccd_tables(layout, [bad])
    rows = good_rows(4)
    thin = tmp_path / "thin-annotated.fits"
    fitsio.write(str(thin), rows[["image_filename", "expnum"]])
    with pytest.raises(InputFileError, match=r"thin-annotated\.fits.*missing columns"):
        merge_ccd_tables(layout, [thin])
    twice = tmp_path / "twice-annotated.fits"
    fitsio.write(str(twice), good_rows(62))
    with pytest.raises(SurveyError, match="duplicated"):
        merge_ccd_tables(layout, [twice, twice])


def test_merge_reads_real_legacypipe_tables(tmp_path: Path):
    """Real survey-ccds rows (fewer columns, other string widths) merge with values intact."""
    layout = ReleaseLayout(tmp_path)
    src = TEST_DATA / "testcase6" / "survey-ccds-1.fits.gz"
    real = fitsio.read(str(src))
    result = merge_ccd_tables(layout, [src], cut=False)
    out = read_survey_ccds(layout)
    assert result.n_rows == len(real) == len(out)
    order = np.argsort(real["image_filename"])
    out = out[np.argsort(out["image_filename"])]
    for col in ("expnum", "ccdzpt", "sig1", "crval1", "cd1_1", "width", "ra"):
        assert np.array_equal(out[col], real[col][order]), col
    assert list(out["ccdname"].astype(str)) == list(real["ccdname"][order])


PROBE = """
import json, sys
from legacypipe.survey import LegacySurveyData, wcs_for_brick
survey = LegacySurveyData(survey_dir=sys.argv[1])
ccds = survey.get_ccds_readonly()
out = {"n": len(ccds), "kd": len(survey.get_ccd_kdtrees()), "bricks": {}}
for name in sys.argv[2:]:
    C = survey.ccds_touching_wcs(wcs_for_brick(survey.get_brick_by_name(name)))
    out["bricks"][name] = [] if C is None else sorted(
        [str(f).strip(), int(h)] for f, h in zip(C.image_filename, C.image_hdu))
im = survey.get_image_object(ccds[0])
out["first"] = [str(im.imgfn), im.band, int(im.expnum), float(im.ccdzpt)]
print(json.dumps(out))
"""


def run_probe(build: LegacypipeBuild, survey_dir: Path, bricks: list[str]) -> dict[str, object]:
    """Run legacypipe's own table readers on a survey dir; their answers as JSON."""
    done = subprocess.run(
        [str(build.python), "-c", PROBE, str(survey_dir), *bricks],
        env=build.env(), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.legacypipe
def test_real_legacypipe_reads_merged_tables(
    merged_survey: ReleaseLayout, legacypipe: LegacypipeBuild
):
    """legacypipe's get_ccds / image objects read the merged per camera-band tables."""
    layout = merged_survey
    result = merge_ccd_tables(layout, annotated_from_truth(layout), cut=False)
    from lsdr.survey.core.bricks import write_survey_bricks

    write_survey_bricks(layout.survey_bricks)
    got = run_probe(legacypipe, layout.root, ["1804p325"])
    assert got["n"] == result.n_rows and got["kd"] == 0
    assert len(got["bricks"]["1804p325"]) > 0  # type: ignore[index]
    first = got["first"]
    assert Path(first[0]).exists()  # type: ignore[index]
