"""Stage ``outliers``: cross-exposure masking of artefacts the CP did not flag."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pytest
from runbrick_survey import build

from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.psfex import PsfModel
from lsdr.survey.runbrick import stages
from lsdr.survey.runbrick.dqmaps import dq_bits
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.outliers import outlier_masks, stage_outliers
from lsdr.survey.runbrick.refs import stage_refs
from lsdr.survey.runbrick.stages import read_stage_pickle, run_brick, stage_pickle_path
from lsdr.survey.runbrick.tims import read_tims, select_ccds
from lsdr.survey.runbrick.types import BrickGeometry, Tim

BRICK = "1804p325"
OUTLIER = 2048


# -- in-memory exposures -----------------------------------------------------------------------
def fake_tim(geom: BrickGeometry, expnum: int, seed: int, fwhm: float, sig1: float = 0.01) -> Tim:
    """An exposure on the brick's own pixel grid: noise plus one bright star at (40, 60)."""
    rng = np.random.default_rng(seed)
    h, w = geom.height, geom.width
    yy, xx = np.mgrid[0:h, 0:w]
    s = fwhm / 2.35
    flux = 400.0 * sig1 * 2 * np.pi * 1.3**2  # peak 400σ at 3-pixel seeing
    star = flux / (2 * np.pi * s * s) * np.exp(-((xx - 40.3) ** 2 + (yy - 60.7) ** 2) / (2 * s * s))
    image = (rng.normal(0.0, sig1, (h, w)) + star).astype(np.float32)
    wcs = dataclasses.replace(geom.wcs())
    return Tim(
        name=f"decam {expnum}-N4",
        camera="decam",
        expnum=expnum,
        ccdname="N4",
        band="r",
        mjd_obs=58000.0 + expnum,
        image=image,
        invvar=np.full((h, w), np.float32(1.0 / sig1**2)),
        dq=np.zeros((h, w), np.int16),
        x0=0,
        y0=0,
        wcs=wcs,
        psf=PsfModel(bases=np.zeros((1, 5, 5), np.float32), fwhm=fwhm),
        psf_fwhm=fwhm,
        sig1=sig1,
        psfnorm=0.1,
        galnorm=0.08,
    )


@pytest.fixture
def geom() -> BrickGeometry:
    """A 120² piece of the brick."""
    return BrickGeometry.for_brick(BRICK, width=120, height=120)


def test_cosmic_ray_in_one_exposure_is_masked_there_only(geom):
    """A 40σ hit in one of two exposures is masked in it; the star and the other stay."""
    a, b = fake_tim(geom, 1, 1, fwhm=3.0), fake_tim(geom, 2, 2, fwhm=4.5)
    a.image[90:92, 20:23] += np.float32(40 * a.sig1)
    masks, stats = outlier_masks([a, b], geom, ("r",))
    assert masks[0][90:92, 20:23].all()
    assert not masks[1].any()
    assert not masks[0][50:72, 30:52].any()  # the star, despite different seeing
    yy, xx = np.nonzero(masks[0])  # legacypipe's growth around the hit
    assert np.hypot(yy - 90.5, xx - 21).max() < 17  # at most GROW_REACH from the hit
    assert stats["r"]["n_exposures"] == 2 and stats["r"]["brick_pixels_flagged"] > 0
    again, _ = outlier_masks([a, b], geom, ("r",))
    assert all(np.array_equal(m, n) for m, n in zip(masks, again, strict=True))


def test_clipped_maximum_is_compared_with_the_rest(geom):
    """With 5 exposures the hit is their maximum; it is still masked, and only there."""
    tims = [fake_tim(geom, i, i, fwhm=3.0 + 0.2 * i) for i in range(1, 6)]
    tims[2].image[30:32, 80:82] += np.float32(30 * tims[2].sig1)
    masks, stats = outlier_masks(tims, geom, ("r",))
    assert stats["r"]["brick_pixels_clipped"] == stats["r"]["brick_pixels_multi"] > 13_000
    assert masks[2][30:32, 80:82].all()
    assert sum(int(m.sum()) for i, m in enumerate(masks) if i != 2) == 0


def test_single_exposure_band_is_skipped_and_masks_apply(geom, tmp_path):
    """One exposure: nothing compared; two: masked pixels get invvar 0 and the outlier bit."""
    a = fake_tim(geom, 1, 1, fwhm=3.0)
    a.image[90:92, 20:23] += np.float32(40 * a.sig1)
    layout = ReleaseLayout(tmp_path)
    alone = stage_outliers(layout=layout, geom=geom, bands=("r",), tims=[a])
    assert alone["outlier_stats"]["bands"]["r"]["skipped"] == "fewer than 2 exposures"
    assert alone["tims"][0] is a and alone["outlier_stats"]["masked_pixels"] == 0
    b = fake_tim(geom, 2, 2, fwhm=3.0)
    out = stage_outliers(layout=layout, geom=geom, bands=("r",), tims=[a, b])
    ma = out["tims"][0]
    hit = (ma.dq & OUTLIER) != 0
    assert hit[90:92, 20:23].all() and np.array_equal(hit, ma.invvar == 0)
    assert (a.invvar > 0).all() and (a.dq == 0).all()  # the input tims are left alone
    assert (dq_bits(ma.dq, "decam")[hit] == OUTLIER).all()
    path = out["outlier_products"][0]
    assert path == layout.metrics(BRICK, "outlier-mask")
    with fitsio.FITS(str(path)) as f:
        mask = f["MASK-decam-1-N4"].read()
        hdr = f["MASK-decam-1-N4"].read_header()
        assert f["MASK-decam-1-N4"].is_compressed()
    assert np.array_equal(mask != 0, hit) and hdr["X0"] == 0 and hdr["IMTYPE"] == "outlier_mask"
    first = path.read_bytes()
    stage_outliers(layout=layout, geom=geom, bands=("r",), tims=[a, b])
    assert path.read_bytes() == first


def test_dq_bits_keep_the_outlier_bit():
    """The outlier bit on top of a CP code survives the code → bit mapping."""
    codes = np.array([[0, 3, 5, OUTLIER, OUTLIER | 5, 1]], np.int16)
    assert list(dq_bits(codes, "decam")[0]) == [0, 2, 16, OUTLIER, OUTLIER | 16, 1]


# -- a simulated survey with a satellite trail ------------------------------------------------
SIZE = 500
TRAIL_BAND = "z"
TRAIL_SIGMA = 50.0
TRAIL_HALF_WIDTH = 1.5
"""CCD pixels either side of the trail's centre line."""
TRAIL_ANGLE = np.radians(30.0)


def trail_distance(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Distance (brick pixels) from the trail's line through the grid's centre."""
    c = (SIZE - 1) / 2.0
    return np.abs((bx - c) * np.sin(TRAIL_ANGLE) - (by - c) * np.cos(TRAIL_ANGLE))


def brick_coords(tim: Tim, geom: BrickGeometry, jx: np.ndarray, jy: np.ndarray) -> Any:
    """0-based brick coordinates of cut-out pixels."""
    ra, dec = tim.wcs.pixel_to_radec(jx + tim.x0 + 1.0, jy + tim.y0 + 1.0)
    bx, by = geom.wcs().radec_to_pixel(ra, dec)
    return bx - 1.0, by - 1.0


def inject_trail(layout: ReleaseLayout, geom: BrickGeometry, expnum: int) -> None:
    """Add a 50σ, 3-pixel-wide unflagged trail to every CCD of one exposure's image file."""
    tims = [
        t for t in read_tims(layout, geom, (TRAIL_BAND,), select_ccds(layout, geom, (TRAIL_BAND,)))
    ]
    done = 0
    for tim in tims:
        if tim.expnum != expnum:
            continue
        path = layout.image(tim.image_filename)
        weight = fitsio.read(
            str(layout.image_companion(tim.image_filename, "oow")), ext=tim.ccdname
        )
        with fitsio.FITS(str(path), "rw") as f:
            data = f[tim.ccdname].read()
            h, w = data.shape
            jy, jx = np.mgrid[0:h, 0:w]
            full = dataclasses.replace(tim, x0=0, y0=0)
            bx, by = brick_coords(full, geom, jx.ravel(), jy.ravel())
            ratio = tim.wcs.pixscale / geom.pixscale
            on = (trail_distance(bx, by) / ratio < TRAIL_HALF_WIDTH).reshape(h, w)
            sigma = 1.0 / np.sqrt(np.median(weight[weight > 0]))
            data[on] += np.float32(TRAIL_SIGMA * sigma)
            f[tim.ccdname].write(data)
            done += int(on.sum())
    assert done > 0


@pytest.fixture(scope="module")
def two_pass(tmp_path_factory: pytest.TempPathFactory) -> ReleaseLayout:
    """The runbrick survey simulated with two passes per band (read-only for the tests)."""
    return build(tmp_path_factory.mktemp("outliers-2pass") / "rel", passes=2)


@pytest.fixture(scope="module")
def trail_runs(two_pass, tmp_path_factory) -> dict[str, Any]:
    """A copy with a trail in one z exposure, run with a pass-through outliers stage, then with it.

    The trail goes into the exposure covering most of the grid; the other one is the reference.
    """
    root = tmp_path_factory.mktemp("outliers-trail") / "rel"
    shutil.copytree(two_pass.root, root)
    layout = ReleaseLayout(root)
    geom = BrickGeometry.for_brick(BRICK, width=SIZE, height=SIZE)
    clean = read_tims(layout, geom, (TRAIL_BAND,), select_ccds(layout, geom, (TRAIL_BAND,)))
    area: dict[int, int] = {}
    for t in clean:
        area[t.expnum] = area.get(t.expnum, 0) + int((t.invvar > 0).sum())
    assert len(area) == 2, area
    expnum = max(area, key=lambda e: area[e])
    inject_trail(layout, geom, expnum)
    out: dict[str, Any] = {"layout": layout, "geom": geom, "expnum": expnum}
    opts = RunbrickOptions(
        width=SIZE, height=SIZE, write_stages=("outliers",), force_all=True, outliers=True
    )
    chain = stages.default_chain()
    chain["outliers"] = stages.stage_outliers  # the old pass-through
    assert run_brick(layout, BRICK, opts, chain=chain).status == "done"
    out["cat_without"] = fitsio.read(str(layout.tractor(BRICK)))
    out["nexp_without"] = fitsio.read(str(layout.coadd(BRICK, "nexp", TRAIL_BAND)))
    result = run_brick(layout, BRICK, opts)
    assert result.status == "done" and "outliers" in result.stages_run
    assert layout.metrics(BRICK, "outlier-mask") in result.products
    out["cat"] = fitsio.read(str(layout.tractor(BRICK)))
    pickle = stage_pickle_path(layout.pickle_pattern(BRICK), BRICK, "outliers")
    out["state"] = read_stage_pickle(pickle, BRICK, "outliers")
    out["clean_tims"] = read_tims(
        layout, geom, ("g", "r", "z"), select_ccds(layout, geom, ("g", "r", "z"))
    )
    return out


@pytest.mark.slow
def test_trail_pixels_are_masked_in_that_exposure(trail_runs):
    """Trail pixels that another exposure covers are masked; little else is."""
    geom, state = trail_runs["geom"], trail_runs["state"]
    nexp = trail_runs["nexp_without"]
    trail_core = 0
    masked_core = 0
    away_masked = away = 0
    for tim in state["tims"]:
        hit = (tim.dq & OUTLIER) != 0
        assert np.array_equal(hit & (tim.invvar > 0), np.zeros_like(hit))
        h, w = tim.shape
        jy, jx = np.mgrid[0:h, 0:w]
        bx, by = brick_coords(tim, geom, jx.ravel(), jy.ravel())
        ratio = tim.wcs.pixscale / geom.pixscale
        dist = (trail_distance(bx, by) / ratio).reshape(h, w)
        ibx, iby = np.rint(bx).astype(int), np.rint(by).astype(int)
        inside = ((ibx >= 4) & (ibx < SIZE - 4) & (iby >= 4) & (iby < SIZE - 4)).reshape(h, w)
        covered = np.zeros(h * w, bool)
        ok = inside.ravel()
        covered[ok] = nexp[iby[ok], ibx[ok]] >= 2
        covered = covered.reshape(h, w)
        if tim.band == TRAIL_BAND and tim.expnum == trail_runs["expnum"]:
            core = (dist < TRAIL_HALF_WIDTH - 0.5) & covered
            trail_core += int(core.sum())
            masked_core += int((core & hit).sum())
            far = dist > TRAIL_HALF_WIDTH + 8
        else:
            far = np.ones((h, w), bool)
        away += int((far & inside).sum())
        away_masked += int((far & inside & hit).sum())
    assert trail_core > 100
    assert masked_core / trail_core > 0.95, (masked_core, trail_core)
    assert away_masked / away < 2e-3, (away_masked, away)
    stats = state["outlier_stats"]
    assert stats["masked_pixels"] >= masked_core


@pytest.mark.slow
def test_bright_stars_are_not_masked(trail_runs):
    """No masked pixel within 2″ of a source brighter than z = 23 off the trail."""
    layout, geom, state = trail_runs["layout"], trail_runs["geom"], trail_runs["state"]
    truth = fitsio.read(str(layout.root / "truth" / "truth.fits"))
    bx, by = geom.wcs().radec_to_pixel(truth["ra"], truth["dec"])
    bx, by = bx - 1, by - 1
    stars = (
        (truth["mag_z"] < 23)
        & (bx > 0)
        & (bx < SIZE)
        & (by > 0)
        & (by < SIZE)
        & (trail_distance(bx, by) > 40)
    )
    assert stars.sum() >= 3
    for tim in state["tims"]:
        jy, jx = np.nonzero((tim.dq & OUTLIER) != 0)
        if len(jy) == 0:
            continue
        mx, my = brick_coords(tim, geom, jx, jy)
        d = np.hypot(mx[:, None] - bx[stars][None, :], my[:, None] - by[stars][None, :])
        assert d.min() * geom.pixscale > 2.0, tim.name


@pytest.mark.slow
def test_no_catalogue_source_along_the_trail(trail_runs):
    """Without the stage the trail breaks into sources; with it only real ones remain there."""
    geom = trail_runs["geom"]
    truth = fitsio.read(str(trail_runs["layout"].root / "truth" / "truth.fits"))
    tx, ty = geom.wcs().radec_to_pixel(truth["ra"], truth["dec"])
    near_truth = trail_distance(tx - 1, ty - 1) * geom.pixscale < 3.0

    nexp = trail_runs["nexp_without"]

    def along(cat: np.ndarray) -> np.ndarray:
        """Sources on the trail where the other exposure could show it is an artefact."""
        d = trail_distance(cat["bx"], cat["by"]) * geom.pixscale
        ix = np.clip(np.rint(cat["bx"]).astype(int), 0, SIZE - 1)
        iy = np.clip(np.rint(cat["by"]).astype(int), 0, SIZE - 1)
        return cat[(d < 1.5) & (nexp[iy, ix] >= 2)]

    without, with_stage = along(trail_runs["cat_without"]), along(trail_runs["cat"])
    assert len(without) >= len(with_stage) + 3, (len(without), len(with_stage))
    print("sources along the trail without / with the stage:", len(without), len(with_stage))
    assert len(with_stage) <= int(near_truth.sum()), (len(with_stage), int(near_truth.sum()))


# -- a clean survey ------------------------------------------------------------------------------
def build_clean(root: Path) -> ReleaseLayout:
    """``runbrick_survey.build`` with two passes and every cosmic ray flagged by the CP."""
    return build(root, passes=2, flagged_cr_fraction=1.0)


@pytest.mark.slow
def test_clean_survey_masks_almost_nothing(tmp_path):
    """Every artefact flagged by the CP: the stage masks < 1e-4 of the pixels it compares."""
    layout = build_clean(tmp_path / "rel")
    geom = BrickGeometry.for_brick(BRICK, width=1800, height=1800)
    bands = ("g", "r", "z")
    tims = read_tims(layout, geom, bands, select_ccds(layout, geom, bands))
    refs = stage_refs(layout=layout, geom=geom)["refs"]
    out = stage_outliers(layout=layout, geom=geom, bands=bands, tims=tims, refs=refs)
    stats = out["outlier_stats"]
    compared = sum(b.get("tim_brick_pixels_compared", 0) for b in stats["bands"].values())
    assert compared > 1_000_000
    assert stats["masked_fraction"] < 1e-4, stats
