"""The simulator's Gaia: the grz-Gaia colour transform and the Gaia-like reference stars."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.refcat import GAIA_DTYPE, GAIA_REF_EPOCH

FloatArray = npt.NDArray[np.float64]

GAIA_G_LIMIT = 20.8
"""Faintest star written to the reference catalogue, Gaia G magnitude."""

SYNTHETIC_GAIA_MATRIX = np.array(
    [
        [0.70, 0.30, 0.00],  # BP from g, r, z
        [0.15, 0.60, 0.25],  # G
        [0.00, 0.40, 0.60],  # RP
    ]
)
"""How the simulated stars' Gaia BP, G and RP magnitudes follow from their g, r, z (AB).

A linear, invertible stand-in for real colour transformations: the zeropoint phase predicts a
star's g, r or z from its Gaia magnitudes with the inverse (``grz_from_gaia``).
"""


def gaia_from_grz(g: FloatArray, r: FloatArray, z: FloatArray) -> FloatArray:
    """Gaia (BP, G, RP) magnitudes of synthetic stars, shape (3, N)."""
    return np.asarray(SYNTHETIC_GAIA_MATRIX @ np.stack([g, r, z]), np.float64)


def grz_from_gaia(bp: FloatArray, gmag: FloatArray, rp: FloatArray) -> FloatArray:
    """The (g, r, z) magnitudes a synthetic star with these Gaia magnitudes has, shape (3, N)."""
    return np.asarray(np.linalg.solve(SYNTHETIC_GAIA_MATRIX, np.stack([bp, gmag, rp])), np.float64)


GAIA_BPRP_FLOOR = 0.002
"""Magnitude error floor of the simulated Gaia BP and RP: Gaia DR3's BP/RP calibration is good
to about 2 mmag for bright sources (Riello et al. 2021).  (It was 0.01 at first: five
times the real floor, which, amplified by the colour terms, gave Mosaic z zeropoints 1.3-1.6 %
errors per CCD that no survey calibrated on Gaia has.)"""


def make_gaia(truth: npt.NDArray[np.void], rng: np.random.Generator) -> npt.NDArray[np.void]:
    """The Gaia-like reference rows of the truth's catalogued stars, with Gaia-like errors."""
    stars = truth[truth["gaia_source_id"] > 0]
    n = len(stars)
    bp, gmag, rp = gaia_from_grz(
        stars["mag_g"].astype(np.float64),
        stars["mag_r"].astype(np.float64),
        stars["mag_z"].astype(np.float64),
    )
    sigma_mas = np.clip(0.02 * 10 ** (0.2 * (gmag - 13.0)), 0.02, 2.0)
    out = np.zeros(n, GAIA_DTYPE)
    out["source_id"] = stars["gaia_source_id"]
    cosd = np.cos(np.radians(stars["dec"]))
    out["ra"] = stars["ra"] + rng.normal(0, 1, n) * sigma_mas / 3.6e6 / cosd
    out["dec"] = stars["dec"] + rng.normal(0, 1, n) * sigma_mas / 3.6e6
    out["ra_error"] = sigma_mas
    out["dec_error"] = sigma_mas
    for col, mag, floor in (
        ("g", gmag, 0.0),
        ("bp", bp, GAIA_BPRP_FLOOR),
        ("rp", rp, GAIA_BPRP_FLOOR),
    ):
        snr = np.clip(2000.0 * 10 ** (-0.3 * (mag - 15.0)), 3.0, 5000.0)
        sigma = 1.0857 / snr + floor
        out[f"phot_{col}_mean_mag"] = mag + rng.normal(0, 1, n) * sigma
        out[f"phot_{col}_mean_flux_over_error"] = 1.0857 / sigma
        out[f"phot_{col}_n_obs"] = (
            rng.integers(20, 300, n) if col == "g" else rng.integers(10, 40, n)
        )
    out["astrometric_weight_al"] = 1.0 / sigma_mas**2
    out["astrometric_n_obs_al"] = rng.integers(100, 400, n)
    out["astrometric_n_good_obs_al"] = out["astrometric_n_obs_al"] - rng.integers(0, 5, n)
    out["ref_epoch"] = GAIA_REF_EPOCH
    out["parallax"] = np.abs(rng.normal(0.5, 0.4, n))
    out["parallax_error"] = 1.3 * sigma_mas
    out["pmra"] = stars["pmra"] + rng.normal(0, 1, n) * 1.2 * sigma_mas
    out["pmdec"] = stars["pmdec"] + rng.normal(0, 1, n) * 1.2 * sigma_mas
    out["pmra_error"] = 1.2 * sigma_mas
    out["pmdec_error"] = 1.2 * sigma_mas
    out["a_g_val"] = np.nan
    out["e_bp_min_rp_val"] = np.nan
    out["phot_bp_rp_excess_factor"] = rng.uniform(1.15, 1.35, n)
    out["astrometric_sigma5d_max"] = 1.5 * sigma_mas
    out["astrometric_params_solved"] = 31.0
    return out


TYCHO_G_LIMIT = 13.0
"""Simulated stars brighter than this Gaia G are also written to the Tycho-2 catalogue."""
TYCHO_EPOCH = 2000.0
"""Epoch (both coordinates) of the simulated Tycho-2 positions, Julian years."""


def make_tycho(truth: npt.NDArray[np.void], gaia: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """Tycho-2 rows of the bright catalogued stars (Gaia G < 13), in legacypipe's columns.

    Positions are the truth's moved to epoch 2000 with its proper motion (arcsec/yr in the
    file); ``ggguess`` = the star's Gaia G, ``zguess`` its true z, B_T/V_T/Hp its g, the mean of
    g and r, and G; ``isgalaxy`` 0; TYC1-TYC2-TYC3 numbered in source-id order.
    """
    from lsdr.survey.core.tycho2 import TYCHO2_DTYPE

    bright = gaia[np.asarray(gaia["phot_g_mean_mag"], np.float64) < TYCHO_G_LIMIT]
    bright = bright[np.argsort(bright["source_id"], kind="stable")]
    index = {int(s): i for i, s in enumerate(truth["gaia_source_id"]) if s > 0}
    stars = truth[[index[int(s)] for s in bright["source_id"]]]
    n = len(stars)
    out = np.zeros(n, TYCHO2_DTYPE)
    k = np.arange(n)
    out["tyc1"], out["tyc2"], out["tyc3"] = 1 + k // 12121, 1 + k % 12121, 1
    pmra = np.asarray(stars["pmra"], np.float64) / 1000.0
    pmdec = np.asarray(stars["pmdec"], np.float64) / 1000.0
    dt = TYCHO_EPOCH - np.asarray(stars["ref_epoch"], np.float64)
    cosd = np.cos(np.radians(stars["dec"]))
    out["ra"] = out["mean_ra"] = stars["ra"] + dt * pmra / 3600.0 / cosd
    out["dec"] = out["mean_dec"] = stars["dec"] + dt * pmdec / 3600.0
    out["sigma_ra"] = out["sigma_dec"] = 0.01 / 3600.0
    out["pm_ra"], out["pm_dec"] = pmra, pmdec
    out["sigma_pm_ra"] = out["sigma_pm_dec"] = 0.001
    out["epoch_ra"] = out["epoch_dec"] = TYCHO_EPOCH
    out["mag_bt"] = stars["mag_g"]
    out["mag_vt"] = (np.asarray(stars["mag_g"]) + np.asarray(stars["mag_r"])) / 2.0
    out["mag_hp"] = bright["phot_g_mean_mag"]
    out["jmag"] = out["hmag"] = out["kmag"] = np.nan
    out["zguess"] = stars["mag_z"]
    out["ggguess"] = bright["phot_g_mean_mag"]
    return out
