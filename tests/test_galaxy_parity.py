"""lite's DEV fit against legacypipe's on a real galaxy (testcase3, brick 2447p120).

legacypipe's test case holds one bright de Vaucouleurs galaxy (S/N ≈ 400 in z) and a faint
point source; both engines run on the same zoom and lite must find the same two sources with
the same types, the galaxy's radius, ellipticity and fluxes close to legacypipe's.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from legacypipe_cases import Case
from test_flux_parity import both_engines

from lsdr.infra.legacypipe_build import LegacypipeBuild

TESTCASE3 = Case("testcase3", "2447p120", (1020, 1070, 2775, 2815))

pytestmark = [pytest.mark.slow, pytest.mark.legacypipe]


@pytest.fixture(scope="module")
def both(
    legacypipe: LegacypipeBuild, tmp_path_factory: pytest.TempPathFactory
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    """(lite's, legacypipe's) catalogues of testcase3's zoom."""
    return both_engines(TESTCASE3, legacypipe, tmp_path_factory)


def _nearest(cat: npt.NDArray[np.void], row: np.void) -> tuple[np.void, float]:
    """The row of ``cat`` nearest to ``row`` and its distance in arcsec."""
    cosd = math.cos(math.radians(float(row["dec"])))
    d = np.hypot((cat["ra"] - row["ra"]) * cosd, cat["dec"] - row["dec"]) * 3600.0
    i = int(np.argmin(d))
    return cat[i], float(d[i])


def test_same_sources_and_types(both: tuple[npt.NDArray[np.void], npt.NDArray[np.void]]) -> None:
    """Every legacypipe source has a lite source within 0.2″ of the same type, and no extras."""
    lite, lp = both
    assert len(lite) == len(lp) == 2
    for row in lp:
        mine, d = _nearest(lite, row)
        assert d < 0.2, d
        assert mine["type"].strip() == row["type"].strip()


def test_dev_shape_and_fluxes(both: tuple[npt.NDArray[np.void], npt.NDArray[np.void]]) -> None:
    """The DEV galaxy: r_e within 5 %, e1 and e2 within 0.03, g/r/z fluxes within 3 %."""
    lite, lp = both
    (gal,) = lp[np.char.strip(lp["type"].astype(str)) == "DEV"]
    mine, _ = _nearest(lite, gal)
    assert float(mine["shape_r"]) == pytest.approx(float(gal["shape_r"]), rel=0.05)
    for col in ("shape_e1", "shape_e2"):
        assert float(mine[col]) == pytest.approx(float(gal[col]), abs=0.03), col
    assert float(mine["sersic"]) == 4.0
    for band in "grz":
        ratio = float(mine[f"flux_{band}"]) / float(gal[f"flux_{band}"])
        assert ratio == pytest.approx(1.0, abs=0.03), band
