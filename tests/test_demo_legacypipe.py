"""The demo through the real runbrick: ``lsdr demo --engine legacypipe``, measured against lite.

The demo survey (simulated, pre-processed by lite: CCD tables and kd-tree, merged PsfEx and
spline-sky calibs, Gaia chunks, Tycho-2 and brick tables written by the simulator) is read by
legacypipe's own runbrick on every brick of the demo's brick list, at the demo's size (1800² at
0.524″).  Each brick must be the real runbrick's (sidecar: engine legacypipe, exit 0, its
catalogue header naming legacypipe's version) and no brick may fall back to lite.  Then the
acceptance numbers of issue 20 on the demo, lite's catalogues (the shared lite demo) against
legacypipe's, computed here by a one-to-one nearest match (``validate.match_radec``, tested
against brute force in ``test_validate``): point sources with S/N > 20 have a lite/legacypipe
flux-ratio median within 2 % of 1 per band; lite matches ≥ 95 % of legacypipe's S/N > 10
sources within 0.5″; lite's extra detections are < 10 % of legacypipe's; each maskbit agrees
on ≥ 99 % of pixels.  Both engines' star fluxes are checked against the truth too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import numpy.typing as npt
import pytest
from demo_release import DemoRun, lsdr

from lsdr.infra.legacypipe_build import LegacypipeBuild
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.simulate.validate import match_radec
from lsdr.tasks.sidecars import read_sidecar, sidecar_path

# The module's fixture makes the whole legacypipe demo (16 min alone, 36 min in CI's run).
pytestmark = [pytest.mark.legacypipe, pytest.mark.slow, pytest.mark.timeout(3600)]

BANDS = ("g", "r", "z")
MATCH_ARCSEC = 0.5


@pytest.fixture(scope="module")
def lp_demo(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory, legacypipe: LegacypipeBuild
) -> Path:
    """``lsdr demo --engine legacypipe``, once for the module (the user's command).

    ``LSDR_TEST_LP_DEMO=DIR`` reads a finished ``lsdr demo --engine legacypipe --out DIR``
    instead, as ``LSDR_TEST_DEMO`` does for lite's (a developer's shortcut).
    """
    reuse = os.environ.get("LSDR_TEST_LP_DEMO")
    if reuse:
        return Path(reuse)
    out = tmp_path_factory.mktemp("demo-legacypipe") / "demo"
    run = lsdr("demo", "--engine", "legacypipe", "--out", str(out), timeout=3500)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


def bricks_of(root: Path) -> list[str]:
    """The demo's brick list."""
    return ReleaseLayout(root).brick_list.read_text().split()


def catalogue(root: Path, brick: str) -> npt.NDArray[Any]:
    """A brick's tractor catalogue."""
    return np.asarray(fitsio.read(str(ReleaseLayout(root).tractor(brick)), ext="CATALOG"))


def test_every_demo_brick_is_the_real_runbrick(lp_demo: Path) -> None:
    """Each brick: the real runbrick's sidecar (exit 0, its argv), catalogue by legacypipe."""
    layout = ReleaseLayout(lp_demo)
    bricks = bricks_of(lp_demo)
    assert len(bricks) == 15
    for brick in bricks:
        data = read_sidecar(sidecar_path(layout, "tractor", brick))
        assert data is not None, brick
        assert data["engine"] == "legacypipe", brick
        command = data["summary"]["command"]
        assert command["exit_code"] == 0, brick
        assert command["argv"][2].endswith("legacypipe/runbrick.py"), brick
        assert data["summary"].get("science") != "lite", brick
        header = fitsio.read_header(str(layout.tractor(brick)), ext=0)
        assert str(header["LEGPIPEV"]).strip() == "DR11.1.0-28-g93e2d828", brick
        cat = catalogue(lp_demo, brick)
        assert len(cat) > 50, brick
        assert np.all(np.isfinite(cat["ra"])) and np.all(cat["brickname"] == brick)


def _matched(lite: npt.NDArray[Any], lp: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """For each legacypipe source, the lite source within 0.5″ (one to one), else −1."""
    return np.asarray(match_radec(lp["ra"], lp["dec"], lite["ra"], lite["dec"], MATCH_ARCSEC))


def _combined(lp_demo: Path, demo_release: DemoRun) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Row-aligned (legacypipe, lite) pairs of matched sources over all bricks, primary only."""
    lps, lites = [], []
    for brick in bricks_of(lp_demo):
        lp, lite = catalogue(lp_demo, brick), catalogue(demo_release.out, brick)
        lp = lp[lp["brick_primary"]]
        lite = lite[lite["brick_primary"]]
        m = _matched(lite, lp)
        ok = m >= 0
        lps.append(lp[ok])
        lites.append(lite[m[ok]])
    return np.concatenate(lps), np.concatenate(lites)


def test_point_source_fluxes_agree_within_two_percent(lp_demo: Path, demo_release: DemoRun) -> None:
    """Sources typed PSF by both, S/N > 20 in legacypipe: median lite/legacypipe within 2 %."""
    lp, lite = _combined(lp_demo, demo_release)
    for band in BANDS:
        f_lp, f_lite = lp[f"flux_{band}"], lite[f"flux_{band}"]
        sn = f_lp * np.sqrt(lp[f"flux_ivar_{band}"])
        psf = (np.char.strip(lp["type"].astype(str)) == "PSF") & (
            np.char.strip(lite["type"].astype(str)) == "PSF"
        )
        sel = psf & (sn > 20) & (f_lp > 0)
        assert sel.sum() >= 30, (band, int(sel.sum()))
        ratio = float(np.median(f_lite[sel] / f_lp[sel]))
        assert abs(ratio - 1.0) < 0.02, (band, ratio)


def test_lite_finds_legacypipe_sources_and_few_extras(lp_demo: Path, demo_release: DemoRun) -> None:
    """≥ 95 % of legacypipe's S/N > 10 sources matched; lite's unmatched < 10 % of legacypipe's."""
    found = total = extras = n_lp = 0
    for brick in bricks_of(lp_demo):
        lp, lite = catalogue(lp_demo, brick), catalogue(demo_release.out, brick)
        lp = lp[lp["brick_primary"]]
        lite = lite[lite["brick_primary"]]
        m = _matched(lite, lp)
        sn = np.sqrt(sum((lp[f"flux_{b}"] ** 2 * lp[f"flux_ivar_{b}"]) for b in BANDS))
        bright = sn > 10
        found += int(np.count_nonzero(m[bright] >= 0))
        total += int(np.count_nonzero(bright))
        extras += len(lite) - int(np.count_nonzero(m >= 0))
        n_lp += len(lp)
    assert total > 500
    assert found / total >= 0.95, (found, total)
    assert extras / n_lp < 0.10, (extras, n_lp)


def test_maskbits_agree_per_bit(lp_demo: Path, demo_release: DemoRun) -> None:
    """Every bit set in either engine's maskbits agrees on ≥ 99 % of each brick's pixels."""
    for brick in bricks_of(lp_demo):
        lp_file = ReleaseLayout(lp_demo).coadd_maskbits(brick)
        lite_file = ReleaseLayout(demo_release.out).coadd_maskbits(brick)
        lp_map = fitsio.read(str(lp_file), ext="MASKBITS").astype(np.int64)
        lite_map = fitsio.read(str(lite_file), ext="MASKBITS").astype(np.int64)
        header = fitsio.read_header(str(lp_file), ext="MASKBITS")
        assert lp_map.shape == lite_map.shape
        bits = {k: int(header[k]) for k in header if str(k).startswith("MB_")} or {
            f"bit{i}": 1 << i for i in range(16)
        }
        for name, value in bits.items():
            a, b = (lp_map & value) != 0, (lite_map & value) != 0
            if not (a.any() or b.any()):
                continue
            agree = float(np.mean(a == b))
            assert agree >= 0.99, (brick, name, agree, int(a.sum()), int(b.sum()))


def test_both_engines_star_fluxes_match_the_truth(lp_demo: Path, demo_release: DemoRun) -> None:
    """Truth stars with S/N > 20: each engine's median flux / true flux within 2 % per band."""
    truth = np.asarray(fitsio.read(str(ReleaseLayout(lp_demo).truth_catalog)))
    star = np.char.strip(truth["type"].astype(str)) == "PSF"
    for root in (lp_demo, demo_release.out):
        ratios: dict[str, list[float]] = {b: [] for b in BANDS}
        for brick in bricks_of(lp_demo):
            cat = catalogue(root, brick)
            cat = cat[cat["brick_primary"]]
            m = np.asarray(match_radec(cat["ra"], cat["dec"], truth["ra"], truth["dec"], 1.0))
            ok = m >= 0
            for band in BANDS:
                true = truth[f"flux_{band}"][m[ok]]
                sn = true * np.sqrt(cat[f"flux_ivar_{band}"][ok])
                sel = star[m[ok]] & (sn > 20)
                ratios[band].extend(cat[f"flux_{band}"][ok][sel] / true[sel])
        for band in BANDS:
            assert len(ratios[band]) >= 30, (root.name, band)
            assert abs(float(np.median(ratios[band])) - 1.0) < 0.02, (root, band)
