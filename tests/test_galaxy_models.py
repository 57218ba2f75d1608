"""EXP and DEV fits: elliptical galaxies come back as their type, with their shape.

The galaxies are drawn by the simulator's Sérsic renderer (pixelised profiles), not by the
Gaussian mixtures lite fits with (runbrick/fit.py, core/galaxyprofile.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_fit import SIG1, make_scene, match, point_sn

from lsdr.survey.core.galaxyprofile import DEV_AMPLITUDES, LUX_AMPLITUDES, shape_basis
from lsdr.survey.runbrick.detect import detect_sources
from lsdr.survey.runbrick.fit import fit_sources, select_model

BANDS = ("g", "r")


@pytest.fixture(scope="module")
def fitted() -> tuple[list, list]:
    """Two bright elliptical galaxies (EXP e = 0.4, DEV e = 0.3) and a star, fitted."""
    unit = point_sn(1.0, 4.2, SIG1, 3)
    spec = [("EXP", 400.0 / unit, 1.5), ("DEV", 600.0 / unit, 1.2), ("PSF", 100.0 / unit, 0.0)]
    shapes = [(1, 0.4, 0.0), (4, 0.0, -0.3), (1, 0.0, 0.0)]
    pos = [(70.0, 70.0), (180.0, 170.0), (70.0, 180.0)]
    geom, tims, truth = make_scene(
        17, truth_spec=spec, bands=BANDS, size=260, positions=pos, shapes=shapes
    )
    sources, _blobmap, blobs = detect_sources(tims, geom, BANDS)
    out = fit_sources(sources, blobs, tims, geom, BANDS)
    return truth, out


def test_types_and_shapes(fitted: tuple[list, list]) -> None:
    """Each galaxy is its own type, with r_e within 15 % and e within 0.08 of the truth."""
    truth, out = fitted
    pairs = dict((t.type, s) for t, s in match(out, truth, radius=0.5))
    assert set(pairs) == {"EXP", "DEV", "PSF"}, [(s.type, s.bx, s.by) for s in out]
    assert [pairs[k].type for k in ("EXP", "DEV", "PSF")] == ["EXP", "DEV", "PSF"]
    exp, dev = pairs["EXP"], pairs["DEV"]
    assert exp.shape_r == pytest.approx(1.5, rel=0.15)
    assert dev.shape_r == pytest.approx(1.2, rel=0.15)
    assert exp.shape_e1 == pytest.approx(0.4, abs=0.08) and abs(exp.shape_e2) < 0.08
    assert dev.shape_e2 == pytest.approx(-0.3, abs=0.08) and abs(dev.shape_e1) < 0.08
    assert dev.sersic == 4.0 and exp.sersic == 1.0
    assert exp.shape_e1_ivar > 0 and dev.shape_e2_ivar > 0


def test_fluxes_near_truth(fitted: tuple[list, list]) -> None:
    """Galaxy fluxes within 5 % of the drawn totals in both bands (no extra sources)."""
    truth, out = fitted
    assert len(out) == len(truth)
    for t, s in match(out, truth, radius=0.5):
        for b in BANDS:
            assert s.flux[b] / t.flux[b] == pytest.approx(1.0, abs=0.05), (t.type, b)


def test_galaxy_selection_rule() -> None:
    """legacypipe's upgrade: EXP/DEV beat PSF/REX by more than max(12, 1 % of PSF's Δχ²)."""
    assert select_model({"PSF": 1000.0, "REX": 1100.0, "EXP": 1111.0, "DEV": 1105.0}) == "REX"
    assert select_model({"PSF": 1000.0, "REX": 1100.0, "EXP": 1113.0, "DEV": 1105.0}) == "EXP"
    assert select_model({"PSF": 1000.0, "REX": 1100.0, "EXP": 1113.0, "DEV": 1120.0}) == "DEV"
    assert select_model({"PSF": 1000.0, "REX": 1100.0, "EXP": 1120.0, "DEV": 1120.0}) == "EXP"
    # 1 % of a bright source's PSF Δχ² is the larger margin.
    assert select_model({"PSF": 1e5, "REX": 1.1e5, "EXP": 1.1e5 + 900, "DEV": 0.0}) == "REX"
    assert select_model({"PSF": 1e5, "REX": 1.1e5, "EXP": 1.1e5 + 1001, "DEV": 0.0}) == "EXP"


def test_mixtures_are_the_tractors() -> None:
    """Unit-flux mixtures; the DEV core holds 1.0233 % of the flux (Hogg & Lang 2013)."""
    assert LUX_AMPLITUDES.sum() == pytest.approx(1.0)
    assert DEV_AMPLITUDES.sum() == pytest.approx(1.0)
    assert DEV_AMPLITUDES[0] == pytest.approx(0.010233)


def test_shape_basis_round_and_elongated() -> None:
    """e = 0 is a circle of radius r_e; e1 > 0 squeezes east-west by (1 − e)/(1 + e)."""
    assert np.allclose(shape_basis(2.0, 0.0, 0.0), 2.0 * np.eye(2))
    g = shape_basis(1.0, 0.5, 0.0)
    cov = g @ g.T
    assert cov[0, 0] == pytest.approx((1 / 3) ** 2) and cov[1, 1] == pytest.approx(1.0)
    assert math.isclose(cov[0, 1], 0.0, abs_tol=1e-12)
