"""PsfEx and spline-sky calib files: round trips, merging, and legacypipe's own readers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import fitsio
import numpy as np
import pytest

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core import bricks as grid
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.pretractor.calibs import merge_calibs
from lsdr.survey.pretractor.psfex import (
    CalibMeta,
    PsfModel,
    moffat_alpha,
    moffat_fwhm,
    psf_from_moffat,
    read_psfex,
    write_psfex,
)
from lsdr.survey.pretractor.splinesky import (
    choose_boxsize,
    control_grid,
    fit_spline_sky,
    read_splinesky,
    write_splinesky,
)
from lsdr.survey.pretractor.zeropoints.image import measure_image
from lsdr.survey.simulate.config import PassSpec, SimulationConfig
from lsdr.survey.simulate.simulator import simulate_survey

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "legacypipe-test"
META = CalibMeta(77690, "CCD3", "V4.3", "95a2f3c", "2019-09-21T11:03:45", "123", "lsdr-test")


def test_psfex_round_trip_keeps_model_and_provenance(tmp_path: Path):
    """A written PsfEx file reads back to the same bases, FWHM and Moffat parameters."""
    model = psf_from_moffat(moffat_alpha(2.2, 3.5), 3.5, 13, n_loaded=20, n_accepted=18)
    path = write_psfex(tmp_path / "x-psfex.fits", model, META)
    back = read_psfex(path, 77690, "CCD3")
    assert np.allclose(back.bases, model.bases)
    assert back.fwhm == pytest.approx(2.2, rel=1e-6)
    assert back.moffat_beta == 3.5
    assert np.isclose(back.at(10.0, 20.0).sum(), 1.0)
    row = fitsio.read(str(path))[0]
    assert row["plprocid"].strip() == "95a2f3c" and row["psfaxis1"] == 27
    with pytest.raises(Exception, match="0 rows"):
        read_psfex(path, 77690, "CCD4")


def test_polynomial_terms_follow_psfex_order():
    """A degree-2 model evaluates Σ dx^j dy^k · basis in PsfEx's term order."""
    bases = np.zeros((6, 3, 3), np.float32)
    for k in range(6):
        bases[k, 1, 1] = 1.0
    model = PsfModel(bases=bases, degree=2, polzero=(10.0, 20.0), polscal=(2.0, 4.0))
    dx, dy = (14.0 - 10.0) / 2.0, (28.0 - 20.0) / 4.0
    # order: 1, x, x², y, xy, y²
    expected = 1 + dx + dx**2 + dy + dx * dy + dy**2
    assert model.at(14.0, 28.0, normalise=False)[1, 1] == pytest.approx(expected)


def test_moffat_fwhm_alpha_inverse():
    """moffat_alpha and moffat_fwhm are inverse to each other."""
    assert moffat_fwhm(moffat_alpha(3.1, 2.7), 2.7) == pytest.approx(3.1)


def test_spline_sky_fits_a_gradient_and_round_trips(tmp_path: Path):
    """A spline sky fitted to a gently sloped background follows it and survives write/read.

    Edge boxes are clipped by the image, so their medians sit up to half a box along the
    gradient from their control points: the tolerance is that (0.001/px × 128 px).
    """
    h, w = 300, 260
    yy, xx = np.mgrid[0:h, 0:w]
    image = (100.0 + 0.001 * xx - 0.0005 * yy).astype(np.float32)
    good = np.ones((h, w), bool)
    good[100:120, 50:80] = False
    box = choose_boxsize((h, w))
    model = fit_spline_sky(image, good, 100.0, box)
    assert len(model.xgrid) >= 4 and len(model.ygrid) >= 4
    sky = model.image((h, w))
    assert np.max(np.abs(sky - image)) < 0.13
    assert abs(float(np.mean(sky - image))) < 0.02
    path = write_splinesky(tmp_path / "s.fits", model, META)
    back = read_splinesky(path, 77690, "CCD3")
    assert np.allclose(back.image((h, w)), sky, atol=1e-3)


def test_control_grid_matches_blanton_layout():
    """Control points: W // h + 2 of them, half a box outside the image at both ends."""
    grid_x = control_grid(4032, 512)
    assert len(grid_x) == 4032 // 512 + 2
    assert grid_x[0] < 0 and grid_x[-1] > 4032 - 1
    assert np.all(np.diff(grid_x) == 512)


def test_real_test_data_calibs_read(tmp_path: Path):
    """lsdr's readers load legacypipe's own merged PsfEx and per-CCD sky files."""
    root = SHARED / "mzlsbass2" / "calib"
    psf = read_psfex(
        root / "psfex/90prime/CP/V2.3/CP20170429/ksb_170430_055945_ooi_r_ls9-psfex.fits",
        78730103,
        "CCD4",
    )
    assert psf.degree == 2 and psf.bases.shape == (6, 31, 31)
    assert psf.at(2500.0, 3500.0).sum() == pytest.approx(1.0)
    sky = read_splinesky(
        root / "sky-single/90prime/CP/V2.3/CP20170429/ksb_170430_055945_ooi_r_ls9/"
        "ksb_170430_055945_ooi_r_ls9-CCD4-splinesky.fits",
        78730103,
        "CCD4",
    )
    values = sky.evaluate(np.arange(0, 118, 20), np.arange(0, 119, 20))
    assert np.all(np.abs(values - 11.0) < 0.5)  # the cut-out's sky is ~11 e-/s


# ----------------------------------------------------------------------------------------------
# The real legacypipe reads lsdr's files

READER = r"""
import json, sys
import numpy as np
from astrometry.util.fits import fits_table
from legacypipe.survey import LegacySurveyData
from tractor.psfex import PsfExModel
from tractor.splinesky import SplineSky

root, annotated, which = sys.argv[1], sys.argv[2], sys.argv[3]
survey = LegacySurveyData(survey_dir=root)
out = []
for ccd in fits_table(annotated):
    im = survey.get_image_object(ccd)
    cx, cy = (ccd.width + 1) / 2.0, (ccd.height + 1) / 2.0
    psf = im.read_psf_model(0, 0, pixPsf=True, normalizePsf=True)
    sky = im.read_sky_model()
    xs = np.array([0.0, 10.0, ccd.width / 2.0, ccd.width - 1.0])
    ys = np.array([0.0, 20.0, ccd.height / 2.0, ccd.height - 1.0])
    fn = im.psffn if which == "single" else im.merged_psffn
    T = fits_table(fn)
    Ti = T[int(np.flatnonzero((T.expnum == ccd.expnum)
                              & (np.char.strip(T.ccdname) == ccd.ccdname.strip()))[0])]
    ne = (Ti.poldeg1 + 1) * (Ti.poldeg1 + 2) // 2
    Ti.psf_mask = Ti.psf_mask[:ne, :Ti.psfaxis1, :Ti.psfaxis2]
    if Ti.poldeg1 == 0:
        Ti.polname1, Ti.polname2 = "X_IMAGE", "Y_IMAGE"
        Ti.polgrp1 = Ti.polgrp2 = Ti.polngrp = 1
    sfn = im.skyfn if which == "single" else im.merged_skyfn
    S = fits_table(sfn)
    Sj = S[int(np.flatnonzero((S.expnum == ccd.expnum)
                              & (np.char.strip(S.ccdname) == ccd.ccdname.strip()))[0])]
    h, w = Sj.gridh, Sj.gridw
    Sj.gridvals, Sj.xgrid, Sj.ygrid = Sj.gridvals[:h, :w], Sj.xgrid[:w], Sj.ygrid[:h]
    out.append(dict(
        ccdname=ccd.ccdname.strip(), fwhm=float(psf.fwhm), sig1=float(sky.sig1),
        patch_sum=float(psf.getPointSourcePatch(cx, cy).patch.sum()),
        image=np.asarray(psf.getImage(cx, cy)).tolist(),
        raw_psf=np.asarray(PsfExModel(Ti=Ti).at(cx, cy)).tolist(),
        sky=np.asarray(sky.evaluateGrid(xs, ys)).tolist(),
        raw_sky=np.asarray(SplineSky.from_fits_row(Sj).evaluateGrid(xs, ys)).tolist(),
        xs=xs.tolist(), ys=ys.tolist()))
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReleaseLayout, str]:
    """A one-exposure synthetic survey measured by the lite engine (per-CCD and merged calibs)."""
    root = tmp_path_factory.mktemp("lp-read")
    config = SimulationConfig(
        region=grid.RaDecBox(180.40, 180.50, 32.45, 32.55),
        passes=(PassSpec("mosaic", "z", 1),),
        star_density=6000.0,
        galaxy_density=2000.0,
        reprocessed=0,
        workers=1,
    )
    simulate_survey(root, config)
    layout = ReleaseLayout(root)
    image = str(next(layout.images_dir.rglob("*_ooi_*.fits.fz")).relative_to(layout.images_dir))
    measure_image(layout, image)
    merge_calibs(layout, image)
    return layout, image


def run_reader(
    legacypipe: LegacypipeBuild, layout: ReleaseLayout, image: str, which: str
) -> list[dict[str, object]]:
    """Run the reader script with the real legacypipe and return what it evaluated."""
    script = layout.root / "lp_read.py"
    script.write_text(READER)
    result = subprocess.run(
        [
            str(legacypipe.python),
            str(script),
            str(layout.root),
            str(layout.zpt_annotated(image)),
            which,
        ],
        env=legacypipe.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return list(json.loads(result.stdout))


@pytest.mark.slow
@pytest.mark.legacypipe
@pytest.mark.parametrize("which", ["single", "merged"])
def test_legacypipe_reads_lite_calibs(
    legacypipe: LegacypipeBuild, calibrated: tuple[ReleaseLayout, str], tmp_path: Path, which: str
):
    """legacypipe's read_psf_model/read_sky_model and the Tractor readers load lsdr's files.

    The PSF normalises to 1 and equals lsdr's model; the sky equals lsdr's sky.
    """
    layout, image = calibrated
    if which == "merged":
        # Only the merged files: copy the release without the per-CCD calibs.
        root = tmp_path / "merged-only"
        shutil.copytree(layout.root, root, ignore=shutil.ignore_patterns("*-single"))
        layout = ReleaseLayout(root)
        assert not (root / "calib" / "psfex-single").exists()
    results = run_reader(legacypipe, layout, image, which)
    assert len(results) == 4
    for res in results:
        ccd = str(res["ccdname"])
        expnum = int(fitsio.read(str(layout.zpt_annotated(image)))["expnum"][0])
        calib = layout.psfex_merged(image) if which == "merged" else layout.psfex_single(image, ccd)
        mine = read_psfex(calib, expnum, ccd)
        assert float(res["patch_sum"]) == pytest.approx(1.0, abs=1e-3)  # type: ignore[arg-type]
        image_psf = np.array(res["image"])
        assert image_psf.sum() == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(image_psf, mine.at(0.0, 0.0), atol=1e-6)
        assert np.allclose(np.array(res["raw_psf"]), mine.bases[0], atol=1e-7)
        assert float(res["fwhm"]) == pytest.approx(mine.fwhm)  # type: ignore[arg-type]
        sky_calib = layout.sky_merged(image) if which == "merged" else layout.sky_single(image, ccd)
        sky = read_splinesky(sky_calib, expnum, ccd)
        expected = sky.evaluate(np.array(res["xs"]), np.array(res["ys"]))
        assert np.allclose(np.array(res["sky"]), expected, rtol=1e-6)
        assert np.allclose(np.array(res["raw_sky"]), expected, rtol=1e-6)
        assert float(res["sig1"]) == pytest.approx(sky.stats["sig1"], rel=1e-5)  # type: ignore[arg-type]
