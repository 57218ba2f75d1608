"""Reference magnitudes of Gaia stars in a CCD's band, and their errors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lsdr.survey.pretractor.zeropoints.exposure import ExposureInfo

FloatArray = npt.NDArray[np.float64]

GAIA_ERROR_FLOOR = {"g": 0.0, "bp": 0.0, "rp": 0.0}
"""Calibration floors (mag) added to Gaia's photon-noise magnitude errors (1.0857/S/N) when the
reference error of a synthetic survey's calibrator is estimated (weights of its zeropoint)."""

GAIA_COLOUR_RANGE = (0.5, 3.0)
"""BP−RP range of Gaia photometric calibrators (``get_gaia_calibrator_color_range``)."""

GAIA_POLY: dict[tuple[str, str], tuple[float, ...]] = {
    ("decam", "g"): (
        -0.1178631039, 0.3650113495, 0.5608615360, -0.2850687702, -1.0243473939,
        1.4378375491, 0.0679401731, -1.1713172509, 0.9107811975, -0.3374324004,
        0.0683946390, -0.0073089582, 0.0003230170,
    ),
    ("decam", "r"): (
        0.1139078673, -0.2868955307, 0.0013196434, 0.1029151074, 0.1196710702,
        -0.3729031390, 0.1859874242, 0.1370162451, -0.1808580848, 0.0803219195,
        -0.0180218196, 0.0020584707, -0.0000953486,
    ),
    ("decam", "i"): (
        0.3396481660, -0.6491867119, -0.3330769819, 0.4381097294, 0.5752125977,
        -1.4746570523, 1.2979140762, -0.6371018151, 0.1948940062, -0.0382055596,
        0.0046907449, -0.0003296841, 0.0000101480,
    ),
    ("decam", "z"): (
        0.4811198057, -0.9990015041, 0.1403990019, 0.2150988888, -0.2917655866,
        0.1326831887, -0.0259205004, 0.0018548776,
    ),
    ("90prime", "g"): (
        -0.1299895823, 0.3120393968, 0.5989482686, 0.3125882487, -1.9401592247,
        1.1011670449, 2.0741304659, -3.3930306403, 2.1857291197, -0.7674676232,
        0.1542300648, -0.0167007725, 0.0007573720,
    ),
    ("90prime", "r"): (
        0.0901464643, -0.2463711147, 0.0094963025, -0.1187138789, 0.4131107392,
        -0.1832183301, -0.6015486252, 0.9802538471, -0.6613809948, 0.2426395251,
        -0.0505867727, 0.0056462458, -0.0002625789,
    ),
    ("mosaic", "z"): (
        0.4862049092, -1.0278704657, 0.1220984456, 0.3000129189, -0.3770662617,
        0.1696090596, -0.0331679127, 0.0023867628,
    ),
}  # fmt: skip
"""Gaia → camera band: mag = G + Σ c_k·(BP−RP)^k, colour clipped to [−0.6, 4.1], missing
colours set to 1.4 (legacypipe ``gaiacat.py``; 90Prime/Mosaic from its BASS/MzLS block)."""


def reference_mags(
    info: ExposureInfo, gaia: npt.NDArray[np.void]
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Reference magnitude of each Gaia star in the exposure's band, and calibrator flags."""
    g = np.nan_to_num(gaia["phot_g_mean_mag"].astype(np.float64))
    bp = np.nan_to_num(gaia["phot_bp_mean_mag"].astype(np.float64))
    rp = np.nan_to_num(gaia["phot_rp_mean_mag"].astype(np.float64))
    has = (g != 0) & (bp != 0) & (rp != 0)
    if info.synthetic:
        from lsdr.survey.simulate.gaia import grz_from_gaia

        index = {"g": 0, "r": 1, "z": 2}.get(info.band)
        if index is None:
            return np.zeros(len(gaia)), np.zeros(len(gaia), bool)
        return grz_from_gaia(bp, g, rp)[index], has
    coeffs = GAIA_POLY.get((info.camera, info.band))
    if coeffs is None:
        return np.zeros(len(gaia)), np.zeros(len(gaia), bool)
    colour = bp - rp
    colour = np.where(has, colour, 1.4)
    cc = np.clip(colour, -0.6, 4.1)
    mag = g + np.polynomial.polynomial.polyval(cc, np.array(coeffs))
    ok = has & (colour > GAIA_COLOUR_RANGE[0]) & (colour < GAIA_COLOUR_RANGE[1])
    return np.where(g != 0, mag, 30.0), ok


def reference_mag_errors(info: ExposureInfo, gaia: npt.NDArray[np.void]) -> FloatArray:
    """1σ error (mag) of each star's reference magnitude, from Gaia's flux S/N plus floors.

    Propagated through the band's transform: the synthetic inverse matrix (whose large
    coefficients amplify BP/RP errors ×2–3) or legacypipe's G + poly(BP−RP).
    """
    errs = []
    for b in ("bp", "g", "rp"):
        snr = np.nan_to_num(gaia[f"phot_{b}_mean_flux_over_error"].astype(np.float64))
        errs.append(2.5 / np.log(10.0) / np.fmax(snr, 1.0) + GAIA_ERROR_FLOOR[b])
    e_bp, e_g, e_rp = errs
    if info.synthetic:
        from lsdr.survey.simulate.gaia import SYNTHETIC_GAIA_MATRIX

        index = {"g": 0, "r": 1, "z": 2}.get(info.band, 0)
        row = np.linalg.inv(SYNTHETIC_GAIA_MATRIX)[index]
        var = (row[0] * e_bp) ** 2 + (row[1] * e_g) ** 2 + (row[2] * e_rp) ** 2
        return np.asarray(np.sqrt(var))
    coeffs = np.array(GAIA_POLY.get((info.camera, info.band), (0.0,)))
    colour = np.nan_to_num(gaia["phot_bp_mean_mag"].astype(np.float64)) - np.nan_to_num(
        gaia["phot_rp_mean_mag"].astype(np.float64)
    )
    slope = np.polynomial.polynomial.polyval(
        np.clip(colour, -0.6, 4.1), np.polynomial.polynomial.polyder(coeffs)
    )
    return np.asarray(np.sqrt(e_g**2 + slope**2 * (e_bp**2 + e_rp**2)))
