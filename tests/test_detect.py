"""Lite runbrick detection on synthetic tims: maps, completeness, blobs (runbrick/detect.py)."""

from __future__ import annotations

import math

import numpy as np
from test_fit import SIG1, make_scene, match, point_sn

from lsdr.survey.runbrick.detect import (
    detect_sources,
    detection_maps,
    find_peaks,
    max_sn_map,
    sed_list,
)
from lsdr.survey.runbrick.fit import fit_sources


def test_detection_map_estimates_point_flux() -> None:
    """detmap at a star is its flux and detiv is Σ psfnorm²/sig1² over the band's tims."""
    spec = [("PSF", 5.0, 0.0), ("PSF", 2.0, 0.0)]
    geom, tims, truth = make_scene(2, truth_spec=spec, bands=("r",), size=160)
    maps = detection_maps(tims, geom, ("r",))
    detmap, detiv = maps["r"]
    assert detmap.shape == (160, 160) and detiv.dtype == np.float32
    expected_iv = sum(t.psfnorm**2 / t.sig1**2 for t in tims)
    assert abs(np.median(detiv) / expected_iv - 1) < 0.01
    bw = geom.wcs()
    for t in truth:
        x, y = bw.radec_to_pixel(t.ra, t.dec)
        ix, iy = round(float(x) - 1), round(float(y) - 1)
        peak = float(detmap[iy - 1 : iy + 2, ix - 1 : ix + 2].max())
        # Bilinear resampling of the filtered map lowers the peak by a few per cent at most.
        assert 0.9 < peak / t.flux["r"] < 1.05


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


def test_saddle_keeps_separate_peaks_only() -> None:
    """find_peaks merges peaks without a saddle and keeps peaks with one."""
    yy, xx = np.mgrid[0:80, 0:80]

    def blob(x0: float, y0: float, amp: float, s: float) -> np.ndarray:
        return amp * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))

    separate = (blob(20, 40, 50, 2) + blob(50, 40, 40, 2)).astype(np.float32)
    assert len(find_peaks(separate, 6.0)) == 2
    # A shoulder on a broad peak: no saddle deep enough → one source.
    merged = (blob(40, 40, 50, 8) + blob(44, 40, 3, 1.5)).astype(np.float32)
    assert len(find_peaks(merged, 6.0)) == 1


def test_sed_filters() -> None:
    """Single-band, flat and red SEDs are searched, as legacypipe does."""
    names = [n for n, _ in sed_list(("g", "r", "z"))]
    assert names == ["g", "r", "z", "Flat", "Red"]
    geom, tims, truth = make_scene(7, truth_spec=[("PSF", 1.0, 0.0)], bands=("g", "r"), size=120)
    sn = max_sn_map(detection_maps(tims, geom, ("g", "r")), ("g", "r"))
    bw = geom.wcs()
    x, y = bw.radec_to_pixel(truth[0].ra, truth[0].dec)
    peak = float(sn[round(float(y) - 1), round(float(x) - 1)])
    expected = point_sn(1.0, 4.2, SIG1, 3) * math.sqrt(1 + 0.8**2)
    assert 0.7 * expected < peak < 1.3 * expected
