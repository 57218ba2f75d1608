"""The brick summary of a release, ``survey-bricks-<dr>.fits.gz``: one row per processed brick.

What legacypipe's ``py/legacyanalysis/brick-summary.py`` computes, in the cookbook's two steps:
per RA-degree chunk (:func:`summarize_chunk`, one unit each, a partial table in
``state/bricksummary/``) then one merge (:func:`merge_brick_summary`) that adds the brick
bounds, area and north/south split, and draws the sky maps.  Per brick (definitions as there):

- ``nexp_<b>``: median of the ``nexp-<b>`` coadd over the brick's unique pixels (centres in
  ra1 ≤ RA < ra2, dec1 ≤ Dec < dec2), truncated to int16; ``nexphist_<b>``: how many unique
  pixels have 0, 1, …, 9 and ≥ 10 exposures.  0 and zeros when the band has no nexp file.
- over the ``brick_primary`` objects of the tractor catalogue: ``nobjs`` and the counts by
  ``type`` (``npsf nsimp nrex nexp ndev ncomp nser ndup``); medians of ``psfsize_<b>``,
  ``ebv``, ``mw_transmission_<b>`` (``trans_<b>``, ``ext_<b>`` = −2.5 log10 trans) and of the
  WISE ``nobs_w1..4`` (``wise_nobs``) and transmissions (``trans_wise``, ``ext_w1..4``);
  ``psfdepth_<b>``/``galdepth_<b>`` are the 5σ AB magnitudes of the median depth inverse
  variances (0 where that is not finite).
- ``cosky_<b>``: header ``COSKY_<B>`` of the catalogue, 0 when absent (the lite engine writes
  none).

Documented nulls: a brick without primary objects has NaN medians (``psfsize``, ``ebv``,
``trans``, ``ext``), depths 0 and ``wise_nobs`` 0; a band or WISE column the catalogue lacks
gives the same.  Bricks without a tractor catalogue are left out (legacypipe skips them too).
``in_desi`` needs DESI's tile file (desimodel), which lsdr does not have: it is False for
every brick and the header says so (``INDESI``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.fitsread import catalogue_hdu, read_image
from lsdr.survey.core.layout import ReleaseLayout, checked_brick

NORTH_BANDS = ("g", "r", "z")
"""Bands of a northern (BASS + MzLS) summary, brick-summary.py's ``--north``."""
SOUTH_BANDS = ("g", "r", "i", "z")
"""Bands of a southern (DECam) summary."""
NEXPHIST_BINS = 11
"""``nexphist_<b>`` bins: 0..9 exposures, then ≥ 10."""
TYPE_COUNTS = (
    ("npsf", "PSF"),
    ("nsimp", "SIMP"),
    ("nrex", "REX"),
    ("nexp", "EXP"),
    ("ndev", "DEV"),
    ("ncomp", "COMP"),
    ("nser", "SER"),
    ("ndup", "DUP"),
)
"""Count column and the ``type`` it counts (SIMP and COMP are older releases' types)."""
NORTH_DEC_SPLIT = 32.375
"""DESI's north/south boundary in Dec (desitarget's ``resolve`` split), north of b = 0."""
WISE_BANDS = ("w1", "w2", "w3", "w4")
"""unWISE bands of ``wise_nobs`` and ``trans_wise``."""


@dataclass(frozen=True)
class SummaryChunk:
    """One RA-degree chunk's partial table: its key (``"180"``), path, bricks summarized."""

    key: str
    path: str
    bricks: int
    missing: int = 0
    """Bricks of the chunk without a tractor catalogue (left out)."""


@dataclass(frozen=True)
class BrickSummaryResult:
    """The merged summary: its path, number of bricks and the sky-map plots."""

    path: str
    bricks: int
    plots: tuple[str, ...]


def summary_dtype(bands: Sequence[str]) -> np.dtype[np.void]:
    """Columns of a chunk table (brick-summary.py's per-chunk output), in its order."""
    cols: list[tuple[Any, ...]] = [("brickname", "S8"), ("ra", "f8"), ("dec", "f8")]
    cols += [(f"nexp_{b}", "i2") for b in bands]
    cols += [(f"nexphist_{b}", "i4", (NEXPHIST_BINS,)) for b in bands]
    cols += [("nobjs", "i4")] + [(name, "i4") for name, _ in TYPE_COUNTS]
    for stem in ("psfsize", "psfdepth", "galdepth"):
        cols += [(f"{stem}_{b}", "f4") for b in bands]
    cols.append(("ebv", "f4"))
    for b in bands:
        cols += [(f"trans_{b}", "f4"), (f"ext_{b}", "f4")]
    cols += [(f"cosky_{b}", "f4") for b in bands]
    cols += [("wise_nobs", "i2", (4,)), ("trans_wise", "f4", (4,))]
    cols += [(f"ext_{w}", "f4") for w in WISE_BANDS]
    return np.dtype(cols)


MERGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("brickid", "i4"),
    ("ra1", "f8"),
    ("ra2", "f8"),
    ("dec1", "f8"),
    ("dec2", "f8"),
    ("area", "f8"),
    ("survey_primary", "?"),
    ("in_desi", "?"),
)
"""Columns the merge adds (``--merge``): brick bounds, area (deg²), north/south split, DESI."""


def merged_dtype(bands: Sequence[str]) -> np.dtype[np.void]:
    """Columns of ``survey-bricks-<dr>.fits.gz``: the chunk columns, then :data:`MERGE_COLUMNS`."""
    return np.dtype(list(summary_dtype(bands).descr) + list(MERGE_COLUMNS))


def summary_chunks(bricks: Sequence[str]) -> dict[str, list[str]]:
    """The bricks grouped by RA degree: key = ``<bri>`` (``"180"`` for RA 180–181), sorted."""
    out: dict[str, list[str]] = {}
    for name in sorted(set(bricks)):
        b = brick_by_name(checked_brick(name))
        out.setdefault(b.brickname[:3], []).append(b.brickname)
    return dict(sorted(out.items()))


def summarize_chunk(
    layout: ReleaseLayout,
    key: str,
    bricks: Sequence[str],
    *,
    bands: Sequence[str] = NORTH_BANDS,
) -> SummaryChunk:
    """Summarize one chunk's bricks into ``state/bricksummary/survey-bricks-<key>.fits``.

    Reads one brick at a time (its catalogue's summary columns and one nexp map per band), so
    memory is that of one brick; the partial table is written atomically (a chunk whose
    bricks all lack catalogues gives an empty table).
    """
    path = layout.brick_summary_chunk(key)
    bands = _check_bands(bands)
    rows: list[npt.NDArray[np.void]] = []
    missing = 0
    for name in sorted(set(bricks)):
        if name[:3] != key:
            raise UsageError(f"brick {name} is not in RA-degree chunk {key}")
        row = summarize_brick(layout, name, bands)
        if row is None:
            missing += 1
        else:
            rows.append(row)
    table = np.zeros(len(rows), dtype=summary_dtype(bands))
    for i, row in enumerate(rows):
        table[i] = row[0]
    _write_table(
        path,
        table,
        {"BANDS": (",".join(bands), "bands of the summary"), "CHUNK": (key, "RA degree")},
    )
    return SummaryChunk(key=key, path=str(path), bricks=len(rows), missing=missing)


def summarize_brick(
    layout: ReleaseLayout, brick: str, bands: Sequence[str]
) -> npt.NDArray[np.void] | None:
    """The one-row summary of a brick, or None when it has no tractor catalogue."""

    b = brick_by_name(checked_brick(brick))
    bands = _check_bands(bands)
    cat_path = layout.tractor(b.brickname)
    if not cat_path.exists():
        return None
    row = np.zeros(1, dtype=summary_dtype(bands))
    row["brickname"] = b.brickname
    row["ra"], row["dec"] = b.ra, b.dec

    cat, hdr = _read_primary_objects(cat_path, bands)
    row["nobjs"] = len(cat)
    types = np.char.strip(np.asarray(cat["type"]).astype("U3")) if len(cat) else np.array([])
    for column, value in TYPE_COUNTS:
        row[column] = int(np.count_nonzero(types == value))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for band in bands:
            row[f"psfsize_{band}"] = _median(cat, f"psfsize_{band}")
            row[f"psfdepth_{band}"] = _depth_mag(_median(cat, f"psfdepth_{band}"))
            row[f"galdepth_{band}"] = _depth_mag(_median(cat, f"galdepth_{band}"))
            trans = _median(cat, f"mw_transmission_{band}")
            row[f"trans_{band}"] = trans
            row[f"ext_{band}"] = -2.5 * np.log10(np.float32(trans)) + 0.0
            row[f"cosky_{band}"] = float(hdr.get(f"COSKY_{band.upper()}", 0.0))
        row["ebv"] = _median(cat, "ebv")
        nobs = [_median(cat, f"nobs_{w}") for w in WISE_BANDS]
        row["wise_nobs"] = [int(v) if np.isfinite(v) else 0 for v in nobs]
        trans_w = np.array([_median(cat, f"mw_transmission_{w}") for w in WISE_BANDS], "f4")
        row["trans_wise"] = trans_w
        for w, t in zip(WISE_BANDS, trans_w, strict=True):
            row[f"ext_{w}"] = -2.5 * np.log10(t) + 0.0

    unique: npt.NDArray[np.bool_] | None = None
    for band in bands:
        nexp_path = layout.coadd(b.brickname, "nexp", band)
        if not nexp_path.exists():
            continue
        image, header = read_image(nexp_path)
        if unique is None or unique.shape != image.shape:
            unique = unique_pixel_mask(nexp_path, header, image.shape, b.brickname)
        upix = image[unique]
        if upix.size:
            row[f"nexp_{band}"] = int(np.median(upix))
        row[f"nexphist_{band}"] = nexp_histogram(upix)
    return row


def nexp_histogram(values: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Counts of 0, 1, …, 9 and ≥ 10 exposures (``nexphist_<b>``)."""
    v = np.asarray(values).ravel()
    hist = np.bincount(np.clip(v, 0, NEXPHIST_BINS - 1).astype(np.int64), minlength=NEXPHIST_BINS)
    return hist[:NEXPHIST_BINS].astype(np.int32)


def unique_pixel_mask(
    path: Path, header: Any, shape: tuple[int, ...], brick: str
) -> npt.NDArray[np.bool_]:
    """The brick's unique pixels on a coadd's grid (legacypipe's ``find_unique_pixels``).

    The grid is the coadd header's TAN WCS, which runbrick makes diagonal (CD diag(−p, p));
    any other WCS is refused rather than guessed.
    """
    from lsdr.survey.runbrick.primary import unique_pixels
    from lsdr.survey.runbrick.types import BrickGeometry

    b = brick_by_name(brick)
    try:
        cd11, cd22 = float(header["CD1_1"]), float(header["CD2_2"])
        cd12, cd21 = float(header.get("CD1_2", 0.0)), float(header.get("CD2_1", 0.0))
        crpix = (float(header["CRPIX1"]), float(header["CRPIX2"]))
        crval = (float(header["CRVAL1"]), float(header["CRVAL2"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputFileError(f"{path}: no usable TAN WCS in the header ({err})") from err
    if cd12 != 0.0 or cd21 != 0.0 or cd22 <= 0.0 or not np.isclose(cd11, -cd22, rtol=1e-9):
        raise InputFileError(f"{path}: the coadd WCS is not a brick grid (CD not diag(-p, p))")
    geom = BrickGeometry(
        brickname=b.brickname,
        brickid=b.brickid,
        ra=crval[0],
        dec=crval[1],
        ra1=b.ra1,
        ra2=b.ra2,
        dec1=b.dec1,
        dec2=b.dec2,
        width=int(shape[1]),
        height=int(shape[0]),
        pixscale=cd22 * 3600.0,
        crpix=crpix,
    )
    return unique_pixels(geom)


def merge_brick_summary(
    layout: ReleaseLayout,
    chunks: Sequence[str],
    *,
    region: str = "north",
    plot: bool = True,
) -> BrickSummaryResult:
    """Merge chunk tables (paths, or chunk keys) into ``survey-bricks-<dr>.fits.gz`` + plots.

    Adds brickid, ra1, ra2, dec1, dec2 and area (deg²) from the brick grid, survey_primary
    (north: Galactic b > 0 and Dec ≥ 32.375; south: the rest) and in_desi (False: see the
    module docstring).  Rows are in brick-name order; a brick in two chunks is an error.
    """
    if region not in ("north", "south"):
        raise UsageError(f"region must be 'north' or 'south', not {region!r}")
    tables: list[npt.NDArray[np.void]] = []
    bands: tuple[str, ...] | None = None
    for chunk in chunks:
        path = _chunk_path(layout, chunk)
        table, chunk_bands = _read_chunk(path)
        if bands is None:
            bands = chunk_bands
        elif chunk_bands != bands:
            raise InputFileError(f"{path}: bands {chunk_bands} differ from the others' {bands}")
        tables.append(table)
    if bands is None:
        raise UsageError("no brick-summary chunks to merge")
    merged_chunks = np.concatenate(tables) if tables else np.zeros(0, summary_dtype(bands))
    merged_chunks = merged_chunks[np.argsort(merged_chunks["brickname"], kind="stable")]
    names = merged_chunks["brickname"]
    if len(names) > 1 and np.any(names[1:] == names[:-1]):
        dup = names[1:][names[1:] == names[:-1]][0]
        raise InputFileError(f"brick {dup!r} appears in more than one summary chunk")
    out = np.zeros(len(merged_chunks), dtype=merged_dtype(bands))
    for col in merged_chunks.dtype.names or ():
        out[col] = merged_chunks[col]
    _add_brick_data(out, region)
    header = {
        "BANDS": (",".join(bands), "bands of the summary"),
        "REGION": (region, "survey_primary: north = b > 0 and Dec >= DECSPLIT"),
        "DECSPLIT": (NORTH_DEC_SPLIT, "north/south Dec boundary (deg)"),
        "INDESI": ("not computed", "in_desi is False: no DESI tile file"),
    }
    _write_table(layout.brick_summary, out, header)
    plots: list[Path] = []
    if plot:
        from lsdr.survey.posttractor.summaryplots import plot_brick_summary

        plots = plot_brick_summary(out, layout, bands)
    return BrickSummaryResult(
        path=str(layout.brick_summary), bricks=len(out), plots=tuple(str(p) for p in plots)
    )


def _add_brick_data(out: npt.NDArray[np.void], region: str) -> None:
    """Fill the merge columns in place from the brick grid."""
    from astropy.coordinates import SkyCoord

    for i, name in enumerate(out["brickname"]):
        b = brick_by_name(name.decode() if isinstance(name, bytes) else str(name))
        out["brickid"][i] = b.brickid
        out["ra1"][i], out["ra2"][i] = b.ra1, b.ra2
        out["dec1"][i], out["dec2"][i] = b.dec1, b.dec2
    out["area"] = (
        (out["ra2"] - out["ra1"])
        * (out["dec2"] - out["dec1"])
        * np.cos(np.deg2rad((out["dec1"] + out["dec2"]) / 2.0))
    )
    if len(out):
        gal_b = SkyCoord(out["ra"], out["dec"], unit="deg", frame="icrs").galactic.b.deg
        north = (gal_b > 0) & (out["dec"] >= NORTH_DEC_SPLIT)
        out["survey_primary"] = north if region == "north" else ~north
    out["in_desi"] = False


def _chunk_path(layout: ReleaseLayout, chunk: str) -> Path:
    """A chunk given by path, or by key (``"180"``)."""
    text = str(chunk)
    if len(text) == 3 and text.isdigit():
        return layout.brick_summary_chunk(text)
    return Path(text)


def _read_chunk(path: Path) -> tuple[npt.NDArray[np.void], tuple[str, ...]]:
    """A chunk table (in the chunk dtype) and its bands."""
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            bands_text = str(fits[1].read_header().get("BANDS", ""))
            bands = tuple(b for b in bands_text.split(",") if b)
            nrows = fits[1].get_nrows()
            raw = fits[1].read() if nrows else None
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the brick-summary chunk ({err})") from err
    if not bands:
        raise InputFileError(f"{path}: no BANDS keyword: not a brick-summary chunk")
    dtype = summary_dtype(bands)
    table = np.zeros(nrows, dtype=dtype)
    if raw is not None:
        for col in dtype.names or ():
            if col not in (raw.dtype.names or ()):
                raise InputFileError(f"{path}: column {col} is missing")
            table[col] = raw[col]
    return table, bands


def _read_primary_objects(
    path: Path, bands: Sequence[str]
) -> tuple[npt.NDArray[np.void], dict[str, Any]]:
    """The summary columns of a catalogue's brick_primary rows, and its primary header."""
    import fitsio

    wanted = ["brick_primary", "type", "ebv"]
    wanted += [f"nobs_{w}" for w in WISE_BANDS] + [f"mw_transmission_{w}" for w in WISE_BANDS]
    for b in bands:
        wanted += [f"psfsize_{b}", f"psfdepth_{b}", f"galdepth_{b}", f"mw_transmission_{b}"]
    try:
        with fitsio.FITS(str(path)) as fits:
            hdr = fits[0].read_header()
            hdu, have = catalogue_hdu(fits, path, ("brick_primary", "type"))
            data = hdu.read(columns=[have[c] for c in wanted if c in have])
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the tractor catalogue ({err})") from err
    data = data[data[have["brick_primary"]] != 0]
    data.dtype.names = tuple(n.lower() for n in data.dtype.names or ())
    header = {str(k).upper(): hdr[k] for k in hdr}
    return data, header


def _median(cat: npt.NDArray[np.void], column: str) -> float:
    """Median of a column over the rows; NaN without rows or without the column."""
    if column not in (cat.dtype.names or ()) or len(cat) == 0:
        return float("nan")
    return float(np.median(cat[column]))


def _depth_mag(ivar: float) -> float:
    """5σ AB depth of an inverse variance, 0 where it is not finite (brick-summary.py)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = float(np.float32(-2.5 * (np.log10(5.0 * np.sqrt(1.0 / np.float64(ivar))) - 9.0)))
    return mag if np.isfinite(mag) else 0.0


def _check_bands(bands: Sequence[str]) -> tuple[str, ...]:
    out = tuple(bands)
    if isinstance(bands, str) or not out or len(set(out)) != len(out):
        raise UsageError(f"bands must be distinct band names, not {bands!r}")
    for b in out:
        if not (b.isalnum() and len(b) <= 2):
            raise UsageError(f"{b!r} is not a band name")
    return out


def _write_table(path: Path, table: npt.NDArray[np.void], keys: dict[str, tuple[Any, str]]) -> None:
    """Write a table (HDU 1) with header keys, atomically."""
    import fitsio

    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write_table(
            table, header=[{"name": k, "value": v, "comment": c} for k, (v, c) in keys.items()]
        )
