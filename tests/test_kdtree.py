"""The kd-tree CCD file lsdr writes in libkd format, judged by legacypipe's files and libkd itself.

Fast tests read the files with fitsio and check them against legacypipe's own kd files and the
definition of a libkd tree; tests marked ``legacypipe`` run astrometry.net's libkd (Debian's,
under the real legacypipe's Python) on them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest
from test_ccdtables import annotated_from_truth, run_probe

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.bricks import write_survey_bricks
from lsdr.survey.core.errors import SurveyError
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.ccdtables import merge_ccd_tables, read_survey_ccds
from lsdr.survey.pretractor.kdtree import read_ccds_kdtree, write_ccds_kdtree
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

TEST_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"
PROBE = Path(__file__).with_name("libkd_probe.py")
REAL_KD_FILES = [TEST_DATA / "mzlsbass" / "survey-ccds-1.kd.fits",
                 TEST_DATA / "testcase9" / "survey-ccds-1.kd.fits"]  # fmt: skip
ITEM = {"lr": "<u4", "perm": "<u4", "bb": "<f8", "split": "<f8", "splitdim": "u1", "data": "<f8"}


def chunks(path: Path) -> dict[str, tuple[bytes, dict[str, object]]]:
    """Each extension after HDU 1 by its table name: (raw data bytes, header cards)."""
    raw = path.read_bytes()
    out: dict[str, tuple[bytes, dict[str, object]]] = {}
    with fitsio.FITS(str(path)) as fits:
        for hdu in fits[2:]:
            header = hdu.read_header()
            start = hdu.get_offsets()["data_start"]
            size = int(header["NAXIS1"]) * int(header["NAXIS2"])
            cards = {k: header[k] for k in header if k}
            out[str(header["TTYPE1"])] = (raw[start : start + size], cards)
    return out


def tree_arrays(path: Path, name: str) -> dict[str, np.ndarray]:
    """A tree's arrays decoded from its chunks (little-endian, as the ENDIAN card says)."""
    got = {}
    for key, (data, _) in chunks(path).items():
        kind = key.removeprefix("kdtree_").removesuffix(f"_{name}")
        if key.endswith(f"_{name}") and kind in ITEM:
            got[kind] = np.frombuffer(data, ITEM[kind])
    return got


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """RA, Dec (degrees) on the unit sphere, the coordinates of the ``ccds`` tree."""
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)


def random_ccds(n: int, seed: int, *, ties: bool) -> np.ndarray:
    """CCD rows scattered over 4°×4°; with ties, every fifth shares one centre."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, [("ra", "f8"), ("dec", "f8"), ("expnum", "i8"), ("ccd_cuts", "i4")])
    rows["ra"], rows["dec"] = rng.uniform(179, 183, n), rng.uniform(30, 34, n)
    rows["expnum"] = rng.integers(1, n // 10 + 2, n)
    if ties:
        rows["ra"][::5], rows["dec"][::5] = 180.5, 32.0
    return rows


def test_layout_matches_legacypipe_kd_files(tmp_path: Path):
    """HDU 1 is the CCD table, then the ccds tree's HDUs, then the expnum tree's, as in DR files."""
    src = TEST_DATA / "testcase3" / "survey-ccds-1.fits.gz"
    out = write_ccds_kdtree(src, tmp_path / "survey-ccds-dr10.kd.fits")
    mine, real = list(chunks(out)), list(chunks(REAL_KD_FILES[1]))
    assert mine[0] == real[0] == "kdtree_header_ccds"
    assert mine[mine.index("kdtree_header_expnum") :] == real[real.index("kdtree_header_expnum") :]
    assert mine[:5] == [f"kdtree_{k}_ccds" for k in ("header", "lr", "perm", "bb", "data")]
    assert np.array_equal(read_ccds_kdtree(out), fitsio.read(str(src)))


@pytest.mark.parametrize("real", REAL_KD_FILES, ids=lambda p: p.parent.name)
def test_trees_equal_those_of_legacypipes_own_kd_files(real: Path, tmp_path: Path):
    """From a real kd file's own table: its expnum tree byte for byte, its ccds tree's centres.

    The real ccds tree was made by ``startree`` with u32 data (``range`` gives the scale); its
    points, decoded, are lsdr's unit vectors within a quantum.
    """
    table = fitsio.read(str(real), ext=1)
    out = write_ccds_kdtree(table, tmp_path / "k.kd.fits", cut=False)
    mine, theirs = chunks(out), chunks(real)
    for kind in ("lr", "perm", "split", "splitdim", "data"):
        key = f"kdtree_{kind}_expnum"
        assert mine[key][0] == theirs[key][0], key
    for card in ("KDT_NAME", "KDT_NDAT", "KDT_NDIM", "KDT_NNOD", "KDT_VER", "KDT_EXT", "KDT_INT",
                 "KDT_DATA", "KDT_LINL", "ENDIAN"):  # fmt: skip
        assert mine["kdtree_header_expnum"][1][card] == theirs["kdtree_header_expnum"][1][card]
    assert mine["kdtree_header_ccds"][1]["KDT_NNOD"] == theirs["kdtree_header_ccds"][1]["KDT_NNOD"]
    assert mine["kdtree_lr_ccds"][0] == theirs["kdtree_lr_ccds"][0]
    ranges = np.frombuffer(theirs["kdtree_range_ccds"][0], "<f8")
    low, scale = ranges[:3], ranges[6]
    decoded = low + np.frombuffer(theirs["kdtree_data_ccds"][0], "<u4").reshape(-1, 3) / scale
    points = np.frombuffer(mine["kdtree_data_ccds"][0], "<f8").reshape(-1, 3)
    assert np.allclose(points, decoded, rtol=0, atol=1.0 / scale)
    assert np.allclose(points, unit_vectors(table["ra"], table["dec"]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 100, 2000])
@pytest.mark.parametrize("ties", [False, True])
def test_trees_are_libkd_trees_by_definition(n: int, ties: bool, tmp_path: Path):
    """Node ranges, boxes, splits and permutation follow libkd's ``kdtree_build`` rules.

    Levels: one more than the bits of ``n // leaf``; node ``i`` owning ``L..R`` has children
    ``L..m-1`` and ``m..R`` with ``m = (1 + L + R) // 2``; a node's box is its points' extent;
    a split puts every left value at or below it and every right value at or above it.
    """
    rows = random_ccds(n, seed=n, ties=ties)
    out = write_ccds_kdtree(rows, tmp_path / "t.kd.fits")
    points = {"ccds": unit_vectors(rows["ra"], rows["dec"]), "expnum": rows["expnum"][:, None]}
    for name, leaf in (("ccds", 16), ("expnum", 60)):
        arrays = tree_arrays(out, name)
        pts = points[name].astype(np.float64)
        ndim = pts.shape[1]
        levels = 1 + (n // leaf).bit_length()
        nodes = 2**levels - 1
        ranges = [(0, n - 1)]
        for i in range(nodes // 2):
            lo, hi = ranges[i]
            m = (1 + lo + hi) // 2
            ranges += [(lo, m - 1), (m, hi)]
        assert np.array_equal(arrays["lr"], [hi for _, hi in ranges[nodes // 2 :]])
        perm = arrays["perm"].astype(np.int64)
        assert np.array_equal(np.sort(perm), np.arange(n))
        data = arrays["data"].reshape(n, ndim)
        assert np.array_equal(data, pts[perm])
        if name == "ccds":
            boxes = arrays["bb"].reshape(nodes, 2, ndim)
            for i, (lo, hi) in enumerate(ranges):
                assert np.array_equal(boxes[i, 0], data[lo : hi + 1].min(axis=0)), i
                assert np.array_equal(boxes[i, 1], data[lo : hi + 1].max(axis=0)), i
        else:
            for i in range(nodes // 2):
                (l1, r1), (l2, r2) = ranges[2 * i + 1], ranges[2 * i + 2]
                dim, value = int(arrays["splitdim"][i]), arrays["split"][i]
                assert data[l1 : r1 + 1, dim].max() <= value <= data[l2 : r2 + 1, dim].min()
                assert value == np.sort(data[l1 : r2 + 1, dim])[l2 - l1]  # the rank-m value


def test_no_rows_to_index_is_an_error(tmp_path: Path):
    """A table whose CCDs are all cut has nothing to index: SurveyError, no file."""
    rows = fitsio.read(str(TEST_DATA / "testcase3" / "survey-ccds-1.fits.gz"))
    rows["ccd_cuts"] = 1
    with pytest.raises(SurveyError, match="no CCDs"):
        write_ccds_kdtree(rows, tmp_path / "x.kd.fits")
    rows["ccd_cuts"], rows["ra"][0] = 0, np.nan
    with pytest.raises(SurveyError, match="non-finite ra"):
        write_ccds_kdtree(rows, tmp_path / "x.kd.fits")
    assert not (tmp_path / "x.kd.fits").exists()


def libkd(build: LegacypipeBuild, *args: str) -> str:
    """Run tests/libkd_probe.py under the real legacypipe's Python (Debian's libkd)."""
    done = subprocess.run(
        [str(build.python), str(PROBE), *args],
        env=build.env(), capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.legacypipe
@pytest.mark.parametrize("n", [17, 1000, 20000])
def test_trees_equal_libkds_own_build(n: int, legacypipe: LegacypipeBuild, tmp_path: Path):
    """libkd's own build on the same points: the same nodes, boxes, splits and leaf contents.

    Only the order of points inside a leaf may differ; boxes may differ in the last bit, since
    the two Pythons' numpy compute the unit vectors.  Ties (the expnum tree is full of them)
    change neither the splits nor any leaf's values.
    """
    rows = random_ccds(n, seed=n + 1, ties=False)
    np.save(tmp_path / "p.npy", np.stack([rows["ra"], rows["dec"], rows["expnum"]], axis=1))
    theirs = {"ccds": tmp_path / "c.fits", "expnum": tmp_path / "e.fits"}
    libkd(legacypipe, "build", str(tmp_path / "p.npy"), str(theirs["ccds"]), str(theirs["expnum"]))
    out = write_ccds_kdtree(rows, tmp_path / "t.kd.fits")
    for name in ("ccds", "expnum"):
        mine, ref = tree_arrays(out, name), tree_arrays(theirs[name], name)
        assert sorted(mine) == sorted(ref)
        assert np.array_equal(mine["lr"], ref["lr"])
        starts = np.r_[0, ref["lr"][:-1] + 1]
        if name == "ccds":  # no ties: each leaf holds the same CCDs
            for lo, hi in zip(starts, ref["lr"], strict=True):
                assert set(mine["perm"][lo : hi + 1]) == set(ref["perm"][lo : hi + 1])
            assert np.allclose(mine["bb"], ref["bb"], rtol=0, atol=1e-15)
        else:
            assert np.array_equal(mine["split"], ref["split"])
            assert np.array_equal(mine["splitdim"], ref["splitdim"])
            for lo, hi in zip(starts, ref["lr"], strict=True):  # tied expnums: the same values
                assert sorted(mine["data"][lo : hi + 1]) == sorted(ref["data"][lo : hi + 1])


@pytest.mark.legacypipe
@pytest.mark.parametrize("n", [5, 999, 20000])
def test_libkd_searches_lsdrs_file_exactly(n: int, legacypipe: LegacypipeBuild, tmp_path: Path):
    """libkd opens lsdr's file; cone and expnum searches return exactly the brute-force rows."""
    rows = random_ccds(n, seed=n + 2, ties=True)
    out = write_ccds_kdtree(rows, tmp_path / "t.kd.fits")
    rng = np.random.default_rng(n)
    cones = [[float(r), float(d), float(rad)] for r, d, rad in
             zip(rng.uniform(179, 183, 30), rng.uniform(30, 34, 30), rng.uniform(0.05, 1.5, 30),
                 strict=True)] + [[180.5, 32.0, 0.01]]  # fmt: skip
    expnums = [int(e) for e in np.unique(rows["expnum"])[:50]] + [10**6]
    got = json.loads(libkd(legacypipe, "search", str(out),
                           json.dumps({"cones": cones, "expnums": expnums})))  # fmt: skip
    xyz = unit_vectors(rows["ra"], rows["dec"])
    for (ra, dec, radius), found in zip(cones, got["cones"], strict=True):
        chord = 2 * np.sin(np.radians(radius) / 2)
        near = np.linalg.norm(xyz - unit_vectors(np.array([ra]), np.array([dec])), axis=1) <= chord
        assert found == np.flatnonzero(near).tolist()
    assert sum(len(c) for c in got["cones"]) > n
    for expnum, found in zip(expnums, got["expnums"], strict=True):
        assert found == np.flatnonzero(rows["expnum"] == expnum).tolist()


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
    from lsdr.survey.pretractor.bricklist import bricks_for_ccds

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
