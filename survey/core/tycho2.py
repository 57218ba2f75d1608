"""The Tycho-2 bright-star catalogue in legacypipe's layout: ``tycho2.kd.fits``.

legacypipe reads ``$TYCHO2_KD_DIR/tycho2.kd.fits`` (else the survey dir's): a libkd star tree
named ``stars`` (astrometry.net's ``startree -k -n stars``) whose HDU 1 is the star table, so
``tree_search_radec`` finds rows and ``fits_table(fn, rows=I)`` reads them.  The columns are
those of the real file in legacypipe's test data (``testcase6/tycho2.kd.fits``) plus
``ggguess`` (a Gaia-G guess, present in today's production file): positions in degrees at the
epochs ``epoch_ra``/``epoch_dec`` (Julian years), ``sigma_ra``/``sigma_dec`` in degrees,
proper motions and their errors in arcsec/yr, magnitudes B_T, V_T, Hp, J, H, K, ``zguess``.

libkd cannot build a tree of no points, so a catalogue with no star is written with one
placeholder row at the antipode of ``placeholder_near`` flagged ``isgalaxy = 1`` and of
magnitude 99: legacypipe's ``fix_tycho`` drops it (``isgalaxy == 0`` cut, ``mask_mag < 13``) and
so does :func:`read_tycho2` here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.fileio import atomic_path

TYCHO2_DTYPE = np.dtype(
    [
        ("tyc1", ">i2"),
        ("tyc2", ">i2"),
        ("tyc3", "u1"),
        ("ra", ">f8"),
        ("dec", ">f8"),
        ("mean_ra", ">f8"),
        ("mean_dec", ">f8"),
        ("sigma_ra", ">f4"),
        ("sigma_dec", ">f4"),
        ("pm_ra", ">f4"),
        ("pm_dec", ">f4"),
        ("sigma_pm_ra", ">f4"),
        ("sigma_pm_dec", ">f4"),
        ("epoch_ra", ">f4"),
        ("epoch_dec", ">f4"),
        ("mag_bt", ">f4"),
        ("mag_vt", ">f4"),
        ("mag_hp", ">f4"),
        ("isgalaxy", "u1"),
        ("jmag", ">f4"),
        ("hmag", ">f4"),
        ("kmag", ">f4"),
        ("zguess", ">f4"),
        ("ggguess", ">f4"),
    ]
)
"""Columns of ``tycho2.kd.fits`` HDU 1 (testcase6's file, plus today's ``ggguess``)."""

TYCHO_RADIUS_DEG = 1.0
"""legacypipe's ``read_tycho2`` searches the stars within this radius of the brick centre."""

STARS_LEAF = 16
"""Leaf size of the ``stars`` tree (libkd's default for star trees)."""


def placeholder_row(ra: float, dec: float) -> npt.NDArray[np.void]:
    """The one row written when there is no star: at the antipode, a galaxy, magnitude 99."""
    row = np.zeros(1, TYCHO2_DTYPE)
    row["tyc1"], row["tyc2"], row["tyc3"] = 0, 0, 0
    row["ra"] = row["mean_ra"] = (ra + 180.0) % 360.0
    row["dec"] = row["mean_dec"] = -dec
    for col in ("mag_bt", "mag_vt", "mag_hp", "jmag", "hmag", "kmag", "zguess", "ggguess"):
        row[col] = 99.0
    row["epoch_ra"] = row["epoch_dec"] = 2000.0
    row["isgalaxy"] = 1
    return row


def write_tycho2(
    path: Path, stars: npt.NDArray[np.void], placeholder_near: tuple[float, float] = (0.0, 0.0)
) -> Path:
    """Write ``stars`` (``TYCHO2_DTYPE`` rows) as a libkd star tree file, atomically."""
    import fitsio

    from lsdr.survey.pretractor.kdtree import build_tree, radec_unit_vectors, tree_hdus

    rows = np.asarray(stars).astype(TYCHO2_DTYPE)
    if len(rows) == 0:
        rows = placeholder_row(*placeholder_near)
    tree = build_tree(
        radec_unit_vectors(rows["ra"], rows["dec"]),
        "stars",
        leaf=STARS_LEAF,
        bbox=True,
        split=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fitsio.write(str(tmp), rows, clobber=True)
        with tmp.open("ab") as sink:
            sink.write(tree_hdus(tree))
    return path


def angular_distance(
    ra0: float, dec0: float, ra: npt.ArrayLike, dec: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Great-circle distance in degrees (haversine, exact at small separations)."""
    r0, d0 = np.radians(ra0), np.radians(dec0)
    r, d = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
    h = np.sin((d - d0) / 2) ** 2 + np.cos(d) * np.cos(d0) * np.sin((r - r0) / 2) ** 2
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))), np.float64)


def read_tycho2(path: Path, ra: float, dec: float, radius: float) -> npt.NDArray[np.void]:
    """The stars of ``path`` (HDU 1) within ``radius`` degrees of (ra, dec), in file order.

    The tree is not needed for a search this small: HDU 1's positions are read and cut by
    distance, then only the rows within it (the whole sky's 2.5 million stars are never read
    in full).  Columns a file lacks (``ggguess`` in older files) come back as NaN.
    """
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            hdu = fits[1]
            names = tuple(n.lower() for n in hdu.get_colnames())
            missing = [n for n in ("ra", "dec", "tyc1", "tyc2", "tyc3") if n not in names]
            if missing:
                raise InputFileError(f"{path}: Tycho-2 table lacks {', '.join(missing)}")
            pos = hdu.read(columns=["ra", "dec"], lower=True)
            rows = np.nonzero(angular_distance(ra, dec, pos["ra"], pos["dec"]) <= radius)[0]
            if len(rows) == 0:  # (no rows given would read them all)
                return np.zeros(0, TYCHO2_DTYPE)
            table = np.asarray(hdu.read(rows=rows, lower=True))
    except (OSError, ValueError) as err:
        raise InputFileError(f"{path}: cannot read the Tycho-2 table ({err})") from err
    out = np.zeros(len(table), TYCHO2_DTYPE)
    for name in TYCHO2_DTYPE.names or ():
        if name in names:
            out[name] = table[name]
        elif out[name].dtype.kind == "f":
            out[name] = np.nan
    return out
