"""The ``refs`` stage's masks against hand-computed pixels and the real legacypipe.

BRIGHT, MEDIUM and CLUSTER are compared with legacypipe's ``get_reference_sources`` +
``get_reference_map`` (the code its runbrick runs), and the simulator's Tycho-2 file is read with
legacypipe's ``read_tycho2``.

Parity grids: testcase6 (real Gaia DR2 chunks and Tycho-2: upstream's zoom and a 1200² zoom whose
mask edges fall inside), and testcase12's grid (``--radec 346.684 12.791``, 100², Pal 13; the
case itself is not in the shared data) plus the elliptical Kn 57, with synthetic Gaia/Tycho-2
catalogues written by lsdr.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest
from required_in_ci import legacypipe_test_case
from test_fit import make_scene
from test_runbrick_cli import lsdr_runbrick

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core import legacypipe_data
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.core.refcat import GAIA_DTYPE, write_gaia_chunks
from lsdr.survey.core.tycho2 import TYCHO2_DTYPE, write_tycho2
from lsdr.survey.runbrick import starclusters
from lsdr.survey.runbrick.detect import stage_srcs
from lsdr.survey.runbrick.fit import fit_sources, mark_forced_pointsources
from lsdr.survey.runbrick.refs import (
    REF_BRIGHT,
    REF_CLUSTER,
    REF_MEDIUM,
    REFS_DTYPE,
    _tycho_rows,
    brick_refs,
    reference_map,
)
from lsdr.survey.runbrick.types import BrickGeometry
from lsdr.survey.simulate.config import SimulationConfig
from lsdr.survey.simulate.gaia import make_gaia
from lsdr.survey.simulate.simulator import _write_tycho
from lsdr.survey.simulate.truth import make_truth

PROBE = Path(__file__).with_name("legacypipe_refs_probe.py")
BITS = {"BRIGHT": REF_BRIGHT, "MEDIUM": REF_MEDIUM, "CLUSTER": REF_CLUSTER}
PAL13 = (346.685, 12.771)
KN57 = (292.905, -10.67833)


# -- geometry by hand ----------------------------------------------------------------------------
def _one(geom: BrickGeometry, **values: object) -> np.ndarray:
    row = np.zeros(1, REFS_DTYPE)
    row["ra"], row["dec"], row["ba"] = geom.ra, geom.dec, 1.0
    for k, v in values.items():
        row[k] = v
    return row


def test_mask_geometry_matches_hand_computed_pixels() -> None:
    """Circles are r² ≤ R² about the pixel centre (BRIGHT R = (R+1)//2); PA 0 runs north."""
    geom = BrickGeometry.for_target(10.0, 20.0, width=9, height=9, pixscale=1.0)
    star = _one(geom, radius=1.5 / 3600, radius_pix=2, isbright=True, ismedium=True)
    got = reference_map(star, geom)
    # MEDIUM, radius 2 px about (4, 4): the 13 pixels with dx² + dy² ≤ 4.
    medium = np.zeros((9, 9), bool)
    for dy, dx in [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (0, 2), (0, -2), (2, 0), (-2, 0)]:
        medium[4 + dy, 4 + dx] = True
    for dy, dx in [(1, 1), (1, -1), (-1, 1), (-1, -1)]:
        medium[4 + dy, 4 + dx] = True
    bright = np.zeros((9, 9), bool)  # (2 + 1) // 2 = 1 px: a plus sign of 5 pixels
    for dy, dx in [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]:
        bright[4 + dy, 4 + dx] = True
    assert np.array_equal((got & REF_MEDIUM) != 0, medium)
    assert np.array_equal((got & REF_BRIGHT) != 0, bright)
    # Cluster R = 3 px, b/a 0.5, PA 0 (north, +y on a brick grid): dy²/9 + dx²/2.25 < 1.
    cl = _one(geom, radius=3 / 3600, radius_pix=3, ba=0.5, pa=0.0, iscluster=True)
    cluster = np.zeros((9, 9), bool)
    for dx in (-1, 0, 1):
        cluster[2:7, 4 + dx] = True  # |dy| ≤ 2 (dy = 3 gives exactly 1, not < 1)
    assert np.array_equal(reference_map(cl, geom) == REF_CLUSTER, cluster)
    cl["pa"] = 90.0  # east: the same ellipse along x
    assert np.array_equal(reference_map(cl, geom) == REF_CLUSTER, cluster.T)
    assert int(np.count_nonzero(cluster)) == 15


# -- the real legacypipe -------------------------------------------------------------------------
def _synthetic_survey(root: Path, centres: list[tuple[float, float]]) -> ReleaseLayout:
    """Gaia chunks over ±1.2° of each centre and a Tycho-2 file of four stars per centre.

    Gaia: faint filler plus six bright or red stars near the centre (one without BP); Tycho-2:
    a Gaia duplicate (at 1991.5), a lone star, a galaxy and a star too faint to mask.
    """
    rng = np.random.default_rng(3)
    rows = []
    for ra0, dec0 in centres:
        n = 4000
        filler = np.zeros(n, GAIA_DTYPE)
        filler["ra"] = ra0 + rng.uniform(-1.2, 1.2, n) / math.cos(math.radians(dec0))
        filler["dec"] = dec0 + rng.uniform(-1.2, 1.2, n)
        filler["phot_g_mean_mag"] = rng.uniform(17.5, 20.0, n)
        filler["phot_bp_mean_mag"] = filler["phot_g_mean_mag"] + 0.3
        filler["phot_rp_mean_mag"] = filler["phot_g_mean_mag"] - 0.5
        bright = np.zeros(6, GAIA_DTYPE)
        bright["ra"] = ra0 + rng.uniform(-0.02, 0.02, 6)
        bright["dec"] = dec0 + rng.uniform(-0.02, 0.02, 6)
        bright["phot_g_mean_mag"] = [11.0, 12.5, 14.0, 15.5, 16.5, 15.0]
        bright["phot_bp_mean_mag"] = bright["phot_g_mean_mag"] + [0.5, 0.3, 1.5, 0.2, 2.0, 0]
        bright["phot_rp_mean_mag"] = bright["phot_g_mean_mag"] - [0.5, 0.4, 1.5, 0.3, 1.8, 0]
        bright["phot_bp_mean_mag"][5] = np.nan  # no colour: the average one
        bright["pmra"], bright["pmdec"] = 30.0, -20.0
        rows += [filler, bright]
    gaia = np.concatenate(rows)
    gaia["source_id"] = np.arange(1, len(gaia) + 1) * 1000
    gaia["ref_epoch"] = 2015.5
    for c in ("ra_error", "dec_error", "pmra_error", "pmdec_error", "parallax_error"):
        gaia[c] = 0.1
    layout = ReleaseLayout(root)
    write_gaia_chunks(layout, gaia)
    tycho = np.zeros(4 * len(centres), TYCHO2_DTYPE)
    for k, (ra0, dec0) in enumerate(centres):
        dup = gaia[(gaia["phot_g_mean_mag"] == 11.0) & (np.abs(gaia["dec"] - dec0) < 0.05)][0]
        t = tycho[4 * k : 4 * k + 4]
        dt = 1991.5 - 2015.5
        t["ra"][0] = dup["ra"] + dt * 30.0 / 3.6e6 / math.cos(math.radians(dup["dec"]))
        t["dec"][0] = dup["dec"] + dt * -20.0 / 3.6e6
        t["ra"][1:] = ra0 + np.array([0.015, -0.01, 0.005])
        t["dec"][1:] = dec0 + np.array([-0.012, 0.01, 0.0])
        t["ggguess"] = [11.0, 10.5, 9.0, 13.5]
        t["zguess"] = [10.0, 9.0, 8.0, 13.0]
        t["isgalaxy"] = [0, 0, 1, 0]
        t["tyc1"], t["tyc2"], t["tyc3"] = 100 + k, [1, 2, 3, 4], 1
    tycho["epoch_ra"] = tycho["epoch_dec"] = 1991.5
    tycho["mean_ra"], tycho["mean_dec"] = tycho["ra"], tycho["dec"]
    tycho["mag_vt"] = tycho["ggguess"]
    write_tycho2(layout.tycho2_kd, tycho)
    return layout


def _probe(build: LegacypipeBuild, layout: ReleaseLayout, geom: BrickGeometry, out: Path) -> dict:
    """legacypipe's refs and refmap for the grid of ``geom``."""
    w = geom.wcs()
    env = build.env()
    env.update(
        GAIA_CAT_DIR=str(layout.gaia_dir),
        GAIA_CAT_VER="2",
        GAIA_CAT_PREFIX="chunk",
        GAIA_CAT_SCHEME="ring",
        TYCHO2_KD_DIR=str(layout.root),
    )
    argv = [str(build.python), str(PROBE), "refmap", str(layout.root), str(out)]
    argv += [repr(v) for v in (w.crval1, w.crval2, w.crpix1, w.crpix2)]
    argv += [str(geom.width), str(geom.height), repr(geom.pixscale)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


GRIDS = {
    "testcase6-upstream": (
        "testcase6",
        BrickGeometry.for_brick("1102p240", zoom=(500, 600, 650, 750)),
    ),
    "testcase6-1200": ("testcase6", BrickGeometry.for_brick("1102p240", zoom=(0, 1200, 0, 1200))),
    "testcase12-grid": (
        "clusters",
        BrickGeometry.for_target(346.684, 12.791, width=100, height=100),
    ),
    "pal13-700": ("clusters", BrickGeometry.for_target(*PAL13, width=700, height=700)),
    "kn57-400": ("clusters", BrickGeometry.for_target(*KN57, width=400, height=400)),
}


@pytest.fixture(scope="module")
def parity(legacypipe: LegacypipeBuild, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """For each grid: (lite refs, lite refmap, legacypipe's probe output)."""
    tmp = tmp_path_factory.mktemp("refs")
    surveys = {
        "testcase6": ReleaseLayout(legacypipe_test_case("testcase6")),
        "clusters": _synthetic_survey(tmp / "clusters", [PAL13, KN57]),
    }
    clusters = starclusters.find_star_clusters()
    assert clusters is not None
    out = {}
    for name, (survey, geom) in GRIDS.items():
        refs = brick_refs(surveys[survey], geom, clusters)
        out[name] = (
            refs,
            reference_map(refs, geom),
            _probe(legacypipe, surveys[survey], geom, tmp / f"{name}.npz"),
        )
    return out


@pytest.mark.slow
@pytest.mark.legacypipe
@pytest.mark.parametrize("grid", list(GRIDS))
def test_masks_agree_with_legacypipe(parity: dict, grid: str) -> None:
    """BRIGHT, MEDIUM and CLUSTER agree with legacypipe's refmap on ≥ 99 % of pixels, same refs."""
    refs, lite, lp = parity[grid]
    for name, bit in BITS.items():
        ours, theirs = (lite & bit) != 0, (lp["refmap"] & bit) != 0
        agree = float(np.mean(ours == theirs))
        assert agree >= 0.99, (name, agree, int(ours.sum()), int(theirs.sum()))
    assert sorted(zip(lp["ref_cat"].tolist(), lp["ref_id"].tolist(), strict=True)) == sorted(
        zip(refs["ref_cat"].astype(str).tolist(), refs["ref_id"].tolist(), strict=True)
    )
    if grid == "testcase12-grid":  # upstream's assertion on this grid
        assert int(np.count_nonzero(lite & REF_CLUSTER)) >= 4000
    if grid == "kn57-400":  # elliptical (R 0.01806° = 248.1 px, b/a 0.3846): area π R² b/a
        r = math.ceil(0.01805556 * 3600 / 0.262)
        area = math.pi * r * r * 0.38461538
        assert abs(int(np.count_nonzero(lite & REF_CLUSTER)) - area) < 0.02 * area


@pytest.mark.slow
@pytest.mark.legacypipe
def test_tycho_rules_agree_with_legacypipe(parity: dict) -> None:
    """The Gaia duplicate and the galaxy are dropped, the lone star is BRIGHT, as legacypipe."""
    refs, _, lp = parity["pal13-700"]
    t2 = refs[refs["ref_cat"] == b"T2"]
    assert sorted(t2["ref_id"].tolist()) == [100 * 1000000 + 20 + 1]
    lp_t2 = lp["ref_id"][lp["ref_cat"] == "T2"]
    assert lp_t2.tolist() == t2["ref_id"].tolist()
    matched = refs[refs["isgaia"] & refs["istycho"]]
    assert len(matched) == 1 and matched["isbright"].all()


def test_cluster_list_comes_from_the_vendored_tarball(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the build, the list is extracted once from the tarball, the real file's bytes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(starclusters.CLUSTERS_ENV, raising=False)
    monkeypatch.delenv("LSDR_LEGACYPIPE_DATA", raising=False)
    monkeypatch.setattr(legacypipe_data, "_build_dirs", list)
    legacypipe_data.legacypipe_data_file.cache_clear()
    path = starclusters.find_star_clusters()
    legacypipe_data.legacypipe_data_file.cache_clear()
    assert path is not None and tmp_path in path.parents
    shipped = legacypipe_test_case("package-data") / "data" / "NGC-star-clusters.fits"
    assert path.read_bytes() == shipped.read_bytes()
    table = starclusters.read_star_clusters(path)
    assert len(table) == len(fitsio.read(str(shipped), ext=1))


# -- the simulator's Tycho-2 file ----------------------------------------------------------------
def _read_with_legacypipe(build: LegacypipeBuild, root: Path, ra: float, dec: float) -> list:
    argv = [str(build.python), str(PROBE), "tycho", str(root), repr(ra), repr(dec), "400", "400"]
    result = subprocess.run(
        [*argv, "0.262"], env=build.env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return list(json.loads(result.stdout))


@pytest.mark.slow
@pytest.mark.legacypipe
def test_simulated_tycho_reads_in_legacypipe(legacypipe: LegacypipeBuild, tmp_path: Path) -> None:
    """legacypipe's read_tycho2 returns the simulator's bright stars as lsdr reads them."""
    config = SimulationConfig(bright_star_density=400.0)
    truth = make_truth(config, np.random.default_rng(1))
    gaia = make_gaia(truth, np.random.default_rng(2))
    layout = ReleaseLayout(tmp_path / "sim")
    _write_tycho(layout, config, truth, gaia)
    ra, dec = 180.5, 32.5
    theirs = _read_with_legacypipe(legacypipe, layout.root, ra, dec)
    ours = _tycho_rows(layout.tycho2_kd, ra, dec)
    bright = gaia["phot_g_mean_mag"] < 13
    assert len(theirs) == len(ours) == int(bright.sum()) > 10
    by_id = {r["ref_id"]: r for r in theirs}
    for row in ours:
        r = by_id[int(row["ref_id"])]
        assert abs(r["ra"] - row["ra"]) < 1e-9 and abs(r["dec"] - row["dec"]) < 1e-9
        assert r["mask_mag"] == pytest.approx(float(row["mask_mag"]), abs=1e-5)
    # No bright star at all: a placeholder row legacypipe reads and drops.
    empty = ReleaseLayout(tmp_path / "empty")
    _write_tycho(empty, config, truth, gaia[:0])
    assert _read_with_legacypipe(legacypipe, empty.root, ra, dec) == []
    assert len(_tycho_rows(empty.tycho2_kd, ra, dec)) == 0


# -- sources in masked regions -------------------------------------------------------------------
def test_no_new_source_in_cluster_and_galaxies_forced_psf() -> None:
    """No detection inside a CLUSTER mask; a galaxy in a BRIGHT mask is fit as PSF."""
    spec = [("PSF", 3.0, 0.0)] * 4 + [("REX", 8.0, 1.2)] * 2
    pos = [(30.0, 40.0), (40.0, 120.0), (130.0, 50.0), (150.0, 140.0), (40, 80.0), (140.0, 95.0)]
    geom, tims, _truth = make_scene(5, truth_spec=spec, size=180, positions=pos)
    refmap = np.zeros((geom.height, geom.width), np.uint8)
    refmap[:, :90] = REF_CLUSTER
    state = stage_srcs(tims=tims, geom=geom, bands=("g", "r"), refmap=refmap)
    found = state["sources"]
    assert found and all(s.bx >= 90 for s in found)  # x < 90 is the cluster
    assert len(found) == 3  # the three sources on the right
    free = stage_srcs(tims=tims, geom=geom, bands=("g", "r"))["sources"]
    assert len(free) == 6
    fitted = fit_sources(
        free, stage_srcs(tims=tims, geom=geom, bands=("g", "r"))["blobs"], tims, geom, ("g", "r")
    )
    assert sorted(s.type for s in fitted if s.bx > 90 and 80 < s.by < 110) == ["REX"]
    bright = np.zeros_like(refmap)
    bright[80:110, 120:160] = REF_BRIGHT
    srcs = stage_srcs(tims=tims, geom=geom, bands=("g", "r"))
    assert mark_forced_pointsources(srcs["sources"], bright, geom) == 1
    # The BRIGHT mask is in the reference map, where iterative detection finds nothing either
    # (the PSF fit leaves the galaxy's wings in the residuals).
    fitted = fit_sources(srcs["sources"], srcs["blobs"], tims, geom, ("g", "r"), refmap=bright)
    assert sorted(s.type for s in fitted if s.bx > 90 and 80 < s.by < 110) == ["PSF"]
    # fitbits FORCED_POINTSOURCE (= 1 in the DR10 catalogues) on it, on no other source.
    assert [s.extra["fitbits"] & 1 for s in fitted if s.bx > 90 and 80 < s.by < 110] == [1]
    assert sum(s.extra["fitbits"] & 1 for s in fitted) == 1


# -- a lite runbrick on testcase12's target ------------------------------------------------------
TARGET = (346.684, 12.791)  # testcase12's --radec; Pal 13 (R 72″) lies 72″ south


@pytest.fixture(scope="module")
def pal13_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A simulated survey over brick 3465p127 and lite runs on a 400² grid at the target.

    One run with legacypipe's cluster list, one with a copy lacking Pal 13 (the detections it
    would have made there).
    """
    import runbrick_survey

    from lsdr.survey.core import bricks as grid
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.stages import run_brick

    tmp = tmp_path_factory.mktemp("pal13")
    layout = runbrick_survey.build(
        tmp / "survey", region=grid.RaDecBox(346.55, 346.57, 12.74, 12.76)
    )
    full = starclusters.find_star_clusters()
    assert full is not None
    table = fitsio.read(str(full), ext=1)
    fitsio.write(str(tmp / "no-pal13.fits"), table[table["name"] != "Pal 13"], clobber=True)
    out = {"layout": layout}
    for name, cat in (("clusters", str(full)), ("no-pal13", str(tmp / "no-pal13.fits"))):
        options = RunbrickOptions(
            radec=TARGET, width=400, height=400, bands=("g", "r", "z"), star_clusters_cat=cat
        )
        brick = options.brickname
        assert brick is not None
        copy = ReleaseLayout(tmp / name)
        shutil.copytree(layout.root, copy.root)
        assert run_brick(copy, brick, options).status == "done"
        mask = fitsio.read(str(copy.coadd_maskbits(brick)), ext="MASKBITS")
        cat_rows = fitsio.read(str(copy.tractor(brick)), ext=1)
        out[name] = (mask, cat_rows)
    return out


@pytest.mark.slow
def test_lite_runbrick_detects_nothing_new_in_the_cluster(pal13_runs: dict) -> None:
    """Only reference stars sit in Pal 13's CLUSTER mask; without the mask lite finds more."""
    cluster_bit = 1 << 13
    mask, cat = pal13_runs["clusters"]
    inside = (mask & cluster_bit) != 0
    assert int(inside.sum()) >= 4000
    at = inside[np.round(cat["by"]).astype(int), np.round(cat["bx"]).astype(int)]
    assert all(r.strip() for r in cat["ref_cat"][at].astype(str))  # reference stars only
    assert ((cat["maskbits"][at] & cluster_bit) != 0).all()
    free_mask, free = pal13_runs["no-pal13"]
    assert not (free_mask & cluster_bit).any()
    at_free = inside[np.round(free["by"]).astype(int), np.round(free["bx"]).astype(int)]
    new = [r for r in free["ref_cat"][at_free].astype(str) if not r.strip()]
    assert len(new) >= 1  # what the avoid map removed


@pytest.mark.slow
@pytest.mark.legacypipe
def test_lite_runbrick_cluster_mask_is_legacypipes(
    pal13_runs: dict, legacypipe: LegacypipeBuild, tmp_path: Path
) -> None:
    """The CLUSTER maskbits of the lite run equal legacypipe's refmap on the same grid."""
    geom = BrickGeometry.for_target(*TARGET, width=400, height=400)
    lp = _probe(legacypipe, pal13_runs["layout"], geom, tmp_path / "lp.npz")
    mask, _ = pal13_runs["clusters"]
    ours = (mask & (1 << 13)) != 0
    theirs = (lp["refmap"] & REF_CLUSTER) != 0
    assert float(np.mean(ours == theirs)) >= 0.99 and int(theirs.sum()) >= 4000
    for bit, ref in ((1 << 1, REF_BRIGHT), (1 << 11, REF_MEDIUM)):
        assert float(np.mean(((mask & bit) != 0) == ((lp["refmap"] & ref) != 0))) >= 0.99


# -- the real runbrick -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.legacypipe
def test_maskbits_images_match_the_real_runbrick(
    legacypipe: LegacypipeBuild, tmp_path: Path
) -> None:
    """testcase6, zoom 200 1000 300 1100: BRIGHT/MEDIUM/CLUSTER of both engines' maskbits."""
    survey = tmp_path / "testcase6"
    shutil.copytree(legacypipe_test_case("testcase6"), survey)
    images = {}
    for engine in ("legacypipe", "lite"):
        out = tmp_path / engine
        zoom = ("200", "1000", "300", "1100")
        done = lsdr_runbrick(
            survey, out, "--brick", "1102p240", "--zoom", *zoom, "--no-wise", "--engine", engine
        )
        assert done.returncode == 0, done.stderr
        path = out / "coadd/110/1102p240/legacysurvey-1102p240-maskbits.fits.fz"
        images[engine] = fitsio.read(str(path), ext="MASKBITS")
    real, lite = images["legacypipe"], images["lite"]
    for bit in (1, 11, 13):  # BRIGHT, MEDIUM, CLUSTER (same values in both)
        assert float(np.mean(((real >> bit) & 1) == ((lite >> bit) & 1))) >= 0.99
    assert int(((real >> 1) & 1).sum()) > 10000 and int(((real >> 11) & 1).sum()) > 100000


def test_refs_stage_says_when_there_is_no_cluster_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without any star-cluster list the brick log says so; a bad explicit path is refused."""
    from lsdr.survey.core.errors import UsageError
    from lsdr.survey.runbrick.options import RunbrickOptions
    from lsdr.survey.runbrick.refs import stage_refs

    monkeypatch.delenv(starclusters.CLUSTERS_ENV, raising=False)
    monkeypatch.delenv("LSDR_LEGACYPIPE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(legacypipe_data, "_build_dirs", list)
    monkeypatch.setattr(legacypipe_data, "VENDOR", tmp_path / "no-vendor")
    legacypipe_data.legacypipe_data_file.cache_clear()
    geom = BrickGeometry.for_target(*PAL13, width=50, height=50)
    with caplog.at_level("INFO", logger="lsdr.survey.runbrick"):
        out = stage_refs(layout=ReleaseLayout(tmp_path), geom=geom)
    assert "no star-cluster list (NGC-star-clusters.fits) found" in caplog.text
    assert not out["refmap"].any() and len(out["refs"]) == 0
    with pytest.raises(UsageError):
        stage_refs(
            layout=ReleaseLayout(tmp_path),
            geom=geom,
            options=RunbrickOptions(star_clusters_cat=str(tmp_path / "missing.fits")),
        )
    legacypipe_data.legacypipe_data_file.cache_clear()
