"""Sweep files: the primary objects of a 5°×5° sky box with the documented subset of columns.

What legacypipe's ``bin/generate-sweep-files.py`` makes (schema ``blocksdr10``: 72 × 36 boxes
of 5° in RA and Dec): per box, every ``BRICK_PRIMARY`` object of the release's tractor
catalogues with ra1 ≤ RA < ra2 and dec1 ≤ Dec < dec2, the columns of :data:`SWEEP_DTYPE` in
upper case (light-curve columns excluded: legacypipe spins them off to ``-lc`` files), in
extension ``SWEEP`` of ``sweep/<version>/sweep-<ra1><p|m><dec1>-<ra2><p|m><dec2>.fits``.

One box is one unit (:func:`write_sweep`): it streams the box's catalogues brick by brick,
keeps only the selected rows' sweep columns and appends them to the output, so its memory is
that of one catalogue, whatever the number of bricks.  Sweep columns the catalogues lack (the
``i`` band of a g,r,z release) hold the tractor schema's documented null
(``lsdr.survey.runbrick.tractorschema``); the header's ``BANDS`` says which bands were measured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.bricks import brick_by_name
from lsdr.survey.core.errors import InputFileError, UsageError
from lsdr.survey.core.fileio import atomic_path
from lsdr.survey.core.fitsread import catalogue_hdu
from lsdr.survey.core.layout import ReleaseLayout, checked_brick

SWEEP_NRA = 72
"""Boxes in RA of the ``blocksdr10`` schema (5° each)."""
SWEEP_NDEC = 36
"""Boxes in Dec of the ``blocksdr10`` schema (5° each)."""
SWEEP_EXTNAME = "SWEEP"
"""Extension name of the sweep table."""
SWEEP_BANDS = ("G", "R", "I", "Z")
"""Optical bands of the sweep columns (DR10's griz)."""
_WISE = ("W1", "W2", "W3", "W4")
_LC_EPOCHS = 25

# The sweep columns as generate-sweep-files' SWEEP_DTYPE declares them, in order: (stem,
# FITS-style numpy dtype, element shape, bands); a stem with bands gives one column per band
# (``FLUX_G``, …, ``FLUX_W4``), a stem without bands one column.
_G = SWEEP_BANDS
_GW = SWEEP_BANDS + _WISE
_W12 = _WISE[:2]
_SWEEP_TABLE: tuple[tuple[str, str, tuple[int, ...], tuple[str, ...]], ...] = (
    ("RELEASE", ">i2", (), ()),
    ("BRICKID", ">i4", (), ()),
    ("BRICKNAME", "S8", (), ()),
    ("OBJID", ">i4", (), ()),
    ("TYPE", "S3", (), ()),
    ("RA", ">f8", (), ()),
    ("DEC", ">f8", (), ()),
    ("RA_IVAR", ">f4", (), ()),
    ("DEC_IVAR", ">f4", (), ()),
    ("DCHISQ", ">f4", (5,), ()),
    ("EBV", ">f4", (), ()),
    ("FLUX", ">f4", (), _GW),
    ("FLUX_IVAR", ">f4", (), _GW),
    ("MW_TRANSMISSION", ">f4", (), _GW),
    ("NOBS", ">i2", (), _GW),
    ("RCHISQ", ">f4", (), _GW),
    ("FRACFLUX", ">f4", (), _GW),
    ("FRACMASKED", ">f4", (), _G),
    ("FRACIN", ">f4", (), _G),
    ("ANYMASK", ">i2", (), _G),
    ("ALLMASK", ">i2", (), _G),
    ("WISEMASK", "u1", (), _W12),
    ("PSFSIZE", ">f4", (), _G),
    ("PSFDEPTH", ">f4", (), _G),
    ("GALDEPTH", ">f4", (), _G),
    ("PSFDEPTH", ">f4", (), _W12),
    ("WISE_COADD_ID", "S8", (), ()),
    ("LC_FLUX", ">f4", (_LC_EPOCHS,), _W12),
    ("LC_FLUX_IVAR", ">f4", (_LC_EPOCHS,), _W12),
    ("LC_NOBS", ">i2", (_LC_EPOCHS,), _W12),
    ("LC_MJD", ">f8", (_LC_EPOCHS,), _W12),
    ("LC_FRACFLUX", ">f4", (_LC_EPOCHS,), _W12),
    ("LC_RCHISQ", ">f4", (_LC_EPOCHS,), _W12),
    ("LC_EPOCH_INDEX", ">i2", (_LC_EPOCHS,), _W12),
    ("SHAPE_R", ">f4", (), ()),
    ("SHAPE_R_IVAR", ">f4", (), ()),
    ("SHAPE_E1", ">f4", (), ()),
    ("SHAPE_E1_IVAR", ">f4", (), ()),
    ("SHAPE_E2", ">f4", (), ()),
    ("SHAPE_E2_IVAR", ">f4", (), ()),
    ("FIBERFLUX", ">f4", (), _G),
    ("FIBERTOTFLUX", ">f4", (), _G),
    ("REF_CAT", "S2", (), ()),
    ("REF_ID", ">i8", (), ()),
    ("REF_EPOCH", ">f4", (), ()),
    ("GAIA_PHOT_G_MEAN_MAG", ">f4", (), ()),
    ("GAIA_PHOT_G_MEAN_FLUX_OVER_ERROR", ">f4", (), ()),
    ("GAIA_PHOT_BP_MEAN_MAG", ">f4", (), ()),
    ("GAIA_PHOT_BP_MEAN_FLUX_OVER_ERROR", ">f4", (), ()),
    ("GAIA_PHOT_RP_MEAN_MAG", ">f4", (), ()),
    ("GAIA_PHOT_RP_MEAN_FLUX_OVER_ERROR", ">f4", (), ()),
    ("GAIA_ASTROMETRIC_EXCESS_NOISE", ">f4", (), ()),
    ("GAIA_DUPLICATED_SOURCE", "?", (), ()),
    ("GAIA_PHOT_BP_RP_EXCESS_FACTOR", ">f4", (), ()),
    ("GAIA_ASTROMETRIC_SIGMA5D_MAX", ">f4", (), ()),
    ("GAIA_ASTROMETRIC_PARAMS_SOLVED", "u1", (), ()),
    ("PARALLAX", ">f4", (), ()),
    ("PARALLAX_IVAR", ">f4", (), ()),
    ("PMRA", ">f4", (), ()),
    ("PMRA_IVAR", ">f4", (), ()),
    ("PMDEC", ">f4", (), ()),
    ("PMDEC_IVAR", ">f4", (), ()),
    ("MASKBITS", ">i4", (), ()),
    ("FITBITS", ">i2", (), ()),
    ("SERSIC", ">f4", (), ()),
    ("SERSIC_IVAR", ">f4", (), ()),
)


def _expand(
    table: Iterable[tuple[str, str, tuple[int, ...], tuple[str, ...]]],
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for stem, dtype, shape, bands in table:
        names = [f"{stem}_{b}" for b in bands] if bands else [stem]
        out.extend((n, dtype, shape) if shape else (n, dtype) for n in names)
    return out


SWEEP_DTYPE: np.dtype[np.void] = np.dtype(_expand(_SWEEP_TABLE))
"""Every sweep column (legacypipe's ``SWEEP_DTYPE``, DR10/DR11: griz, 25 light-curve epochs)."""
SWEEP_MAIN_DTYPE: np.dtype[np.void] = np.dtype(
    [d for d in SWEEP_DTYPE.descr if not d[0].startswith("LC_")]
)
"""The columns of the main sweep file: :data:`SWEEP_DTYPE` without the ``LC_*`` columns."""


@dataclass(frozen=True)
class SweepBox:
    """A sweep box (ra1 ≤ RA < ra2, dec1 ≤ Dec < dec2) and the bricks whose area overlaps it."""

    ra1: float
    dec1: float
    ra2: float
    dec2: float
    bricks: tuple[str, ...]


@dataclass(frozen=True)
class SweepResult:
    """One written sweep: its path (None when the box held no primary object), counts."""

    path: str | None
    box: str
    rows: int
    bricks_read: int
    bricks_missing: int
    bands: str


def sweep_boxes(
    layout: ReleaseLayout,
    bricks: Sequence[str],
    *,
    nra: int = SWEEP_NRA,
    ndec: int = SWEEP_NDEC,
) -> list[SweepBox]:
    """The boxes of the ``nra`` × ``ndec`` schema that overlap any brick's area, with the bricks.

    A brick's primary objects lie in its ra1..ra2, dec1..dec2 (from the brick grid), so a box
    needs exactly the bricks whose bounds overlap it; a brick straddling a box edge belongs to
    both boxes.  ``layout`` is where the catalogues are (kept for symmetry with the other
    planners; the grid alone decides).
    """
    del layout
    if nra < 1 or ndec < 1:
        raise UsageError(f"sweep schema needs at least one box, not {nra} x {ndec}")
    dra, ddec = 360.0 / nra, 180.0 / ndec
    members: dict[tuple[int, int], set[str]] = {}
    for name in bricks:
        b = brick_by_name(checked_brick(name))
        i0, i1 = _index_span(b.ra1, b.ra2, 0.0, dra, nra)
        j0, j1 = _index_span(b.dec1, b.dec2, -90.0, ddec, ndec)
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                members.setdefault((i, j), set()).add(b.brickname)
    return [
        SweepBox(
            ra1=_edge(i * dra),
            dec1=_edge(-90.0 + j * ddec),
            ra2=_edge((i + 1) * dra),
            dec2=_edge(-90.0 + (j + 1) * ddec),
            bricks=tuple(sorted(names)),
        )
        for (i, j), names in sorted(members.items())
    ]


def _index_span(lo: float, hi: float, origin: float, step: float, n: int) -> tuple[int, int]:
    """First and last box index whose [edge, edge+step) overlaps [lo, hi) with positive length."""
    first = math.floor((lo - origin) / step)
    last = math.ceil((hi - origin) / step) - 1
    return max(first, 0), min(last, n - 1)


def _edge(value: float) -> float:
    """A box edge, rounded off float noise (5·k degrees stay exact)."""
    return float(round(value, 9))


def write_sweep(layout: ReleaseLayout, box: SweepBox, version: str) -> SweepResult:
    """Write the sweep file of one box from its bricks' catalogues; memory of one catalogue.

    Rows are the catalogues' ``brick_primary`` objects inside the box, bricks in name order,
    objects in catalogue order.  A brick without a catalogue (legacypipe writes none for a
    brick without data) is counted as missing and skipped; an unreadable one raises
    ``InputFileError``.  A box without any selected object writes no file (as
    generate-sweep-files does), and the result's ``path`` is None.  The primary header holds
    the catalogue header keys equal in every brick read, the box (``RAMIN`` … ``DECMAX``), the
    measured ``BANDS`` and ``SWEEPVER``.
    """
    if not (box.ra1 < box.ra2 and box.dec1 < box.dec2):
        raise UsageError(f"empty sweep box {box.ra1}..{box.ra2}, {box.dec1}..{box.dec2}")
    path = layout.sweep(version, box.ra1, box.dec1, box.ra2, box.dec2)
    stats = _Stats()
    try:
        with atomic_path(path) as tmp:
            _stream_box(layout, box, version, tmp, stats)
            if stats.rows == 0:
                raise _EmptyBoxError
    except _EmptyBoxError:
        return SweepResult(None, path.stem, 0, stats.read, stats.missing, ",".join(stats.bands))
    return SweepResult(
        str(path), path.stem, stats.rows, stats.read, stats.missing, ",".join(stats.bands)
    )


class _EmptyBoxError(Exception):
    """No primary object in the box: nothing is written."""


@dataclass
class _Stats:
    rows: int = 0
    read: int = 0
    missing: int = 0
    bands: list[str] = field(default_factory=list)


def _stream_box(
    layout: ReleaseLayout, box: SweepBox, version: str, tmp: Path, stats: _Stats
) -> None:
    """Append each brick's selected rows to ``tmp``; write the merged header last."""
    import fitsio

    nulls = _sweep_nulls()
    units = _sweep_units()
    header: dict[str, tuple[Any, str]] | None = None
    fits: Any = None
    try:
        for brick in sorted(set(box.bricks)):
            cat_path = layout.tractor(brick)
            if not cat_path.exists():
                stats.missing += 1
                continue
            chunk, hdr = read_box_rows(cat_path, box, nulls)
            stats.read += 1
            header = _merge_header(header, hdr)
            for b in str(hdr.get("BANDS", ("", ""))[0]).split(","):
                if b.strip() and b.strip() not in stats.bands:
                    stats.bands.append(b.strip())
            if len(chunk) == 0:
                continue
            if fits is None:
                fits = fitsio.FITS(str(tmp), "rw", clobber=True)
                fits.create_image_hdu()
                names = chunk.dtype.names or ()
                fits.write_table(
                    chunk, extname=SWEEP_EXTNAME, units=[units.get(n, "") for n in names]
                )
            else:
                fits[SWEEP_EXTNAME].append(chunk)
            stats.rows += len(chunk)
        if fits is not None:
            keys = dict(header or {})
            keys["RAMIN"] = (box.ra1, "sweep box RA min (deg)")
            keys["RAMAX"] = (box.ra2, "sweep box RA max (deg)")
            keys["DECMIN"] = (box.dec1, "sweep box Dec min (deg)")
            keys["DECMAX"] = (box.dec2, "sweep box Dec max (deg)")
            keys["BANDS"] = (",".join(stats.bands), "optical bands measured (others: nulls)")
            keys["SWEEPVER"] = (version, "sweep version (directory name)")
            fits[0].write_keys(
                [{"name": k, "value": v, "comment": c} for k, (v, c) in sorted(keys.items())]
            )
    finally:
        if fits is not None:
            fits.close()


_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", "", "PCOUNT", "GCOUNT"}


def _merge_header(
    merged: dict[str, tuple[Any, str]] | None, hdr: dict[str, tuple[Any, str]]
) -> dict[str, tuple[Any, str]]:
    """Keys equal in every header so far (generate-sweep-files keeps only those)."""
    if merged is None:
        return dict(hdr)
    return {k: v for k, v in merged.items() if k in hdr and hdr[k][0] == v[0]}


def read_box_rows(
    cat_path: Path, box: SweepBox, nulls: dict[str, Any] | None = None
) -> tuple[npt.NDArray[np.void], dict[str, tuple[Any, str]]]:
    """The sweep rows of one catalogue inside ``box`` and its primary header (key → value, comment).

    Reads the selection columns first, then only the selected rows of the sweep columns the
    catalogue has (lower-case names in the catalogue, upper case in the sweep); the others hold
    their null.
    """
    import fitsio

    nulls = _sweep_nulls() if nulls is None else nulls
    try:
        with fitsio.FITS(str(cat_path)) as fits:
            hdr = fits[0].read_header()
            hdu, have = catalogue_hdu(fits, cat_path, ("brick_primary", "ra", "dec"))
            sel = hdu.read(columns=[have["brick_primary"], have["ra"], have["dec"]])
            ra = sel[have["ra"]]
            dec = sel[have["dec"]]
            keep = (
                (sel[have["brick_primary"]] != 0)
                & (ra >= box.ra1)
                & (ra < box.ra2)
                & (dec >= box.dec1)
                & (dec < box.dec2)
            )
            idx = np.flatnonzero(keep)
            out = np.zeros(len(idx), dtype=SWEEP_MAIN_DTYPE)
            names = SWEEP_MAIN_DTYPE.names or ()
            present = [have[n.lower()] for n in names if n.lower() in have]
            if len(idx):
                data = hdu.read(columns=present, rows=idx)
            for name in names:
                src = have.get(name.lower())
                if src is not None:
                    if len(idx):
                        out[name] = data[src]
                elif nulls.get(name, 0) not in (0, "", False):
                    out[name] = nulls[name]
    except OSError as err:
        raise InputFileError(f"{cat_path}: cannot read the tractor catalogue ({err})") from err
    header = {
        r["name"]: (r["value"], r.get("comment", "") or "")
        for r in hdr.records()
        if r.get("name") and r["name"].upper() not in _STRUCTURAL
    }
    return out, header


def _sweep_nulls() -> dict[str, Any]:
    """Sweep column → the tractor schema's documented null (all sweep bands, dr10 flavour)."""
    from lsdr.survey.runbrick.tractorschema import tractor_columns

    cols = tractor_columns([b.lower() for b in SWEEP_BANDS], lc_epochs=_LC_EPOCHS)
    return {c.name.upper(): c.null for c in cols}


def _sweep_units() -> dict[str, str]:
    """Sweep column → FITS unit, from the tractor schema."""
    from lsdr.survey.runbrick.tractorschema import tractor_units

    units = tractor_units([b.lower() for b in SWEEP_BANDS], lc_epochs=_LC_EPOCHS)
    return {k.upper(): v for k, v in units.items()}
