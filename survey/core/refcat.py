"""The Gaia-like reference catalogue in legacypipe's layout: HEALPix chunk files.

legacypipe reads Gaia from ``$GAIA_CAT_DIR/<prefix>-<healpix:05d>.fits`` with nside 32 in the
ring scheme (``GAIA_CAT_PREFIX=chunk``, ``GAIA_CAT_SCHEME=ring``), one binary table per chunk
with the columns of the real ``chunk-00799.fits`` in legacypipe's test data (Gaia DR2 names).
The zeropoint phase matches stars against it and runbrick builds bright-star masks from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout

GAIA_NSIDE = 32
"""HEALPix nside of the chunk files."""

GAIA_DTYPE = np.dtype(
    [
        ("source_id", ">i8"),
        ("ra", ">f8"),
        ("dec", ">f8"),
        ("ra_error", ">f4"),
        ("dec_error", ">f4"),
        ("phot_g_mean_mag", ">f4"),
        ("phot_g_mean_flux_over_error", ">f4"),
        ("phot_g_n_obs", ">i2"),
        ("phot_bp_mean_mag", ">f4"),
        ("phot_bp_mean_flux_over_error", ">f4"),
        ("phot_bp_n_obs", ">i2"),
        ("phot_rp_mean_mag", ">f4"),
        ("phot_rp_mean_flux_over_error", ">f4"),
        ("phot_rp_n_obs", ">i2"),
        ("astrometric_weight_al", ">f4"),
        ("astrometric_n_obs_al", ">i2"),
        ("astrometric_n_good_obs_al", ">i2"),
        ("astrometric_excess_noise", ">f4"),
        ("astrometric_excess_noise_sig", ">f4"),
        ("duplicated_source", "?"),
        ("ref_epoch", ">f4"),
        ("parallax", ">f4"),
        ("parallax_error", ">f4"),
        ("pmra", ">f4"),
        ("pmra_error", ">f4"),
        ("pmdec", ">f4"),
        ("pmdec_error", ">f4"),
        ("phot_variable_flag", "?"),
        ("a_g_val", ">f4"),
        ("e_bp_min_rp_val", ">f4"),
        ("phot_bp_rp_excess_factor", ">f4"),
        ("astrometric_sigma5d_max", ">f4"),
        ("astrometric_params_solved", ">f4"),
    ]
)
"""Columns and types of a chunk file, exactly as the real chunk files have them."""

GAIA_REF_EPOCH = 2015.5
"""Epoch of the chunk positions (Julian years), as in the real chunk files."""


def healpix_ring(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Ring-scheme HEALPix index (nside 32) of each position, degrees."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    hp = HEALPix(nside=GAIA_NSIDE, order="ring")
    lon = np.asarray(ra, np.float64) * u.deg
    lat = np.asarray(dec, np.float64) * u.deg
    return np.asarray(hp.lonlat_to_healpix(lon, lat), np.int64)


def write_gaia_chunks(layout: ReleaseLayout, stars: npt.NDArray[np.void]) -> list[Path]:
    """Split a table with ``GAIA_DTYPE`` into chunk files under ``layout.gaia_dir``."""
    import fitsio

    if stars.dtype != GAIA_DTYPE:
        stars = stars.astype(GAIA_DTYPE)
    layout.gaia_dir.mkdir(parents=True, exist_ok=True)
    pix = healpix_ring(stars["ra"], stars["dec"])
    written = []
    for healpix in np.unique(pix):
        rows = stars[pix == healpix]
        rows = rows[np.argsort(rows["source_id"], kind="stable")]
        path = layout.gaia_chunk(int(healpix))
        with atomic_path(path) as tmp:
            fitsio.write(str(tmp), rows, clobber=True)
        written.append(path)
    return written


def gaia_chunk_paths(layout: ReleaseLayout, ra: npt.ArrayLike, dec: npt.ArrayLike) -> list[Path]:
    """The chunk files holding the positions (existing or not), in HEALPix order."""
    return [layout.gaia_chunk(hp) for hp in sorted(set(healpix_ring(ra, dec).tolist()))]


def read_gaia(layout: ReleaseLayout, ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.void]:
    """Reference stars of the chunks holding any of the positions (a missing chunk is empty)."""
    import fitsio

    parts = []
    for path in gaia_chunk_paths(layout, ra, dec):
        if not path.exists():
            continue
        try:
            parts.append(np.asarray(fitsio.read(str(path), ext=1)))
        except OSError as err:
            raise InputFileError(f"{path}: cannot read reference chunk ({err})") from err
    if not parts:
        return np.zeros(0, GAIA_DTYPE)
    return np.concatenate([p.astype(GAIA_DTYPE) for p in parts])
