"""Flux parity of the lite runbrick with the real legacypipe on legacypipe's own test images.

Issue 20: lite's fluxes were reported 4–8 % above legacypipe's.  Measured
(docs/runbrick-fitting.md "Flux parity with legacypipe"): the calibrated pixels and the PSF are
legacypipe's (to 0.01 %, Mosaic/90Prime with the per-amplifier zeropoint correction),
but lite's round exponential was the exact exponential while legacypipe's is the Tractor's
six-Gaussian "lux" profile: fitting the former to the latter gave 1–2 % more flux, more on real
galaxies.  These tests compare with the real code, run in a subprocess in the build's Python:
one CCD's tim pixels, PSF and unit-flux REX models, and the point-source fluxes of two real
bricks (mzlsbass2: 90Prime g,r + Mosaic z; testcase8: DECam r), each engine run once per case.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import numpy.typing as npt
import pytest
from legacypipe_cases import Case
from required_in_ci import legacypipe_test_case

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.runbrick.fit import TimRenderer
from lsdr.survey.runbrick.options import RunbrickOptions
from lsdr.survey.runbrick.stages import brick_geometry
from lsdr.survey.runbrick.tims import read_tims
from lsdr.survey.runbrick.types import Tim

pytestmark = [pytest.mark.legacypipe, pytest.mark.slow]

MZLSBASS2 = Case("mzlsbass2", "1773p595", (1300, 1500, 700, 900))
TESTCASE6 = Case("testcase6", "1102p240", (500, 600, 650, 750))
TESTCASE8 = Case("testcase8", "1209p050", (720, 1095, 3220, 3500))
RADII = (0.3, 0.54, 1.0, 1.42)
"""REX half-light radii (arcsec) compared: the compact galaxies REX is for."""

READER = r"""
import sys, numpy as np
from legacypipe.survey import LegacySurveyData, RexGalaxy, LogRadius
from legacypipe.runbrick import get_brick
from tractor import PointSource, NanoMaggies
from tractor.patch import ModelMask
survey_dir, brick = sys.argv[1:3]
x0, x1, y0, y1 = [int(v) for v in sys.argv[3:7]]
ccdname, out = sys.argv[7:9]
radii = [float(v) for v in sys.argv[9:]]
survey = LegacySurveyData(survey_dir=survey_dir)
zoom = (x0, x1, y0, y1)
_, _, targetwcs, targetrd = get_brick(survey, None, None, brick, 3600, 3600, 0.262, zoom)
ccds = survey.ccds_touching_wcs(targetwcs, ccdrad=None)
for ccd in ccds:
    im = survey.get_image_object(ccd)
    if '%s-%i-%s' % (im.camera, im.expnum, im.ccdname.strip()) == ccdname:
        break
else:
    raise SystemExit('no CCD ' + ccdname)
# runbrick's stage_tims options (hybrid, normalised PsfEx PSF; spline sky subtracted)
tim = im.get_tractor_image(radecpoly=targetrd, pixPsf=True, hybridPsf=True, normalizePsf=True,
                           subsky=True, apodize=False)
h, w = tim.shape
px, py = w / 2.0 + 0.3, h / 2.0 - 0.2
pos = tim.wcs.pixelToPosition(px, py)
half = 60
mm = ModelMask(int(px) - half, int(py) - half, 2 * half + 1, 2 * half + 1)
res = dict(img=tim.getImage(), invvar=tim.getInvvar(), x0=tim.x0, y0=tim.y0, ra=pos.ra,
           dec=pos.dec, mx0=mm.x0, my0=mm.y0,
           psf=tim.psf.getPointSourcePatch(w // 2, h // 2).patch,
           psfnorm=im.psf_norm(tim), galnorm=im.galaxy_norm(tim))
for i, re in enumerate([0.0] + radii):
    flux = NanoMaggies(**{tim.band: 1.0})
    src = PointSource(pos, flux) if re == 0 else RexGalaxy(pos, flux, LogRadius(np.log(re)))
    res['model%d' % i] = src.getModelPatch(tim, modelMask=mm).patch
np.savez(out, **res)
"""


def _case_copy(case: Case, where: Path) -> Path:
    root = where / case.name
    if not root.exists():
        shutil.copytree(legacypipe_test_case(case.name), root)
    return root


def _legacypipe_tim(
    build: LegacypipeBuild, survey: Path, case: Case, ccd: str, out: Path
) -> dict[str, Any]:
    """legacypipe's tim of one CCD of the case, and the Tractor's unit-flux models on it."""
    script = out.parent / "lp_tim.py"
    script.write_text(READER)
    argv = [str(build.python), str(script), str(survey), case.brick]
    argv += [str(z) for z in case.zoom] + [ccd, str(out)] + [str(r) for r in RADII]
    result = subprocess.run(
        argv, env=build.env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _lite_tim(survey: Path, case: Case, ccd: str) -> Tim:
    geom = brick_geometry(case.brick, RunbrickOptions(zoom=case.zoom))
    tims = read_tims(ReleaseLayout(survey), geom, ("g", "r", "z"))
    return next(t for t in tims if f"{t.camera}-{t.expnum}-{t.ccdname}" == ccd)


@pytest.fixture(
    scope="module", params=[(TESTCASE6, "decam-790643-S4"), (MZLSBASS2, "90prime-81900110-CCD4")]
)
def one_ccd(
    request: pytest.FixtureRequest,
    legacypipe: LegacypipeBuild,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Tim, dict[str, Any]]:
    """(lite's tim, legacypipe's tim and models) of one real CCD."""
    case, ccd = request.param
    where = tmp_path_factory.mktemp(f"tim-{case.name}")
    survey = _case_copy(case, where)
    theirs = _legacypipe_tim(legacypipe, survey, case, ccd, where / "lp.npz")
    return _lite_tim(survey, case, ccd), theirs


def _overlap(tim: Tim, theirs: dict[str, Any], plane: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """lite's ``plane`` on legacypipe's cut-out (legacypipe trims fully masked edges)."""
    x0, y0 = int(theirs["x0"]) - tim.x0, int(theirs["y0"]) - tim.y0
    h, w = theirs["img"].shape
    return plane[y0 : y0 + h, x0 : x0 + w]


def test_calibrated_pixels_and_psf_equal_legacypipes(one_ccd: tuple[Tim, dict[str, Any]]) -> None:
    """Sky-subtracted nanomaggy pixels, invvar and PSF stamp equal legacypipe's tim.

    Within 0.01 % for every camera: for BASS/MzLS both apply legacypipe's per-amplifier
    zeropoint correction (``ampcorrections.fits``; without it lite was 0.4–0.6 % off there).
    """
    tim, theirs = one_ccd
    tol = 1e-4
    img, ivar = _overlap(tim, theirs, tim.image), _overlap(tim, theirs, tim.invvar)
    good = (ivar > 0) & (theirs["invvar"] > 0)
    assert np.mean((ivar > 0) == (theirs["invvar"] > 0)) > 0.999
    sig1 = float(1.0 / np.sqrt(np.median(theirs["invvar"][good])))
    bright = good & (theirs["img"] > 20 * sig1)
    assert bright.sum() > 20
    ratio = float(np.median(img[bright] / theirs["img"][bright]))
    assert ratio == pytest.approx(1.0, abs=tol)
    assert float(np.median(img[good] - theirs["img"][good])) == pytest.approx(0.0, abs=0.01 * sig1)
    assert float(np.median(ivar[good] / theirs["invvar"][good])) == pytest.approx(1.0, abs=2 * tol)
    h, w = theirs["img"].shape  # legacypipe's patch is at its cut-out's (w//2, h//2), 0-based
    mine = tim.psf.at(int(theirs["x0"]) + w // 2 + 1.0, int(theirs["y0"]) + h // 2 + 1.0)
    assert mine.shape == theirs["psf"].shape
    assert np.abs(mine - theirs["psf"]).max() < 1e-3 * theirs["psf"].max()


def test_unit_models_match_the_tractors(one_ccd: tuple[Tim, dict[str, Any]]) -> None:
    """lite's unit-flux PSF and REX models, fitted to the Tractor's, give flux 1 within 0.5 %.

    Uniform weights (the sky-limited case).  With the exact exponential the REX ratios were
    1.008–1.011 (DECam) and 1.011–1.019 (90Prime) for these radii.
    """
    tim, theirs = one_ccd
    x, y = tim.wcs.radec_to_pixel(np.array([float(theirs["ra"])]), np.array([float(theirs["dec"])]))
    # 0-based cut-out coordinates of lite's tim; legacypipe's patch origin is in its own cut-out.
    x0, y0 = float(x[0]) - 1.0 - tim.x0, float(y[0]) - 1.0 - tim.y0
    shift_x, shift_y = int(theirs["x0"]) - tim.x0, int(theirs["y0"]) - tim.y0
    renderer = TimRenderer(tim)
    for i, r_e in enumerate((0.0, *RADII)):
        model = theirs[f"model{i}"]
        n = max(renderer.stamp_size(r_e), 2 * model.shape[0] + 8)
        ox, oy, comps = renderer.render(x0, y0, r_e, n)
        gx = int(theirs["mx0"]) + shift_x - ox
        gy = int(theirs["my0"]) + shift_y - oy
        mine = comps[0][gy : gy + model.shape[0], gx : gx + model.shape[1]]
        assert mine.shape == model.shape
        flux = float(np.sum(model * mine) / np.sum(mine * mine))
        assert flux == pytest.approx(1.0, abs=5e-3), f"r_e {r_e}: {flux}"


def test_detection_norms_equal_legacypipes(one_ccd: tuple[Tim, dict[str, Any]]) -> None:
    """The tim's PSF and galaxy (0.45″ round exponential) norms equal legacypipe's within 0.5 %.

    With the exact exponential the galaxy norm was 1.2 % (DECam) to 2.6 % (Mosaic) low.
    """
    tim, theirs = one_ccd
    assert tim.psfnorm == pytest.approx(float(theirs["psfnorm"]), rel=5e-3)
    assert tim.galnorm == pytest.approx(float(theirs["galnorm"]), rel=5e-3)


def _catalogue(outdir: Path) -> npt.NDArray[np.void]:
    return np.asarray(fitsio.read(glob.glob(str(outdir / "tractor" / "*" / "tractor-*.fits"))[0]))


def _runbrick(survey: Path, case: Case, engine: str, outdir: Path, build: LegacypipeBuild) -> None:
    argv = [sys.executable, "-m", "lsdr", "runbrick", "--survey-dir", str(survey)]
    argv += ["--outdir", str(outdir), "--brick", case.brick, "--zoom"]
    argv += [str(z) for z in case.zoom] + ["--engine", engine]
    env = {**os.environ, "LSDR_LEGACYPIPE_PREFIX": str(build.prefix), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module", params=[MZLSBASS2, TESTCASE8], ids=lambda c: c.name)
def both_catalogues(
    request: pytest.FixtureRequest,
    legacypipe: LegacypipeBuild,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    """(lite's, legacypipe's) catalogues of one case, each engine run once on its own copy."""
    return both_engines(request.param, legacypipe, tmp_path_factory)


def both_engines(
    case: Case, build: LegacypipeBuild, tmp_path_factory: pytest.TempPathFactory
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    """Run a case's zoom with lite and with legacypipe, each on its own copy: both catalogues."""
    cats = []
    for engine in ("lite", "legacypipe"):
        where = tmp_path_factory.mktemp(f"{case.name}-{engine}")
        survey = _case_copy(case, where)
        _runbrick(survey, case, engine, where / "out", build)
        cats.append(_catalogue(where / "out"))
    return cats[0], cats[1]


def test_point_source_fluxes_match_legacypipes(
    both_catalogues: tuple[npt.NDArray[np.void], npt.NDArray[np.void]],
) -> None:
    """Issue 20's acceptance: median lite/legacypipe point-source flux ratio within 2 % per band.

    Over legacypipe's PSF sources with S/N > 20 that lite also types PSF within 0.5″.

    mzlsbass2 has 2 (g), 3 (r), 3 (z) such sources, testcase8 7 (r); the saturated Tycho-2
    stars of testcase6/7 are not in this set (bright-star handling differs, not the fluxes).
    """
    lite, lp = both_catalogues
    checked = 0
    for band in ("g", "r", "z"):
        ratios = []
        for src in lp[lp["type"] == "PSF"]:
            snr = float(src[f"flux_{band}"]) * np.sqrt(float(src[f"flux_ivar_{band}"]))
            if not snr > 20:
                continue
            cosd = np.cos(np.radians(float(src["dec"])))
            d = 3600 * np.hypot((lite["ra"] - src["ra"]) * cosd, lite["dec"] - src["dec"])
            j = int(np.argmin(d))
            if d[j] < 0.5 and str(lite["type"][j]).strip() == "PSF":
                ratios.append(float(lite[f"flux_{band}"][j]) / float(src[f"flux_{band}"]))
        if ratios:
            checked += 1
            assert len(ratios) >= 2
            assert float(np.median(ratios)) == pytest.approx(1.0, abs=0.02), (band, ratios)
    assert checked >= 1
