"""Merge the per-CCD PsfEx and spline-sky calibs of an exposure into legacypipe's merged files.

legacypipe's ``merge_calibs.py`` stacks the one-row per-CCD tables of an exposure into one
table per exposure (``calib/psfex/<imgdir>/<base>-psfex.fits``,
``calib/sky/<imgdir>/<base>-splinesky.fits``), one row per CCD, zero-padding the array columns
(``psf_mask``; ``gridvals``, ``xgrid``, ``ygrid``) to the largest shape; readers strip the
padding with ``psfaxis1/2``, ``poldeg1`` and ``gridw``/``gridh``.  Rows must agree with the
image's EXPNUM, PLVER and PLPROCID, which legacypipe validates before using a calib.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lsdr.survey.core.errors import InputFileError
from lsdr.survey.core.layout import ReleaseLayout, image_relpath
from lsdr.survey.pretractor.psfex import write_psf_table
from lsdr.survey.pretractor.splinesky import write_sky_table


@dataclass(frozen=True)
class MergedCalibs:
    """The merged calib files of one exposure."""

    image: str
    psfex: Path
    sky: Path


def image_ccdnames(layout: ReleaseLayout, image: str) -> list[str]:
    """The CCD names (upper-case EXTNAMEs) of an image, in HDU order."""
    from lsdr.survey.pretractor.zeropoints.planes import list_ccds

    return [c.ccdname for c in list_ccds(layout.image(image))]


def expected_calib_inputs(layout: ReleaseLayout, image: str) -> list[Path]:
    """The per-CCD PsfEx and sky files ``merge_calibs`` reads for an image (cache fingerprint)."""
    names = image_ccdnames(layout, image)
    return [layout.psfex_single(image, n) for n in names] + [
        layout.sky_single(image, n) for n in names
    ]


def _read_rows(path: Path) -> tuple[npt.NDArray[np.void], list[dict[str, object]]]:
    import fitsio

    try:
        with fitsio.FITS(str(path)) as fits:
            rows = np.asarray(fits[1].read())
            hdr = fits[1].read_header()
    except (OSError, IndexError) as err:
        raise InputFileError(f"{path}: cannot read calib table ({err})") from err
    if len(rows) != 1:
        raise InputFileError(f"{path}: {len(rows)} rows in a per-CCD calib file (expected 1)")
    skip = ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE", "TFORM", "TDIM")
    cards = [
        {"name": r["name"], "value": r["value"]}
        for r in hdr.records()
        if r["name"] and not r["name"].startswith(skip) and r["name"] not in ("COMMENT", "HISTORY")
    ]
    return rows, cards


def _pad_stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Zero-pad arrays to a common (largest) shape and stack them."""
    shape = tuple(int(max(a.shape[i] for a in arrays)) for i in range(arrays[0].ndim))
    out = np.zeros((len(arrays), *shape), arrays[0].dtype)
    for k, a in enumerate(arrays):
        index: tuple[int | slice, ...] = (k, *(slice(0, s) for s in a.shape))
        out[index] = a
    return out


def _merge(rows: list[npt.NDArray[np.void]], arrays: tuple[str, ...]) -> npt.NDArray[np.void]:
    """Stack one-row tables into one table (one row per CCD).

    Columns keep the first table's order, strings are widened to the longest, and the
    ``arrays`` columns are zero-padded to the largest shape.
    """
    first = rows[0].dtype
    names = first.names or ()
    for r in rows[1:]:
        if set(r.dtype.names or ()) != set(names):
            raise ValueError("calib tables of one exposure have different columns")
    stacked = {n: _pad_stack([np.asarray(r[n][0]) for r in rows]) for n in arrays}
    dtype: list[tuple[str, object] | tuple[str, object, tuple[int, ...]]] = []
    for n in names:
        if n in arrays:
            dtype.append((n, first[n].base, stacked[n].shape[1:]))
        elif first[n].kind == "S":
            width = max(r.dtype[n].itemsize for r in rows)
            dtype.append((n, f"S{width}"))
        else:
            dtype.append((n, first[n]))
    out = np.zeros(len(rows), dtype)
    for n in names:
        if n in arrays:
            out[n] = stacked[n]
        else:
            out[n] = [r[n][0] for r in rows]
    return out


def merge_calibs(layout: ReleaseLayout, image: str) -> MergedCalibs:
    """Write the merged PsfEx and sky files of an image from its per-CCD files.

    Every per-CCD file must exist and carry the image's EXPNUM, PLVER and PLPROCID; otherwise
    ``InputFileError`` names the file (nothing is written for that exposure).
    """
    from lsdr.survey.pretractor.zeropoints.exposure import read_exposure_info

    rel = str(image_relpath(image))
    info = read_exposure_info(layout.image(image))
    names = image_ccdnames(layout, image)
    merged: dict[str, tuple[npt.NDArray[np.void], list[dict[str, object]]]] = {}
    for kind, single, arrays in (
        ("psfex", layout.psfex_single, ("psf_mask",)),
        ("sky", layout.sky_single, ("gridvals", "xgrid", "ygrid")),
    ):
        rows = []
        header: list[dict[str, object]] = []
        for name in names:
            path = single(image, name)
            if not path.exists():
                raise InputFileError(f"{path}: per-CCD {kind} calib of {rel} {name} not found")
            row, cards = _read_rows(path)
            got = (
                int(row["expnum"][0]),
                _text(row["ccdname"][0]),
                _text(row["plver"][0]),
                _text(row["plprocid"][0]),
            )
            if got != (info.expnum, name, info.plver, info.plprocid):
                raise InputFileError(
                    f"{path}: calib is for exposure {got[0]} CCD {got[1]} PLVER {got[2]} "
                    f"PLPROCID {got[3]}, not {info.expnum} {name} {info.plver} {info.plprocid}"
                )
            rows.append(row)
            header = header or cards
        try:
            table = _merge(rows, arrays)
        except ValueError as err:
            raise InputFileError(f"{single(image, names[0])}: cannot merge ({err})") from err
        merged[kind] = (table, header)
    psf_table, psf_cards = merged["psfex"]
    # Per-CCD PsfEx header cards describe one CCD; the merged table keeps only provenance.
    keep = ("EXPNUM", "PLVER", "PLPROCID", "PROCDATE", "LEGPIPEV")
    psfex = write_psf_table(
        layout.psfex_merged(image), psf_table, [c for c in psf_cards if c["name"] in keep]
    )
    sky_table, _ = merged["sky"]
    sky = write_sky_table(layout.sky_merged(image), sky_table, None)
    return MergedCalibs(image=rel, psfex=psfex, sky=sky)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode().strip()
    return str(value).strip()
