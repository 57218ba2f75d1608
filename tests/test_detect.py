"""Lite runbrick detection on synthetic tims: maps, completeness, blobs (runbrick/detect.py)."""

from __future__ import annotations

import math

import numpy as np
from test_fit import SIG1, make_scene, match, point_sn

from lsdr.survey.runbrick.detect import (
    detect_sources,
    detection_maps,
    sed_list,
    sed_peaks,
    sed_sn_map,
)
from lsdr.survey.runbrick.fit import fit_sources


def test_detection_map_estimates_point_flux() -> None:
    """detiv is legacypipe's Σ 1/(sig1 · 2√π σ)² and detmap at a star is its matched flux.

    legacypipe smooths each CCD by a Gaussian of σ = FWHM/2.35 and divides by psfnorm² =
    1/(4πσ²): a star of flux F then peaks at F · Σ P·G / Σ G² (exactly F for a Gaussian PSF).
    """
    spec = [("PSF", 5.0, 0.0), ("PSF", 2.0, 0.0)]
    geom, tims, truth = make_scene(2, truth_spec=spec, bands=("r",), size=160)
    maps = detection_maps(tims, geom, ("r",))
    detmap, detiv = maps.detmap["r"], maps.detiv["r"]
    assert detmap.shape == (160, 160) and detiv.dtype == np.float32
    sigmas = [t.psf_fwhm / 2.35 for t in tims]
    expected_iv = sum(
        1.0 / (t.sig1 * 2 * math.sqrt(math.pi) * s) ** 2 for t, s in zip(tims, sigmas, strict=True)
    )
    assert abs(np.median(detiv) / expected_iv - 1) < 0.01
    # The matched response Σ P·G / Σ G² of each tim's PSF stamp, weighted as the map is.
    response = 0.0
    for t, s in zip(tims, sigmas, strict=True):
        psf = t.psf.at(t.x0 + t.shape[1] / 2 + 0.5, t.y0 + t.shape[0] / 2 + 0.5)
        half = psf.shape[0] // 2
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
        g = np.exp(-(xx**2 + yy**2) / (2 * s * s)) / (2 * math.pi * s * s)
        response += float((psf * g).sum() / (g * g).sum()) / (t.sig1 * s) ** 2
    response /= sum(1.0 / (t.sig1 * s) ** 2 for t, s in zip(tims, sigmas, strict=True))
    bw = geom.wcs()
    for t in truth:
        x, y = bw.radec_to_pixel(t.ra, t.dec)
        ix, iy = round(float(x) - 1), round(float(y) - 1)
        peak = float(detmap[iy - 1 : iy + 2, ix - 1 : ix + 2].max())
        ratio = peak / (t.flux["r"] * response)
        if t.flux["r"] == 2.0:
            # Clear of masked pixels: nearest-pixel sampling lowers the peak by a few per cent.
            assert 0.95 < ratio < 1.05
        else:
            # On one tim's masked column (zeroed before smoothing, as legacypipe): lower.
            assert 0.7 < ratio < 0.95


def test_completeness_half_mag_above_depth() -> None:
    """≥ 90 % of point sources 0.5 mag brighter than the 5σ depth are detected and kept."""
    unit = point_sn(1.0, 4.2, SIG1, 3)
    flux = 5.0 / unit * 10**0.2
    spec = [("PSF", flux, 0.0)] * 80
    geom, tims, truth = make_scene(31, truth_spec=spec, bands=("r",), size=500, min_sep=6.0)
    sources, _, blobs = detect_sources(tims, geom, ("r",))
    detected = match(sources, truth, radius=1.0)
    assert len(detected) >= 0.9 * len(truth), len(detected)
    fitted = fit_sources(sources, blobs, tims, geom, ("r",))
    kept = match(fitted, truth, radius=1.0)
    assert len(kept) >= 0.9 * len(truth), len(kept)
    assert len(fitted) <= len(truth) + 2  # few spurious sources


def test_noise_gives_no_detections() -> None:
    """Pure noise yields (almost) no 6σ detections."""
    geom, tims, _ = make_scene(5, truth_spec=[], bands=("g", "r"), size=300)
    sources, blobmap, _blobs = detect_sources(tims, geom, ("g", "r"))
    assert len(sources) <= 1
    assert (blobmap >= 0).sum() < 2000


def test_blobs_group_close_pairs() -> None:
    """Two stars 2″ apart share one blob; distant stars have their own; the map labels them."""
    pos = [(60.0, 60.0), (67.6, 60.0), (140.0, 140.0)]
    spec = [("PSF", 3.0, 0.0), ("PSF", 3.0, 0.0), ("PSF", 3.0, 0.0)]
    geom, tims, _truth = make_scene(6, truth_spec=spec, bands=("r",), size=200, positions=pos)
    sources, blobmap, blobs = detect_sources(tims, geom, ("r",))
    assert len(sources) == 3
    assert len(blobs) == 2
    sizes = sorted(len(b.sources) for b in blobs)
    assert sizes == [1, 2]
    for b in blobs:
        sy, sx = b.slices
        assert np.array_equal(blobmap[sy, sx] == b.blob_id, b.mask)
        for i in b.sources:
            s = sources[i]
            assert s.blob == b.blob_id
            assert blobmap[round(s.by), round(s.bx)] == b.blob_id
    assert blobmap.dtype == np.int32 and blobmap.min() == -1


def _peaks(sn: np.ndarray, nsigma: float = 6.0) -> int:
    """Number of peaks ``sed_peaks`` keeps on an S/N map with unit weight everywhere."""
    none = np.zeros(0, np.intp)
    _hot, px, _py, _sn = sed_peaks(sn, np.ones_like(sn), nsigma, known=(none, none, np.zeros(0)))
    return len(px)


def test_saddle_keeps_separate_peaks_only() -> None:
    """Peaks without a saddle merge, peaks with one stay apart, a known source cuts its peak."""
    yy, xx = np.mgrid[0:80, 0:80]

    def blob(x0: float, y0: float, amp: float, s: float) -> np.ndarray:
        return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))

    separate = (blob(20, 40, 50, 2) + blob(50, 40, 40, 2)).astype(np.float32)
    assert _peaks(separate) == 2
    # A shoulder on a broad peak: no saddle deep enough → one source.
    merged = (blob(40, 40, 50, 8) + blob(44, 40, 3, 1.5)).astype(np.float32)
    assert _peaks(merged) == 1
    # A source found before (a reference star, an earlier SED) 6 px away, above the peak's
    # saddle level (50 − 5) on a broad hill: the peak is cut; 30 px away, below it: kept.
    one = blob(40, 40, 50, 15).astype(np.float32)
    for kx, kept in ((46, 0), (70, 1)):
        _hot, px, _py, _sn = sed_peaks(
            one,
            np.ones_like(one),
            6.0,
            known=(np.array([kx]), np.array([40]), np.array([4.0])),
        )
        assert len(px) == kept


def test_peak_needs_aperture_contrast() -> None:
    """A plateau: a peak on a raised background is no source unless nsigma above its annulus."""
    yy, xx = np.mgrid[0:80, 0:80]
    bump = 3.0 * np.exp(-((xx - 40) ** 2 + (yy - 40) ** 2) / (2 * 2.0**2))
    assert _peaks((10.0 + bump).astype(np.float32)) == 0
    assert _peaks((10.0 + 3 * bump).astype(np.float32)) == 1


def test_sed_filters() -> None:
    """legacypipe's SEDs in its order: single bands reddest first, then flat and red."""
    names = [n for n, _ in sed_list(("g", "r", "z"))]
    assert names == ["z", "r", "g", "Flat", "Red"]
    assert dict(sed_list(("g", "r", "z")))["Red"] == {"g": 2.5, "r": 1.0, "z": 0.4}
    geom, tims, truth = make_scene(7, truth_spec=[("PSF", 1.0, 0.0)], bands=("g", "r"), size=120)
    maps = detection_maps(tims, geom, ("g", "r"))
    sn = np.maximum.reduce([sed_sn_map(maps, sed)[0] for _, sed in sed_list(("g", "r"))])
    bw = geom.wcs()
    x, y = bw.radec_to_pixel(truth[0].ra, truth[0].dec)
    ix, iy = round(float(x) - 1), round(float(y) - 1)
    peak = float(sn[iy - 1 : iy + 2, ix - 1 : ix + 2].max())
    expected = point_sn(1.0, 4.2, SIG1, 3) * math.sqrt(1 + 0.8**2)
    # A Gaussian filter is not quite the matched filter of a Moffat PSF: a little less S/N.
    assert 0.7 * expected < peak < 1.05 * expected
