"""Synthetic stand-ins for the SDSS catalogues the external-match phase reads.

A synthetic survey has no SDSS, so the simulator writes, under ``<release>/external-input/``
(laid out as NERSC's ``$SDSSDIR``), one small file per catalogue of
:data:`lsdr.survey.posttractor.external.SDSS_CATALOGUES`, with that file's name, FITS table
layout and
column names (DR12Q and its superset, DR14Q: Pâris et al. 2017, 2018 format tables; DR7Q:
Schneider et al. 2010; specObj: the SDSS ``specObj`` data model; dtypes follow those tables
where they give them).  Rows sit on bright truth objects (jittered by a fraction of an arcsec,
so they match), plus rows with no source within 10″ (so ``OBJID = -1`` rows exist); specObj
also repeats some objects, as repeat spectra do.  Rows are in random order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.layout import ReleaseLayout
from lsdr.survey.posttractor.external import SDSS_CATALOGUES, default_catalogues, radec_to_unit

STANDIN_SEED = 6
"""Seed of the stand-ins (with the catalogue's index): the same truth gives the same files."""
BRIGHT_R = 21.0
"""Truth objects brighter than this (r, AB) are the stand-ins' counterparts: detectable."""
JITTER_ARCSEC = 0.15
"""Per-axis scatter of a stand-in position around its truth object (well inside 1.5″)."""
EMPTY_SKY_ARCSEC = 10.0
"""A row with no counterpart lies at least this far from every truth object."""

_QSO_COMMON = [
    ("SDSS_NAME", "S18"),
    ("RA", ">f8"),
    ("DEC", ">f8"),
    ("THING_ID", ">i4"),
    ("PLATE", ">i4"),
    ("MJD", ">i4"),
    ("FIBERID", ">i4"),
]

STANDIN_DTYPES: dict[str, np.dtype[np.void]] = {
    "dr12Q": np.dtype(
        [
            *_QSO_COMMON,
            ("Z_VI", ">f8"),
            ("Z_PIPE", ">f8"),
            ("ERR_ZPIPE", ">f8"),
            ("ZWARNING", ">i4"),
            ("Z_PCA", ">f8"),
            ("ERR_ZPCA", ">f8"),
            ("RUN_NUMBER", ">i4"),
            ("RERUN_NUMBER", "S3"),
            ("COL_NUMBER", ">i4"),
            ("FIELD_NUMBER", ">i4"),
        ]
    ),
    "dr7Q": np.dtype(
        [
            ("SDSSJ", "S18"),
            ("RA", ">f8"),
            ("DEC", ">f8"),
            ("Z", ">f4"),
            ("PSFMAG_G", ">f4"),
            ("PSFMAG_R", ">f4"),
            ("PSFMAG_I", ">f4"),
            ("SMJD", ">i4"),
            ("PLATE", ">i2"),
            ("FIBER", ">i2"),
            ("RUN", ">i2"),
            ("RERUN", ">i2"),
            ("CAMCOL", ">i2"),
            ("FIELD", ">i2"),
        ]
    ),
    "superset-dr12Q": np.dtype(
        [
            *_QSO_COMMON,
            ("Z_VI", ">f8"),
            ("Z_PIPE", ">f8"),
            ("ERR_ZPIPE", ">f8"),
            ("ZWARNING", ">i4"),
            ("CLASS_PERSON", ">i4"),
            ("Z_CONF_PERSON", ">i4"),
        ]
    ),
    "specObj-dr14": np.dtype(
        [
            ("SURVEY", "S6"),
            ("RUN2D", "S7"),
            ("RUN1D", "S7"),
            ("PLATE", ">i4"),
            ("MJD", ">i4"),
            ("FIBERID", ">i4"),
            ("PLUG_RA", ">f8"),
            ("PLUG_DEC", ">f8"),
            ("SPECPRIMARY", "u1"),
            ("CLASS", "S6"),
            ("SUBCLASS", "S21"),
            ("Z", ">f4"),
            ("Z_ERR", ">f4"),
            ("ZWARNING", ">i4"),
            ("THING_ID", ">i4"),
        ]
    ),
    "dr14Q_v4_4": np.dtype(
        [
            *_QSO_COMMON,
            ("SPECTRO", "S4"),
            ("Z", ">f8"),
            ("Z_ERR", ">f8"),
            ("SOURCE_Z", "S5"),
            ("Z_VI", ">f8"),
            ("Z_PIPE", ">f8"),
            ("Z_PIPE_ERR", ">f8"),
            ("ZWARNING", ">i4"),
        ]
    ),
}
"""Stand-in columns per catalogue name: a subset of the real file's columns, same names."""

STANDIN_ROWS: dict[str, tuple[int, int, int]] = {
    "dr12Q": (30, 6, 0),
    "dr7Q": (15, 4, 0),
    "superset-dr12Q": (40, 8, 0),
    "specObj-dr14": (40, 8, 6),
    "dr14Q_v4_4": (30, 6, 0),
}
"""Per catalogue: rows on truth objects, rows on empty sky, repeat rows (same object again)."""


@dataclass(frozen=True)
class _Rows:
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]
    mag_r: npt.NDArray[np.float64]


def write_standins(layout: ReleaseLayout, *, overwrite: bool = True) -> list[Path]:
    """Write the five SDSS stand-ins for a release from its truth catalogue; their paths.

    With ``overwrite=False`` files already present are kept (the content is a function of the
    truth catalogue, so an existing file is current unless the truth changed).
    """
    truth = _read_truth(layout)
    written = []
    for index, cat in enumerate(default_catalogues(layout.root)):
        if not overwrite and cat.path.exists():
            written.append(cat.path)
            continue
        rng = np.random.default_rng([STANDIN_SEED, index])
        table = standin_table(cat.name, truth, rng)
        cat.path.parent.mkdir(parents=True, exist_ok=True)
        import fitsio

        with atomic_path(cat.path) as tmp:
            fitsio.write(str(tmp), table, clobber=True)
        written.append(cat.path)
    return written


def _read_truth(layout: ReleaseLayout) -> _Rows:
    import fitsio

    path = layout.truth_catalog
    try:
        truth = fitsio.read(str(path), columns=["ra", "dec", "mag_r"])
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the truth catalogue ({err})") from err
    return _Rows(
        np.asarray(truth["ra"], np.float64),
        np.asarray(truth["dec"], np.float64),
        np.asarray(truth["mag_r"], np.float64),
    )


def standin_table(name: str, truth: _Rows, rng: np.random.Generator) -> npt.NDArray[np.void]:
    """One stand-in catalogue's rows: on bright truth objects, on empty sky, repeats."""
    n_on, n_empty, n_repeat = STANDIN_ROWS[name]
    bright = np.nonzero(truth.mag_r < BRIGHT_R)[0]
    if len(bright) == 0:
        raise InputFileError(f"no truth object brighter than r = {BRIGHT_R}: no stand-ins")
    picks = rng.choice(bright, size=min(n_on, len(bright)), replace=False)
    jitter = rng.normal(0.0, JITTER_ARCSEC / 3600.0, (2, len(picks)))
    cos_d = np.cos(np.radians(truth.dec[picks]))
    ra_on = truth.ra[picks] + jitter[0] / np.maximum(cos_d, 1e-6)
    dec_on = truth.dec[picks] + jitter[1]
    ra_e, dec_e = _empty_sky(truth, n_empty, rng)
    repeat = rng.choice(len(picks), size=min(n_repeat, len(picks)), replace=False)
    ra = np.concatenate([ra_on, ra_e, ra_on[repeat]]) % 360.0
    dec = np.concatenate([dec_on, dec_e, dec_on[repeat]])
    order = rng.permutation(len(ra))
    return _fill(name, ra[order], dec[order], rng)


def _empty_sky(
    truth: _Rows, n: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``n`` positions inside the truth's footprint, ≥ 10″ from every truth object."""
    from scipy.spatial import cKDTree

    from lsdr.survey.posttractor.external import chord_of_arcsec

    tree = cKDTree(radec_to_unit(truth.ra, truth.dec))
    lo_ra, hi_ra = float(truth.ra.min()), float(truth.ra.max())
    lo_dec, hi_dec = float(truth.dec.min()), float(truth.dec.max())
    ra_out: list[float] = []
    dec_out: list[float] = []
    for _ in range(100):
        if len(ra_out) >= n:
            break
        ra = rng.uniform(lo_ra, hi_ra, 4 * n)
        dec = rng.uniform(lo_dec, hi_dec, 4 * n)
        dist, _ = tree.query(radec_to_unit(ra, dec))
        ok = dist > chord_of_arcsec(EMPTY_SKY_ARCSEC)
        ra_out.extend(ra[ok].tolist())
        dec_out.extend(dec[ok].tolist())
    return np.asarray(ra_out[:n]), np.asarray(dec_out[:n])


def _sdss_name(ra: float, dec: float) -> bytes:
    """``hhmmss.ss+ddmmss.s``: the J2000 designation of an SDSS object."""
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = ((h * 60) % 1) * 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d % 1) * 60)
    ds = ((d * 60) % 1) * 60
    return f"{hh:02d}{mm:02d}{ss:05.2f}{sign}{dd:02d}{dm:02d}{ds:04.1f}".encode()


def _fill(
    name: str, ra: npt.NDArray[np.float64], dec: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.void]:
    """A table of the catalogue's dtype with positions and plausible values everywhere else."""
    dtype = STANDIN_DTYPES[name]
    n = len(ra)
    table = np.zeros(n, dtype)
    names = set(dtype.names or ())
    ra_col, dec_col = ("PLUG_RA", "PLUG_DEC") if "PLUG_RA" in names else ("RA", "DEC")
    table[ra_col] = ra
    table[dec_col] = dec
    z = rng.uniform(0.3, 3.5, n)
    values: dict[str, npt.ArrayLike] = {
        "THING_ID": rng.integers(1, 500_000_000, n),
        "PLATE": rng.integers(266, 9000, n),
        "MJD": rng.integers(51_600, 58_500, n),
        "SMJD": rng.integers(51_600, 54_600, n),
        "FIBERID": rng.integers(1, 1001, n),
        "FIBER": rng.integers(1, 641, n),
        "RUN": rng.integers(94, 8162, n),
        "RUN_NUMBER": rng.integers(94, 8162, n),
        "RERUN": np.full(n, 301),
        "RERUN_NUMBER": np.full(n, b"301"),
        "CAMCOL": rng.integers(1, 7, n),
        "COL_NUMBER": rng.integers(1, 7, n),
        "FIELD": rng.integers(11, 800, n),
        "FIELD_NUMBER": rng.integers(11, 800, n),
        "Z": z,
        "Z_VI": z,
        "Z_PIPE": z + rng.normal(0, 0.002, n),
        "Z_PCA": z + rng.normal(0, 0.003, n),
        "ERR_ZPIPE": np.full(n, 0.0008),
        "ERR_ZPCA": np.full(n, 0.001),
        "Z_ERR": np.full(n, 0.0008),
        "Z_PIPE_ERR": np.full(n, 0.0008),
        "PSFMAG_G": rng.uniform(17.0, 21.0, n),
        "PSFMAG_R": rng.uniform(17.0, 21.0, n),
        "PSFMAG_I": rng.uniform(17.0, 21.0, n),
        "CLASS_PERSON": np.full(n, 3),
        "Z_CONF_PERSON": np.full(n, 3),
        "SURVEY": np.full(n, b"boss"),
        "RUN2D": np.full(n, b"v5_10_0"),
        "RUN1D": np.full(n, b"v5_10_0"),
        "SPECPRIMARY": np.ones(n, np.uint8),
        "CLASS": np.full(n, b"QSO"),
        "SUBCLASS": np.full(n, b"BROADLINE"),
        "SPECTRO": np.full(n, b"BOSS"),
        "SOURCE_Z": np.full(n, b"VI"),
    }
    for col, value in values.items():
        if col in names:
            table[col] = value
    for col in ("SDSS_NAME", "SDSSJ"):
        if col in names:
            table[col] = [_sdss_name(float(r), float(d)) for r, d in zip(ra, dec, strict=True)]
    return table


def standin_names() -> Sequence[str]:
    """The catalogue names the stand-ins cover (those of ``SDSS_CATALOGUES``)."""
    return [c.name for c in SDSS_CATALOGUES]
