"""Iterative detection: a source hidden on a brighter one's saddle is found on the residuals."""

from __future__ import annotations

import numpy as np
from test_fit import SIG1, make_scene, match, point_sn

from lsdr.survey.runbrick.detect import detect_sources
from lsdr.survey.runbrick.fit import fit_sources
from lsdr.survey.runbrick.iterative import ITERATIVE, blob_geometry

BANDS = ("r",)


def _scene() -> tuple:
    """A bright star and a star 12 × fainter 1.6″ away (6 px at 0.262″), no saddle between."""
    unit = point_sn(1.0, 4.2, SIG1, 3)
    bright, faint = 400.0 / unit, 30.0 / unit
    pos = [(100.0, 100.0), (106.0, 100.0)]
    spec = [("PSF", bright, 0.0), ("PSF", faint, 0.0)]
    return make_scene(41, truth_spec=spec, bands=BANDS, size=200, positions=pos)


def test_first_pass_misses_the_faint_neighbour() -> None:
    """The first detection finds one peak (the saddle test and the 4-px exclusion merge them)."""
    geom, tims, truth = _scene()
    sources, _blobmap, _blobs = detect_sources(tims, geom, BANDS)
    assert len(match(sources, truth[:1], radius=1.0)) == 1
    assert len(sources) == 1


def test_residuals_give_the_neighbour_back() -> None:
    """With iterative detection both stars are fitted, the faint one flagged, fluxes near truth."""
    geom, tims, truth = _scene()
    sources, _blobmap, blobs = detect_sources(tims, geom, BANDS)
    fitted = fit_sources(sources, blobs, tims, geom, BANDS)
    pairs = match(fitted, truth, radius=0.5)
    assert len(pairs) == 2, [(s.bx, s.by, s.flux) for s in fitted]
    assert len(fitted) == 2
    for t, s in pairs:
        assert abs(s.flux["r"] / t.flux["r"] - 1) < 0.1
    faint = next(s for t, s in pairs if t is truth[1])
    assert faint.extra.get(ITERATIVE) is True
    bright = next(s for t, s in pairs if t is truth[0])
    assert not bright.extra.get(ITERATIVE)
    # fitbits as the DR10 catalogues document them: ITERATIVE = 2**13; neither moved > 1″.
    assert faint.extra["fitbits"] == 2**13
    assert bright.extra["fitbits"] == 0


def test_without_iterative_only_one() -> None:
    """Switched off (legacypipe's ``--no-iterative``), the neighbour stays missing."""
    from lsdr.survey.runbrick.fit import fit_blob

    geom, tims, truth = _scene()
    sources, _blobmap, blobs = detect_sources(tims, geom, BANDS)
    (blob,) = blobs
    kept = fit_blob(blob, [sources[i] for i in blob.sources], tims, geom, BANDS, iterative=False)
    assert len(kept) == 1
    assert len(match(kept, truth[:1], radius=0.5)) == 1


def test_noise_adds_no_iterative_sources() -> None:
    """Isolated stars on noise: the residual search adds nothing."""
    unit = point_sn(1.0, 4.2, SIG1, 3)
    spec = [("PSF", 50.0 / unit, 0.0)] * 6
    geom, tims, truth = make_scene(43, truth_spec=spec, bands=BANDS, size=200, min_sep=12.0)
    sources, _blobmap, blobs = detect_sources(tims, geom, BANDS)
    fitted = fit_sources(sources, blobs, tims, geom, BANDS)
    assert not any(s.extra.get(ITERATIVE) for s in fitted)
    assert len(match(fitted, truth, radius=0.5)) == len(truth) == len(fitted)


def test_blob_grid_is_the_brick_grid_shifted() -> None:
    """Pixel (i, j) of a blob's grid is brick pixel (x0 + i, y0 + j): the same sky position."""
    from lsdr.survey.runbrick.detect import Blob
    from lsdr.survey.runbrick.types import BrickGeometry

    geom = BrickGeometry.for_brick("1867p255", width=300, height=300)
    blob = Blob(0, 40, 90, 120, 150, np.ones((30, 50), bool), ())
    sub = blob_geometry(geom, blob)
    assert (sub.width, sub.height) == (50, 30)
    ra, dec = sub.wcs().pixel_to_radec(np.array([1.0, 11.0]), np.array([1.0, 21.0]))
    ra2, dec2 = geom.wcs().pixel_to_radec(np.array([41.0, 51.0]), np.array([121.0, 141.0]))
    assert np.allclose(ra, ra2, atol=1e-10, rtol=0) and np.allclose(dec, dec2, atol=1e-10, rtol=0)
