"""The PSF of a CCD: a Moffat fitted to bright isolated stars, as a pixelised PsfEx model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.pretractor.psfex import (
    PsfModel,
    fit_moffat_star,
    moffat_alpha,
    moffat_fwhm,
    psf_from_moffat,
    stamp_half_size,
)
from lsdr.survey.pretractor.zeropoints.exposure import finite_float

FloatArray = npt.NDArray[np.float64]

MIN_PSF_STARS = 3
"""Fewer well-fitted stars than this: the PSF falls back to the header seeing."""
MAX_PSF_STARS = 60


def header_fwhm(header: dict[str, Any], primary: dict[str, Any], pixscale: float) -> float:
    """The seeing FWHM in pixels: the CCD header's, else the primary's SEEING, else 1.3 arcsec."""
    for key in ("FWHM", "SEEINGP1"):
        value = finite_float(header.get(key), 0.0)
        if value > 0:
            return value
    seeing = finite_float(primary.get("SEEING"), 0.0)
    return seeing / pixscale if seeing > 0 and pixscale > 0 else 1.3 / max(pixscale, 0.1)


def stamp(arr: np.ndarray, xi: int, yi: int, half: int) -> np.ndarray:
    """The ``(2 half + 1)``-pixel square cutout of ``arr`` centred on pixel ``(xi, yi)``."""
    return arr[yi - half : yi + half + 1, xi - half : xi + half + 1]


def fit_psf(
    sub: npt.NDArray[np.float32],
    ivar: npt.NDArray[np.float32],
    bad: npt.NDArray[np.bool_],
    sig1: float,
    ref_xy: tuple[FloatArray, FloatArray],
    fwhm_guess: float,
) -> PsfModel:
    """A Moffat PSF from bright isolated unmasked stars found by sep near Gaia positions."""
    import sep

    h, w = sub.shape
    data = np.ascontiguousarray(sub, dtype=np.float32)
    mask = np.ascontiguousarray(bad)
    try:
        objs = sep.extract(data, 10.0, err=sig1, mask=mask, minarea=5, deblend_cont=1.0)
    except Exception:  # sep raises bare Exceptions on pathological images
        objs = np.zeros(0, dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8"), ("flag", "i4")])
    half_fit = int(max(4, math.ceil(2.5 * fwhm_guess)))
    half_psf = stamp_half_size(fwhm_guess)
    fits: list[tuple[float, float, float]] = []
    n_loaded = 0
    if len(objs):
        ox, oy = np.asarray(objs["x"], np.float64), np.asarray(objs["y"], np.float64)
        rx, ry = ref_xy
        near_ref = np.zeros(len(objs), bool)
        if len(rx):
            from scipy.spatial import cKDTree

            dist, _ = cKDTree(np.c_[rx, ry]).query(np.c_[ox, oy])
            near_ref = dist < 1.5
        from scipy.spatial import cKDTree

        tree = cKDTree(np.c_[ox, oy])
        counts = np.array([len(n) for n in tree.query_ball_point(np.c_[ox, oy], 2.0 * half_fit)])
        isolated = counts == 1
        inside = (
            (ox > half_psf + 1)
            & (ox < w - half_psf - 2)
            & (oy > half_psf + 1)
            & (oy < h - half_psf - 2)
        )
        ok = (objs["flag"] == 0) & isolated & inside & near_ref
        order = np.argsort(-objs["flux"])
        for i in order:
            if not ok[i] or len(fits) >= MAX_PSF_STARS:
                continue
            xi, yi = round(ox[i]), round(oy[i])
            if stamp(bad, xi, yi, half_fit).any():
                continue
            n_loaded += 1
            star = fit_moffat_star(
                stamp(data, xi, yi, half_fit).astype(np.float64),
                stamp(ivar, xi, yi, half_fit).astype(np.float64),
                ox[i] - xi,
                oy[i] - yi,
                fwhm_guess,
            )
            if star.ok and star.flux > 50.0 * sig1:
                fits.append((moffat_fwhm(star.alpha, star.beta), star.beta, star.flux))
    if len(fits) >= MIN_PSF_STARS:
        arr = np.array(fits)
        fwhm = float(np.median(arr[:, 0]))
        beta = float(np.median(arr[:, 1]))
        keep = np.abs(arr[:, 0] / fwhm - 1.0) < 0.2
        if keep.sum() >= MIN_PSF_STARS:
            fwhm = float(np.median(arr[keep, 0]))
            beta = float(np.median(arr[keep, 1]))
        half = stamp_half_size(fwhm)
        model = psf_from_moffat(moffat_alpha(fwhm, beta), beta, half, n_loaded, int(keep.sum()))
        return model
    beta = 3.5
    return psf_from_moffat(moffat_alpha(fwhm_guess, beta), beta, half_psf, n_loaded, 0)
